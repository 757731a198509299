package vmknic

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// NIC is one vmknic as the kernel has it (observed) or should have it
// (desired): a veth pair.
type NIC struct {
	// Name is the host end, named as the vmknic.
	Name string
	// Switchport is the switch end (SwitchportName(Name)); observed: the
	// veth peer's name ("" if it is not a veth or its peer is elsewhere).
	Switchport string
	// Kind is the observed link type ("veth"); unused in desired state.
	Kind string
	// PortGroup is recorded in the host end's alias ("fvvmk <port group>").
	PortGroup string
	// MAC is the host end's MAC, lower case.
	MAC string
	// MTU and SwitchportMTU are the two ends' MTUs (desired: equal).
	MTU, SwitchportMTU int
	// Up and SwitchportUp are the two ends' administrative state.
	Up, SwitchportUp bool
	// Carrier is the host end's carrier (observed only).
	Carrier bool
	// Addrs are the host end's IPv4 addresses (global scope), sorted.
	Addrs []Addr
	// Gateway is the default route's gateway through this NIC (invalid:
	// none).
	Gateway netip.Addr
	// KeepIP (desired only) leaves Addrs and Gateway as they are: a DHCP
	// vmknic waiting for the first answer of a freshly started client
	// keeps the address of the previous one, so a restart does not flap.
	KeepIP bool
}

// Addr is an IPv4 address of a vmknic.
type Addr struct {
	Prefix netip.Prefix
	// Expires is when the kernel drops the address (a DHCP lease's end,
	// so a stale lease does not outlive a dead manager); zero: never.
	Expires time.Time
}

func (a Addr) String() string {
	if a.Expires.IsZero() {
		return a.Prefix.String()
	}
	return a.Prefix.String() + " until " + a.Expires.UTC().Format(time.RFC3339)
}

// KernelState is the vmknics as the kernel has them (or should).
type KernelState struct {
	// NICs are the vmknics, by name (vswif0, vmk1, vmk2, ...). Observed:
	// only ours, i.e. host ends whose alias starts with "fvvmk ", or veth
	// pairs named exactly vmkN/fvk-vmkN (the kernel ignores an alias given
	// at creation, so a pair created just before a crash has none yet).
	NICs []NIC
	// Foreign (observed only) names links that have a vmknic's or a switch
	// end's name but are not ours: Plan never touches them and refuses to
	// configure a vmknic whose names are taken.
	Foreign []string
}

// Find returns the NIC named name.
func (s KernelState) Find(name string) (NIC, bool) {
	for _, n := range s.NICs {
		if n.Name == name {
			return n, true
		}
	}
	return NIC{}, false
}

// Sort puts NICs in vmknic order, addresses and foreign names in order.
func (s *KernelState) Sort() {
	slices.SortFunc(s.NICs, func(a, b NIC) int { return vmkCompare(a.Name, b.Name) })
	for i := range s.NICs {
		sortAddrs(s.NICs[i].Addrs)
	}
	slices.Sort(s.Foreign)
}

func sortAddrs(as []Addr) {
	slices.SortFunc(as, func(a, b Addr) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
}

// InfiniteLease is the lease time DHCP calls infinite (0xffffffff s).
const InfiniteLease = 0xffffffff * time.Second

// Lease is a DHCP lease, decoded.
type Lease struct {
	// Address is the leased address with the subnet's prefix length.
	Address netip.Prefix
	// Router is the first router the server gave (invalid: none).
	Router netip.Addr
	DNS    []netip.Addr
	// Server is the server identifier.
	Server netip.Addr
	// Duration is the lease time; Renew the renewal time T1 (0: half of
	// Duration).
	Duration, Renew time.Duration
	// Acquired is when the ACK arrived (set by the manager's clock).
	Acquired time.Time
}

// Expires is when the lease ends.
func (l Lease) Expires() time.Time { return l.Acquired.Add(l.Duration) }

// RenewAt is when the lease should be renewed (T1).
func (l Lease) RenewAt() time.Time {
	t1 := l.Renew
	if t1 <= 0 || t1 >= l.Duration {
		t1 = l.Duration / 2
	}
	return l.Acquired.Add(t1)
}

// Runtime is what Desired needs beyond the configuration.
type Runtime struct {
	// Leases are the DHCP vmknics' leases by name. A DHCP vmknic with no
	// entry keeps the addresses it has (its client has not answered yet);
	// one whose entry is the zero Lease has none (lease lost or
	// released).
	Leases map[string]Lease
}

// DefaultRouteOwner names the vmknic the host's default route goes
// through ("" for none):
//
//  1. the static vmknic with a gateway (Validate allows one);
//  2. else the vmknic tagged "management", if it uses DHCP (its lease's
//     router);
//  3. else, when no vmknic is tagged "management", vswif0 if it uses DHCP.
//
// Routers in the leases of other DHCP vmknics are ignored.
func DefaultRouteOwner(specs []api.VMKNIC) string {
	for _, s := range specs {
		if s.IPv4.Mode == api.VMKIPv4Static && s.IPv4.Gateway != "" {
			return s.Name
		}
	}
	for _, s := range specs {
		if slices.Contains(s.Services, api.VMKServiceManagement) {
			if s.IPv4.Mode == api.VMKIPv4DHCP {
				return s.Name
			}
			return ""
		}
	}
	for _, s := range specs {
		if s.Name == VswifName && s.IPv4.Mode == api.VMKIPv4DHCP {
			return s.Name
		}
	}
	return ""
}

// Desired is the kernel state of a validated configuration whose MACs are
// assigned (AssignMACs): one veth pair per vmknic, both ends up with the
// vmknic's MTU, the host end with its MAC, its static address or its
// lease's, and the default route through DefaultRouteOwner. A lease's
// router outside its subnet is ignored (the kernel would refuse it).
func Desired(specs []api.VMKNIC, rt Runtime) KernelState {
	owner := DefaultRouteOwner(specs)
	var st KernelState
	for _, s := range specs {
		mtu := s.MTU
		if mtu == 0 {
			mtu = DefaultMTU
		}
		mac := strings.ToLower(s.MAC)
		if hw, err := net.ParseMAC(s.MAC); err == nil {
			mac = hw.String()
		}
		n := NIC{
			Name: s.Name, Switchport: SwitchportName(s.Name), PortGroup: s.PortGroup, MAC: mac,
			MTU: mtu, SwitchportMTU: mtu, Up: true, SwitchportUp: true,
		}
		switch s.IPv4.Mode {
		case api.VMKIPv4Static:
			p, _ := netip.ParsePrefix(s.IPv4.Address)
			n.Addrs = []Addr{{Prefix: p}}
			if s.Name == owner {
				n.Gateway, _ = netip.ParseAddr(s.IPv4.Gateway)
			}
		case api.VMKIPv4DHCP:
			l, ok := rt.Leases[s.Name]
			switch {
			case !ok:
				n.KeepIP = true
			case l.Address.IsValid():
				a := Addr{Prefix: l.Address, Expires: l.Expires()}
				if l.Duration >= InfiniteLease {
					a.Expires = time.Time{}
				}
				n.Addrs = []Addr{a}
				if s.Name == owner && l.Router.IsValid() && l.Router != l.Address.Addr() && l.Address.Masked().Contains(l.Router) {
					n.Gateway = l.Router
				}
			}
		}
		st.NICs = append(st.NICs, n)
	}
	st.Sort()
	return st
}
