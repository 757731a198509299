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
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
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
	// VMKNICs applies the vmknics (vmknic.Manager); nil: vmknics cannot
	// be configured.
	VMKNICs VMKNICs
	// Host seeds the MACs generated for vmknics that have none.
	Host vmknic.Host
	// ConfirmWithin is how long a guarded management change waits for
	// Confirm before it is rolled back (VMK-3); 0: 60 s.
	ConfirmWithin time.Duration
	// ApplyDelay defers a guarded change so that the answer to the
	// request that made it still leaves by the management network as it
	// was (a new management address would strand it). 0: applied before
	// the call returns.
	ApplyDelay time.Duration
	// BeforeFirstSync runs before the configuration c first reaches the
	// kernel (the management handoff from init; again if the sync failed),
	// AfterFirstSync once after it did. nil: nothing. They must not call
	// the Switch.
	BeforeFirstSync func(ctx context.Context, c Config) error
	AfterFirstSync  func(c Config)
	// OnRollback is told about each automatic rollback (an event).
	OnRollback func(change api.NetworkChange, reason string)
	// Taken lists the vEth names this host's VEM already uses for
	// someone else (the distributed switch's ports, numbered by the VSM):
	// a new vEth of this switch skips them. nil: none.
	Taken func() map[string]bool
	Log   *slog.Logger
}

// VMKNICs is what the switch needs from the vmknic manager.
type VMKNICs interface {
	Apply(ctx context.Context, specs []api.VMKNIC) error
	Status(ctx context.Context) ([]api.VMKNICStatus, error)
}

// ErrChangePending refuses a guarded change while another one waits for
// confirmation.
var ErrChangePending = errors.New("a management network change is waiting for confirmation")

// Switch is the standalone switch. It implements netseam.Ports.
type Switch struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	cfg     Config
	applied bool // the agent has the current cfg
	synced  bool // BeforeFirstSync ran and a sync succeeded
	pending *pending
	// ready is closed by the first successful sync.
	ready chan struct{}
}

// pending is a guarded change applied but not confirmed: prev is the
// configuration to go back to (with the unguarded changes made since, such
// as vNICs attached), and what is on disk.
type pending struct {
	change api.NetworkChange
	prev   Config
	stop   func() bool
	// applied is closed once the change was applied (or failed to be).
	applied chan struct{}
}

// checker is implemented by agents that can validate a configuration
// without applying it (vemclient.Client).
type checker interface {
	CheckConfig(ctx context.Context, sc api.SwitchConfig) error
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
	if o.ConfirmWithin == 0 {
		o.ConfirmWithin = 60 * time.Second
	}
	c, ok, err := Load(o.File)
	if err != nil {
		return nil, err
	}
	if !ok && o.Default != nil {
		c = o.Default()
		c.VMKNICs = vmknic.AssignMACs(c.VMKNICs, o.Host)
		for _, k := range c.VMKNICs {
			c.Veths = append(c.Veths, api.VethAssignment{Port: freeVeth(c.Veths, nil), VMKNIC: k.Name, PortGroup: k.PortGroup, MAC: k.MAC})
		}
		c.Sort()
		if err := c.Check(); err != nil {
			return nil, fmt.Errorf("default switch configuration: %w", err)
		}
		if err := Save(o.File, c); err != nil {
			return nil, err
		}
		o.Log.Info("first boot: default switch configuration", "port_groups", len(c.PortGroups), "uplinks", len(c.Uplinks))
	}
	return &Switch{o: o, log: o.Log, cfg: c, ready: make(chan struct{})}, nil
}

// Ready is closed once the agent took the configuration for the first
// time: from then on vNICs can be attached (autostart waits for it, as the
// agent starts alongside hostd).
func (s *Switch) Ready() <-chan struct{} { return s.ready }

// Config returns a copy of the configuration.
func (s *Switch) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.clone()
}

// Sync hands the current configuration to the vmknics and the agent.
func (s *Switch) Sync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced && s.o.BeforeFirstSync != nil {
		if err := s.o.BeforeFirstSync(ctx, s.cfg.clone()); err != nil {
			return fmt.Errorf("before the first sync: %w", err)
		}
	}
	_, err := s.apply(ctx, s.cfg)
	s.applied = err == nil
	if err == nil && !s.synced {
		s.synced = true
		close(s.ready)
		if s.o.AfterFirstSync != nil {
			s.o.AfterFirstSync(s.cfg.clone())
		}
	}
	return err
}

