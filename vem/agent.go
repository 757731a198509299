package vem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Kernel is the thin layer between plans and the kernel: it reports what
// the VEM programs (the bridge, its ports, bonds and their members, static
// entries) and applies one change at a time. NetlinkKernel is the real one;
// vemtest.Kernel the in-memory one.
type Kernel interface {
	Observe(ctx context.Context) (KernelState, error)
	Apply(ctx context.Context, c Change) error
}

// Options configure an Agent.
type Options struct {
	Kernel Kernel
	// Store keeps the last applied programming (VEM-8); nil: none.
	Store *Store
	Log   *slog.Logger
}

// Agent reconciles a switch config into the kernel. Its config comes
// through SetConfig, whoever the source: the standalone switch's local
// configuration (VEM-7) now, the VSM's snapshots later. Forwarding never
// depends on the agent: it only programs the kernel.
type Agent struct {
	k     Kernel
	store *Store
	log   *slog.Logger

	mu  sync.Mutex
	cfg *Config
	rt  Runtime
	// What Card reports.
	restored      bool
	lastReconcile time.Time
	lastErr       error
	changes       uint64
	now           func() time.Time
}

// New returns an agent with no config: until Restore or SetConfig, it
// programs nothing.
func New(o Options) (*Agent, error) {
	if o.Kernel == nil {
		return nil, errors.New("vem: no kernel")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Agent{k: o.Kernel, store: o.Store, log: o.Log, rt: Runtime{ErrDisabled: map[string]bool{}}, now: time.Now}, nil
}

// Restore loads the stored programming and applies it (at boot, before
// anything else talks to the switch). ErrNoState on first boot; a corrupt
// file is reported (ErrCorruptState) and left untouched, and nothing is
// programmed.
func (a *Agent) Restore(ctx context.Context) error {
	if a.store == nil {
		return ErrNoState
	}
	c, err := a.store.Load()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg, a.restored = c, true
	return a.reconcile(ctx)
}

// SetConfig validates sc, applies it and, once applied, stores it.
func (a *Agent) SetConfig(ctx context.Context, sc api.SwitchConfig) error {
	c, err := Validate(sc)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.cfg
	a.cfg = c
	for name := range a.rt.ErrDisabled {
		// A changed port (or profile) is a fresh start, like "shutdown;
		// no shutdown" on an err-disabled port.
		if prev == nil || !samePort(prev, c, name) {
			delete(a.rt.ErrDisabled, name)
		}
	}
	return a.reconcile(ctx)
}

func samePort(a, b *Config, name string) bool {
	pa, pb := a.port(name), b.port(name)
	if pa == nil || pb == nil || pa.profile == nil || pb.profile == nil {
		return false
	}
	return pa.Shutdown == pb.Shutdown && pa.profile.Shutdown == pb.profile.Shutdown
}

// Reconcile brings the kernel to the current config again (periodically,
// or after someone touched the switch).
func (a *Agent) Reconcile(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reconcile(ctx)
}

func (a *Agent) reconcile(ctx context.Context) error {
	if a.cfg == nil {
		return nil
	}
	err := a.reconcileOnce(ctx)
	a.lastReconcile, a.lastErr = a.now(), err
	return err
}

func (a *Agent) reconcileOnce(ctx context.Context) error {
	obs, err := a.k.Observe(ctx)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	a.checkViolations(obs)
	plan := Plan(Desired(a.cfg, a.rt), obs)
	var errs []error
	for _, c := range plan {
		if err := a.k.Apply(ctx, c); err != nil {
			a.log.Warn("apply", "change", c.String(), "err", err)
			errs = append(errs, err)
			continue
		}
		a.changes++
		a.log.Debug("applied", "change", c.String())
	}
	if len(plan) > 0 {
		a.log.Info("reconciled", "changes", len(plan), "errors", len(errs))
	}
	if len(errs) > 0 {
		return fmt.Errorf("reconcile: %w", errors.Join(errs...))
	}
	if a.store != nil {
		if err := a.store.Save(a.cfg); err != nil {
			return err
		}
	}
	return nil
}

// checkViolations err-disables vEths whose profile says "violation
// shutdown" and whose port-security filter has dropped frames. The drop
// itself happens in the kernel, agent or not.
func (a *Agent) checkViolations(obs KernelState) {
	for _, p := range a.cfg.ports {
		ps := p.profile.PortSecurity
		if p.Kind != api.PortVeth || ps == nil || ps.Violation == api.ViolationProtect || a.rt.ErrDisabled[p.Name] {
			continue
		}
		if l, ok := obs.Find(p.linkName()); ok && l.Stats.SecurityViolations > 0 {
			a.log.Warn("port-security violation: port err-disabled", "port", p.Name)
			a.rt.ErrDisabled[p.Name] = true
		}
	}
}

// Run reconciles every interval until ctx ends.
func (a *Agent) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := a.Reconcile(ctx); err != nil {
				a.log.Warn("reconcile", "err", err)
			}
		}
	}
}

