package vsm

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/chassis"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/ports"
)

// The Server is the CLI's switch.
var _ cli.Switch = (*Server)(nil)

// Config returns a copy of the running configuration.
func (s *Server) Config() config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Clone()
}

// Update applies one configuration change: f runs on a copy of the
// running configuration; the result must validate and must not take a
// profile away from ports using it (delete, disable, change its type).
// Host pins are applied to the chassis, the result is written to the
// running-config file (see RunningConfigFile) and becomes the running
// configuration, and every connected VEM whose programming changed gets a
// delta (VSM-5: profile changes are live).
func (s *Server) Update(f func(*config.Config) error) error {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	if !s.active() {
		return ErrStandby
	}
	old := s.Config()
	c := old.Clone()
	// f runs without s.mu: it may read the switch (Config, ProfileUsage).
	if err := f(&c); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ha.active {
		return ErrStandby
	}
	if err := s.checkInUseLocked(&c); err != nil {
		return err
	}
	if err := s.applyPins(old, c); err != nil {
		return err
	}
	// A channel-group set or removed on an uplink profile bundles the
	// uplinks on it again (the push below carries the PoNs). First: it
	// may refuse the change.
	rebundled, err := s.ports.Rechannel(ports.LookupIn(vemProfiles(&c)))
	if err != nil {
		return err
	}
	if err := c.Save(filepath.Join(s.o.StateDir, RunningConfigFile)); err != nil {
		// The configuration stays the old one: so do the bundles.
		if len(rebundled) > 0 {
			if _, uerr := s.ports.Rechannel(ports.LookupIn(vemProfiles(&old))); uerr != nil {
				s.log.Error("port-channels follow a configuration that was not saved", "modules", rebundled, "err", uerr)
			}
		}
		return fmt.Errorf("save running configuration: %w", err)
	}
	s.setConfigLocked(c)
	s.pushLocked()
	s.kickSync()
	return nil
}

// checkInUseLocked refuses a configuration that deletes, disables or
// retypes a profile that ports use.
func (s *Server) checkInUseLocked(c *config.Config) error {
	var errs []error
	for _, p := range s.cfg.Profiles {
		users := s.ports.Users(p.Name)
		if len(users) == 0 {
			continue
		}
		n := c.Profile(p.Name)
		switch {
		case n == nil:
			errs = append(errs, fmt.Errorf("port-profile %s is in use by %s", p.Name, strings.Join(users, ", ")))
		case !n.Enabled && p.Enabled:
			errs = append(errs, fmt.Errorf("port-profile %s is in use by %s: it cannot be disabled", p.Name, strings.Join(users, ", ")))
		case n.Type != p.Type || n.CapabilityUplink != p.CapabilityUplink:
			errs = append(errs, fmt.Errorf("port-profile %s is in use by %s: its type cannot change", p.Name, strings.Join(users, ", ")))
		}
	}
	return errors.Join(errs...)
}

