package netseam

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the thin layer between the pure plan and the kernel: it reports
// the links in its name spaces (plus the uplink and anything enslaved to our
// bridges) and applies one action at a time. NetlinkKernel is the real one;
// tests use an in-memory one.
type Kernel interface {
	Observe(ctx context.Context, uplink string) (State, error)
	Apply(ctx context.Context, a Action) error
}

// ErrNoVLANSupport means the kernel refused to create an 802.1Q
// sub-interface: the 8021q module is missing or not loaded.
var ErrNoVLANSupport = errors.New("kernel has no 802.1Q VLAN support (is the 8021q module loaded?)")

// NetlinkKernel programs the network namespace it was created in.
//
// Taps are created with the TUNSETIFF ioctl, which acts on the network
// namespace of the calling thread rather than the netlink socket's, so use a
// NetlinkKernel from the namespace it was created in (hostd: the host's).
type NetlinkKernel struct {
	h *netlink.Handle
}

// NewNetlinkKernel opens a netlink handle in the current network namespace.
func NewNetlinkKernel() (*NetlinkKernel, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &NetlinkKernel{h: h}, nil
}

// Close releases the netlink socket.
func (k *NetlinkKernel) Close() { k.h.Close() }

// Observe implements Kernel.
func (k *NetlinkKernel) Observe(ctx context.Context, uplink string) (State, error) {
	links, err := k.h.LinkList()
	if err != nil {
		return State{}, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var st State
	for _, l := range links {
		a := l.Attrs()
		o := Link{
			Name: a.Name, Alias: a.Alias, Index: a.Index, MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, Master: names[a.MasterIndex],
		}
		if a.HardwareAddr != nil {
			o.MAC = a.HardwareAddr.String()
		}
		switch {
		case ours(a.Name):
			switch l := l.(type) {
			case *netlink.Bridge:
				o.Kind = KindBridge
				if o.Addrs, err = k.addrs(l); err != nil {
					return State{}, err
				}
			case *netlink.Tuntap:
				o.Kind = KindTap
			case *netlink.Vlan:
				o.Kind, o.Parent, o.VLAN = KindVLAN, names[a.ParentIndex], l.VlanId
			default:
				o.Kind = l.Type() // of an unexpected type: Plan replaces it
			}
		case a.Name == uplink || a.MasterIndex != 0 && ours(o.Master):
			o.Kind = KindUplink
		default:
			continue
		}
		st.Links = append(st.Links, o)
	}
	st.Sort()
	return st, nil
}

// addrs lists a bridge's host addresses, leaving out link-local ones (the
// kernel adds an IPv6 one to every interface by itself).
func (k *NetlinkKernel) addrs(l netlink.Link) ([]netip.Prefix, error) {
	as, err := k.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var ps []netip.Prefix
	for _, a := range as {
		if a.Scope == unix.RT_SCOPE_LINK {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		ps = append(ps, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return ps, nil
}

// Apply implements Kernel.
func (k *NetlinkKernel) Apply(ctx context.Context, a Action) error {
	if err := k.apply(a); err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	return nil
}

func (k *NetlinkKernel) apply(a Action) error {
	l := a.Link
	if a.Op == OpCreate {
		return k.create(l)
	}
	link, err := k.h.LinkByName(l.Name)
	if err != nil {
		return err
	}
	switch a.Op {
	case OpDelete:
		return k.h.LinkDel(link)
	case OpSetAlias:
		return k.h.LinkSetAlias(link, l.Alias)
	case OpSetMAC:
		hw, err := net.ParseMAC(l.MAC)
		if err != nil {
			return err
		}
		return k.h.LinkSetHardwareAddr(link, hw)
	case OpSyncMTU:
		m, err := k.h.LinkByName(l.Master)
		if err != nil {
			return fmt.Errorf("master: %w", err)
		}
		if link.Attrs().MTU == m.Attrs().MTU {
			return nil
		}
		return k.h.LinkSetMTU(link, m.Attrs().MTU)
	case OpSetMaster:
		if l.Master == "" {
			return k.h.LinkSetNoMaster(link)
		}
		m, err := k.h.LinkByName(l.Master)
		if err != nil {
			return fmt.Errorf("master: %w", err)
		}
		return k.h.LinkSetMaster(link, m)
	case OpSetUp:
		return k.h.LinkSetUp(link)
	case OpAddAddr, OpDelAddr:
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   a.Addr.Addr().AsSlice(),
			Mask: net.CIDRMask(a.Addr.Bits(), a.Addr.Addr().BitLen()),
		}}
		if a.Op == OpAddAddr {
			return k.h.AddrAdd(link, addr)
		}
		return k.h.AddrDel(link, addr)
	}
	return fmt.Errorf("unknown operation %d", a.Op)
}

func (k *NetlinkKernel) create(l Link) error {
	switch l.Kind {
	case KindBridge:
		// An explicitly set MAC stays: otherwise the bridge takes the
		// lowest MAC of its ports and changes it as VMs come and go, which
		// breaks the neighbours' ARP caches for the host address. Random
		// (locally administered) rather than derived from the name, because
		// the same port group exists on every host of a network.
		mac := make(net.HardwareAddr, 6)
		if _, err := rand.Read(mac); err != nil {
			return err
		}
		mac[0] = mac[0]&0xfe | 0x02
		return k.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.Name, HardwareAddr: mac}})
	case KindTap:
		// Persistent, single queue, with the virtio-net header: what QEMU's
		// "-netdev tap,ifname=...,script=no,vhost=on" opens (with
		// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; the multi-queue flag must match
		// the device's, so it stays off).
		return k.h.LinkAdd(&netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: l.Name},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		})
	case KindVLAN:
		parent, err := k.h.LinkByName(l.Parent)
		if err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		err = k.h.LinkAdd(&netlink.Vlan{
			LinkAttrs:    netlink.LinkAttrs{Name: l.Name, ParentIndex: parent.Attrs().Index},
			VlanId:       l.VLAN,
			VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
		})
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("%w: %w", ErrNoVLANSupport, err)
		}
		return err
	}
	return fmt.Errorf("cannot create a link of kind %q", l.Kind)
}
