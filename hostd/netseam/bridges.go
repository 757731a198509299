package netseam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/flashvisor/flashvisor/api"
)

// Options configure Bridges.
type Options struct {
	// ConfigFile holds the port groups (on the state partition).
	ConfigFile string
	// Uplink is the physical NIC that connects the port groups to the
	// network; "" leaves every port group on an isolated bridge.
	Uplink string
	// Kernel applies the changes; nil means netlink in the current network
	// namespace.
	Kernel Kernel
	Log    *slog.Logger
}

type portKey struct {
	vm  string
	nic int
}

// Bridges implements Ports with one Linux bridge per port group.
type Bridges struct {
	cfgFile string
	uplink  string
	kernel  Kernel
	log     *slog.Logger

	mu      sync.Mutex
	pgs     []api.PortGroup
	ports   map[portKey]Port
	adopted bool // the taps found in the kernel have been taken over
}

var _ Ports = (*Bridges)(nil)

// New loads the port groups. It does not touch the kernel: call Reconcile
// once at startup (Attach and friends also reconcile, so a hostd that skips
// it still converges at the first power-on).
func New(o Options) (*Bridges, error) {
	if o.ConfigFile == "" {
		return nil, errors.New("netseam: no port group file")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Kernel == nil {
		k, err := NewNetlinkKernel()
		if err != nil {
			return nil, err
		}
		o.Kernel = k
	}
	pgs, err := loadConfig(o.ConfigFile)
	if err != nil {
		return nil, err
	}
	return &Bridges{
		cfgFile: o.ConfigFile, uplink: o.Uplink, kernel: o.Kernel, log: o.Log,
		pgs: sortedPortGroups(pgs), ports: map[portKey]Port{},
	}, nil
}

// Reconcile brings the kernel to the desired state. The first call adopts
// the taps that VMs still running from a previous hostd use (recorded in the
// taps' aliases), so nothing of theirs is re-created: a restart causes no
// flap. Problems with single port groups or ports are reported joined; the
// rest is applied anyway.
func (b *Bridges) Reconcile(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.adopt(ctx); err != nil {
		return err
	}
	_, err := b.reconcile(ctx)
	return err
}

// Attach implements Ports.
func (b *Bridges) Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (string, error) {
	p := Port{VM: vm, NIC: nic, PortGroup: portGroup, MAC: mac}
	if err := p.check(); err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.adopt(ctx); err != nil {
		return "", err
	}
	if !slices.ContainsFunc(b.pgs, func(pg api.PortGroup) bool { return pg.Name == portGroup }) {
		return "", fmt.Errorf("attach VM %q vNIC %d: port group %q: %w", vm, nic, portGroup, ErrNoPortGroup)
	}
	tap := p.tap()
	for k, other := range b.ports {
		if other.tap() == tap && k != (portKey{vm, nic}) {
			return "", fmt.Errorf("attach VM %q vNIC %d: tap %s is VM %q vNIC %d's: %w", vm, nic, tap, other.VM, other.NIC, ErrNameCollision)
		}
	}
	key := portKey{vm, nic}
	old, had := b.ports[key]
	b.ports[key] = p
	failed, _ := b.reconcile(ctx)
	if err := b.relevant(failed, tap, BridgeName(portGroup)); err != nil {
		if had {
			b.ports[key] = old
		} else {
			delete(b.ports, key)
		}
		return "", fmt.Errorf("attach VM %q vNIC %d to port group %q: %w", vm, nic, portGroup, err)
	}
	return tap, nil
}

// Detach implements Ports. Detaching a vNIC that is not attached is not an
// error (hostd may detach after a crash left nothing behind).
func (b *Bridges) Detach(ctx context.Context, vm string, nic int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.adopt(ctx); err != nil {
		return err
	}
	delete(b.ports, portKey{vm, nic})
	failed, _ := b.reconcile(ctx)
	if err := b.relevant(failed, TapName(vm, nic)); err != nil {
		return fmt.Errorf("detach VM %q vNIC %d: %w", vm, nic, err)
	}
	return nil
}

// Release implements Ports. With bridges there is no port identity to free
// beyond the taps, so it detaches whatever the VM still has.
func (b *Bridges) Release(ctx context.Context, vm string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.adopt(ctx); err != nil {
		return err
	}
	var taps []string
	for k, p := range b.ports {
		if k.vm == vm {
			taps = append(taps, p.tap())
			delete(b.ports, k)
		}
	}
	failed, _ := b.reconcile(ctx)
	if err := b.relevant(failed, taps...); err != nil {
		return fmt.Errorf("release VM %q: %w", vm, err)
	}
	return nil
}

// PortGroups implements Ports.
func (b *Bridges) PortGroups() []api.PortGroup {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.pgs)
}

