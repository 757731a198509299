package vmknic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// ErrClosed is returned by a Manager after Close.
var ErrClosed = errors.New("vmknic manager closed")

// reconcileTimeout bounds the reconciles the manager starts by itself
// (after a DHCP lease changes, on rollback).
const reconcileTimeout = 30 * time.Second

// Options configure a Manager.
type Options struct {
	// Kernel applies the plans (NetlinkKernel). Required.
	Kernel Kernel
	// DHCP opens the dhcp-mode vmknics' clients; nil: NClient4{}.
	DHCP DHCP
	// Clock drives DHCP renewals and the rollback guard; nil: real time.
	Clock Clock
	// Host seeds generated MACs (Host.UUID is required).
	Host Host
	Log  *slog.Logger
	// OnRollback, if set, is called after every automatic rollback of a
	// guarded change (outside the manager's lock), as ESXi logs a
	// NetworkRollbackEvent.
	OnRollback func(RollbackEvent)
}

// Manager keeps the host's vmknics as configured: it reconciles the
// kernel, runs a DHCP client per dhcp-mode vmknic and guards management
// changes (ApplyGuarded). Until the first Apply it touches nothing, so a
// restarted hostd re-applies its stored configuration and finds the
// interfaces as it left them. Methods are safe for concurrent use.
type Manager struct {
	k          Kernel
	dhcp       DHCP
	clk        Clock
	host       Host
	log        *slog.Logger
	onRollback func(RollbackEvent)

	ctx      context.Context // ends with Close: DHCP clients, the kick loop
	cancel   context.CancelFunc
	kickc    chan struct{}
	loopDone chan struct{}

	mu         sync.Mutex
	closed     bool
	applied    bool
	specs      []api.VMKNIC           // current configuration, MACs assigned
	last       map[string]api.VMKNIC  // as of the last reconcile
	runners    map[string]*dhcpRunner // dhcp-mode vmknics
	pending    *guard                 // a guarded change waiting for Confirm
	rolledBack []string               // recent rolled-back change IDs
}

// New returns a manager that has applied nothing yet.
func New(o Options) (*Manager, error) {
	if o.Kernel == nil {
		return nil, errors.New("vmknic: no kernel")
	}
	if o.Host.UUID == "" {
		return nil, errors.New("vmknic: no host UUID (needed to generate MACs)")
	}
	if o.DHCP == nil {
		o.DHCP = NClient4{}
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		k: o.Kernel, dhcp: o.DHCP, clk: o.Clock, host: o.Host, log: o.Log, onRollback: o.OnRollback,
		kickc: make(chan struct{}, 1), loopDone: make(chan struct{}),
		runners: map[string]*dhcpRunner{}, last: map[string]api.VMKNIC{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.loop()
	return m, nil
}

// Apply validates the host's complete vmknic configuration and applies
// it: vmknics not in it are removed (their DHCP leases released), new
// ones created, changed ones changed, DHCP clients started and stopped.
// An unchanged configuration changes nothing. Refused (ErrChangePending)
// while a guarded change waits for confirmation.
func (m *Manager) Apply(ctx context.Context, specs []api.VMKNIC) error {
	if err := Validate(specs); err != nil {
		return err
	}
	specs = AssignMACs(specs, m.host)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usable(); err != nil {
		return err
	}
	m.specs, m.applied = specs, true
	return m.reconcile(ctx)
}

func (m *Manager) usable() error {
	if m.closed {
		return ErrClosed
	}
	if g := m.pending; g != nil {
		return fmt.Errorf("%w: change %s, until %s", ErrChangePending, g.id, g.deadline.Format(time.RFC3339))
	}
	return nil
}

// Reconcile brings the kernel back to the current configuration (after
// someone touched the interfaces); hostd may call it periodically.
func (m *Manager) Reconcile(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.applied {
		return nil
	}
	return m.reconcile(ctx)
}

// reconcile: DHCP clients that must go are stopped first (a release needs
// the interface), then the plan is applied, then new clients start (they
// need the interface). Called with m.mu held.
func (m *Manager) reconcile(ctx context.Context) error {
	obs, err := m.k.Observe(ctx)
	if err != nil {
		return fmt.Errorf("observe vmknics: %w", err)
	}
	taken := map[string]bool{}
	for _, f := range obs.Foreign {
		taken[f] = true
	}
	dhcpSpecs := map[string]api.VMKNIC{}
	for _, s := range m.specs {
		if s.IPv4.Mode == api.VMKIPv4DHCP && !taken[s.Name] && !taken[SwitchportName(s.Name)] {
			dhcpSpecs[s.Name] = s
		}
	}
	for name, r := range m.runners {
		if s, ok := dhcpSpecs[name]; !ok || s.MAC != r.mac.String() {
			r.stop(true)
			delete(m.runners, name)
		}
	}
	var fresh []*dhcpRunner
	startRunner := func(s api.VMKNIC, keep bool, hint netip.Addr) {
		mac, _ := net.ParseMAC(s.MAC)
		r := newDHCPRunner(s.Name, mac, hint, keep, m)
		m.runners[s.Name] = r
		fresh = append(fresh, r)
	}
	for _, s := range m.specs {
		if _, ok := dhcpSpecs[s.Name]; !ok || m.runners[s.Name] != nil {
			continue
		}
		// Keep what the vmknic has until the first answer if the
		// previous client was DHCP with this MAC, or unknown (a restart).
		prev, known := m.last[s.Name]
		keep := !known || prev.IPv4.Mode == api.VMKIPv4DHCP && prev.MAC == s.MAC
		var hint netip.Addr
		if keep {
			hint = firstAddr(obs, s.Name)
		}
		startRunner(s, keep, hint)
	}

	rt := Runtime{Leases: map[string]Lease{}}
	for name, r := range m.runners {
		if l, ok := r.state(); ok {
			rt.Leases[name] = l
		}
	}
	plan, err := Plan(Desired(m.specs, rt), obs)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	created := map[string]bool{}
	for _, c := range plan {
		if err := m.k.Apply(ctx, c); err != nil {
			m.log.Warn("vmknic change failed", "change", c.String(), "err", err)
			errs = append(errs, err)
			continue
		}
		m.log.Debug("vmknic change", "change", c.String())
		if c.Op == OpCreate {
			created[c.NIC.Name] = true
		}
	}
	for _, s := range m.specs {
		// A re-created pair is a new link: a client's socket on the old
		// one hears nothing.
		if r := m.runners[s.Name]; r != nil && created[s.Name] && !slices.Contains(fresh, r) {
			r.stop(false)
			startRunner(s, true, r.lastHint())
		}
	}
	for _, r := range fresh {
		r.start(m.ctx)
	}
	m.last = map[string]api.VMKNIC{}
	for _, s := range m.specs {
		m.last[s.Name] = s
	}
	if len(plan) > 0 {
		m.log.Info("vmknics reconciled", "changes", len(plan), "errors", len(errs))
	}
	if len(errs) > 0 {
		return fmt.Errorf("reconcile vmknics: %w", errors.Join(errs...))
	}
	return nil
}

func firstAddr(st KernelState, name string) (a netip.Addr) {
	if n, ok := st.Find(name); ok && len(n.Addrs) > 0 {
		return n.Addrs[0].Prefix.Addr()
	}
	return a
}

// kick asks the loop for a reconcile (a lease changed); it never blocks.
func (m *Manager) kick() {
	select {
	case m.kickc <- struct{}{}:
	default:
	}
}

func (m *Manager) loop() {
	defer close(m.loopDone)
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kickc:
		}
		m.mu.Lock()
		if !m.closed && m.applied {
			ctx, cancel := context.WithTimeout(m.ctx, reconcileTimeout)
			if err := m.reconcile(ctx); err != nil {
				m.log.Warn("vmknic reconcile after a lease change", "err", err)
			}
			cancel()
		}
		m.mu.Unlock()
	}
}

