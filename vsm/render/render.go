// Package render turns the VSM's configuration (port profiles) and port
// bindings into one module's VEM programming, and that programming into
// config messages: a full snapshot, or a delta from the previous one (SPEC
// VSM-5, VEM-9).
//
// Everything here is a pure function of its arguments, and the package
// imports nothing of ours but api, so the VEM can use Apply to follow the
// same deltas it is sent.
//
// Profiles whose ports cannot use them. The config layer should refuse to
// disable or delete a profile that ports use (ports.Registry.Users tells
// which), as NX-OS protects an inherited profile. Render does not rely on
// that: a port whose profile is missing, not enabled or of the wrong type
// is rendered shut down on a built-in quarantine profile
// (Unused_Or_Quarantine_Veth / Unused_Or_Quarantine_Uplink, the names the
// Nexus 1000V uses for the same purpose). The VEM's programming stays
// valid (it refuses ports on undefined or disabled profiles), the port
// keeps its tap and number and carries no traffic, and re-enabling the
// profile brings it back with a one-port delta.
package render

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// The built-in quarantine profiles. Their names are reserved: a
// configured profile with the same name is replaced by the built-in one
// on any module that needs it.
const (
	QuarantineVeth   = "Unused_Or_Quarantine_Veth"
	QuarantineUplink = "Unused_Or_Quarantine_Uplink"
)

func quarantine(name string) api.PortProfile {
	if name == QuarantineVeth {
		return api.PortProfile{Name: QuarantineVeth, Type: api.ProfileVethernet, Mode: api.ModeAccess,
			Enabled: true, Shutdown: true, Description: "vEths whose port-profile is missing or disabled"}
	}
	return api.PortProfile{Name: QuarantineUplink, Type: api.ProfileEthernet, Mode: api.ModeTrunk,
		AllowedVLANs: "none", CapabilityUplink: true, Enabled: true, Shutdown: true,
		Description: "uplinks whose port-profile is missing or disabled"}
}

// Desired is one module's VEM programming: profiles and ports by name.
// Treat it as immutable; the functions here never modify their inputs.
type Desired struct {
	Module   int
	Profiles map[string]api.PortProfile
	Ports    map[string]api.Port
}

// Snapshot renders module's programming. Profiles: every enabled profile
// (hosts show them as port groups, VSM-5), so a VM can be attached to any
// of them, plus a quarantine profile when a port needs one. Ports: the
// module's ports as ports.Registry.Ports lists them (vEths with their
// MACs, Eth uplinks with their NICs); a port whose profile it cannot use
// is quarantined (see the package doc), and Eth ports named for another
// module are left out.
//
// Port-channels (channel-group auto): the registry lists a module's PoN
// with its member Eths; the PoN gets its mode from its profile's
// ChannelGroup (a quarantined one has none: active-backup, shut down).
func Snapshot(module int, profiles []api.PortProfile, ports []api.Port) Desired {
	d := Desired{Module: module, Profiles: map[string]api.PortProfile{}, Ports: map[string]api.Port{}}
	for _, p := range profiles {
		if p.Enabled {
			d.Profiles[p.Name] = cloneProfile(p)
		}
	}
	ethPrefix := fmt.Sprintf("Eth%d/", module)
	for _, p := range ports {
		if p.Kind == api.PortEth && !strings.HasPrefix(p.Name, ethPrefix) {
			continue
		}
		p = clonePort(p)
		if !usable(p, d.Profiles) {
			q := QuarantineUplink
			if p.Kind == api.PortVeth {
				q = QuarantineVeth
			}
			p.Profile, p.Shutdown = q, true
			d.Profiles[q] = quarantine(q)
		}
		if p.Kind == api.PortPortChannel {
			p.ChannelMode = d.Profiles[p.Profile].ChannelGroup
		}
		d.Ports[p.Name] = p
	}
	return d
}

// usable reports whether p can use its profile: a vEth needs a vethernet
// profile, an Eth or Po an ethernet profile with capability uplink (the
// VEM's rules). profiles holds only enabled ones.
func usable(p api.Port, profiles map[string]api.PortProfile) bool {
	pp, ok := profiles[p.Profile]
	if !ok {
		return false
	}
	if p.Kind == api.PortVeth {
		return pp.Type == api.ProfileVethernet && !pp.CapabilityUplink
	}
	return pp.Type == api.ProfileEthernet && pp.CapabilityUplink
}

// Full is the snapshot message for d at generation gen (sent on every
// (re)connect, and when opaque data changes: deltas do not carry it).
func Full(gen uint64, d Desired, opaque *api.VSMOpaque) api.VSMConfigBody {
	return api.VSMConfigBody{
		Generation: gen,
		Full:       true,
		Profiles:   sortedProfiles(d.Profiles, nil),
		Ports:      sortedPorts(d.Ports, nil),
		Opaque:     opaque,
	}
}

// Delta is the message that takes a VEM running old at generation base to
// new at base+1: the profiles and ports that are new or changed, and the
// names of those that vanished. It reports false when nothing changed (no
// message, no new generation).
func Delta(base uint64, old, new Desired) (api.VSMConfigBody, bool) {
	c := api.VSMConfigBody{Generation: base + 1, Base: base}
	c.Profiles = sortedProfiles(new.Profiles, func(p api.PortProfile) bool {
		o, ok := old.Profiles[p.Name]
		return !ok || !profileEqual(o, p)
	})
	c.Ports = sortedPorts(new.Ports, func(p api.Port) bool {
		o, ok := old.Ports[p.Name]
		return !ok || !portEqual(o, p)
	})
	for name := range old.Profiles {
		if _, ok := new.Profiles[name]; !ok {
			c.RemoveProfiles = append(c.RemoveProfiles, name)
		}
	}
	for name := range old.Ports {
		if _, ok := new.Ports[name]; !ok {
			c.RemovePorts = append(c.RemovePorts, name)
		}
	}
	slices.Sort(c.RemoveProfiles)
	slices.Sort(c.RemovePorts)
	changed := len(c.Profiles)+len(c.Ports)+len(c.RemoveProfiles)+len(c.RemovePorts) > 0
	return c, changed
}

