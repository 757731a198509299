package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Snapshots are qcow2 internal snapshots of every disk (and, for a running
// VM, its memory through QEMU's savevm). Their list lives in the VM's
// directory (<vm>.fvsd, like ESXi's .vmsd) so it moves with the VM.

var snapNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

type snapshotDB struct {
	Snapshots []api.Snapshot `json:"snapshots"`
	Current   string         `json:"current,omitempty"`
	// Memory is the memory layout of each snapshot taken with memory:
	// loading one into a QEMU with other memory (more boot memory, other
	// DIMMs) would leave the guest broken, so such a revert is refused.
	Memory map[string]memoryLayout `json:"memory,omitempty"`
}

func snapFile(mc *machine) string { return filepath.Join(mc.dir, mc.spec.Name+".fvsd") }

func loadSnapshots(mc *machine) (snapshotDB, error) {
	var db snapshotDB
	b, err := os.ReadFile(snapFile(mc))
	if errors.Is(err, os.ErrNotExist) {
		return db, nil
	}
	if err != nil {
		return db, err
	}
	if err := json.Unmarshal(b, &db); err != nil {
		return db, fmt.Errorf("snapshot list %s is corrupt (left untouched): %w", snapFile(mc), err)
	}
	return db, nil
}

func saveSnapshots(mc *machine, db snapshotDB) error {
	b, err := json.MarshalIndent(db, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(snapFile(mc), append(b, '\n'), 0o644)
}

// Snapshots lists a VM's snapshots.
func (m *Manager) Snapshots(name string) ([]api.Snapshot, error) {
	mc, err := m.get(name)
	if err != nil {
		return nil, err
	}
	db, err := loadSnapshots(mc)
	return db.Snapshots, err
}

// qcow2Disks returns the host paths of the VM's disks, refusing when one
// cannot hold internal snapshots.
func (m *Manager) qcow2Disks(mc *machine) ([]string, error) {
	var out []string
	for _, d := range mc.spec.Disks {
		format := d.Format
		if format == "" {
			format = api.DiskQcow2
			if d.Provisioning == api.ProvisionThick {
				format = api.DiskRaw
			}
		}
		if format != api.DiskQcow2 {
			return nil, fmt.Errorf("%w: disk %s is %s; snapshots need qcow2 (thin) disks", ErrState, d.File, format)
		}
		p, err := m.resolve(mc.dir, d.File)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// hmp runs a human monitor command whose output, if any, is an error.
func hmp(ctx context.Context, mc *machine, m *Manager, cmd string) error {
	mon, _, err := m.running(mc)
	if err != nil {
		return err
	}
	out, err := mon.HumanMonitorCommand(ctx, cmd)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("%s: %s", cmd, s)
	}
	return nil
}

// CreateSnapshot takes a snapshot: with memory when the VM runs.
func (m *Manager) CreateSnapshot(ctx context.Context, name, snap, description string) (api.Snapshot, error) {
	if !snapNameRE.MatchString(snap) {
		return api.Snapshot{}, fmt.Errorf("%w: snapshot name %q (letters, digits, . _ -; up to 64)", ErrInvalid, snap)
	}
	mc, err := m.get(name)
	if err != nil {
		return api.Snapshot{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	db, err := loadSnapshots(mc)
	if err != nil {
		return api.Snapshot{}, err
	}
	for _, s := range db.Snapshots {
		if s.Name == snap {
			return api.Snapshot{}, fmt.Errorf("%w: snapshot %q exists", ErrConflict, snap)
		}
	}
	disks, err := m.qcow2Disks(mc)
	if err != nil {
		return api.Snapshot{}, err
	}
	s := api.Snapshot{Name: snap, Description: description, Created: time.Now().UTC(), Parent: db.Current}
	m.mu.Lock()
	state := mc.state
	m.mu.Unlock()
	switch state {
	case api.VMPoweredOn, api.VMPaused:
		if err := hmp(ctx, mc, m, "savevm "+snap); err != nil {
			return api.Snapshot{}, err
		}
		s.Memory = true
		if db.Memory == nil {
			db.Memory = map[string]memoryLayout{}
		}
		m.mu.Lock()
		db.Memory[snap] = mc.mem
		m.mu.Unlock()
	case api.VMPoweredOff:
		for _, d := range disks {
			if err := m.cfg.Disks.Snapshot(ctx, "create", d, snap); err != nil {
				return api.Snapshot{}, err
			}
		}
	default:
		return api.Snapshot{}, fmt.Errorf("%w: %s is %s", ErrState, name, state)
	}
	db.Snapshots = append(db.Snapshots, s)
	db.Current = snap
	if err := saveSnapshots(mc, db); err != nil {
		return api.Snapshot{}, err
	}
	m.cfg.Publish("vm.snapshot_created", name, snap)
	return s, nil
}

// RevertSnapshot goes back to a snapshot. A running VM reverted to a
// snapshot without memory is powered off first, as ESXi does.
func (m *Manager) RevertSnapshot(ctx context.Context, name, snap string) error {
	mc, err := m.get(name)
	if err != nil {
		return err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	db, s, err := m.findSnapshot(mc, snap)
	if err != nil {
		return err
	}
	m.mu.Lock()
	state := mc.state
	m.mu.Unlock()
	if (state == api.VMPoweredOn || state == api.VMPaused) && s.Memory {
		m.mu.Lock()
		now := mc.mem
		m.mu.Unlock()
		if then, ok := db.Memory[snap]; ok && !sameLayout(then, now) {
			return fmt.Errorf("%w: snapshot %q was taken with %d MiB of memory (%d MiB hot-added), %s now has %d MiB (%d MiB hot-added); power it off to revert to the snapshot's disks",
				ErrState, snap, then.totalMiB(), then.hotAddedMiB(), name, now.totalMiB(), now.hotAddedMiB())
		}
		if err := hmp(ctx, mc, m, "loadvm "+snap); err != nil {
			return err
		}
	} else {
		if state == api.VMPoweredOn || state == api.VMPaused {
			if err := m.powerOff(ctx, mc); err != nil {
				return err
			}
		}
		disks, err := m.qcow2Disks(mc)
		if err != nil {
			return err
		}
		for _, d := range disks {
			if err := m.cfg.Disks.Snapshot(ctx, "apply", d, snap); err != nil {
				return err
			}
		}
	}
	db.Current = snap
	if err := saveSnapshots(mc, db); err != nil {
		return err
	}
	m.cfg.Publish("vm.snapshot_reverted", name, snap)
	return nil
}

// DeleteSnapshot removes a snapshot (its data is merged away by qcow2).
func (m *Manager) DeleteSnapshot(ctx context.Context, name, snap string) error {
	mc, err := m.get(name)
	if err != nil {
		return err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	db, _, err := m.findSnapshot(mc, snap)
	if err != nil {
		return err
	}
	m.mu.Lock()
	state := mc.state
	m.mu.Unlock()
	if state == api.VMPoweredOn || state == api.VMPaused {
		if err := hmp(ctx, mc, m, "delvm "+snap); err != nil {
			return err
		}
	} else {
		disks, err := m.qcow2Disks(mc)
		if err != nil {
			return err
		}
		for _, d := range disks {
			if err := m.cfg.Disks.Snapshot(ctx, "delete", d, snap); err != nil {
				return err
			}
		}
	}
	var kept []api.Snapshot
	for _, s := range db.Snapshots {
		if s.Name != snap {
			if s.Parent == snap {
				s.Parent = ""
			}
			kept = append(kept, s)
		}
	}
	db.Snapshots = kept
	delete(db.Memory, snap)
	if db.Current == snap {
		db.Current = ""
	}
	if err := saveSnapshots(mc, db); err != nil {
		return err
	}
	m.cfg.Publish("vm.snapshot_deleted", name, snap)
	return nil
}

func (m *Manager) findSnapshot(mc *machine, snap string) (snapshotDB, api.Snapshot, error) {
	db, err := loadSnapshots(mc)
	if err != nil {
		return db, api.Snapshot{}, err
	}
	for _, s := range db.Snapshots {
		if s.Name == snap {
			return db, s, nil
		}
	}
	return db, api.Snapshot{}, fmt.Errorf("%w: %q on %s", ErrNoSnapshot, snap, mc.spec.Name)
}
