package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/flashvisor/flashvisor/internal/linklocal"
	"github.com/flashvisor/flashvisor/internal/pktchan"
)

// packetListen brings the packet NIC up and opens the packet channel on
// it (svs mode L2): hosts send their relayed frames to its MAC address.
func packetListen(nic string) (*pktchan.Conn, error) {
	link, err := netlink.LinkByName(nic)
	if err != nil {
		return nil, fmt.Errorf("packet NIC %s: %w", nic, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("packet NIC %s up: %w", nic, err)
	}
	return pktchan.Listen(nic)
}

// controlAdvertise brings the control NIC up and returns the control
// channel's address on it for svs mode L2: [its IPv6 link-local]:port,
// once duplicate address detection has let the address be used (at most
// wait). Hosts dial it through their vmknic on the control VLAN; nothing
// routes it beyond that VLAN, and neither side needs an IP configuration.
func controlAdvertise(ctx context.Context, nic, port string, wait time.Duration) (string, error) {
	link, err := netlink.LinkByName(nic)
	if err != nil {
		return "", fmt.Errorf("control NIC %s: %w", nic, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return "", fmt.Errorf("control NIC %s up: %w", nic, err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ip, err := linklocal.Wait(ctx, &netlink.Handle{}, link)
	if err != nil {
		return "", fmt.Errorf("control NIC %s: %w after %s (IPv6 off?)", nic, err, wait)
	}
	return net.JoinHostPort(ip.String(), port), nil
}