// ErrNotApplicable means a config message does not fit the programming it
// was applied to (it removes what is not there, or leaves a port on an
// undefined profile): the receiver should ask for a full snapshot.
var ErrNotApplicable = errors.New("config does not apply")

// Apply returns d with c applied: a full snapshot replaces everything, a
// delta removes, then sets. It checks names, not generations: the caller
// matches c.Base to what it runs. The result never leaves a port on a
// profile it does not define. d.Module is kept.
func Apply(d Desired, c api.VSMConfigBody) (Desired, error) {
	out := Desired{Module: d.Module, Profiles: map[string]api.PortProfile{}, Ports: map[string]api.Port{}}
	bad := func(format string, args ...any) (Desired, error) {
		return Desired{}, fmt.Errorf("config generation %d: %w: %s", c.Generation, ErrNotApplicable, fmt.Sprintf(format, args...))
	}
	removed := map[string]bool{}
	if c.Full {
		if len(c.RemoveProfiles)+len(c.RemovePorts) > 0 {
			return bad("a full snapshot removes nothing")
		}
	} else {
		maps.Copy(out.Profiles, d.Profiles)
		maps.Copy(out.Ports, d.Ports)
		for _, n := range c.RemovePorts {
			if _, ok := out.Ports[n]; !ok {
				return bad("removes port %q, which is not there", n)
			}
			delete(out.Ports, n)
			removed["port "+n] = true
		}
		for _, n := range c.RemoveProfiles {
			if _, ok := out.Profiles[n]; !ok {
				return bad("removes port-profile %q, which is not there", n)
			}
			delete(out.Profiles, n)
			removed["profile "+n] = true
		}
	}
	set := map[string]bool{}
	for _, p := range c.Profiles {
		k := "profile " + p.Name
		switch {
		case p.Name == "":
			return bad("a port-profile without a name")
		case set[k]:
			return bad("sets port-profile %q twice", p.Name)
		case removed[k]:
			return bad("removes and sets port-profile %q", p.Name)
		}
		set[k] = true
		out.Profiles[p.Name] = cloneProfile(p)
	}
	for _, p := range c.Ports {
		k := "port " + p.Name
		switch {
		case p.Name == "":
			return bad("a port without a name")
		case set[k]:
			return bad("sets port %q twice", p.Name)
		case removed[k]:
			return bad("removes and sets port %q", p.Name)
		}
		set[k] = true
		out.Ports[p.Name] = clonePort(p)
	}
	for _, name := range slices.Sorted(maps.Keys(out.Ports)) {
		if p := out.Ports[name]; p.Profile != "" {
			if _, ok := out.Profiles[p.Profile]; !ok {
				return bad("port %s: port-profile %q not defined", name, p.Profile)
			}
		}
	}
	return out, nil
}

// Equal reports whether a and b are the same programming (a nil list and
// an empty one are the same, as they are on the wire).
func Equal(a, b Desired) bool {
	return a.Module == b.Module &&
		maps.EqualFunc(a.Profiles, b.Profiles, profileEqual) &&
		maps.EqualFunc(a.Ports, b.Ports, portEqual)
}

// SwitchConfig is d as the VEM's whole programming (VEM-8's stored form).
func (d Desired) SwitchConfig(domainID int) api.SwitchConfig {
	return api.SwitchConfig{
		DomainID: domainID,
		Module:   d.Module,
		Profiles: sortedProfiles(d.Profiles, nil),
		Ports:    sortedPorts(d.Ports, nil),
	}
}

// profileEqual and portEqual compare with reflect so that a field added to
// the api types is compared without anyone remembering to add it here.
func profileEqual(a, b api.PortProfile) bool { return reflect.DeepEqual(a, b) }

func portEqual(a, b api.Port) bool { return reflect.DeepEqual(normPort(a), normPort(b)) }

func normPort(p api.Port) api.Port {
	if len(p.MACs) == 0 {
		p.MACs = nil
	}
	if len(p.Members) == 0 {
		p.Members = nil
	}
	return p
}

func sortedProfiles(m map[string]api.PortProfile, keep func(api.PortProfile) bool) []api.PortProfile {
	var out []api.PortProfile
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if p := m[name]; keep == nil || keep(p) {
			out = append(out, cloneProfile(p))
		}
	}
	return out
}

func sortedPorts(m map[string]api.Port, keep func(api.Port) bool) []api.Port {
	var out []api.Port
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if p := m[name]; keep == nil || keep(p) {
			out = append(out, clonePort(p))
		}
	}
	return out
}

// cloneProfile and clonePort copy what the value shares through pointers
// and slices, so no two Desired (or a Desired and a message) alias.
func cloneProfile(p api.PortProfile) api.PortProfile {
	if p.Ingress != nil {
		v := *p.Ingress
		p.Ingress = &v
	}
	if p.Egress != nil {
		v := *p.Egress
		p.Egress = &v
	}
	if p.PortSecurity != nil {
		v := *p.PortSecurity
		p.PortSecurity = &v
	}
	return p
}

func clonePort(p api.Port) api.Port {
	p.MACs = slices.Clone(p.MACs)
	p.Members = slices.Clone(p.Members)
	return p
}