// AddPortGroup creates a port group, persists it and builds its bridge. If
// the kernel refuses (e.g. no 802.1Q support for its VLAN), the port group
// stays configured and the error says why; later reconciles retry.
func (b *Bridges) AddPortGroup(ctx context.Context, pg api.PortGroup) error {
	if err := CheckPortGroup(pg); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.ContainsFunc(b.pgs, func(o api.PortGroup) bool { return o.Name == pg.Name }) {
		return fmt.Errorf("add port group %q: %w", pg.Name, ErrExists)
	}
	pgs := sortedPortGroups(append(slices.Clone(b.pgs), pg))
	if err := checkPortGroups(pgs, b.uplink); err != nil {
		return fmt.Errorf("add port group: %w", err)
	}
	if err := b.setPortGroups(pgs); err != nil {
		return err
	}
	if err := b.adopt(ctx); err != nil {
		return err
	}
	failed, _ := b.reconcile(ctx)
	if err := b.relevant(failed, BridgeName(pg.Name)); err != nil {
		return fmt.Errorf("add port group %q: saved, but not applied: %w", pg.Name, err)
	}
	return nil
}

// RemovePortGroup deletes a port group and its bridge; refused with ErrInUse
// while vNICs are attached to it.
func (b *Bridges) RemovePortGroup(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.IndexFunc(b.pgs, func(o api.PortGroup) bool { return o.Name == name })
	if i < 0 {
		return fmt.Errorf("remove port group %q: %w", name, ErrNoPortGroup)
	}
	if err := b.adopt(ctx); err != nil {
		return err
	}
	var users []string
	for _, p := range sortedPorts(mapValues(b.ports)) {
		if p.PortGroup == name {
			users = append(users, fmt.Sprintf("%s vNIC %d", p.VM, p.NIC))
		}
	}
	if len(users) > 0 {
		return fmt.Errorf("remove port group %q: %w by %s", name, ErrInUse, strings.Join(users, ", "))
	}
	if err := b.setPortGroups(slices.Delete(slices.Clone(b.pgs), i, i+1)); err != nil {
		return err
	}
	failed, _ := b.reconcile(ctx)
	if err := b.relevant(failed, BridgeName(name)); err != nil {
		return fmt.Errorf("remove port group %q: saved, but not applied: %w", name, err)
	}
	return nil
}

func (b *Bridges) setPortGroups(pgs []api.PortGroup) error {
	if err := saveConfig(b.cfgFile, pgs); err != nil {
		return err
	}
	b.pgs = pgs
	return nil
}

// adopt takes over, once, the taps that a previous hostd attached and that
// are still there (their VMs kept running). Until then reconcile would see
// them as strays and delete them.
func (b *Bridges) adopt(ctx context.Context) error {
	if b.adopted {
		return nil
	}
	obs, err := b.kernel.Observe(ctx, b.uplink)
	if err != nil {
		return fmt.Errorf("adopt existing taps: %w", err)
	}
	for _, l := range obs.Links {
		if l.Kind != KindTap {
			continue
		}
		p, ok := parseAlias(l.Alias)
		if !ok || p.tap() != l.Name {
			continue // not one of hostd's: reconcile deletes it
		}
		if _, ok := b.ports[portKey{p.VM, p.NIC}]; !ok {
			b.ports[portKey{p.VM, p.NIC}] = p
			b.log.Info("adopted tap", "tap", l.Name, "vm", p.VM, "nic", p.NIC, "port_group", p.PortGroup)
		}
	}
	b.adopted = true
	return nil
}

// reconcile computes the desired state, plans and applies it. It returns the
// errors by link name (for the caller to pick the ones about its own links)
// and all of them joined.
func (b *Bridges) reconcile(ctx context.Context) (map[string][]error, error) {
	failed := map[string][]error{}
	desired, derr := Desired(b.pgs, b.uplink, mapValues(b.ports))
	if derr != nil {
		b.log.Warn("network configuration problems", "err", derr)
	}
	observed, err := b.kernel.Observe(ctx, b.uplink)
	if err != nil {
		err = fmt.Errorf("observe network: %w", err)
		failed[""] = append(failed[""], err)
		return failed, errors.Join(derr, err)
	}
	errs := []error{derr}
	notCreated := map[string]bool{}
	for _, a := range Plan(desired, observed) {
		if err := ctx.Err(); err != nil {
			failed[""] = append(failed[""], err)
			errs = append(errs, err)
			break
		}
		if notCreated[a.Link.Name] {
			continue // its creation failed: the rest would only add noise
		}
		b.log.Info("network change", "action", a.String())
		if err := b.kernel.Apply(ctx, a); err != nil {
			b.log.Error("network change failed", "action", a.String(), "err", err)
			failed[a.Link.Name] = append(failed[a.Link.Name], err)
			if a.Op == OpCreate {
				notCreated[a.Link.Name] = true
			}
			// A port's failure is also its bridge's problem (e.g. the VLAN
			// sub-interface that should connect the bridge to the uplink).
			if a.Link.Kind != KindTap && a.Link.Master != "" {
				failed[a.Link.Master] = append(failed[a.Link.Master], err)
			}
			errs = append(errs, err)
		}
	}
	return failed, errors.Join(errs...)
}

// relevant joins the errors about the given links (and general ones).
func (b *Bridges) relevant(failed map[string][]error, names ...string) error {
	errs := slices.Clone(failed[""])
	for _, n := range names {
		errs = append(errs, failed[n]...)
	}
	return errors.Join(errs...)
}

func mapValues(m map[portKey]Port) []Port {
	ps := make([]Port, 0, len(m))
	for _, p := range m {
		ps = append(ps, p)
	}
	return ps
}
