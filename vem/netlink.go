package vem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// aliasPrefix marks the alias (IFLA_IFALIAS) of every link the VEM
// programs: "fvvem <port> <tc key>".
const aliasPrefix = "fvvem "

// tc filter priorities on a port's ingress, in the order they run.
const (
	prioBPDU     = 1  // dst 01:80:c2:00:00:00 -> drop
	prioGroup    = 2  // dst multicast/broadcast -> drop (mac-pinning)
	prioPolice   = 5  // police, conforming frames continue
	prioAllowSrc = 10 // allowed source MACs -> accept
	prioDenySrc  = 20 // anything else -> drop (port security)
)

// ErrNoVLANFiltering means the kernel cannot create a VLAN-filtering
// bridge (CONFIG_BRIDGE_VLAN_FILTERING is off).
var ErrNoVLANFiltering = errors.New("kernel has no bridge VLAN filtering")

// NetlinkKernel programs the network namespace it was created in, over
// netlink only (no ip/bridge/tc binaries). Taps are created with TUNSETIFF,
// which acts on the calling thread's namespace: use it from the namespace it
// was created in.
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

func parseAlias(alias string) (port, key string) {
	rest, ok := strings.CutPrefix(alias, aliasPrefix)
	if !ok {
		return "", ""
	}
	port, key, _ = strings.Cut(rest, " ")
	return port, key
}

// Observe implements Kernel: every link (those that are not the VEM's as
// KindExternal), bridge-port flags and VLANs of the bridge's ports, and
// the static entries of the bridge.
func (k *NetlinkKernel) Observe(ctx context.Context) (KernelState, error) {
	links, err := k.h.LinkList()
	if err != nil {
		return KernelState{}, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	// One dump of every qdisc: asking per link makes the kernel dump all
	// of them each time (the netlink package filters afterwards), which is
	// quadratic in the ports (the 1,000-port bench spent most of its
	// reconcile there).
	qdiscs, err := k.h.QdiscList(nil)
	if err != nil {
		return KernelState{}, fmt.Errorf("list qdiscs: %w", err)
	}
	hasQdisc := map[int]bool{}
	for _, q := range qdiscs {
		if q.Type() == "ingress" || q.Type() == "tbf" {
			hasQdisc[q.Attrs().LinkIndex] = true
		}
	}
	var vlans map[int32][]*nl.BridgeVlanInfo
	var flags map[int]BridgePort
	var st KernelState
	brIndex := 0
	for _, l := range links {
		a := l.Attrs()
		o := Link{Name: a.Name, Kind: KindExternal, Master: names[a.MasterIndex], Index: a.Index, Up: a.Flags&net.FlagUp != 0}
		o.Port, o.TCKey = parseAlias(a.Alias)
		if s := a.Statistics; s != nil {
			o.Stats = Stats{RxPackets: s.RxPackets, RxBytes: s.RxBytes, TxPackets: s.TxPackets, TxBytes: s.TxBytes, RxDropped: s.RxDropped, TxDropped: s.TxDropped}
		}
		o.Stats.Carrier = a.RawFlags&unix.IFF_LOWER_UP != 0
		if ours(a.Name) {
			switch l := l.(type) {
			case *netlink.Bridge:
				o.Kind, brIndex = KindBridge, a.Index
				o.Bridge = &BridgeOpts{}
				if l.VlanFiltering != nil {
					o.Bridge.VLANFiltering = *l.VlanFiltering
				}
				if l.VlanDefaultPVID != nil && o.Bridge.VLANFiltering {
					// (Only meaningful with VLAN filtering; reported as
					// 0 without, so a bridge that never filters plans
					// no VLAN changes.)
					o.Bridge.DefaultPVID = int(*l.VlanDefaultPVID)
				}
				o.BridgePort = &BridgePort{}
			case *netlink.Tuntap:
				o.Kind = KindTap
			case *netlink.Bond:
				o.Kind = KindBond
				o.Bond = &BondOpts{Mode: l.Mode.String(), Miimon: l.Miimon}
				if l.Mode == netlink.BOND_MODE_802_3AD || l.Mode == netlink.BOND_MODE_BALANCE_XOR {
					o.Bond.HashPolicy = l.XmitHashPolicy.String()
				}
			default:
				o.Kind = l.Type() // unexpected: Plan replaces it
			}
		}
		if o.TCKey != "" && !hasQdisc[a.Index] {
			o.TCKey = "" // the alias says programmed, the kernel does not
		}
		st.Links = append(st.Links, o)
	}
	if brIndex != 0 {
		// Without VLAN filtering the kernel still lists each port's
		// default VLAN 1, but it means nothing: report no VLANs, so a
		// bridge that never filters plans no VLAN changes.
		filtering := false
		for _, l := range st.Links {
			if l.Index == brIndex && l.Bridge != nil {
				filtering = l.Bridge.VLANFiltering
			}
		}
		for i := range st.Links {
			l := &st.Links[i]
			if l.Master != BridgeName && l.Kind != KindBridge {
				continue
			}
			if l.Kind != KindBridge {
				if flags == nil {
					if flags, err = portFlags(); err != nil {
						return KernelState{}, fmt.Errorf("bridge port flags: %w", err)
					}
				}
				f, ok := flags[l.Index]
				if !ok {
					return KernelState{}, fmt.Errorf("bridge port flags of %s: not reported", l.Name)
				}
				l.BridgePort = &f
			}
			if !filtering {
				k.tcStats(links[i], &l.Stats)
				continue
			}
			if vlans == nil {
				if vlans, err = k.h.BridgeVlanList(); err != nil {
					return KernelState{}, fmt.Errorf("bridge VLANs: %w", err)
				}
			}
			for _, v := range vlans[int32(l.Index)] {
				l.BridgePort.VLANs.Add(int(v.Vid))
				if v.PortVID() {
					l.BridgePort.PVID = int(v.Vid)
				}
				if v.EngressUntag() {
					l.BridgePort.Untagged.Add(int(v.Vid))
				}
			}
			k.tcStats(links[i], &l.Stats)
		}
		neighs, err := k.h.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return KernelState{}, fmt.Errorf("list MAC entries: %w", err)
		}
		for _, n := range neighs {
			if n.MasterIndex != brIndex || n.State&netlink.NUD_NOARP == 0 || n.State&netlink.NUD_PERMANENT != 0 {
				continue
			}
			if !filtering && n.Vlan != 0 {
				// Without filtering a VLAN-capable kernel also keeps a
				// copy of each entry in the default VLAN: not ours.
				continue
			}
			st.FDB = append(st.FDB, FDBEntry{Link: names[n.LinkIndex], MAC: n.HardwareAddr.String(), VLAN: n.Vlan})
		}
	}
	st.Sort()
	return st, nil
}

