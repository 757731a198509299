package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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
	for {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return "", fmt.Errorf("control NIC %s addresses: %w", nic, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && ip.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				return net.JoinHostPort(ip.String(), port), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("control NIC %s: no usable IPv6 link-local address after %s (IPv6 off?)", nic, wait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
