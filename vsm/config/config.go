// Package config is the VSM's configuration model: what `show
// running-config` prints and what `copy running-config startup-config`
// saves (SPEC VSM-4). It is plain data with validation and rendering; the
// NX-OS-style parser that builds it lives in vsm/cli, which also reads a
// startup config back (cli.LoadStartup), so that the grammar exists once.
//
// Zero values mean "not configured" (NX-OS prints nothing for them), so a
// Render -> replay round trip gives back the same Config.
package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// FormatVersion is the `version` line of a rendered configuration: the
// syntax version of the text, not the software's (a replay accepts any).
const FormatVersion = "1.0(1)"

// Defaults and limits.
const (
	DefaultSwitchName = "vsm"
	// DefaultMaxPorts is a vethernet profile's max-ports when none is set
	// (the Nexus 1000V's `port-profile default max-ports 32`).
	DefaultMaxPorts = 32
	MaxMaxPorts     = 4096
	MaxDescription  = 80
	MaxVLANName     = 32
	// MinRate and MaxRate bound rate limits in bit/s, as the VEM does
	// (tc police takes a 32-bit bytes/s rate).
	MinRate = 8000
	MaxRate = 8 * (1<<32 - 1)
	// MaxSecureMACs bounds `switchport port-security maximum` (the VEM's
	// per-port MAC limit).
	MaxSecureMACs = 64
)

// Redundancy roles (`system redundancy role`).
const (
	RoleStandalone = "standalone"
	RolePrimary    = "primary"
	RoleSecondary  = "secondary"
)

// L3 control interfaces of the VSM (`svs mode L3 interface ...`).
const (
	L3Mgmt0    = "mgmt0"
	L3Control0 = "control0"
)

// ErrInvalid is wrapped by every Validate error.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole switch configuration.
type Config struct {
	// SwitchName is NX-OS `hostname`: the prompt and the switch name the
	// hosts see.
	SwitchName string
	SVSDomain  SVSDomain
	// VLANs maps each created VLAN to its name ("" for the default name,
	// see VLANName). VLAN 1 always exists.
	VLANs map[int]string
	// Profiles are the port profiles, sorted by name, names unique.
	Profiles []Profile
	// HostModules pins host UUIDs (lower case) to VEM slots 3-66
	// (`vem N` / `host id UUID`).
	HostModules map[string]int
	// Redundancy is the administrative role: RoleStandalone, RolePrimary
	// or RoleSecondary.
	Redundancy string
	// Veths are `interface vethernet N` settings, on top of the port's
	// profile; a vEth without any has no entry.
	Veths map[int]Veth
}

// Veth is one `interface vethernet N` block.
type Veth struct {
	// Description replaces the one the host gave (the VM and its NIC).
	Description string
	// Shutdown is the interface's own `shutdown`.
	Shutdown bool
}

// MaxVethNumber is the highest vEth number an interface block may name.
const MaxVethNumber = 1 << 20

// SVSDomain is the `svs-domain` block.
type SVSDomain struct {
	// ID is `domain id`, 1-4095; 0 until configured (the VSM then programs
	// no VEM).
	ID int
	// ControlVLAN and PacketVLAN are used in L2 mode (0: unset).
	ControlVLAN int
	PacketVLAN  int
	// Mode is api.SVSModeL3 or api.SVSModeL2.
	Mode string
	// L3Interface is the VSM interface that carries L3 control (L3Mgmt0 or
	// L3Control0); empty in L2 mode.
	L3Interface string
}