// portFlags reads the flags of every bridge port in one AF_BRIDGE dump
// (netlink's LinkGetProtinfo dumps all ports for each one it is asked
// about), by interface index. It uses the calling thread's network
// namespace, like the rest of NetlinkKernel.
func portFlags() (map[int]BridgePort, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	out := map[int]BridgePort{}
	for _, m := range msgs {
		ifi := nl.DeserializeIfInfomsg(m)
		attrs, err := nl.ParseRouteAttr(m[ifi.Len():])
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFLA_PROTINFO|unix.NLA_F_NESTED {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return nil, err
			}
			var bp BridgePort
			for _, in := range infos {
				if len(in.Value) == 0 {
					continue
				}
				switch in.Attr.Type {
				case nl.IFLA_BRPORT_LEARNING:
					bp.Learning = in.Value[0] != 0
				case nl.IFLA_BRPORT_UNICAST_FLOOD:
					bp.Flood = in.Value[0] != 0
				case nl.IFLA_BRPORT_ISOLATED:
					bp.Isolated = in.Value[0] != 0
				}
			}
			out[int(ifi.Index)] = bp
		}
	}
	return out, nil
}

// tcStats adds the drop counters of the VEM's ingress filters.
func (k *NetlinkKernel) tcStats(l netlink.Link, s *Stats) {
	fs, err := k.h.FilterList(l, netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return
	}
	for _, f := range fs {
		var acts []netlink.Action
		switch f := f.(type) {
		case *netlink.U32:
			acts = f.Actions
		case *netlink.MatchAll:
			acts = f.Actions
		}
		var n uint64
		for _, a := range acts {
			st := a.Attrs().Statistics
			switch {
			case st == nil:
			case f.Attrs().Priority == prioPolice:
				// The policer sees every frame; what it dropped is
				// its queue's drop count.
				if st.Queue != nil {
					n += uint64(st.Queue.Drops)
				}
			case st.Basic != nil:
				// The drop actions drop every frame they see.
				n += uint64(st.Basic.Packets)
			}
		}
		switch f.Attrs().Priority {
		case prioBPDU:
			s.BPDUDrops += n
		case prioDenySrc:
			s.SecurityViolations += n
		case prioPolice:
			s.IngressPoliced += n
		}
	}
}

