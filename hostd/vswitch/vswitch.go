// Package vswitch is the host's standalone switch (VEM-7, a vSphere
// standard switch): port groups, uplinks, port-channels and the vEth ports
// of vNICs, configured through hostd's API, persisted on the state
// partition, and handed to the VEM agent as its whole programming.
//
// Desired state -> applied state: Config is what the operator (and the VM
// manager, through netseam.Ports) asked for; Build turns it, purely, into
// the VEM's api.SwitchConfig; the agent (vemd, through a small Agent
// interface) reconciles the kernel to it and keeps its own copy for boot
// (VEM-8). A change is checked here, then by the agent, and only saved once
// the agent took it: a configuration the VEM refuses never reaches the
// state partition.
//
// When the VSM arrives (issue 5) the same SwitchConfig comes from it
// instead, and this package steps aside.
package vswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
)

// Agent is what the switch needs from the VEM agent (vem/vemclient).
type Agent interface {
	SetConfig(ctx context.Context, sc api.SwitchConfig) ([]api.PortStatus, error)
	Ports(ctx context.Context) ([]api.PortStatus, error)
}

// ErrRefused wraps the agent's refusal of a configuration (it found it
// invalid).
var ErrRefused = errors.New("refused by the VEM")

// Options configure a Switch.
type Options struct {
	// File is where the configuration is kept.
	File  string
	Agent Agent
	// IsInvalid tells the agent's "this config is invalid" answer from
	// other failures (vemclient.IsInvalid).
	IsInvalid func(error) bool
	// Default is the configuration of a first boot (no file yet).
	Default func() Config
	// Extra returns ports the switch does not own but must carry (the
	// vmknics' vEths); nil: none.
	Extra func() []api.Port
	Log   *slog.Logger
}

// Switch is the standalone switch. It implements netseam.Ports.
type Switch struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	cfg     Config
	applied bool // the agent has the current cfg
}

var _ netseam.Ports = (*Switch)(nil)

// Open loads the configuration (or the default on first boot). It does not
// talk to the agent: call Sync.
func Open(o Options) (*Switch, error) {
	if o.Agent == nil {
		return nil, errors.New("vswitch: no agent")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.IsInvalid == nil {
		o.IsInvalid = func(error) bool { return false }
	}
	c, ok, err := Load(o.File)
	if err != nil {
		return nil, err
	}
	if !ok && o.Default != nil {
		c = o.Default()
		c.Sort()
		if err := c.Check(); err != nil {
			return nil, fmt.Errorf("default switch configuration: %w", err)
		}
		if err := Save(o.File, c); err != nil {
			return nil, err
		}
		o.Log.Info("first boot: default switch configuration", "port_groups", len(c.PortGroups), "uplinks", len(c.Uplinks))
	}
	return &Switch{o: o, log: o.Log, cfg: c}, nil
}

// Config returns a copy of the configuration.
func (s *Switch) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.clone()
}

func (s *Switch) extra() []api.Port {
	if s.o.Extra == nil {
		return nil
	}
	return s.o.Extra()
}

// Sync hands the current configuration to the agent.
func (s *Switch) Sync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.o.Agent.SetConfig(ctx, Build(s.cfg, s.extra()))
	s.applied = err == nil
	return err
}

