package vem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// Limits, close to the Nexus 1000V's (reference/nexus1000v-cli.md: 32
// physical ports per VEM) but with room for the 1,000-port benchmark.
const (
	MaxVethPorts    = 4096
	MaxEthPorts     = 32
	MaxPortChannels = 8
	MaxVethNumber   = 999999999 // "fvveth" + 9 digits = 15 bytes
	MaxPortChannel  = 4096
	MaxProfileName  = 80
	MaxMACsPerPort  = 64
	// MinRate and MaxRate bound rate limits (8 kbit/s .. 34 Gbit/s; tc
	// police takes bytes/s in 32 bits for the rate in netlink).
	MinRate = 8000
	MaxRate = 8 * (1<<32 - 1) // tc police takes 32-bit bytes/s
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid switch config")

// Config is a validated SwitchConfig, with its lists parsed. Build it with
// Validate or DecodeConfig; it is immutable afterwards.
type Config struct {
	raw      api.SwitchConfig
	profiles map[string]*profile
	ports    []*port // sorted by name
}

type profile struct {
	api.PortProfile
	access  int     // access mode: the VLAN
	allowed VLANSet // trunk: allowed VLANs
	native  int     // trunk: native VLAN (untagged), 0 if not allowed
	system  VLANSet
}

// carried is every VLAN a port of the profile is a member of.
func (p *profile) carried() VLANSet {
	if p.Mode == api.ModeAccess {
		var s VLANSet
		s.Add(p.access)
		return s
	}
	return p.allowed
}

type port struct {
	api.Port
	num     int      // N of VethN / PoN, P of EthM/P
	macs    []string // normalized
	profile *profile // for a Po member: the Po's
	po      string   // for an Eth: the port-channel it is a member of
}

// SwitchConfig returns the config as it was given.
func (c *Config) SwitchConfig() api.SwitchConfig { return c.raw }

// DecodeConfig reads a JSON SwitchConfig strictly (unknown fields and
// trailing data are errors) and validates it.
func DecodeConfig(data []byte) (*Config, error) {
	var sc api.SwitchConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: decode: trailing data after the config", ErrInvalid)
	}
	return Validate(sc)
}

type errList []error

