package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/qemuargs"
	"github.com/flashvisor/flashvisor/hostd/qmp"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Memory hot-add (mem.hotadd in the parameter file). A VM with hot-add
// starts with "-m size=M,slots=S,maxmem=X"; growing it while it runs plugs
// one DIMM with the difference (QMP object-add of a memory-backend-ram,
// then device_add of a pc-dimm), and memSize records the new total, so the
// next power-on simply starts with all of it and empty slots.
//
// A suspended VM is resumed into a QEMU that must have the memory layout
// of the one that saved its state: the same boot memory and the same DIMMs
// (ids, sizes, order). That layout is kept in the VM's directory,
// <vm>.fvdimm, from the first hot-add until the VM powers off, so it
// travels with the suspend file; the DIMM ids count the DIMMs plugged
// since power-on (dimm0, dimm1, ...). A restarted hostd reads the layout
// of an adopted VM from QEMU itself (query-memory-devices).

// dimmFileExt names the layout file: <vm>.fvdimm.
const dimmFileExt = ".fvdimm"

// memoryLayout is the memory of one QEMU run.
type memoryLayout struct {
	// BootMiB is the memory QEMU started with.
	BootMiB int `json:"boot_mib"`
	// DIMMs were plugged since, in order: DIMMs[i] is qemuargs.DIMMID(i).
	DIMMs []dimm `json:"dimms"`
}

// dimm is one hot-added DIMM.
type dimm struct {
	SizeMiB int `json:"size_mib"`
	// Addr is its guest-physical address, as QEMU reported it.
	Addr uint64 `json:"addr,omitempty"`
}

// runtime is the layout as qemuargs takes it.
func (l memoryLayout) runtime() []qemuargs.DIMM {
	var out []qemuargs.DIMM
	for _, d := range l.DIMMs {
		out = append(out, qemuargs.DIMM{SizeMiB: d.SizeMiB, Addr: d.Addr})
	}
	return out
}

// hotAddedMiB is the memory in DIMMs.
func (l memoryLayout) hotAddedMiB() int {
	n := 0
	for _, d := range l.DIMMs {
		n += d.SizeMiB
	}
	return n
}

func (l memoryLayout) totalMiB() int { return l.BootMiB + l.hotAddedMiB() }

// sameLayout tells whether a saved state of one fits the QEMU of the
// other: same boot memory, same DIMM sizes in the same order.
func sameLayout(a, b memoryLayout) bool {
	if a.BootMiB != b.BootMiB || len(a.DIMMs) != len(b.DIMMs) {
		return false
	}
	for i := range a.DIMMs {
		if a.DIMMs[i].SizeMiB != b.DIMMs[i].SizeMiB {
			return false
		}
	}
	return true
}

func layoutFile(mc *machine) string { return filepath.Join(mc.dir, mc.spec.Name+dimmFileExt) }

// loadLayout reads the layout file; ok is false when there is none.
func loadLayout(mc *machine) (l memoryLayout, ok bool, err error) {
	b, err := os.ReadFile(layoutFile(mc))
	if errors.Is(err, os.ErrNotExist) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, false, fmt.Errorf("memory layout %s is corrupt: %w", layoutFile(mc), err)
	}
	return l, true, nil
}

func saveLayout(mc *machine, l memoryLayout) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	if _, err := atomicfile.WriteIfChanged(layoutFile(mc), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record the memory layout of %s: %w", mc.spec.Name, err)
	}
	return nil
}

// removeLayout forgets the layout of a QEMU run that is over.
func (m *Manager) removeLayout(mc *machine) {
	if mc.dir == "" {
		return
	}
	if err := os.Remove(layoutFile(mc)); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.cfg.Log.Warn("remove memory layout", "vm", mc.spec.Name, "err", err)
	}
}

