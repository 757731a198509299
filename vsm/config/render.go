package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Render is the configuration as `show running-config` prints it, in the
// NX-OS order (version, hostname, vem, vlan, port-profile, interface,
// svs-domain),
// sub-commands indented by two spaces. Only configured settings are
// printed, so replaying the text through the CLI rebuilds the same Config.
// The `!Command:`/`!Time:` header is the CLI's (it knows the clock).
func (c *Config) Render() string {
	var b strings.Builder
	line := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat(" ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line(0, "version %s", FormatVersion)
	line(0, "hostname %s", c.SwitchName)
	line(0, "system redundancy role %s", c.Redundancy)

	if len(c.HostModules) > 0 {
		b.WriteByte('\n')
		uuids := slices.SortedFunc(maps.Keys(c.HostModules), func(a, b string) int {
			return c.HostModules[a] - c.HostModules[b]
		})
		for _, u := range uuids {
			line(0, "vem %d", c.HostModules[u])
			line(2, "host id %s", u)
		}
	}

	b.WriteByte('\n')
	vlans := c.VLANSet()
	line(0, "vlan %s", vlans)
	for _, v := range vlans.List() {
		if n := c.VLANs[v]; n != "" {
			line(0, "vlan %d", v)
			line(2, "name %s", n)
		}
	}

	for _, p := range c.Profiles {
		b.WriteByte('\n')
		line(0, "port-profile type %s %s", p.Type, p.Name)
		for _, l := range p.ConfigLines() {
			line(2, "%s", l)
		}
	}

	for _, n := range slices.Sorted(maps.Keys(c.Veths)) {
		v := c.Veths[n]
		b.WriteByte('\n')
		line(0, "interface Vethernet%d", n)
		if v.Description != "" {
			line(2, "description %s", v.Description)
		}
		if v.Shutdown {
			line(2, "shutdown")
		}
	}

	b.WriteByte('\n')
	d := c.SVSDomain
	line(0, "svs-domain")
	if d.ID != 0 {
		line(2, "domain id %d", d.ID)
	}
	if d.ControlVLAN != 0 {
		line(2, "control vlan %d", d.ControlVLAN)
	}
	if d.PacketVLAN != 0 {
		line(2, "packet vlan %d", d.PacketVLAN)
	}
	if d.Mode == api.SVSModeL3 {
		line(2, "svs mode L3 interface %s", d.L3Interface)
	} else {
		line(2, "svs mode %s", d.Mode)
	}
	return b.String()
}

// ConfigLines are the profile's sub-commands (unindented) in the order
// NX-OS prints them: port-group, switchport lines, port security, rate
// limits, channel-group, capability, [no] shutdown, description, system
// vlan, max-ports, state enabled.
func (p Profile) ConfigLines() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch p.PortGroup {
	case "":
	case p.Name:
		add("port-group")
	default:
		add("port-group %s", p.PortGroup)
	}
	if p.CapabilityUplink {
		add("capability uplink")
	}
	if p.Mode != "" {
		add("switchport mode %s", p.Mode)
	}
	if p.AccessVLAN != 0 {
		add("switchport access vlan %d", p.AccessVLAN)
	}
	if p.AllowedVLANs != "" {
		add("switchport trunk allowed vlan %s", p.AllowedVLANs)
	}
	if p.NativeVLAN != 0 {
		add("switchport trunk native vlan %d", p.NativeVLAN)
	}
	ps := p.PortSecurity
	if ps.Enabled {
		add("switchport port-security")
	}
	if ps.Maximum != 0 {
		add("switchport port-security maximum %d", ps.Maximum)
	}
	if ps.Violation != "" {
		add("switchport port-security violation %s", ps.Violation)
	}
	if p.Ingress != nil {
		add("rate-limit input %s", FormatRate(*p.Ingress))
	}
	if p.Egress != nil {
		add("rate-limit output %s", FormatRate(*p.Egress))
	}
	switch p.ChannelGroup {
	case api.ChannelMACPinning:
		add("channel-group auto mode on mac-pinning")
	case api.ChannelLACP:
		add("channel-group auto mode active")
	case api.ChannelActiveBackup:
		add("channel-group auto mode on")
	}
	if p.Shutdown {
		add("shutdown")
	} else {
		add("no shutdown")
	}
	if p.Description != "" {
		add("description %s", p.Description)
	}
	if p.SystemVLANs != "" {
		add("system vlan %s", p.SystemVLANs)
	}
	if p.MaxPorts != 0 {
		add("max-ports %d", p.MaxPorts)
	}
	if p.Enabled {
		add("state enabled")
	}
	return out
}

// Rate units of `rate-limit`, largest first.
var rateUnits = []struct {
	name string
	bps  uint64
}{{"gbps", 1e9}, {"mbps", 1e6}, {"kbps", 1e3}, {"bps", 1}}

// RateUnit returns the bit/s of a rate unit keyword (bps, kbps, mbps,
// gbps), or 0.
func RateUnit(name string) uint64 {
	for _, u := range rateUnits {
		if strings.EqualFold(u.name, name) {
			return u.bps
		}
	}
	return 0
}

// FormatRate renders a rate limit as `rate-limit` takes it: the rate in
// the largest unit that divides it, then `burst BYTES` when set.
func FormatRate(r api.RateLimit) string {
	s := strconv.FormatUint(r.BitsPerSecond, 10) + " bps"
	for _, u := range rateUnits {
		if r.BitsPerSecond != 0 && r.BitsPerSecond%u.bps == 0 {
			s = fmt.Sprintf("%d %s", r.BitsPerSecond/u.bps, u.name)
			break
		}
	}
	if r.BurstBytes != 0 {
		s += fmt.Sprintf(" burst %d", r.BurstBytes)
	}
	return s
}

// Save writes the rendered configuration to path atomically (a crash
// leaves the old or the new file), and only when it changed: the startup
// config lives on flash media (FLASH-4).
func (c *Config) Save(path string) error {
	if _, err := atomicfile.WriteIfChanged(path, []byte(c.Render()), 0o600); err != nil {
		return fmt.Errorf("save startup config: %w", err)
	}
	return nil
}