func (e *errList) add(format string, args ...any) {
	*e = append(*e, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
}

// Validate checks a SwitchConfig and returns it parsed. All problems are
// reported, joined, each naming the profile or port it is about.
func Validate(sc api.SwitchConfig) (*Config, error) {
	var errs errList
	c := &Config{raw: sc, profiles: map[string]*profile{}}
	if sc.Module < 3 || sc.Module > 66 {
		errs.add("module %d: must be 3-66", sc.Module)
	}
	if sc.DomainID < 0 || sc.DomainID > 4095 {
		errs.add("domain id %d: must be 0-4095", sc.DomainID)
	}
	for _, pp := range sc.Profiles {
		p, perrs := checkProfile(pp)
		errs = append(errs, perrs...)
		if p == nil {
			continue
		}
		if _, dup := c.profiles[p.Name]; dup {
			errs.add("port-profile %q: defined twice", p.Name)
			continue
		}
		c.profiles[p.Name] = p
	}
	byName := map[string]*port{}
	ifaces := map[string]string{}
	macs := map[string]string{}
	counts := map[string]int{}
	for _, ap := range sc.Ports {
		p, perrs := c.checkPort(ap, sc.Module)
		errs = append(errs, perrs...)
		if p == nil {
			continue
		}
		if _, dup := byName[p.Name]; dup {
			errs.add("port %s: defined twice", p.Name)
			continue
		}
		byName[p.Name] = p
		c.ports = append(c.ports, p)
		if p.Interface != "" {
			if other, dup := ifaces[p.Interface]; dup {
				errs.add("port %s: interface %s already used by %s", p.Name, p.Interface, other)
			}
			ifaces[p.Interface] = p.Name
		}
		for _, m := range p.macs {
			if other, dup := macs[m]; dup {
				errs.add("port %s: MAC %s already on %s", p.Name, m, other)
			}
			macs[m] = p.Name
		}
		counts[p.Kind]++
	}
	for kind, limit := range map[string]int{api.PortVeth: MaxVethPorts, api.PortEth: MaxEthPorts, api.PortPortChannel: MaxPortChannels} {
		if counts[kind] > limit {
			errs.add("%d %s ports: at most %d", counts[kind], kind, limit)
		}
	}
	// Port-channel membership.
	for _, p := range c.ports {
		if p.Kind != api.PortPortChannel {
			continue
		}
		for _, m := range p.Members {
			e, ok := byName[m]
			switch {
			case !ok:
				errs.add("port %s: member %s: no such port", p.Name, m)
			case e.Kind != api.PortEth:
				errs.add("port %s: member %s: only Eth ports can be members", p.Name, m)
			case e.po != "":
				errs.add("port %s: member %s: already a member of %s", p.Name, m, e.po)
			case e.Profile != "" && e.Profile != p.Profile:
				errs.add("port %s: member %s: has profile %q, the port-channel %q", p.Name, m, e.Profile, p.Profile)
			default:
				e.po, e.profile = p.Name, p.profile
			}
		}
	}
	use := map[string]int{}
	for _, p := range c.ports {
		if p.Kind == api.PortEth && p.po == "" && p.profile == nil && p.Profile == "" {
			errs.add("port %s: needs a profile or a port-channel", p.Name)
		}
		if p.Profile != "" {
			use[p.Profile]++
		}
	}
	for name, n := range use {
		if p := c.profiles[name]; p != nil && p.MaxPorts > 0 && n > p.MaxPorts {
			errs.add("port-profile %q: used by %d ports, max-ports %d", name, n, p.MaxPorts)
		}
	}
	slices.SortFunc(c.ports, func(a, b *port) int { return strings.Compare(a.Name, b.Name) })
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func checkProfile(pp api.PortProfile) (*profile, errList) {
	var errs errList
	name := pp.Name
	if name == "" || len(name) > MaxProfileName || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		errs.add("port-profile %q: name must be 1-%d printable characters without spaces", name, MaxProfileName)
		return nil, errs
	}
	p := &profile{PortProfile: pp}
	switch pp.Type {
	case api.ProfileVethernet:
		if pp.CapabilityUplink {
			errs.add("port-profile %q: capability uplink needs type ethernet", name)
		}
	case api.ProfileEthernet:
		if pp.PortSecurity != nil {
			errs.add("port-profile %q: port-security is for vethernet profiles only", name)
		}
	default:
		errs.add("port-profile %q: type %q: must be %s or %s", name, pp.Type, api.ProfileVethernet, api.ProfileEthernet)
	}
	switch pp.Mode {
	case api.ModeAccess:
		p.access = cmp0(pp.AccessVLAN, 1)
		if p.access < 1 || p.access > MaxVLAN {
			errs.add("port-profile %q: access vlan %d: must be 1-%d", name, pp.AccessVLAN, MaxVLAN)
		}
		if pp.AllowedVLANs != "" || pp.NativeVLAN != 0 {
			errs.add("port-profile %q: allowed and native VLANs need switchport mode trunk", name)
		}
	case api.ModeTrunk:
		if pp.AccessVLAN != 0 {
			errs.add("port-profile %q: access vlan needs switchport mode access", name)
		}
		p.allowed = AllVLANs()
		if pp.AllowedVLANs != "" {
			var err error
			if p.allowed, err = ParseVLANs(pp.AllowedVLANs); err != nil {
				errs.add("port-profile %q: allowed vlans: %w", name, err)
			}
		}
		native := cmp0(pp.NativeVLAN, 1)
		if native < 1 || native > MaxVLAN {
			errs.add("port-profile %q: native vlan %d: must be 1-%d", name, pp.NativeVLAN, MaxVLAN)
		} else if p.allowed.Has(native) {
			p.native = native
		}
	default:
		errs.add("port-profile %q: mode %q: must be %s or %s", name, pp.Mode, api.ModeAccess, api.ModeTrunk)
	}
	if pp.SystemVLANs != "" {
		var err error
		if p.system, err = ParseVLANs(pp.SystemVLANs); err != nil {
			errs.add("port-profile %q: system vlans: %w", name, err)
		} else if extra := p.system.Minus(p.carried()); !extra.Empty() && len(errs) == 0 {
			errs.add("port-profile %q: system vlans %s are not carried by the profile", name, extra)
		}
	}
	if pp.MaxPorts < 0 {
		errs.add("port-profile %q: max-ports %d: must not be negative", name, pp.MaxPorts)
	}
	for dir, rl := range map[string]*api.RateLimit{"ingress": pp.Ingress, "egress": pp.Egress} {
		if rl != nil && (rl.BitsPerSecond < MinRate || rl.BitsPerSecond > MaxRate) {
			errs.add("port-profile %q: %s rate %d bit/s: must be %d-%d", name, dir, rl.BitsPerSecond, uint64(MinRate), uint64(MaxRate))
		}
	}
	if ps := pp.PortSecurity; ps != nil {
		if ps.MaxMACs < 1 || ps.MaxMACs > MaxMACsPerPort {
			errs.add("port-profile %q: port-security maximum %d: must be 1-%d", name, ps.MaxMACs, MaxMACsPerPort)
		}
		if ps.Violation != "" && ps.Violation != api.ViolationShutdown && ps.Violation != api.ViolationProtect {
			errs.add("port-profile %q: port-security violation %q: must be %s or %s", name, ps.Violation, api.ViolationShutdown, api.ViolationProtect)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// ParsePortName splits a port name into its kind and numbers: VethN, EthM/P
// or PoN (case-sensitive, no leading zeros).
func ParsePortName(name string) (kind string, module, num int, err error) {
	num64 := func(s string, lo, hi int) (int, bool) {
		if s == "" || s[0] == '0' || len(s) > 10 || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= lo && n <= hi
	}
	switch {
	case strings.HasPrefix(name, "Veth"):
		if n, ok := num64(name[4:], 1, MaxVethNumber); ok {
			return api.PortVeth, 0, n, nil
		}
	case strings.HasPrefix(name, "Eth"):
		m, p, _ := strings.Cut(name[3:], "/")
		mn, ok1 := num64(m, 1, 66)
		pn, ok2 := num64(p, 1, 1024)
		if ok1 && ok2 {
			return api.PortEth, mn, pn, nil
		}
	case strings.HasPrefix(name, "Po"):
		if n, ok := num64(name[2:], 1, MaxPortChannel); ok {
			return api.PortPortChannel, 0, n, nil
		}
	}
	return "", 0, 0, fmt.Errorf("port name %q: must be VethN, EthM/P or PoN", name)
}

// validIfName reports whether s can be a Linux interface name.
func validIfName(s string) bool {
	return s != "" && len(s) <= 15 && s != "." && s != ".." &&
		!strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '/' || r == ':' || r >= 0x7f })
}

func (c *Config) checkPort(ap api.Port, module int) (*port, errList) {
	var errs errList
	kind, m, n, err := ParsePortName(ap.Name)
	if err != nil {
		errs.add("port %q: %w", ap.Name, err)
		return nil, errs
	}
	p := &port{Port: ap, num: n}
	if ap.Kind != kind {
		errs.add("port %s: kind %q, but the name says %q", ap.Name, ap.Kind, kind)
	}
	if kind == api.PortEth && m != module {
		errs.add("port %s: module %d, but this host is module %d", ap.Name, m, module)
	}
	if ap.Profile != "" {
		pp, ok := c.profiles[ap.Profile]
		switch {
		case !ok:
			errs.add("port %s: port-profile %q: not defined", ap.Name, ap.Profile)
		case !pp.Enabled:
			errs.add("port %s: port-profile %q: not enabled (state enabled)", ap.Name, ap.Profile)
		case kind == api.PortVeth && pp.Type != api.ProfileVethernet:
			errs.add("port %s: port-profile %q is type %s: a vEth needs a vethernet profile", ap.Name, ap.Profile, pp.Type)
		case kind != api.PortVeth && (pp.Type != api.ProfileEthernet || !pp.CapabilityUplink):
			errs.add("port %s: port-profile %q: an uplink needs an ethernet profile with capability uplink", ap.Name, ap.Profile)
		default:
			p.profile = pp
		}
	} else if kind != api.PortEth {
		errs.add("port %s: needs a port-profile", ap.Name)
	}
	if ap.Interface != "" && !validIfName(ap.Interface) {
		errs.add("port %s: interface %q: not a valid interface name", ap.Name, ap.Interface)
	} else if ours(ap.Interface) {
		errs.add("port %s: interface %q: names starting with %q are the VEM's own", ap.Name, ap.Interface, ifPrefix)
	}
	switch kind {
	case api.PortEth:
		if ap.Interface == "" {
			errs.add("port %s: needs its physical interface", ap.Name)
		}
	case api.PortPortChannel:
		if ap.Interface != "" {
			errs.add("port %s: a port-channel's interface is the VEM's bond, not configurable", ap.Name)
		}
		if len(ap.Members) == 0 {
			errs.add("port %s: a port-channel needs members", ap.Name)
		}
		switch ap.ChannelMode {
		case "", api.ChannelActiveBackup, api.ChannelLACP, api.ChannelMACPinning:
		default:
			errs.add("port %s: channel mode %q: must be %s, %s or %s", ap.Name, ap.ChannelMode, api.ChannelActiveBackup, api.ChannelLACP, api.ChannelMACPinning)
		}
	}
	if kind != api.PortPortChannel && (len(ap.Members) > 0 || ap.ChannelMode != "") {
		errs.add("port %s: members and channel mode are for port-channels", ap.Name)
	}
	if kind != api.PortVeth && len(ap.MACs) > 0 {
		errs.add("port %s: static MACs are for vEth ports", ap.Name)
	}
	if len(ap.MACs) > MaxMACsPerPort {
		errs.add("port %s: %d MACs: at most %d", ap.Name, len(ap.MACs), MaxMACsPerPort)
	}
	for _, s := range ap.MACs {
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 || hw[0]&1 != 0 || bytes.Equal(hw, make([]byte, 6)) {
			errs.add("port %s: MAC %q: not a unicast Ethernet address", ap.Name, s)
			continue
		}
		if slices.Contains(p.macs, hw.String()) {
			errs.add("port %s: MAC %s listed twice", ap.Name, hw)
			continue
		}
		p.macs = append(p.macs, hw.String())
	}
	if p.profile != nil && p.profile.PortSecurity != nil && len(p.macs) > p.profile.PortSecurity.MaxMACs {
		errs.add("port %s: %d MACs, port-security maximum %d", ap.Name, len(p.macs), p.profile.PortSecurity.MaxMACs)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}