// applyPins makes the chassis follow the configuration's host pins (`vem
// N` / `host id UUID`): new or moved pins are pinned, removed ones
// unbound (refused while the host is online).
func (s *Server) applyPins(old, c config.Config) error {
	var errs []error
	for _, u := range slices.Sorted(maps.Keys(c.HostModules)) {
		if slot := c.HostModules[u]; old.HostModules[u] != slot {
			if err := s.chassis.Pin(u, slot); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, u := range slices.Sorted(maps.Keys(old.HostModules)) {
		if _, ok := c.HostModules[u]; !ok {
			if err := s.chassis.Unbind(u); err != nil && !errors.Is(err, chassis.ErrUnknownHost) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// SaveStartup copies the running configuration to the startup file (and
// the active sends it to the standby).
func (s *Server) SaveStartup() error {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	c := s.Config()
	if err := c.Save(filepath.Join(s.o.StateDir, StartupConfigFile)); err != nil {
		return err
	}
	s.mu.Lock()
	s.startup = c.Render()
	s.mu.Unlock()
	s.kickSync()
	return nil
}

// Modules returns `show module`'s rows: this VSM in slot 1, then every
// bound VEM slot.
func (s *Server) Modules() []api.VSMModule { return s.chassis.Modules() }

// ProfileUsage maps every profile to the ports bound to it.
func (s *Server) ProfileUsage() map[string][]string {
	c := s.Config()
	out := make(map[string][]string, len(c.Profiles))
	for _, p := range c.Profiles {
		out[p.Name] = s.ports.Users(p.Name)
	}
	return out
}

// Interfaces returns every port the VSM knows: vEths (bound or not
// running anywhere), the uplinks of every module and port-channels the
// VEMs report, with the last reported status and counters.
func (s *Server) Interfaces() []cli.Interface {
	s.mu.Lock()
	defer s.mu.Unlock()
	hostnames := map[int]string{}
	online := map[int]bool{}
	for _, m := range s.chassis.Modules() {
		hostnames[m.Slot] = m.Hostname
		online[m.Slot] = m.Status == chassis.StatusOK
	}
	reported := map[int]map[string]api.PortStatus{}
	for slot, r := range s.reports {
		m := map[string]api.PortStatus{}
		for _, p := range r.body.Ports {
			m[p.Name] = p
		}
		reported[slot] = m
	}
	seen := map[string]bool{}
	var out []cli.Interface
	fill := func(i *cli.Interface) {
		if p := s.cfg.Profile(i.Profile); p != nil {
			v := p.VEM()
			i.Mode = v.Mode
			if v.Mode == api.ModeTrunk {
				i.VLAN = p.Carried().String()
				i.NativeVLAN = v.NativeVLAN
			} else {
				i.VLAN = fmt.Sprint(max(v.AccessVLAN, 1))
			}
		}
		switch st, ok := reported[i.Module][i.Name]; {
		case i.Module == 0:
			i.Status, i.Reason = api.PortDown, "not attached"
		case !online[i.Module]:
			i.Status, i.Reason = api.PortDown, "module offline"
			i.Counters = st.Counters
		case ok:
			i.Status, i.Reason, i.Counters = st.State, st.Reason, st.Counters
		default:
			i.Status, i.Reason = api.PortDown, "no report"
		}
		seen[fmt.Sprint(i.Module, i.Name)] = true
	}
	for _, b := range s.ports.Bindings() {
		i := cli.Interface{Name: b.Port, Profile: b.Profile, Owner: b.Owner, Description: b.Description, MAC: b.MAC}
		if b.Active {
			i.Module = b.Module
		}
		fill(&i)
		if n, ok := api.VethNumber(b.Port); ok {
			if v := s.cfg.Veths[n]; v.Description != "" {
				i.Description = v.Description
			}
		}
		out = append(out, i)
	}
	for _, slot := range slices.Sorted(maps.Keys(hostnames)) {
		if slot < api.VSMFirstVEMSlot {
			continue
		}
		for _, u := range s.ports.Uplinks(slot) {
			i := cli.Interface{Name: u.Port, Module: slot, Profile: u.Profile, Owner: hostnames[slot], Description: u.Interface}
			fill(&i)
			out = append(out, i)
		}
		// Port-channels exist only in the VEMs' reports.
		for _, p := range reportedPorts(reported[slot]) {
			if p.Kind != api.PortPortChannel || seen[fmt.Sprint(slot, p.Name)] {
				continue
			}
			i := cli.Interface{Name: p.Name, Module: slot, Profile: p.Profile, Owner: hostnames[slot]}
			fill(&i)
			out = append(out, i)
		}
	}
	return out
}

func reportedPorts(m map[string]api.PortStatus) []api.PortStatus {
	return slices.SortedFunc(maps.Values(m), func(a, b api.PortStatus) int { return strings.Compare(a.Name, b.Name) })
}

// MACs returns the MAC tables the connected VEMs reported last.
func (s *Server) MACs() []cli.MAC {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []cli.MAC
	for _, slot := range slices.Sorted(maps.Keys(s.reports)) {
		if s.conns[slot] == nil {
			continue
		}
		for _, e := range s.reports[slot].body.MACs {
			out = append(out, cli.MAC{VLAN: e.VLAN, MAC: e.MAC, Type: e.Type, Age: e.AgeSeconds, Port: e.Port, Module: slot})
		}
	}
	return out
}