// Profile is one `port-profile`. Fields left zero are not configured and
// take the NX-OS defaults (access mode, VLAN 1, all VLANs allowed, native
// VLAN 1).
type Profile struct {
	Name string
	// Type is api.ProfileVethernet or api.ProfileEthernet.
	Type string
	// PortGroup is `port-group [NAME]`: the name hosts and VM admins see;
	// "" means the profile's name. Hosts see a profile only when it is
	// enabled (SPEC VSM-5).
	PortGroup string
	// Mode is api.ModeAccess or api.ModeTrunk ("" = access). Access and
	// trunk settings are both kept, as on NX-OS; Mode picks which apply.
	Mode       string
	AccessVLAN int
	// AllowedVLANs is the normalised trunk allowed list ("100-102,200",
	// "none"); "" is all VLANs, the default.
	AllowedVLANs string
	NativeVLAN   int
	// SystemVLANs is the normalised `system vlan` list ("" = none). They
	// must be VLANs the profile carries.
	SystemVLANs      string
	CapabilityUplink bool
	// Enabled is `state enabled`.
	Enabled  bool
	Shutdown bool
	// MaxPorts is `max-ports` (vethernet only; 0 = DefaultMaxPorts).
	MaxPorts int
	// Ingress is `rate-limit input`, Egress `rate-limit output` (nil: none).
	Ingress      *api.RateLimit
	Egress       *api.RateLimit
	PortSecurity PortSecurity
	Description  string
	// ChannelGroup is `channel-group auto mode ...` (ethernet only):
	// api.ChannelMACPinning, api.ChannelLACP, api.ChannelActiveBackup or "".
	ChannelGroup string
}

// PortSecurity is `switchport port-security ...`. The maximum and the
// violation action may be set while port security is off, as on NX-OS.
type PortSecurity struct {
	Enabled bool
	// Maximum is the number of secure MACs (0 = 1, the default).
	Maximum int
	// Violation is api.ViolationShutdown or api.ViolationProtect ("" =
	// shutdown).
	Violation string
}

// Default is the configuration of a fresh VSM.
func Default() Config {
	return Config{
		SwitchName:  DefaultSwitchName,
		SVSDomain:   SVSDomain{Mode: api.SVSModeL3, L3Interface: L3Mgmt0},
		VLANs:       map[int]string{1: ""},
		HostModules: map[string]int{},
		Redundancy:  RoleStandalone,
	}
}

// Clone returns a deep copy.
func (c *Config) Clone() Config {
	out := *c
	out.VLANs = maps.Clone(c.VLANs)
	out.HostModules = maps.Clone(c.HostModules)
	out.Veths = maps.Clone(c.Veths)
	if c.Profiles != nil {
		out.Profiles = make([]Profile, len(c.Profiles))
		for i, p := range c.Profiles {
			out.Profiles[i] = p.clone()
		}
	}
	return out
}

func (p Profile) clone() Profile {
	if p.Ingress != nil {
		r := *p.Ingress
		p.Ingress = &r
	}
	if p.Egress != nil {
		r := *p.Egress
		p.Egress = &r
	}
	return p
}

// Profile returns the named profile for editing, or nil.
func (c *Config) Profile(name string) *Profile {
	i, ok := slices.BinarySearchFunc(c.Profiles, name, func(p Profile, n string) int { return strings.Compare(p.Name, n) })
	if !ok {
		return nil
	}
	return &c.Profiles[i]
}

// PutProfile adds p, or replaces the profile of the same name, keeping
// Profiles sorted.
func (c *Config) PutProfile(p Profile) {
	i, ok := slices.BinarySearchFunc(c.Profiles, p.Name, func(p Profile, n string) int { return strings.Compare(p.Name, n) })
	if ok {
		c.Profiles[i] = p
		return
	}
	c.Profiles = slices.Insert(c.Profiles, i, p)
}

// DeleteProfile removes the named profile and reports whether it existed.
func (c *Config) DeleteProfile(name string) bool {
	i, ok := slices.BinarySearchFunc(c.Profiles, name, func(p Profile, n string) int { return strings.Compare(p.Name, n) })
	if ok {
		c.Profiles = slices.Delete(c.Profiles, i, i+1)
	}
	return ok
}

// HasVLAN reports whether VLAN v is created (VLAN 1 always is).
func (c *Config) HasVLAN(v int) bool {
	_, ok := c.VLANs[v]
	return ok || v == 1
}

// VLANName is VLAN v's name: its configured one, else "default" for VLAN 1
// and "VLAN0100" style for the others, as NX-OS shows them.
func (c *Config) VLANName(v int) string {
	if n := c.VLANs[v]; n != "" {
		return n
	}
	if v == 1 {
		return "default"
	}
	return fmt.Sprintf("VLAN%04d", v)
}

// VLANSet returns the created VLANs.
func (c *Config) VLANSet() VLANSet {
	var s VLANSet
	s.Add(1)
	for v := range c.VLANs {
		s.Add(v)
	}
	return s
}