// resumeLayout is the layout a suspended VM must be resumed with.
func resumeLayout(mc *machine, spec api.VMSpec) (memoryLayout, error) {
	l, ok, err := loadLayout(mc)
	switch {
	case err != nil:
		return l, err
	case !ok:
		return memoryLayout{BootMiB: spec.MemoryMiB}, nil
	case l.totalMiB() != spec.MemoryMiB:
		return l, fmt.Errorf("%w: %s was suspended with %d MiB of memory (%s) but its parameter file says %d MiB",
			ErrState, spec.Name, l.totalMiB(), filepath.Base(layoutFile(mc)), spec.MemoryMiB)
	}
	return l, nil
}

// memoryChange checks a change of memory for a running VM and returns
// the MiB to add (0 for none). Hot-add must be on, the VM may only grow,
// up to its maximum, in whole blocks.
func memoryChange(cur, next api.VMSpec) (int, error) {
	add := next.MemoryMiB - cur.MemoryMiB
	switch {
	case add == 0:
		return 0, nil
	case add < 0:
		return 0, fmt.Errorf("%w: the memory of a running VM cannot shrink (%s has %d MiB, %d MiB asked); power it off to lower it",
			ErrState, cur.Name, cur.MemoryMiB, next.MemoryMiB)
	case !cur.MemoryHotAdd:
		return 0, fmt.Errorf("%w: memory hot-add is off for %s (memory_hot_add, mem.hotadd in its parameter file); power it off to change its memory or to turn hot-add on",
			ErrState, cur.Name)
	case next.MemoryMiB > cur.MaxMemoryMiB:
		return 0, fmt.Errorf("%w: %s can grow to %d MiB while it runs (max_memory_mib, mem.maxSize), not %d MiB; power it off to give it more",
			ErrState, cur.Name, cur.MaxMemoryMiB, next.MemoryMiB)
	case add%vmconfig.MemoryBlockMiB != 0:
		return 0, fmt.Errorf("%w: memory is hot-added in blocks of %d MiB; %d MiB is not a multiple of it",
			ErrInvalid, vmconfig.MemoryBlockMiB, add)
	}
	return add, nil
}

// hotAddMemory grows a running VM by one DIMM of addMiB; mc.busy is held.
func (m *Manager) hotAddMemory(ctx context.Context, mc *machine, mon *qmp.Client, next api.VMSpec, addMiB int) error {
	name := next.Name
	m.mu.Lock()
	layout := memoryLayout{BootMiB: mc.mem.BootMiB, DIMMs: slices.Clone(mc.mem.DIMMs)}
	i := len(layout.DIMMs)
	if i >= qemuargs.MemorySlots {
		m.mu.Unlock()
		return fmt.Errorf("%w: all %d memory slots of %s are used; power it off and on again to start with all its memory and empty slots",
			ErrState, qemuargs.MemorySlots, name)
	}
	if err := m.admit(mc, next.MemoryMiB); err != nil {
		m.mu.Unlock()
		return err
	}
	cur := mc.spec.MemoryMiB
	m.mu.Unlock()

	// The QEMU process may now use that much more: its cgroup first.
	if err := m.cfg.Launcher.SetMemory(name, next.MemoryMiB); err != nil {
		return fmt.Errorf("memory limit of %s: %w", name, err)
	}
	undoLimit := func() {
		if err := m.cfg.Launcher.SetMemory(name, cur); err != nil {
			m.cfg.Log.Warn("restore memory limit", "vm", name, "err", err)
		}
	}
	id, memdev := qemuargs.DIMMID(i), qemuargs.DIMMMemdevID(i)
	if err := mon.ObjectAdd(ctx, "memory-backend-ram", memdev, map[string]any{"size": int64(addMiB) << 20}); err != nil {
		undoLimit()
		return fmt.Errorf("add %d MiB to %s: %w", addMiB, name, err)
	}
	if err := mon.DeviceAdd(ctx, "pc-dimm", id, map[string]any{"memdev": memdev, "slot": i}); err != nil {
		if derr := mon.ObjectDel(ctx, memdev); derr != nil {
			m.cfg.Log.Warn("remove unused memory backend", "vm", name, "id", memdev, "err", derr)
		}
		undoLimit()
		return fmt.Errorf("add %d MiB to %s: %w", addMiB, name, err)
	}
	// What QEMU reports is the truth (and gives the DIMM's address).
	seen, err := observeMemory(ctx, mon)
	if err != nil {
		m.cfg.Log.Warn("query memory devices after hot-add", "vm", name, "err", err)
		seen = layout
		seen.DIMMs = append(seen.DIMMs, dimm{SizeMiB: addMiB})
	}
	m.mu.Lock()
	mc.mem = seen
	grown := mc.spec
	m.mu.Unlock()
	if err := saveLayout(mc, seen); err != nil {
		return err
	}
	// Recorded at once: whatever else this reconfigure does or fails to
	// do, the guest has this memory now, and a resume needs file and
	// layout to agree.
	grown.MemoryMiB = cur + addMiB
	if err := m.saveSpec(mc, grown); err != nil {
		return err
	}
	m.mu.Lock()
	mc.spec = grown
	m.mu.Unlock()
	m.cfg.Publish("vm.memory_added", name, fmt.Sprintf("%d MiB (%s); %d MiB in all", addMiB, id, next.MemoryMiB))
	return nil
}