// Apply implements Kernel.
func (k *NetlinkKernel) Apply(ctx context.Context, c Change) error {
	if err := k.apply(c); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

func (k *NetlinkKernel) apply(c Change) error {
	d := c.Link
	if c.Op == OpCreateLink {
		return k.create(d)
	}
	if c.Op == OpAddFDB || c.Op == OpDelFDB {
		return k.fdb(c)
	}
	link, err := k.h.LinkByName(d.Name)
	if err != nil {
		return err
	}
	switch c.Op {
	case OpDeleteLink:
		return k.h.LinkDel(link)
	case OpSetAlias:
		_, key := parseAlias(link.Attrs().Alias)
		return k.h.LinkSetAlias(link, aliasPrefix+d.Port+" "+key)
	case OpSetBridge:
		if err := k.h.BridgeSetVlanDefaultPVID(link, uint16(d.Bridge.DefaultPVID)); err != nil {
			return err
		}
		return k.h.BridgeSetVlanFiltering(link, d.Bridge.VLANFiltering)
	case OpSetMaster:
		if d.Master == "" {
			return k.h.LinkSetNoMaster(link)
		}
		m, err := k.h.LinkByName(d.Master)
		if err != nil {
			return fmt.Errorf("master: %w", err)
		}
		if err := noIPv6(d.Name); err != nil {
			return err
		}
		if _, isBond := m.(*netlink.Bond); isBond && link.Attrs().Flags&net.FlagUp != 0 {
			// A bond only takes slaves that are down.
			if err := k.h.LinkSetDown(link); err != nil {
				return err
			}
			defer k.h.LinkSetUp(link)
		}
		return k.h.LinkSetMaster(link, m)
	case OpSetPortFlags:
		bp := d.BridgePort
		if err := k.h.LinkSetLearning(link, bp.Learning); err != nil {
			return fmt.Errorf("learning: %w", err)
		}
		if err := k.h.LinkSetFlood(link, bp.Flood); err != nil {
			return fmt.Errorf("flood: %w", err)
		}
		return k.h.LinkSetIsolated(link, bp.Isolated)
	case OpAddVLANs, OpDelVLANs:
		self, master := d.Kind == KindBridge, d.Kind != KindBridge
		for _, r := range c.VLANs.Ranges() {
			var err error
			switch {
			case c.Op == OpDelVLANs && r.From == r.To:
				// A one-VLAN "range" is EINVAL to the kernel.
				err = k.h.BridgeVlanDel(link, uint16(r.From), false, false, self, master)
			case c.Op == OpDelVLANs:
				err = k.h.BridgeVlanDelRange(link, uint16(r.From), uint16(r.To), false, false, self, master)
			case r.From == r.To:
				err = k.h.BridgeVlanAdd(link, uint16(r.From), c.PVID, c.Untagged, self, master)
			default:
				err = k.h.BridgeVlanAddRange(link, uint16(r.From), uint16(r.To), c.PVID, c.Untagged, self, master)
			}
			if err != nil {
				return fmt.Errorf("VLANs %s: %w", r, err)
			}
		}
		return nil
	case OpSetTC:
		if err := k.setTC(link, d.TC); err != nil {
			return err
		}
		port, _ := parseAlias(link.Attrs().Alias)
		if port == "" {
			port = d.Port
		}
		alias := aliasPrefix + port + " " + d.TC.Key()
		if d.TC.IsZero() && d.Master == "" {
			alias = "" // released: leave no trace
		}
		return k.h.LinkSetAlias(link, alias)
	case OpSetUp:
		if d.Up {
			return k.h.LinkSetUp(link)
		}
		return k.h.LinkSetDown(link)
	}
	return fmt.Errorf("unknown operation %d", c.Op)
}

// noIPv6 turns IPv6 off on a link the VEM makes a switch port (or on the
// switch itself): a port is no host interface, and with IPv6 on the kernel
// would send its own router solicitations, duplicate address probes and
// listener reports from the port's MAC, onto the physical network for an
// uplink (the two-host e2e saw each host's uplink MAC learned by the
// other). The host talks only through vmknics. A kernel without IPv6 has
// nothing to turn off. It acts on the calling thread's network namespace.
func noIPv6(name string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", name, err)
	}
	return nil
}

