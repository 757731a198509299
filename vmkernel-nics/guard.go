package vmknic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Errors of the rollback guard.
var (
	// ErrChangePending: a guarded change waits for confirmation; no other
	// change is accepted until it is confirmed or rolled back.
	ErrChangePending = errors.New("a guarded vmknic change is waiting for confirmation")
	// ErrUnknownChange: Confirm of an ID that is not pending.
	ErrUnknownChange = errors.New("no such pending vmknic change")
	// ErrRolledBack: Confirm came after the change was rolled back.
	ErrRolledBack = errors.New("vmknic change already rolled back")
	// ErrNoBaseline: ApplyGuarded before any Apply; there is nothing to
	// roll back to.
	ErrNoBaseline = errors.New("no vmknic configuration applied yet to roll back to")
)

// keepRolledBack is how many rolled-back change IDs Confirm recognises.
const keepRolledBack = 16

// RollbackEvent records an automatic rollback (ESXi's
// NetworkRollbackEvent).
type RollbackEvent struct {
	ChangeID string
	// Reason: "not confirmed within 2m0s", "apply failed: ...", "manager
	// closed before the change was confirmed".
	Reason string
	Time   time.Time
	// Err is the error re-applying the previous configuration (nil: it
	// is back).
	Err error
}

// PendingChange describes a guarded change waiting for Confirm.
type PendingChange struct {
	ID       string
	Deadline time.Time
}

type guard struct {
	id       string
	prev     []api.VMKNIC
	within   time.Duration
	deadline time.Time
	stop     func() bool
}

// ApplyGuarded applies specs like Apply but keeps the previous
// configuration: unless Confirm(changeID) comes within confirmWithin, the
// previous configuration is re-applied by itself and a RollbackEvent is
// recorded (VMK-3). The caller confirms from the far side of the change,
// e.g. hostd when the operator's client reaches the API again over the
// new management network, so a change that cuts the host off undoes
// itself. If applying fails, the previous configuration is restored at
// once and the error returned. While a change is pending, every other
// change (guarded or not) is refused with ErrChangePending.
func (m *Manager) ApplyGuarded(ctx context.Context, specs []api.VMKNIC, confirmWithin time.Duration) (changeID string, err error) {
	if confirmWithin <= 0 {
		return "", fmt.Errorf("%w: confirmation window %s", ErrInvalid, confirmWithin)
	}
	if err := Validate(specs); err != nil {
		return "", err
	}
	specs = AssignMACs(specs, m.host)
	m.mu.Lock()
	if err := m.usable(); err != nil {
		m.mu.Unlock()
		return "", err
	}
	if !m.applied {
		m.mu.Unlock()
		return "", ErrNoBaseline
	}
	g := &guard{id: newChangeID(), prev: m.specs, within: confirmWithin}
	m.specs = specs
	if err := m.reconcile(ctx); err != nil {
		ev := m.restore(ctx, g, "apply failed: "+err.Error())
		m.mu.Unlock()
		m.notify(ev)
		if ev.Err != nil {
			return "", fmt.Errorf("guarded change %s: %w (restoring the previous configuration failed too: %w)", g.id, err, ev.Err)
		}
		return "", fmt.Errorf("guarded change %s: %w (previous configuration restored)", g.id, err)
	}
	g.deadline = m.clk.Now().Add(confirmWithin)
	g.stop = m.clk.AfterFunc(confirmWithin, func() { m.expire(g.id) })
	m.pending = g
	m.mu.Unlock()
	m.log.Info("guarded vmknic change applied; waiting for confirmation", "change", g.id, "deadline", g.deadline)
	return g.id, nil
}

// Confirm keeps a guarded change: it will not be rolled back.
func (m *Manager) Confirm(changeID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.pending
	if g == nil || g.id != changeID {
		if slices.Contains(m.rolledBack, changeID) {
			return fmt.Errorf("%w: %s", ErrRolledBack, changeID)
		}
		return fmt.Errorf("%w: %q", ErrUnknownChange, changeID)
	}
	g.stop()
	m.pending = nil
	m.log.Info("guarded vmknic change confirmed", "change", changeID)
	return nil
}