// observeMemory reads a running QEMU's memory layout: its boot memory and
// its DIMMs by slot (hostd plugs DIMM i into slot i).
func observeMemory(ctx context.Context, mon *qmp.Client) (memoryLayout, error) {
	sum, err := mon.QueryMemorySizeSummary(ctx)
	if err != nil {
		return memoryLayout{}, err
	}
	devs, err := mon.QueryMemoryDevices(ctx)
	if err != nil {
		return memoryLayout{}, err
	}
	var dimms []qmp.DIMMInfo
	for _, d := range devs {
		if d.Type == qmp.MemoryDeviceDIMM {
			dimms = append(dimms, d.Data)
		}
	}
	slices.SortFunc(dimms, func(a, b qmp.DIMMInfo) int { return a.Slot - b.Slot })
	l := memoryLayout{BootMiB: int(sum.Base >> 20)}
	for i, d := range dimms {
		if d.ID != qemuargs.DIMMID(i) {
			return l, fmt.Errorf("QEMU has DIMM %q in slot %d, not %s: not a layout hostd made", d.ID, d.Slot, qemuargs.DIMMID(i))
		}
		l.DIMMs = append(l.DIMMs, dimm{SizeMiB: int(d.Size >> 20), Addr: d.Addr})
	}
	return l, nil
}

// adoptMemory learns an adopted VM's memory layout from QEMU. A hot-add
// that QEMU made but the parameter file missed (hostd died in between) is
// recorded now: the guest has that memory.
func (m *Manager) adoptMemory(ctx context.Context, mc *machine, mon *qmp.Client) {
	m.mu.Lock()
	spec := mc.spec
	m.mu.Unlock()
	l, err := observeMemory(ctx, mon)
	if err != nil {
		m.cfg.Log.Warn("memory layout of adopted VM unknown", "vm", spec.Name, "err", err)
		l = memoryLayout{BootMiB: spec.MemoryMiB}
		if old, ok, _ := loadLayout(mc); ok {
			l = old
		}
	}
	m.mu.Lock()
	mc.mem = l
	m.mu.Unlock()
	if len(l.DIMMs) == 0 {
		return
	}
	if err := saveLayout(mc, l); err != nil {
		m.cfg.Log.Error("record memory layout", "vm", spec.Name, "err", err)
	}
	if total := l.totalMiB(); total > spec.MemoryMiB && spec.MemoryHotAdd && total <= spec.MaxMemoryMiB {
		m.cfg.Log.Warn("adopted VM has more memory than its parameter file says; recording it", "vm", spec.Name, "file_mib", spec.MemoryMiB, "qemu_mib", total)
		spec.MemoryMiB = total
		if err := m.saveSpec(mc, spec); err != nil {
			m.cfg.Log.Error("record memory", "vm", spec.Name, "err", err)
			return
		}
		m.mu.Lock()
		mc.spec = spec
		m.mu.Unlock()
	}
}