func (k *NetlinkKernel) create(d Link) error {
	switch d.Kind {
	case KindBridge:
		f, pvid := d.Bridge.VLANFiltering, uint16(d.Bridge.DefaultPVID)
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: d.Name}}
		if f {
			br.VlanFiltering, br.VlanDefaultPVID = &f, &pvid
		}
		err := k.h.LinkAdd(br)
		if f && errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("%w: %w", ErrNoVLANFiltering, err)
		}
		if err != nil {
			return err
		}
		return noIPv6(d.Name)
	case KindTap:
		// What QEMU's "-netdev tap,ifname=...,script=no,vhost=on" opens.
		return k.h.LinkAdd(&netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: d.Name},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		})
	case KindBond:
		b := netlink.NewLinkBond(netlink.LinkAttrs{Name: d.Name})
		b.Mode = netlink.StringToBondMode(d.Bond.Mode)
		b.Miimon = d.Bond.Miimon
		switch d.Bond.HashPolicy {
		case HashLayer2:
			b.XmitHashPolicy = netlink.BOND_XMIT_HASH_POLICY_LAYER2
		case HashVLANSrcMAC:
			b.XmitHashPolicy = netlink.BOND_XMIT_HASH_POLICY_VLAN_SRCMAC
		}
		if b.Mode == netlink.BOND_MODE_802_3AD {
			b.LacpRate = netlink.BOND_LACP_RATE_FAST
		}
		return k.h.LinkAdd(b)
	}
	return fmt.Errorf("cannot create a link of kind %q", d.Kind)
}

func (k *NetlinkKernel) fdb(c Change) error {
	link, err := k.h.LinkByName(c.FDB.Link)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(c.FDB.MAC)
	if err != nil {
		return err
	}
	n := &netlink.Neigh{
		LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, HardwareAddr: mac, Vlan: c.FDB.VLAN,
		State: netlink.NUD_NOARP, Flags: netlink.NTF_MASTER | netlink.NTF_STICKY,
	}
	if c.Op == OpDelFDB {
		n.Flags = netlink.NTF_MASTER
		if err := k.h.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	}
	err = k.h.NeighSet(n) // replaces a learned entry
	if errors.Is(err, unix.EINVAL) {
		// Kernels without sticky entries: static only.
		n.Flags = netlink.NTF_MASTER
		err = k.h.NeighSet(n)
	}
	return err
}

// psTickNS is the kernel's packet-scheduler tick (PSCHED_TICKS2NS(1), the
// second field of /proc/net/psched): tbf takes its bucket as time in ticks.
const psTickNS = 64

// tbfBuffer is tbf's bucket ("buffer") for burst bytes at rate bytes/s: the
// time to send them, in scheduler ticks (what tc computes from "burst").
// The kernel caps the time at 2^32 ns; so does this.
func tbfBuffer(rate, burst uint64) uint32 {
	if rate == 0 {
		return 0
	}
	ns := float64(burst) * 1e9 / float64(rate)
	return uint32(min(ns, 1<<32-1) / psTickNS)
}

