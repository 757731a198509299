// Package linklocal waits for an interface's IPv6 link-local address to
// become usable (svs mode L2 talks over these addresses: the VSM
// advertises its control NIC's, hosts dial it through a vmknic).
package linklocal

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Wait returns link's IPv6 link-local address once duplicate address
// detection has let it be used (not tentative, not failed), polling every
// 100 ms until ctx ends. h is the netlink handle of link's namespace.
func Wait(ctx context.Context, h *netlink.Handle, link netlink.Link) (netip.Addr, error) {
	for {
		addrs, err := h.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("%s addresses: %w", link.Attrs().Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && ip.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				return ip, nil
			}
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("%s: no usable IPv6 link-local address: %w", link.Attrs().Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