// ModuleOf returns the slot pinned to a host UUID (0: none).
func (c *Config) ModuleOf(hostUUID string) int { return c.HostModules[strings.ToLower(hostUUID)] }

// PortGroupName is the name hosts see the profile by.
func (p Profile) PortGroupName() string {
	if p.PortGroup != "" {
		return p.PortGroup
	}
	return p.Name
}

// EffectiveMode is the switchport mode in force (access by default).
func (p Profile) EffectiveMode() string {
	if p.Mode == "" {
		return api.ModeAccess
	}
	return p.Mode
}

// EffectiveMaxPorts is the port limit in force: 0 (none) for ethernet
// profiles, MaxPorts or DefaultMaxPorts for vethernet ones.
func (p Profile) EffectiveMaxPorts() int {
	switch {
	case p.Type != api.ProfileVethernet:
		return 0
	case p.MaxPorts == 0:
		return DefaultMaxPorts
	}
	return p.MaxPorts
}

// Carried is the set of VLANs the profile's ports are members of.
func (p Profile) Carried() VLANSet {
	var s VLANSet
	if p.EffectiveMode() == api.ModeAccess {
		s.Add(max(p.AccessVLAN, 1))
		return s
	}
	if p.AllowedVLANs == "" {
		return AllVLANs()
	}
	s, _ = ParseVLANs(p.AllowedVLANs)
	return s
}

// IsSystem reports whether the profile has system VLANs (VEM-6).
func (p Profile) IsSystem() bool { return p.SystemVLANs != "" }

// VEM is the profile as the VSM pushes it to VEMs: only the settings in
// force (trunk settings for a trunk, the access VLAN for an access port),
// with defaults filled in where the VEM needs a number.
func (p Profile) VEM() api.PortProfile {
	out := api.PortProfile{
		Name:             p.Name,
		Type:             p.Type,
		Mode:             p.EffectiveMode(),
		SystemVLANs:      p.SystemVLANs,
		CapabilityUplink: p.CapabilityUplink,
		Enabled:          p.Enabled,
		Shutdown:         p.Shutdown,
		MaxPorts:         p.EffectiveMaxPorts(),
		Description:      p.Description,
	}
	if p.Type == api.ProfileEthernet && p.CapabilityUplink {
		out.ChannelGroup = p.ChannelGroup
	}
	if out.Mode == api.ModeTrunk {
		out.AllowedVLANs, out.NativeVLAN = p.AllowedVLANs, p.NativeVLAN
	} else {
		out.AccessVLAN = p.AccessVLAN
	}
	c := p.clone()
	out.Ingress, out.Egress = c.Ingress, c.Egress
	if ps := p.PortSecurity; ps.Enabled && p.Type == api.ProfileVethernet {
		out.PortSecurity = &api.PortSecurity{MaxMACs: max(ps.Maximum, 1), Violation: ps.Violation}
		if out.PortSecurity.Violation == "" {
			out.PortSecurity.Violation = api.ViolationShutdown
		}
	}
	return out
}

var (
	hostnameRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,62}$`)
	profileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`)
	vlanNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)
	uuidRE        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// ValidHostname reports whether s can be a switch name.
func ValidHostname(s string) bool { return hostnameRE.MatchString(s) }

// ValidProfileName reports whether s can name a port profile (the wire
// format's rule: api profile names).
func ValidProfileName(s string) bool { return profileNameRE.MatchString(s) }

// ValidVLANName reports whether s can name a VLAN.
func ValidVLANName(s string) bool { return vlanNameRE.MatchString(s) }

// ValidDescription reports whether s can be a description: 1-80
// printable characters, no leading or trailing space, and no '?' (the
// CLI's help key, so it could not be typed or replayed).
func ValidDescription(s string) bool {
	return s != "" && len(s) <= MaxDescription && strings.TrimSpace(s) == s &&
		!strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == '?' })
}

// problem is one Validate finding: its text names what it is about (so the
// CLI can print it after "ERROR: "), and it matches ErrInvalid.
type problem struct{ err error }

func (p *problem) Error() string   { return p.err.Error() }
func (p *problem) Unwrap() []error { return []error{ErrInvalid, p.err} }

type errList []error

