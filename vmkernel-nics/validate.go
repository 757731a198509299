package vmknic

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// ErrInvalid is wrapped by every validation error (each a *FieldError).
var ErrInvalid = errors.New("invalid vmknic configuration")

// Limits.
const (
	DefaultMTU       = 1500
	MinMTU           = 1280 // the IPv6 minimum, so a vmknic can always carry IPv6 later
	MaxMTU           = 9000
	MaxPortGroupName = 80
)

// vmwareOUI is the OUI every vmknic MAC is in.
var vmwareOUI = [3]byte{0x00, 0x50, 0x56}

// knownServices are the service tags (api.VMKService*) and how many
// vmknics may carry each (0: any number).
var knownServices = map[string]int{
	api.VMKServiceManagement: 1, // hostd listens on one interface
	api.VMKServiceVSMControl: 1, // one control link to the VSM
	api.VMKServiceNFS:        0,
	api.VMKServiceISCSI:      0, // port binding uses several
	api.VMKServiceMigration:  0,
}

// FieldError is one reason a configuration is refused: which vmknic, which
// field, the offending value and why. It wraps ErrInvalid.
type FieldError struct {
	// NIC is the vmknic's name ("#2" for the third entry if it has none).
	NIC    string
	Field  string // "name", "port_group", "mac", "mtu", "ipv4.mode", "ipv4.address", "ipv4.gateway", "services"
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("vmknic %s: %s %q: %s", e.NIC, e.Field, e.Value, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Validate checks a host's complete vmknic configuration and reports every
// problem (errors.Join of *FieldError, each wrapping ErrInvalid). Rules:
//
//   - name: "vswif0" or "vmk1".."vmk255" (no leading zeros), unique;
//   - port_group: 1-80 bytes, no control characters;
//   - mac: optional; if given a unicast MAC in VMware's OUI 00:50:56 (any
//     unicast MAC for vswif0, which takes its uplink's burned-in MAC),
//     unique (case-insensitively) among the vmknics;
//   - mtu: 0 (1500) or 1280-9000;
//   - ipv4.mode: "dhcp", "static" or "none"; only static takes an address
//     and a gateway;
//   - static: address "a.b.c.d/len" (len 1-32), a usable host address (not
//     0.0.0.0, loopback, multicast, 240.0.0.0/4 or broadcast; for len <= 30
//     neither the subnet's network nor its broadcast address), not used by
//     another static vmknic; gateway optional, a usable host address
//     inside the subnet other than the address itself;
//   - at most one vmknic has a gateway (there is one default route);
//   - services: known tags (api.VMKService*), each at most once per
//     vmknic; "management" and "vsm-control" on at most one vmknic each.
//
// Subnets may overlap (iSCSI port binding puts several vmknics in one).
func Validate(specs []api.VMKNIC) error {
	var errs []error
	bad := func(nic, field, value, format string, args ...any) {
		errs = append(errs, &FieldError{NIC: nic, Field: field, Value: value, Reason: fmt.Sprintf(format, args...)})
	}
	names := map[string]bool{}
	macs := map[string]string{}      // canonical MAC -> vmknic
	addrs := map[netip.Addr]string{} // static address -> vmknic
	services := map[string]string{}  // single-use service -> vmknic
	gateway := ""
	for i, s := range specs {
		id := s.Name
		if id == "" {
			id = fmt.Sprintf("#%d", i)
		}
		switch {
		case !isVMKName(s.Name):
			bad(id, "name", s.Name, "must be %s or vmk1 to vmk%d", VswifName, MaxVMK)
		case names[s.Name]:
			bad(id, "name", s.Name, "used by another vmknic")
		}
		names[s.Name] = true

		if s.PortGroup == "" || len(s.PortGroup) > MaxPortGroupName || strings.ContainsFunc(s.PortGroup, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			bad(id, "port_group", s.PortGroup, "must be 1-%d bytes without control characters", MaxPortGroupName)
		}

		if s.MAC != "" {
			if mac, reason := checkMAC(s.MAC, s.Name == VswifName); reason != "" {
				bad(id, "mac", s.MAC, "%s", reason)
			} else if other, dup := macs[mac]; dup {
				bad(id, "mac", s.MAC, "also the MAC of %s", other)
			} else {
				macs[mac] = id
			}
		}

		if s.MTU != 0 && (s.MTU < MinMTU || s.MTU > MaxMTU) {
			bad(id, "mtu", fmt.Sprint(s.MTU), "must be %d to %d (0: %d)", MinMTU, MaxMTU, DefaultMTU)
		}

		ip := s.IPv4
		switch ip.Mode {
		case api.VMKIPv4Static:
			p, err := netip.ParsePrefix(ip.Address)
			if ip.Address == "" {
				bad(id, "ipv4.address", ip.Address, "static mode needs an address")
				break
			}
			if err != nil || !p.Addr().Is4() || p.Bits() < 1 {
				bad(id, "ipv4.address", ip.Address, "must be an IPv4 address with a prefix length 1-32, a.b.c.d/len")
				break
			}
			if reason := checkHost(p, p.Addr()); reason != "" {
				bad(id, "ipv4.address", ip.Address, "%s", reason)
			} else if other, dup := addrs[p.Addr()]; dup {
				bad(id, "ipv4.address", ip.Address, "address also used by %s", other)
			} else {
				addrs[p.Addr()] = id
			}
			if ip.Gateway == "" {
				break
			}
			gw, err := netip.ParseAddr(ip.Gateway)
			switch {
			case err != nil || !gw.Is4():
				bad(id, "ipv4.gateway", ip.Gateway, "must be an IPv4 address")
			case !p.Masked().Contains(gw):
				bad(id, "ipv4.gateway", ip.Gateway, "not inside the subnet %s", p.Masked())
			case gw == p.Addr():
				bad(id, "ipv4.gateway", ip.Gateway, "is the vmknic's own address")
			default:
				if reason := checkHost(p, gw); reason != "" {
					bad(id, "ipv4.gateway", ip.Gateway, "%s", reason)
				} else if gateway != "" {
					bad(id, "ipv4.gateway", ip.Gateway, "%s already has the default gateway (at most one vmknic may)", gateway)
				} else {
					gateway = id
				}
			}
		case api.VMKIPv4DHCP, api.VMKIPv4None:
			if ip.Address != "" {
				bad(id, "ipv4.address", ip.Address, "only static mode takes an address")
			}
			if ip.Gateway != "" {
				bad(id, "ipv4.gateway", ip.Gateway, "only static mode takes a gateway")
			}
		default:
			bad(id, "ipv4.mode", ip.Mode, "must be %s, %s or %s", api.VMKIPv4DHCP, api.VMKIPv4Static, api.VMKIPv4None)
		}

		seen := map[string]bool{}
		for _, t := range s.Services {
			limit, known := knownServices[t]
			switch {
			case !known:
				bad(id, "services", t, "unknown service (known: %s, %s, %s, %s, %s)", api.VMKServiceManagement,
					api.VMKServiceNFS, api.VMKServiceISCSI, api.VMKServiceMigration, api.VMKServiceVSMControl)
			case seen[t]:
				bad(id, "services", t, "listed twice")
			case limit == 1 && services[t] != "":
				bad(id, "services", t, "also on %s (at most one vmknic may have it)", services[t])
			case limit == 1:
				services[t] = id
			}
			seen[t] = true
		}
	}
	return errors.Join(errs...)
}

// checkMAC returns the canonical form of a vmknic MAC, or why it is not
// acceptable. vswif0 may take any unicast MAC: ESXi's vmk0 takes its
// uplink's burned-in one (so DHCP reservations of the host keep working),
// and Flashvisor does the same at the management handoff, giving the
// uplink a derived locally administered MAC so the bridge does not keep
// the burned-in one as its own (see docs/design.md).
func checkMAC(s string, anyOUI bool) (string, string) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", "not a MAC address of the form 00:50:56:xx:yy:zz"
	}
	if hw[0]&1 != 0 {
		return "", "multicast MAC address"
	}
	if !anyOUI && [3]byte(hw[:3]) != vmwareOUI {
		return "", "not in VMware's OUI 00:50:56"
	}
	return hw.String(), ""
}

// checkHost says why a is not a usable host address in subnet p ("" if
// it is).
func checkHost(p netip.Prefix, a netip.Addr) string {
	b := a.As4()
	switch {
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsLoopback():
		return "loopback address"
	case a.IsMulticast():
		return "multicast address"
	case b == [4]byte{255, 255, 255, 255}:
		return "broadcast address"
	case b[0] >= 240:
		return "reserved address (240.0.0.0/4)"
	}
	if p.Bits() <= 30 {
		if a == p.Masked().Addr() {
			return "is the network address of its subnet " + p.Masked().String()
		}
		if a == lastAddr(p) {
			return "is the broadcast address of its subnet " + p.Masked().String()
		}
	}
	return ""
}

// lastAddr is the highest address of p (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