// Pending reports the guarded change waiting for confirmation, if any.
func (m *Manager) Pending() (PendingChange, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return PendingChange{}, false
	}
	return PendingChange{ID: m.pending.id, Deadline: m.pending.deadline}, true
}

// expire rolls back change id if it is still pending.
func (m *Manager) expire(id string) {
	m.mu.Lock()
	g := m.pending
	if m.closed || g == nil || g.id != id {
		m.mu.Unlock()
		return
	}
	m.pending = nil
	ctx, cancel := context.WithTimeout(m.ctx, reconcileTimeout)
	ev := m.restore(ctx, g, fmt.Sprintf("not confirmed within %s", g.within))
	cancel()
	m.mu.Unlock()
	m.notify(ev)
}

// restore re-applies g's previous configuration. Called with m.mu held.
func (m *Manager) restore(ctx context.Context, g *guard, reason string) RollbackEvent {
	m.specs = g.prev
	err := m.reconcile(ctx)
	m.rolledBack = append(m.rolledBack, g.id)
	if len(m.rolledBack) > keepRolledBack {
		m.rolledBack = m.rolledBack[1:]
	}
	ev := RollbackEvent{ChangeID: g.id, Reason: reason, Time: m.clk.Now(), Err: err}
	m.log.Warn("vmknic change rolled back", "change", g.id, "reason", reason, "err", err)
	return ev
}

func (m *Manager) notify(ev RollbackEvent) {
	if m.onRollback != nil {
		m.onRollback(ev)
	}
}

func newChangeID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "vmkchg-" + hex.EncodeToString(b)
}

// ManagementNIC names the management vmknic of a configuration: the one
// tagged "management", else vswif0 if configured, else "".
func ManagementNIC(specs []api.VMKNIC) string {
	vswif := ""
	for _, s := range specs {
		if slices.Contains(s.Services, api.VMKServiceManagement) {
			return s.Name
		}
		if s.Name == VswifName {
			vswif = s.Name
		}
	}
	return vswif
}

// TouchesManagement reports whether going from prev to next changes the
// management network, the changes VMK-3 wants guarded (ESXi's rollback
// triggers): another management vmknic, any change to it (port group,
// MAC, MTU, IPv4, services), or a change of the default route (its vmknic
// or that vmknic's IPv4). Port group VLANs are the switch's: guard those
// where the switch is configured.
func TouchesManagement(prev, next []api.VMKNIC) bool {
	pm, nm := ManagementNIC(prev), ManagementNIC(next)
	if pm != nm {
		return true
	}
	if pm != "" && !sameSpec(find(prev, pm), find(next, nm)) {
		return true
	}
	po, no := DefaultRouteOwner(prev), DefaultRouteOwner(next)
	if po != no {
		return true
	}
	return po != "" && find(prev, po).IPv4 != find(next, no).IPv4
}

func find(specs []api.VMKNIC, name string) api.VMKNIC {
	for _, s := range specs {
		if s.Name == name {
			return s
		}
	}
	return api.VMKNIC{}
}

// sameSpec compares two vmknic configurations as applied (MAC case, MTU
// 0 = 1500, service order do not matter).
func sameSpec(a, b api.VMKNIC) bool {
	norm := func(s api.VMKNIC) api.VMKNIC {
		if hw, err := net.ParseMAC(s.MAC); err == nil {
			s.MAC = hw.String()
		}
		if s.MTU == 0 {
			s.MTU = DefaultMTU
		}
		s.Services = slices.Sorted(slices.Values(s.Services))
		return s
	}
	a, b = norm(a), norm(b)
	return a.Name == b.Name && a.PortGroup == b.PortGroup && a.MAC == b.MAC && a.MTU == b.MTU &&
		a.IPv4 == b.IPv4 && slices.Equal(a.Services, b.Services)
}