func (e *errList) add(format string, args ...any) {
	*e = append(*e, &problem{fmt.Errorf(format, args...)})
}

// Validate checks the whole configuration and reports every problem,
// joined, each naming what it is about. It follows NX-OS where NX-OS is
// strict (a profile may carry VLANs that are not created; a system VLAN
// must be carried by its profile).
func (c *Config) Validate() error {
	var errs errList
	if !ValidHostname(c.SwitchName) {
		errs.add("hostname %q: want a letter then up to 62 letters, digits, '.', '_' or '-'", c.SwitchName)
	}
	d := c.SVSDomain
	if d.ID < 0 || d.ID > api.VSMDomainIDMax {
		errs.add("svs-domain: domain id %d: must be 1-%d", d.ID, api.VSMDomainIDMax)
	}
	for _, v := range []struct {
		what string
		id   int
	}{{"control", d.ControlVLAN}, {"packet", d.PacketVLAN}} {
		if v.id < 0 || v.id > MaxVLAN {
			errs.add("svs-domain: %s vlan %d: must be 1-%d", v.what, v.id, MaxVLAN)
		}
	}
	switch {
	case d.Mode == api.SVSModeL3 && (d.L3Interface == L3Mgmt0 || d.L3Interface == L3Control0):
	case d.Mode == api.SVSModeL3:
		errs.add("svs-domain: L3 interface %q: must be %s or %s", d.L3Interface, L3Mgmt0, L3Control0)
	case d.Mode == api.SVSModeL2 && d.L3Interface != "":
		errs.add("svs-domain: L3 interface %q set in L2 mode", d.L3Interface)
	case d.Mode == api.SVSModeL2 && d.ControlVLAN == 0:
		// The hosts reach an L2 VSM only on its control VLAN.
		errs.add("svs-domain: svs mode L2 needs a control vlan (set `control vlan N` first)")
	case d.Mode != api.SVSModeL2:
		errs.add("svs-domain: svs mode %q: must be %s or %s", d.Mode, api.SVSModeL2, api.SVSModeL3)
	}
	if _, ok := c.VLANs[1]; !ok {
		errs.add("vlan 1: the default VLAN cannot be removed")
	}
	for _, v := range slices.Sorted(maps.Keys(c.VLANs)) {
		name := c.VLANs[v]
		switch {
		case v < 1 || v > MaxVLAN:
			errs.add("vlan %d: must be 1-%d", v, MaxVLAN)
		case v == 1 && name != "":
			errs.add("vlan 1: the default VLAN's name cannot be changed")
		case name != "" && !ValidVLANName(name):
			errs.add("vlan %d: name %q: want 1-%d letters, digits, '.', '_' or '-'", v, name, MaxVLANName)
		}
	}
	for i, p := range c.Profiles {
		if i > 0 && c.Profiles[i-1].Name >= p.Name {
			errs.add("port-profile %s: profiles must be sorted by name, without duplicates", p.Name)
		}
		errs = append(errs, p.validate()...)
	}
	slots := map[int]string{}
	for _, uuid := range slices.Sorted(maps.Keys(c.HostModules)) {
		slot := c.HostModules[uuid]
		if !uuidRE.MatchString(uuid) {
			errs.add("vem %d: host id %q: want a lower-case UUID", slot, uuid)
		}
		if slot < api.VSMFirstVEMSlot || slot > api.VSMSlots {
			errs.add("vem %d: module must be %d-%d", slot, api.VSMFirstVEMSlot, api.VSMSlots)
		}
		if other, dup := slots[slot]; dup {
			errs.add("vem %d: pinned to both %s and %s", slot, other, uuid)
		}
		slots[slot] = uuid
	}
	switch c.Redundancy {
	case RoleStandalone, RolePrimary, RoleSecondary:
	default:
		errs.add("system redundancy role %q: must be standalone, primary or secondary", c.Redundancy)
	}
	for _, n := range slices.Sorted(maps.Keys(c.Veths)) {
		v := c.Veths[n]
		switch {
		case n < 1 || n > MaxVethNumber:
			errs.add("interface vethernet %d: must be 1-%d", n, MaxVethNumber)
		case v == (Veth{}):
			errs.add("interface vethernet %d: no settings (an empty block is not kept)", n)
		case v.Description != "" && !ValidDescription(v.Description):
			errs.add("interface vethernet %d: description: want 1-%d printable characters", n, MaxDescription)
		}
	}
	return errors.Join(errs...)
}

