package vmknic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the thin layer between plans and the kernel: it reports the
// vmknics and applies one change at a time. NetlinkKernel is the real
// one; vmknictest.Kernel the in-memory one.
type Kernel interface {
	Observe(ctx context.Context) (KernelState, error)
	Apply(ctx context.Context, c Change) error
}

// foreverLft is the kernel's "forever" address lifetime.
const foreverLft = 0xffffffff

// NetlinkKernel programs the network namespace it was created in, over
// netlink only (no ip binary).
type NetlinkKernel struct {
	h   *netlink.Handle
	now func() time.Time
}

// NewNetlinkKernel opens a netlink handle in the calling thread's network
// namespace.
func NewNetlinkKernel() (*NetlinkKernel, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &NetlinkKernel{h: h, now: time.Now}, nil
}

// Close releases the netlink socket.
func (k *NetlinkKernel) Close() { k.h.Close() }

// Observe implements Kernel.
func (k *NetlinkKernel) Observe(ctx context.Context) (KernelState, error) {
	links, err := k.h.LinkList()
	if err != nil {
		return KernelState{}, fmt.Errorf("list links: %w", err)
	}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	peerOf := func(l netlink.Link) netlink.Link {
		a := l.Attrs()
		if _, ok := l.(*netlink.Veth); !ok || a.NetNsID >= 0 || a.ParentIndex == 0 {
			return nil // not a veth, or its peer is in another namespace
		}
		if p := byIndex[a.ParentIndex]; p != nil && p.Attrs().ParentIndex == a.Index {
			return p
		}
		return nil
	}
	var st KernelState
	ours := map[string]bool{}
	pos := map[int]int{} // host end index -> position in st.NICs
	for _, l := range links {
		a := l.Attrs()
		if !isVMKName(a.Name) {
			continue
		}
		peer := peerOf(l)
		pg, marked := strings.CutPrefix(a.Alias, aliasPrefix)
		if !marked && (peer == nil || peer.Attrs().Name != SwitchportName(a.Name)) {
			continue
		}
		n := NIC{
			Name: a.Name, Kind: l.Type(), PortGroup: pg, MAC: a.HardwareAddr.String(), MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0,
		}
		if peer != nil {
			pa := peer.Attrs()
			n.Switchport, n.SwitchportMTU, n.SwitchportUp = pa.Name, pa.MTU, pa.Flags&net.FlagUp != 0
			ours[pa.Name] = true
		}
		addrs, err := k.h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return KernelState{}, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		now := k.now()
		for _, ad := range addrs {
			if ad.Scope != unix.RT_SCOPE_UNIVERSE {
				continue
			}
			ip, ok := netip.AddrFromSlice(ad.IP.To4())
			if !ok {
				continue
			}
			ones, _ := ad.Mask.Size()
			na := Addr{Prefix: netip.PrefixFrom(ip, ones)}
			if ad.ValidLft > 0 && uint32(ad.ValidLft) != foreverLft {
				na.Expires = now.Add(time.Duration(ad.ValidLft) * time.Second)
			}
			n.Addrs = append(n.Addrs, na)
		}
		ours[a.Name] = true
		pos[a.Index] = len(st.NICs)
		st.NICs = append(st.NICs, n)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if (isVMKName(name) || isSwitchportName(name)) && !ours[name] {
			st.Foreign = append(st.Foreign, name)
		}
	}
	routes, err := k.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return KernelState{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		i, ok := pos[r.LinkIndex]
		if !ok || !isDefault(r) || r.Gw == nil || st.NICs[i].Gateway.IsValid() {
			continue
		}
		st.NICs[i].Gateway, _ = netip.AddrFromSlice(r.Gw.To4())
	}
	st.Sort()
	return st, nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && r.Dst.IP.IsUnspecified()
}

// Apply implements Kernel.
func (k *NetlinkKernel) Apply(ctx context.Context, c Change) error {
	if err := k.apply(c); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

func (k *NetlinkKernel) apply(c Change) error {
	d := c.NIC
	if c.Op == OpCreate {
		return k.create(d)
	}
	link, err := k.h.LinkByName(d.Name)
	if err != nil {
		if c.Op == OpDelete && errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		return err
	}
	switch c.Op {
	case OpDelete:
		return k.h.LinkDel(link) // takes the peer, addresses and routes along
	case OpSetAlias:
		return k.h.LinkSetAlias(link, aliasPrefix+d.PortGroup)
	case OpSetMAC:
		hw, err := net.ParseMAC(d.MAC)
		if err != nil {
			return err
		}
		return k.h.LinkSetHardwareAddr(link, hw)
	case OpSetMTU:
		return k.h.LinkSetMTU(link, d.MTU)
	case OpSetUp:
		return k.h.LinkSetUp(link)
	case OpSetSwitchportMTU, OpSetSwitchportUp:
		peer, err := k.h.LinkByName(d.Switchport)
		if err != nil {
			return err
		}
		if c.Op == OpSetSwitchportUp {
			return k.h.LinkSetUp(peer)
		}
		return k.h.LinkSetMTU(peer, d.SwitchportMTU)
	case OpAddAddr:
		return k.h.AddrReplace(link, k.nlAddr(c.Addr))
	case OpDelAddr:
		err := k.h.AddrDel(link, k.nlAddr(c.Addr))
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil
		}
		return err
	case OpSetGateway:
		return k.h.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: d.Gateway.AsSlice(), Table: unix.RT_TABLE_MAIN})
	case OpDelGateway:
		err := k.h.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: c.Gateway.AsSlice(), Table: unix.RT_TABLE_MAIN})
		if errors.Is(err, unix.ESRCH) {
			return nil // gone with an address or the link's carrier
		}
		return err
	}
	return fmt.Errorf("unknown operation %d", c.Op)
}

func (k *NetlinkKernel) create(d NIC) error {
	hw, err := net.ParseMAC(d.MAC)
	if err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr, la.MTU = d.Name, hw, d.MTU // MTU: both ends
	if err := k.h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: d.Switchport}); err != nil {
		return err
	}
	// The kernel ignores IFLA_IFALIAS on creation: set it now. (Observe
	// also recognises an unmarked vmkN/fvk-vmkN pair as ours.)
	link, err := k.h.LinkByName(d.Name)
	if err != nil {
		return err
	}
	return k.h.LinkSetAlias(link, aliasPrefix+d.PortGroup)
}

func (k *NetlinkKernel) nlAddr(a Addr) *netlink.Addr {
	p := a.Prefix
	na := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	na.ValidLft, na.PreferedLft = foreverLft, foreverLft
	if !a.Expires.IsZero() {
		secs := int64(a.Expires.Sub(k.now()).Round(time.Second) / time.Second)
		secs = max(secs, 1)
		if secs < foreverLft {
			na.ValidLft, na.PreferedLft = int(secs), int(secs)
		}
	}
	return na
}