// SyncLoop hands the configuration to the agent until it takes it (the
// agent starts alongside hostd), then again every interval when it was
// not applied (the agent was away). It returns when ctx ends.
func (s *Switch) SyncLoop(ctx context.Context, interval time.Duration) {
	wait := 500 * time.Millisecond
	for {
		s.mu.Lock()
		applied := s.applied
		s.mu.Unlock()
		if !applied {
			if err := s.Sync(ctx); err != nil {
				s.log.Warn("switch configuration not applied yet", "err", err)
				wait = min(wait*2, interval)
			} else {
				s.log.Info("switch configuration applied")
				wait = interval
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// change applies f to a copy of the configuration, checks it, has the agent
// apply it, and saves it; on any failure the configuration stays as it was
// (the agent may hold a partly applied new one: the next change or Sync
// brings it back).
func (s *Switch) change(ctx context.Context, f func(c *Config) error) ([]api.PortStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg.clone()
	if err := f(&c); err != nil {
		return nil, err
	}
	c.Sort()
	if err := c.Check(); err != nil {
		return nil, err
	}
	st, err := s.o.Agent.SetConfig(ctx, Build(c, s.extra()))
	if err != nil {
		if s.o.IsInvalid(err) {
			return nil, fmt.Errorf("%w: %w: %w", netseam.ErrInvalid, ErrRefused, err)
		}
		s.applied = false
		return nil, fmt.Errorf("apply switch configuration: %w", err)
	}
	if err := Save(s.o.File, c); err != nil {
		s.applied = false
		return nil, err
	}
	s.cfg, s.applied = c, true
	return st, nil
}

// Resync re-applies the configuration with the extra ports as they are
// now (after a vmknic change).
func (s *Switch) Resync(ctx context.Context) error {
	_, err := s.change(ctx, func(*Config) error { return nil })
	return err
}

// --- netseam.Ports ---

// Attach implements netseam.Ports: the vNIC's vEth (the lowest free VethN
// on first use), on the port group, with the vNIC's MAC as its static
// entry. A vNIC moved to another port group or given another MAC keeps its
// vEth number.
func (s *Switch) Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (string, error) {
	var port string
	st, err := s.change(ctx, func(c *Config) error {
		if c.portGroup(portGroup) == nil {
			return fmt.Errorf("attach VM %q vNIC %d: port group %q: %w", vm, nic, portGroup, netseam.ErrNoPortGroup)
		}
		i := slices.IndexFunc(c.Veths, func(v api.VethAssignment) bool { return v.VM == vm && v.NIC == nic })
		if i < 0 {
			c.Veths = append(c.Veths, api.VethAssignment{Port: freeVeth(c.Veths, s.extra()), VM: vm, NIC: nic})
			i = len(c.Veths) - 1
		}
		c.Veths[i].PortGroup, c.Veths[i].MAC = portGroup, strings.ToLower(mac)
		port = c.Veths[i].Port
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, p := range st {
		if p.Name == port {
			if p.Interface == "" {
				break
			}
			return p.Interface, nil
		}
	}
	return "", fmt.Errorf("attach VM %q vNIC %d: the VEM reports no interface for %s", vm, nic, port)
}

// freeVeth is the lowest VethN neither a vNIC nor an extra port uses.
func freeVeth(vs []api.VethAssignment, extra []api.Port) string {
	used := map[string]bool{}
	for _, v := range vs {
		used[v.Port] = true
	}
	for _, p := range extra {
		used[p.Name] = true
	}
	for n := 1; ; n++ {
		if name := fmt.Sprintf("Veth%d", n); !used[name] {
			return name
		}
	}
}

// Detach implements netseam.Ports: nothing to do, the vEth stays with its
// number, settings and counters while the VM is off (VEM-2); its tap has no
// carrier until QEMU opens it again.
func (s *Switch) Detach(ctx context.Context, vm string, nic int) error { return nil }

// Release implements netseam.Ports: the VM's vEths are freed.
func (s *Switch) Release(ctx context.Context, vm string) error {
	s.mu.Lock()
	has := slices.ContainsFunc(s.cfg.Veths, func(v api.VethAssignment) bool { return v.VM == vm })
	s.mu.Unlock()
	if !has {
		return nil
	}
	_, err := s.change(ctx, func(c *Config) error {
		c.Veths = slices.DeleteFunc(c.Veths, func(v api.VethAssignment) bool { return v.VM == vm })
		return nil
	})
	return err
}

// PortGroups implements netseam.Ports.
func (s *Switch) PortGroups() []api.PortGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cfg.PortGroups)
}

// --- configuration ---

// AddPortGroup adds a port group.
func (s *Switch) AddPortGroup(ctx context.Context, pg api.PortGroup) error {
	_, err := s.change(ctx, func(c *Config) error {
		if c.portGroup(pg.Name) != nil {
			return fmt.Errorf("port group %q: %w", pg.Name, netseam.ErrExists)
		}
		c.PortGroups = append(c.PortGroups, pg)
		return nil
	})
	return err
}

// UpdatePortGroup replaces a port group's settings (not its name); the
// change reaches every port on it, live (VEM-5).
func (s *Switch) UpdatePortGroup(ctx context.Context, pg api.PortGroup) error {
	_, err := s.change(ctx, func(c *Config) error {
		p := c.portGroup(pg.Name)
		if p == nil {
			return fmt.Errorf("port group %q: %w", pg.Name, netseam.ErrNoPortGroup)
		}
		*p = pg
		return nil
	})
	return err
}

// InUse reports who uses a port group: vNICs ("web01 nic 0") and, through
// the extra ports, vmknics.
func (s *Switch) InUse(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var users []string
	for _, v := range s.cfg.Veths {
		if v.PortGroup == name {
			users = append(users, fmt.Sprintf("%s nic %d", v.VM, v.NIC))
		}
	}
	for _, p := range s.extra() {
		if p.Profile == ProfileName(name) {
			users = append(users, p.Owner)
		}
	}
	return users
}

// RemovePortGroup removes an unused port group.
func (s *Switch) RemovePortGroup(ctx context.Context, name string) error {
	if users := s.InUse(name); len(users) > 0 {
		return fmt.Errorf("port group %q: %w by %s", name, netseam.ErrInUse, strings.Join(users, ", "))
	}
	_, err := s.change(ctx, func(c *Config) error {
		if c.portGroup(name) == nil {
			return fmt.Errorf("port group %q: %w", name, netseam.ErrNoPortGroup)
		}
		c.PortGroups = slices.DeleteFunc(c.PortGroups, func(pg api.PortGroup) bool { return pg.Name == name })
		return nil
	})
	return err
}

// AddUplink puts a physical NIC on the switch as the next free EthM/P.
func (s *Switch) AddUplink(ctx context.Context, nic string) (api.Uplink, error) {
	var u api.Uplink
	_, err := s.change(ctx, func(c *Config) error {
		if c.uplink(nic) != nil {
			return fmt.Errorf("uplink %s: %w", nic, netseam.ErrExists)
		}
		u = api.Uplink{NIC: nic, Port: freeEth(c.Uplinks)}
		c.Uplinks = append(c.Uplinks, u)
		return nil
	})
	return u, err
}

func freeEth(us []api.Uplink) string {
	used := map[string]bool{}
	for _, u := range us {
		used[u.Port] = true
	}
	for n := 1; ; n++ {
		if p := fmt.Sprintf("Eth%d/%d", Module, n); !used[p] {
			return p
		}
	}
}

// RemoveUplink takes a NIC off the switch; a port-channel member must leave
// its port-channel first.
func (s *Switch) RemoveUplink(ctx context.Context, nic string) error {
	_, err := s.change(ctx, func(c *Config) error {
		u := c.uplink(nic)
		if u == nil {
			return fmt.Errorf("uplink %s: %w", nic, netseam.ErrNotFound)
		}
		if u.PortChannel != "" {
			return fmt.Errorf("uplink %s: %w: member of %s", nic, netseam.ErrInUse, u.PortChannel)
		}
		c.Uplinks = slices.DeleteFunc(c.Uplinks, func(x api.Uplink) bool { return x.NIC == nic })
		return nil
	})
	return err
}

// AddPortChannel bundles NICs into PoN; NICs that are not uplinks yet
// become uplinks.
func (s *Switch) AddPortChannel(ctx context.Context, pc api.PortChannel) error {
	_, err := s.change(ctx, func(c *Config) error {
		if slices.ContainsFunc(c.PortChannels, func(x api.PortChannel) bool { return x.Name == pc.Name }) {
			return fmt.Errorf("port-channel %s: %w", pc.Name, netseam.ErrExists)
		}
		for _, m := range pc.Members {
			u := c.uplink(m)
			if u == nil {
				c.Uplinks = append(c.Uplinks, api.Uplink{NIC: m, Port: freeEth(c.Uplinks)})
				u = &c.Uplinks[len(c.Uplinks)-1]
			}
			if u.PortChannel != "" {
				return fmt.Errorf("port-channel %s: NIC %s: %w: member of %s", pc.Name, m, netseam.ErrInUse, u.PortChannel)
			}
			u.PortChannel = pc.Name
		}
		c.PortChannels = append(c.PortChannels, api.PortChannel{Name: pc.Name, Members: slices.Clone(pc.Members), Mode: pc.Mode})
		return nil
	})
	return err
}

// RemovePortChannel dissolves PoN; its members stay uplinks on their own.
func (s *Switch) RemovePortChannel(ctx context.Context, name string) error {
	_, err := s.change(ctx, func(c *Config) error {
		i := slices.IndexFunc(c.PortChannels, func(x api.PortChannel) bool { return x.Name == name })
		if i < 0 {
			return fmt.Errorf("port-channel %s: %w", name, netseam.ErrNotFound)
		}
		for j := range c.Uplinks {
			if c.Uplinks[j].PortChannel == name {
				c.Uplinks[j].PortChannel = ""
			}
		}
		c.PortChannels = slices.Delete(c.PortChannels, i, i+1)
		return nil
	})
	return err
}

// View is the configuration with the VEM's view of the ports; if the agent
// cannot be asked, Ports is empty and the error says why.
func (s *Switch) View(ctx context.Context) (api.SwitchView, error) {
	c := s.Config()
	v := api.SwitchView{Uplinks: c.Uplinks, PortChannels: c.PortChannels, PortGroups: c.PortGroups, Veths: c.Veths, Ports: []api.PortStatus{}}
	for _, l := range []*[]api.Uplink{&v.Uplinks} {
		if *l == nil {
			*l = []api.Uplink{}
		}
	}
	if v.PortChannels == nil {
		v.PortChannels = []api.PortChannel{}
	}
	if v.PortGroups == nil {
		v.PortGroups = []api.PortGroup{}
	}
	if v.Veths == nil {
		v.Veths = []api.VethAssignment{}
	}
	ps, err := s.o.Agent.Ports(ctx)
	if err != nil {
		return v, err
	}
	v.Ports = ps
	return v, nil
}