func (p Profile) validate() errList {
	var errs errList
	name := p.Name
	if !ValidProfileName(name) {
		errs.add("port-profile %q: name: want 1-80 letters, digits, '.', '_' or '-'", name)
		return errs
	}
	veth := p.Type == api.ProfileVethernet
	if !veth && p.Type != api.ProfileEthernet {
		errs.add("port-profile %s: type %q: must be vethernet or ethernet", name, p.Type)
	}
	if p.PortGroup != "" && !ValidProfileName(p.PortGroup) {
		errs.add("port-profile %s: port-group %q: want 1-80 letters, digits, '.', '_' or '-'", name, p.PortGroup)
	}
	if p.Mode != "" && p.Mode != api.ModeAccess && p.Mode != api.ModeTrunk {
		errs.add("port-profile %s: switchport mode %q: must be access or trunk", name, p.Mode)
	}
	for _, v := range []struct {
		what string
		id   int
	}{{"access", p.AccessVLAN}, {"trunk native", p.NativeVLAN}} {
		if v.id < 0 || v.id > MaxVLAN {
			errs.add("port-profile %s: switchport %s vlan %d: must be 1-%d", name, v.what, v.id, MaxVLAN)
		}
	}
	if p.AllowedVLANs != "" {
		if _, err := ParseVLANs(p.AllowedVLANs); err != nil {
			errs.add("port-profile %s: switchport trunk allowed vlan: %w", name, err)
		}
	}
	if p.SystemVLANs != "" {
		sys, err := ParseVLANs(p.SystemVLANs)
		if err != nil {
			errs.add("port-profile %s: system vlan: %w", name, err)
		} else if extra := sys.Minus(p.Carried()); !extra.Empty() && len(errs) == 0 {
			errs.add("port-profile %s: system vlan %s is not carried by the profile (switchport mode %s, vlans %s)",
				name, extra, p.EffectiveMode(), p.Carried())
		}
	}
	if p.CapabilityUplink && veth {
		errs.add("port-profile %s: capability uplink is only for ethernet port-profiles", name)
	}
	if p.MaxPorts != 0 {
		if !veth {
			errs.add("port-profile %s: max-ports is only for vethernet port-profiles", name)
		} else if p.MaxPorts < 1 || p.MaxPorts > MaxMaxPorts {
			errs.add("port-profile %s: max-ports %d: must be 1-%d", name, p.MaxPorts, MaxMaxPorts)
		}
	}
	for _, rl := range []struct {
		dir string
		r   *api.RateLimit
	}{{"input", p.Ingress}, {"output", p.Egress}} {
		if rl.r != nil && (rl.r.BitsPerSecond < MinRate || rl.r.BitsPerSecond > MaxRate) {
			errs.add("port-profile %s: rate-limit %s %d bps: must be %d-%d", name, rl.dir, rl.r.BitsPerSecond, MinRate, uint64(MaxRate))
		}
	}
	ps := p.PortSecurity
	if ps != (PortSecurity{}) && !veth {
		errs.add("port-profile %s: port-security is only for vethernet port-profiles", name)
	}
	if ps.Maximum < 0 || ps.Maximum > MaxSecureMACs {
		errs.add("port-profile %s: port-security maximum %d: must be 1-%d", name, ps.Maximum, MaxSecureMACs)
	}
	if ps.Violation != "" && ps.Violation != api.ViolationShutdown && ps.Violation != api.ViolationProtect {
		errs.add("port-profile %s: port-security violation %q: must be shutdown or protect", name, ps.Violation)
	}
	if p.Description != "" && !ValidDescription(p.Description) {
		errs.add("port-profile %s: description: want 1-%d printable characters", name, MaxDescription)
	}
	switch p.ChannelGroup {
	case "":
	case api.ChannelMACPinning, api.ChannelLACP, api.ChannelActiveBackup:
		if veth {
			errs.add("port-profile %s: channel-group is only for ethernet port-profiles", name)
		}
	default:
		errs.add("port-profile %s: channel-group mode %q unknown", name, p.ChannelGroup)
	}
	return errs
}