// setTC replaces the link's ingress qdisc (with its filters) and root tbf.
func (k *NetlinkKernel) setTC(link netlink.Link, t TC) error {
	idx := link.Attrs().Index
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	qs, err := k.h.QdiscList(link)
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qs {
		if q.Type() == "ingress" || q.Type() == "tbf" && q.Attrs().Parent == netlink.HANDLE_ROOT {
			if err := k.h.QdiscDel(q); err != nil {
				return fmt.Errorf("delete %s qdisc: %w", q.Type(), err)
			}
		}
	}
	if t.EgressRate != 0 {
		rate := t.EgressRate / 8
		tbf := &netlink.Tbf{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xfe, 0), Parent: netlink.HANDLE_ROOT},
			Rate:       rate, Buffer: tbfBuffer(rate, t.EgressBurst), Limit: uint32(min(t.EgressBurst+rate/20, 1<<31)), // ~50 ms queue
		}
		if err := k.h.QdiscAdd(tbf); err != nil {
			return fmt.Errorf("egress shaper: %w", err)
		}
	}
	if !t.DropBPDU && !t.DropGroup && t.AllowSrc == nil && t.IngressRate == 0 {
		return nil
	}
	if err := k.h.QdiscAdd(ingress); err != nil {
		return fmt.Errorf("ingress qdisc: %w", err)
	}
	fa := func(prio uint16) netlink.FilterAttrs {
		return netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(0xffff, 0), Priority: prio, Protocol: unix.ETH_P_ALL}
	}
	verdict := func(a netlink.TcAct) []netlink.Action {
		return []netlink.Action{&netlink.GenericAction{ActionAttrs: netlink.ActionAttrs{Action: a}}}
	}
	// Keys are relative to the network header: the Ethernet destination
	// is at -14, the source at -8.
	u32 := func(prio uint16, keys []netlink.TcU32Key, acts []netlink.Action) error {
		return k.h.FilterAdd(&netlink.U32{FilterAttrs: fa(prio), Sel: &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Nkeys: uint8(len(keys)), Keys: keys}, Actions: acts})
	}
	if t.DropBPDU {
		if err := u32(prioBPDU, []netlink.TcU32Key{{Mask: 0xffffffff, Val: 0x0180c200, Off: -14}, {Mask: 0xffff0000, Val: 0, Off: -10}}, verdict(netlink.TC_ACT_SHOT)); err != nil {
			return fmt.Errorf("BPDU filter: %w", err)
		}
	}
	if t.DropGroup {
		if err := u32(prioGroup, []netlink.TcU32Key{{Mask: 0x01000000, Val: 0x01000000, Off: -14}}, verdict(netlink.TC_ACT_SHOT)); err != nil {
			return fmt.Errorf("broadcast filter: %w", err)
		}
	}
	if t.IngressRate != 0 {
		p := netlink.NewPoliceAction()
		p.Rate, p.Burst = uint32(t.IngressRate/8), uint32(t.IngressBurst)
		p.ExceedAction, p.NotExceedAction = netlink.TC_POLICE_SHOT, netlink.TC_POLICE_UNSPEC
		if err := k.h.FilterAdd(&netlink.MatchAll{FilterAttrs: fa(prioPolice), Actions: []netlink.Action{p}}); err != nil {
			return fmt.Errorf("ingress policer: %w", err)
		}
	}
	if t.AllowSrc != nil {
		for _, m := range t.AllowSrc {
			hw, err := net.ParseMAC(m)
			if err != nil {
				return err
			}
			hi := uint32(hw[0])<<24 | uint32(hw[1])<<16 | uint32(hw[2])<<8 | uint32(hw[3])
			lo := uint32(hw[4])<<24 | uint32(hw[5])<<16
			if err := u32(prioAllowSrc, []netlink.TcU32Key{{Mask: 0xffffffff, Val: hi, Off: -8}, {Mask: 0xffff0000, Val: lo, Off: -4}}, verdict(netlink.TC_ACT_OK)); err != nil {
				return fmt.Errorf("port-security allow %s: %w", m, err)
			}
		}
		if err := k.h.FilterAdd(&netlink.MatchAll{FilterAttrs: fa(prioDenySrc), Actions: verdict(netlink.TC_ACT_SHOT)}); err != nil {
			return fmt.Errorf("port-security drop: %w", err)
		}
	}
	return nil
}

// MACs implements MACLister: the bridge's MAC table, static entries (the
// VEM's) and learned ones. The ports' own addresses (permanent "local"
// entries) are not switching entries and are left out. The kernel's age of
// an entry (NDA_CACHEINFO) is not decoded by the netlink package, so Age
// stays zero.
func (k *NetlinkKernel) MACs(ctx context.Context) ([]MAC, error) {
	br, err := k.h.LinkByName(BridgeName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("switch bridge: %w", err)
	}
	links, err := k.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	neighs, err := k.h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list MAC entries: %w", err)
	}
	var out []MAC
	for _, n := range neighs {
		if n.MasterIndex != br.Attrs().Index || n.State&netlink.NUD_PERMANENT != 0 {
			continue
		}
		out = append(out, MAC{Link: names[n.LinkIndex], MAC: n.HardwareAddr.String(), VLAN: n.Vlan, Static: n.State&netlink.NUD_NOARP != 0})
	}
	return out, nil
}