// Status reports every configured vmknic as observed, and any vmknic
// found in the kernel but not configured (Mode "").
func (m *Manager) Status(ctx context.Context) ([]api.VMKNICStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	obs, err := m.k.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe vmknics: %w", err)
	}
	var out []api.VMKNICStatus
	seen := map[string]bool{}
	for _, s := range m.specs {
		seen[s.Name] = true
		st := api.VMKNICStatus{
			Name: s.Name, PortGroup: s.PortGroup, MAC: s.MAC, Switchport: SwitchportName(s.Name),
			Mode: s.IPv4.Mode, Services: slices.Clone(s.Services),
		}
		if n, ok := obs.Find(s.Name); ok {
			fillObserved(&st, n)
		}
		if r := m.runners[s.Name]; r != nil {
			if l, ok := r.state(); ok && l.Address.IsValid() {
				if l.Duration < InfiniteLease {
					st.LeaseExpires = l.Expires().UTC()
				}
				for _, d := range l.DNS {
					st.DNS = append(st.DNS, d.String())
				}
			}
		}
		out = append(out, st)
	}
	for _, n := range obs.NICs {
		if !seen[n.Name] {
			st := api.VMKNICStatus{Name: n.Name, PortGroup: n.PortGroup, Switchport: n.Switchport}
			fillObserved(&st, n)
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b api.VMKNICStatus) int { return vmkCompare(a.Name, b.Name) })
	return out, nil
}

func fillObserved(st *api.VMKNICStatus, n NIC) {
	st.MAC, st.MTU, st.Up = n.MAC, n.MTU, n.Up && n.Carrier
	if len(n.Addrs) > 0 {
		st.Address = n.Addrs[0].Prefix.String()
	}
	if n.Gateway.IsValid() {
		st.Gateway = n.Gateway.String()
	}
}

// Close stops the DHCP clients without releasing their leases (the kernel
// drops the addresses when the leases expire; a restarted manager renews
// them) and leaves the interfaces as they are. A guarded change still
// waiting for confirmation is rolled back first: it was never confirmed.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	var ev *RollbackEvent
	if g := m.pending; g != nil {
		m.pending = nil
		g.stop()
		ctx, cancel := context.WithTimeout(m.ctx, reconcileTimeout)
		e := m.restore(ctx, g, "manager closed before the change was confirmed")
		cancel()
		ev = &e
	}
	for name, r := range m.runners {
		r.stop(false)
		delete(m.runners, name)
	}
	m.closed = true
	m.cancel()
	m.mu.Unlock()
	<-m.loopDone
	if ev != nil && m.onRollback != nil {
		m.onRollback(*ev)
	}
}