// Status reports every configured port as observed.
func (a *Agent) Status(ctx context.Context) ([]api.PortStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg == nil {
		return nil, nil
	}
	obs, err := a.k.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	return PortStatuses(a.cfg, a.rt, obs), nil
}

// PortStatuses derives the ports' status from an observed state (pure).
func PortStatuses(c *Config, rt Runtime, obs KernelState) []api.PortStatus {
	var out []api.PortStatus
	for _, p := range c.ports {
		s := api.PortStatus{Name: p.Name, Kind: p.Kind, Profile: p.Profile, Interface: p.linkName(), Owner: p.Owner}
		if pr := p.profile; pr != nil {
			s.Mode = pr.Mode
			if pr.Mode == api.ModeAccess {
				s.VLANs = fmt.Sprint(pr.access)
			} else {
				s.VLANs = pr.allowed.String()
			}
		}
		l, ok := obs.Find(p.linkName())
		switch {
		case !ok:
			s.State, s.Reason = api.PortAbsent, "no interface "+p.linkName()
		case rt.ErrDisabled[p.Name]:
			s.State, s.Reason = api.PortErrDisabled, "port-security violation"
		case !l.Up:
			s.State, s.Reason = api.PortShutdown, "administratively down"
		case !l.Stats.Carrier:
			s.State, s.Reason = api.PortDown, "no carrier"
		default:
			s.State = api.PortUp
		}
		st := l.Stats
		s.Counters = api.PortCounters{
			RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes,
			RxDropped: st.RxDropped, TxDropped: st.TxDropped,
			BPDUDrops: st.BPDUDrops, SecurityViolations: st.SecurityViolations, IngressPoliced: st.IngressPoliced,
		}
		out = append(out, s)
	}
	return out
}

// Config returns the switch config being applied, and false before the
// first Restore or SetConfig.
func (a *Agent) Config() (api.SwitchConfig, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg == nil {
		return api.SwitchConfig{}, false
	}
	return a.cfg.SwitchConfig(), true
}

// Card reports who the VEM is and how its programming is doing (VEM-10).
// The caller fills in what the agent does not know (host identity,
// version).
func (a *Agent) Card() api.VEMCard {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := api.VEMCard{Mode: api.SwitchStandalone, Ports: map[string]int{}, Bridge: BridgeName,
		Restored: a.restored, Changes: a.changes}
	if a.cfg != nil {
		c.Programmed = true
		c.DomainID, c.Module = a.cfg.raw.DomainID, a.cfg.raw.Module
		if c.DomainID != 0 {
			// A VSM-programmed card whose channel is not up yet keeps
			// forwarding on its last programming: headless (VEM-8).
			c.Mode, c.Headless = api.SwitchVSM, true
		}
		for _, p := range a.cfg.ports {
			c.Ports[p.Kind]++
		}
	}
	if !a.lastReconcile.IsZero() {
		c.LastReconcile = a.lastReconcile.UTC().Format(time.RFC3339)
	}
	if a.lastErr != nil {
		c.LastError = a.lastErr.Error()
	}
	return c
}

// MACLister is implemented by kernels that can list the whole MAC table,
// learned entries included (NetlinkKernel).
type MACLister interface {
	MACs(ctx context.Context) ([]MAC, error)
}

// MAC is one entry of the kernel's MAC table, by interface.
type MAC struct {
	Link   string
	MAC    string
	VLAN   int
	Static bool
	Age    time.Duration // since last seen (dynamic entries)
}

// MACTable is the switch's MAC table by port (VEM-3, VEM-10): static
// entries for local vEth MACs, dynamic ones learned on uplinks. Entries on
// interfaces that are no port of the config are left out.
func (a *Agent) MACTable(ctx context.Context) ([]api.MACEntry, error) {
	ml, ok := a.k.(MACLister)
	if !ok {
		return nil, errors.New("vem: this kernel cannot list MAC entries")
	}
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	if cfg == nil {
		return []api.MACEntry{}, nil
	}
	byLink := map[string]string{}
	for _, p := range cfg.ports {
		byLink[p.linkName()] = p.Name
		if p.po != "" {
			// Learned on a member: shown on its port-channel.
			byLink[p.linkName()] = p.po
		}
	}
	macs, err := ml.MACs(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.MACEntry{}
	for _, m := range macs {
		port, ok := byLink[m.Link]
		if !ok {
			continue
		}
		e := api.MACEntry{VLAN: m.VLAN, MAC: m.MAC, Type: "dynamic", Port: port, AgeSeconds: int(m.Age / time.Second)}
		if m.Static {
			e.Type, e.AgeSeconds = "static", 0
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y api.MACEntry) int {
		return cmp.Or(cmp.Compare(x.VLAN, y.VLAN), strings.Compare(x.MAC, y.MAC), strings.Compare(x.Port, y.Port))
	})
	return out, nil
}
