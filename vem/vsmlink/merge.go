package vsmlink

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
)

// ErrCollision wraps a merge refused because the local and the VSM part
// define the same profile or port name (it also wraps vem.ErrInvalid).
var ErrCollision = errors.New("local and VSM programming collide")

// Part is the VSM's part of a switch's programming.
type Part struct {
	Profiles []api.PortProfile `json:"profiles,omitempty"`
	Ports    []api.Port        `json:"ports,omitempty"`
}

// Snapshot returns the part a full snapshot sets.
func Snapshot(c *api.VSMConfigBody) Part {
	p := Part{Profiles: slices.Clone(c.Profiles), Ports: slices.Clone(c.Ports)}
	p.sort()
	return p
}

// Apply returns p with a delta applied: profiles and ports set by name
// (added or replaced), then the Remove lists deleted (names not present
// are ignored).
func (p Part) Apply(c *api.VSMConfigBody) Part {
	out := Part{Profiles: slices.Clone(p.Profiles), Ports: slices.Clone(p.Ports)}
	for _, pp := range c.Profiles {
		if i := slices.IndexFunc(out.Profiles, func(x api.PortProfile) bool { return x.Name == pp.Name }); i >= 0 {
			out.Profiles[i] = pp
		} else {
			out.Profiles = append(out.Profiles, pp)
		}
	}
	for _, pt := range c.Ports {
		if i := slices.IndexFunc(out.Ports, func(x api.Port) bool { return x.Name == pt.Name }); i >= 0 {
			out.Ports[i] = pt
		} else {
			out.Ports = append(out.Ports, pt)
		}
	}
	out.Profiles = slices.DeleteFunc(out.Profiles, func(x api.PortProfile) bool { return slices.Contains(c.RemoveProfiles, x.Name) })
	out.Ports = slices.DeleteFunc(out.Ports, func(x api.Port) bool { return slices.Contains(c.RemovePorts, x.Name) })
	out.sort()
	return out
}

func (p *Part) sort() {
	slices.SortStableFunc(p.Profiles, func(a, b api.PortProfile) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(p.Ports, func(a, b api.Port) int { return strings.Compare(a.Name, b.Name) })
}

// Merge builds the switch's programming (pure): the local part with its
// EthM/P ports (and port-channel members) renamed to module and numbered
// as the VSM numbers uplinks (ethN is EthM/(N+1), like vmnicN in the
// original; other NICs keep their P), plus the VSM part, with DomainID
// domain and Module module. Module 0 (never welcomed) keeps the local
// part's module and names. A profile or port name defined by both parts is
// an ErrCollision; whether the result is a valid switch config is
// vem.Validate's business.
func Merge(local api.SwitchConfig, vsm Part, domain, module int) (api.SwitchConfig, error) {
	welcomed := module != 0
	if !welcomed {
		module = cmp.Or(local.Module, 3)
	}
	out := api.SwitchConfig{DomainID: domain, Module: module}
	renamed := map[string]string{}
	for _, pt := range local.Ports {
		if kind, _, p, err := vem.ParsePortName(pt.Name); err == nil && kind == api.PortEth && welcomed {
			renamed[pt.Name] = fmt.Sprintf("Eth%d/%d", module, ethNumber(pt.Interface, p))
		}
	}
	rename := func(name string) string {
		if n, ok := renamed[name]; ok {
			return n
		}
		return name
	}
	profiles := map[string]bool{}
	for _, pp := range local.Profiles {
		profiles[pp.Name] = true
		out.Profiles = append(out.Profiles, pp)
	}
	ports := map[string]bool{}
	for _, pt := range local.Ports {
		pt.Name = rename(pt.Name)
		if len(pt.Members) > 0 {
			pt.Members = slices.Clone(pt.Members)
			for i, m := range pt.Members {
				pt.Members[i] = rename(m)
			}
		}
		ports[pt.Name] = true
		out.Ports = append(out.Ports, pt)
	}
	var clash []string
	for _, pp := range vsm.Profiles {
		if profiles[pp.Name] {
			clash = append(clash, "port-profile "+pp.Name)
		}
		out.Profiles = append(out.Profiles, pp)
	}
	for _, pt := range vsm.Ports {
		if ports[pt.Name] {
			clash = append(clash, "port "+pt.Name)
		}
		out.Ports = append(out.Ports, pt)
	}
	if len(clash) > 0 {
		return api.SwitchConfig{}, fmt.Errorf("%w: %w: %s defined by the host's local switch and by the VSM",
			vem.ErrInvalid, ErrCollision, strings.Join(clash, ", "))
	}
	return out, nil
}

// SystemPart is the VSM part a freshly joined host programs before its
// first contact with the VSM (VEM-6): the enabled system profiles of the
// join's opaque data, and the join's uplinks whose profile is one of them
// (an ethernet profile with capability uplink), named as the VSM names
// them in module j.Module: ethN is EthM/(N+1). Uplinks with other names
// wait for the VSM, which numbers them; everything waits when j.Module is
// 0 (a VSM that reserves no slot).
func SystemPart(j api.VSMJoin) Part {
	var p Part
	if j.Module == 0 {
		return p
	}
	uplink := map[string]bool{}
	for _, pp := range j.Opaque.SystemProfiles {
		if !pp.Enabled {
			continue
		}
		p.Profiles = append(p.Profiles, pp)
		if pp.Type == api.ProfileEthernet && pp.CapabilityUplink {
			uplink[pp.Name] = true
		}
	}
	for _, u := range j.Uplinks {
		n := ethNumber(u.Interface, 0)
		if !uplink[u.Profile] || n == 0 {
			continue
		}
		p.Ports = append(p.Ports, api.Port{Name: fmt.Sprintf("Eth%d/%d", j.Module, n), Kind: api.PortEth,
			Interface: u.Interface, Profile: u.Profile})
	}
	if len(p.Ports) == 0 && len(p.Profiles) == 0 {
		return Part{}
	}
	p.sort()
	return p
}

// localPortChannels lists the PoN numbers of the local part.
func localPortChannels(local *api.SwitchConfig) []int {
	return localNumbers(local, api.PortPortChannel)
}

// localVeths lists the VethN numbers of the local part.
func localVeths(local *api.SwitchConfig) []int { return localNumbers(local, api.PortVeth) }

// localNumbers lists the numbers of the local part's ports of kind (veth
// or po), sorted.
func localNumbers(local *api.SwitchConfig, kind string) []int {
	if local == nil {
		return nil
	}
	var out []int
	for _, p := range local.Ports {
		if k, _, n, err := vem.ParsePortName(p.Name); err == nil && k == kind && p.Kind == kind {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// ethNumber is P of the EthM/P of NIC: N+1 for ethN (N < 32), else p.
func ethNumber(nic string, p int) int {
	rest, ok := strings.CutPrefix(nic, "eth")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return p
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n >= 32 {
		return p
	}
	return n + 1
}