// apply programs c: the agent first (it validates the whole switch and
// refuses before anything changes), then the vmknics (their veth pairs and
// addresses), then the agent again, which enslaves switch ends that did not
// exist a moment ago.
func (s *Switch) apply(ctx context.Context, c Config) ([]api.PortStatus, error) {
	sc := Build(c)
	st, err := s.o.Agent.SetConfig(ctx, sc)
	if err != nil || s.o.VMKNICs == nil {
		return st, err
	}
	if err := s.o.VMKNICs.Apply(ctx, c.VMKNICs); err != nil {
		return nil, fmt.Errorf("vmknics: %w", err)
	}
	if len(c.VMKNICs) == 0 {
		return st, nil
	}
	return s.o.Agent.SetConfig(ctx, sc)
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
// (and the vmknic manager) apply it, and saves it; on any failure the
// configuration stays as it was (the kernel may hold a partly applied new
// one: the next change or Sync brings it back). While a guarded change
// waits for confirmation, f is also applied to the configuration the
// rollback would restore, which is what is saved.
func (s *Switch) change(ctx context.Context, f func(c *Config) error) ([]api.PortStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.prepare(f, s.cfg)
	if err != nil {
		return nil, err
	}
	var prev Config
	if s.pending != nil {
		if prev, err = s.prepare(f, s.pending.prev); err != nil {
			return nil, fmt.Errorf("with the pending change %s rolled back, this change would fail: %w", s.pending.change.ID, err)
		}
	}
	st, err := s.commit(ctx, c)
	if err != nil {
		return nil, err
	}
	save := c
	if s.pending != nil {
		s.pending.prev, save = prev, prev
	}
	if err := Save(s.o.File, save); err != nil {
		s.applied = false
		return nil, err
	}
	s.cfg, s.applied = c, true
	return st, nil
}

func (s *Switch) prepare(f func(c *Config) error, from Config) (Config, error) {
	c := from.clone()
	if err := f(&c); err != nil {
		return Config{}, err
	}
	c.Sort()
	if err := c.Check(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// commit applies c; if the agent refuses it nothing changed, if a later
// step fails the previous configuration is applied again.
func (s *Switch) commit(ctx context.Context, c Config) ([]api.PortStatus, error) {
	st, err := s.apply(ctx, c)
	if err == nil {
		return st, nil
	}
	if s.o.IsInvalid(err) {
		return nil, fmt.Errorf("%w: %w: %w", netseam.ErrInvalid, ErrRefused, err)
	}
	if _, rerr := s.apply(ctx, s.cfg); rerr != nil {
		s.applied = false
		s.log.Error("switch configuration: going back after a failed change failed too", "err", rerr)
	}
	return nil, fmt.Errorf("apply switch configuration: %w", err)
}

// changeGuarded is change for operations that may cut the management
// network (VMK-3): if the result touches management, it is applied but not
// saved, and unless Confirm(id) comes within ConfirmWithin the previous
// configuration comes back by itself. Otherwise it is a plain change and
// the returned *api.NetworkChange is nil.
func (s *Switch) changeGuarded(ctx context.Context, what string, f func(c *Config) error) (*api.NetworkChange, error) {
	s.mu.Lock()
	c, err := s.prepare(f, s.cfg)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if !touchesManagement(s.cfg, c) {
		s.mu.Unlock()
		_, err := s.change(ctx, f)
		return nil, err
	}
	defer s.mu.Unlock()
	if s.pending != nil {
		return nil, fmt.Errorf("%w: %s (%s), until %s", ErrChangePending, s.pending.change.ID, s.pending.change.What, s.pending.change.RollbackAt.Format(time.RFC3339))
	}
	p := &pending{prev: s.cfg, applied: make(chan struct{}), stop: func() bool { return false },
		change: api.NetworkChange{ID: newChangeID(), What: what, RollbackAt: time.Now().Add(s.o.ApplyDelay + s.o.ConfirmWithin).UTC()}}
	if s.o.ApplyDelay == 0 {
		if _, err := s.commit(ctx, c); err != nil {
			return nil, err
		}
		s.guard(p, c)
		return &p.change, nil
	}
	// Deferred: refuse now what the agent would refuse then.
	if ch, ok := s.o.Agent.(checker); ok {
		if err := ch.CheckConfig(ctx, Build(c)); err != nil {
			if s.o.IsInvalid(err) {
				return nil, fmt.Errorf("%w: %w: %w", netseam.ErrInvalid, ErrRefused, err)
			}
			return nil, fmt.Errorf("check switch configuration: %w", err)
		}
	}
	s.pending = p
	s.log.Warn("management network change accepted: applying it shortly", "change", p.change.ID, "what", what, "in", s.o.ApplyDelay)
	time.AfterFunc(s.o.ApplyDelay, func() { s.applyDeferred(p, f) })
	return &p.change, nil
}

// guard records p, whose configuration c is applied, as pending, with its
// rollback timer. Called with s.mu held.
func (s *Switch) guard(p *pending, c Config) {
	id := p.change.ID
	t := time.AfterFunc(time.Until(p.change.RollbackAt), func() { s.rollback(id, "not confirmed in time") })
	p.stop = t.Stop
	s.pending, s.cfg, s.applied = p, c, true
	select {
	case <-p.applied:
	default:
		close(p.applied)
	}
	s.log.Warn("management network changed: waiting for confirmation", "change", id, "what", p.change.What, "rollback_at", p.change.RollbackAt)
}

// applyDeferred applies a deferred guarded change to the configuration as
// it is by then (vNICs may have come and gone meanwhile); if that fails the
// previous configuration stays.
func (s *Switch) applyDeferred(p *pending, f func(c *Config) error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.mu.Lock()
	if s.pending != p {
		s.mu.Unlock()
		return
	}
	p.prev = s.cfg
	c, err := s.prepare(f, s.cfg)
	if err == nil {
		_, err = s.commit(ctx, c)
	}
	if err != nil {
		s.pending = nil
		close(p.applied)
		s.mu.Unlock()
		s.log.Error("management network change failed: previous configuration kept", "change", p.change.ID, "err", err)
		if s.o.OnRollback != nil {
			s.o.OnRollback(p.change, "applying it failed: "+err.Error())
		}
		return
	}
	s.guard(p, c)
	s.mu.Unlock()
}

// Confirm keeps a guarded change: it is saved and no longer rolled back.
func (s *Switch) Confirm(id string) error {
	s.mu.Lock()
	if p := s.pending; p != nil && p.change.ID == id {
		// A deferred change not applied yet: wait for it.
		s.mu.Unlock()
		select {
		case <-p.applied:
		case <-time.After(time.Minute):
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.pending == nil || s.pending.change.ID != id {
		return fmt.Errorf("change %q: %w (no such change waits for confirmation: it may have been rolled back)", id, netseam.ErrNotFound)
	}
	s.pending.stop()
	if err := Save(s.o.File, s.cfg); err != nil {
		return err
	}
	s.log.Info("management network change confirmed", "change", id)
	s.pending = nil
	return nil
}

// rollback puts the configuration from before a guarded change back.
func (s *Switch) rollback(id, reason string) {
	s.mu.Lock()
	p := s.pending
	if p == nil || p.change.ID != id {
		s.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.apply(ctx, p.prev)
	s.cfg, s.applied, s.pending = p.prev, err == nil, nil
	s.mu.Unlock()
	if err != nil {
		s.log.Error("management network rollback incomplete: retrying in the background", "change", id, "err", err)
	} else {
		s.log.Warn("management network change rolled back", "change", id, "what", p.change.What, "reason", reason)
	}
	if s.o.OnRollback != nil {
		s.o.OnRollback(p.change, reason)
	}
}

func newChangeID() string {
	var b [6]byte
	rand.Read(b[:])
	return "netchg-" + hex.EncodeToString(b[:])
}

// touchesManagement reports whether going from a to b may cut the
// management network, ESXi's rollback triggers: the management vmknic or
// the default route changed (vmknic.TouchesManagement), the management
// vmknic's port group changed, or the uplinks changed while there is a
// management vmknic.
func touchesManagement(a, b Config) bool {
	if vmknic.TouchesManagement(a.VMKNICs, b.VMKNICs) {
		return true
	}
	name := vmknic.ManagementNIC(a.VMKNICs)
	if name == "" {
		return false
	}
	k := a.vmknic(name)
	pa, pb := a.portGroup(k.PortGroup), b.portGroup(k.PortGroup)
	if pa == nil || pb == nil || !reflect.DeepEqual(*pa, *pb) {
		return true
	}
	return !reflect.DeepEqual(a.Uplinks, b.Uplinks) || !reflect.DeepEqual(a.PortChannels, b.PortChannels)
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
			c.Veths = append(c.Veths, api.VethAssignment{Port: s.freeVeth(c.Veths), VM: vm, NIC: nic})
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

// freeVeth is the lowest VethN free on this switch and not taken by the
// distributed switch on this host.
func (s *Switch) freeVeth(vs []api.VethAssignment) string {
	var taken map[string]bool
	if s.o.Taken != nil {
		taken = s.o.Taken()
	}
	return freeVeth(vs, taken)
}

// freeVeth is the lowest VethN neither in vs nor taken.
func freeVeth(vs []api.VethAssignment, taken map[string]bool) string {
	used := maps.Clone(taken)
	if used == nil {
		used = map[string]bool{}
	}
	for _, v := range vs {
		used[v.Port] = true
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

// SetVMKNIC adds or changes a vmknic; its vEth is allocated with it. A
// change that touches the management network is guarded (see
// changeGuarded) and returns the pending change.
func (s *Switch) SetVMKNIC(ctx context.Context, k api.VMKNIC, create bool) (*api.NetworkChange, error) {
	if s.o.VMKNICs == nil {
		return nil, errors.New("vmknics are not available on this host")
	}
	return s.changeGuarded(ctx, "vmknic "+k.Name, func(c *Config) error {
		cur := c.vmknic(k.Name)
		switch {
		case create && cur != nil:
			return fmt.Errorf("vmknic %s: %w", k.Name, netseam.ErrExists)
		case !create && cur == nil:
			return fmt.Errorf("vmknic %s: %w", k.Name, netseam.ErrNotFound)
		case cur != nil:
			if k.MAC == "" {
				k.MAC = cur.MAC // keep the generated one
			}
			*cur = k
		default:
			c.VMKNICs = append(c.VMKNICs, k)
		}
		c.VMKNICs = vmknic.AssignMACs(c.VMKNICs, s.o.Host)
		k = *c.vmknic(k.Name)
		i := slices.IndexFunc(c.Veths, func(v api.VethAssignment) bool { return v.VMKNIC == k.Name })
		if i < 0 {
			c.Veths = append(c.Veths, api.VethAssignment{Port: s.freeVeth(c.Veths), VMKNIC: k.Name})
			i = len(c.Veths) - 1
		}
		c.Veths[i].PortGroup, c.Veths[i].MAC = k.PortGroup, k.MAC
		return nil
	})
}

// RemoveVMKNIC removes a vmknic and frees its vEth (guarded when it is the
// management vmknic or holds the default route).
func (s *Switch) RemoveVMKNIC(ctx context.Context, name string) (*api.NetworkChange, error) {
	return s.changeGuarded(ctx, "remove vmknic "+name, func(c *Config) error {
		if c.vmknic(name) == nil {
			return fmt.Errorf("vmknic %s: %w", name, netseam.ErrNotFound)
		}
		c.VMKNICs = slices.DeleteFunc(c.VMKNICs, func(k api.VMKNIC) bool { return k.Name == name })
		c.Veths = slices.DeleteFunc(c.Veths, func(v api.VethAssignment) bool { return v.VMKNIC == name })
		return nil
	})
}

// VMKNICStatus reports the vmknics as the kernel has them.
func (s *Switch) VMKNICStatus(ctx context.Context) ([]api.VMKNICStatus, error) {
	if s.o.VMKNICs == nil {
		return []api.VMKNICStatus{}, nil
	}
	return s.o.VMKNICs.Status(ctx)
}

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
func (s *Switch) UpdatePortGroup(ctx context.Context, pg api.PortGroup) (*api.NetworkChange, error) {
	return s.changeGuarded(ctx, "port group "+pg.Name, func(c *Config) error {
		p := c.portGroup(pg.Name)
		if p == nil {
			return fmt.Errorf("port group %q: %w", pg.Name, netseam.ErrNoPortGroup)
		}
		*p = pg
		return nil
	})
}

// InUse reports who uses a port group: vNICs ("web01 nic 0") and, through
// the extra ports, vmknics.
func (s *Switch) InUse(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var users []string
	for _, v := range s.cfg.Veths {
		switch {
		case v.PortGroup != name:
		case v.VMKNIC != "":
			users = append(users, v.VMKNIC)
		default:
			users = append(users, fmt.Sprintf("%s nic %d", v.VM, v.NIC))
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
func (s *Switch) RemoveUplink(ctx context.Context, nic string) (*api.NetworkChange, error) {
	return s.changeGuarded(ctx, "remove uplink "+nic, func(c *Config) error {
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
}

// AddPortChannel bundles NICs into PoN; NICs that are not uplinks yet
// become uplinks.
func (s *Switch) AddPortChannel(ctx context.Context, pc api.PortChannel) (*api.NetworkChange, error) {
	return s.changeGuarded(ctx, "port-channel "+pc.Name, func(c *Config) error {
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
}

// RemovePortChannel dissolves PoN; its members stay uplinks on their own.
func (s *Switch) RemovePortChannel(ctx context.Context, name string) (*api.NetworkChange, error) {
	return s.changeGuarded(ctx, "remove port-channel "+name, func(c *Config) error {
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
}

// View is the configuration with the VEM's view of the ports; if the agent
// cannot be asked, Ports is empty and the error says why.
func (s *Switch) View(ctx context.Context) (api.SwitchView, error) {
	s.mu.Lock()
	c := s.cfg.clone()
	var p *api.NetworkChange
	if s.pending != nil {
		ch := s.pending.change
		p = &ch
	}
	s.mu.Unlock()
	v := api.SwitchView{Uplinks: c.Uplinks, PortChannels: c.PortChannels, PortGroups: c.PortGroups, VMKNICs: c.VMKNICs, Veths: c.Veths, Ports: []api.PortStatus{}, Pending: p}
	if v.VMKNICs == nil {
		v.VMKNICs = []api.VMKNIC{}
	}
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
