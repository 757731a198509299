package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/macaddr"
	"github.com/flashvisor/flashvisor/hostd/qemuargs"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
)

// Live reconfiguration: what QEMU can add to a running q35 VM. SCSI disks
// join an existing controller's bus; vNICs go into the spare PCIe root
// ports the VM was started with; memory, when hot-add is on, comes as a
// DIMM (memory.go). Anything else needs the VM powered off.

// hotChange is what a running VM gains.
type hotChange struct {
	disks  []api.VirtualDisk
	nics   []api.NIC
	memMiB int // memory to add
}

// hotChanges checks that next only appends SCSI disks and vNICs to cur,
// or grows its memory, and returns the additions.
func hotChanges(cur, next api.VMSpec) (hotChange, error) {
	if len(next.Disks) < len(cur.Disks) || len(next.NICs) < len(cur.NICs) {
		return hotChange{}, fmt.Errorf("%w: removing devices needs the VM powered off", ErrState)
	}
	h := hotChange{disks: next.Disks[len(cur.Disks):], nics: next.NICs[len(cur.NICs):]}
	base := next
	base.Disks, base.NICs = next.Disks[:len(cur.Disks)], next.NICs[:len(cur.NICs)]
	base.MemoryMiB = cur.MemoryMiB
	a, _ := json.Marshal(base)
	b, _ := json.Marshal(cur)
	if string(a) != string(b) {
		return hotChange{}, fmt.Errorf("%w: while the VM runs only SCSI disks, vNICs and memory (with hot-add) can be added; power it off for other changes", ErrState)
	}
	for _, d := range h.disks {
		if d.Bus != api.DiskBusSCSI {
			return hotChange{}, fmt.Errorf("%w: only SCSI disks can be added while the VM runs (%s is %s)", ErrState, vmconfig.DiskName(d), d.Bus)
		}
	}
	var err error
	if h.memMiB, err = memoryChange(cur, next); err != nil {
		return hotChange{}, err
	}
	return h, nil
}

// hotAdd applies the additions from cur to next to the running QEMU;
// mc.busy is held.
func (m *Manager) hotAdd(ctx context.Context, mc *machine, cur, next api.VMSpec) error {
	h, err := hotChanges(cur, next)
	if err != nil {
		return err
	}
	disks, nics := h.disks, h.nics
	mon, _, err := m.running(mc)
	if err != nil {
		return err
	}
	if h.memMiB > 0 {
		if err := m.hotAddMemory(ctx, mc, mon, next, h.memMiB); err != nil {
			return err
		}
	}
	if err := m.createDisks(ctx, mc, api.VMSpec{Disks: disks}); err != nil {
		return err
	}
	for _, d := range disks {
		id := qemuargs.DeviceID(vmconfig.DiskName(d))
		path, err := m.resolve(mc.dir, d.File)
		if err != nil {
			return err
		}
		format := d.Format
		switch d.Provisioning {
		case api.ProvisionThin:
			format = api.DiskQcow2
		case api.ProvisionThick:
			format = api.DiskRaw
		}
		if err := mon.BlockdevAdd(ctx, map[string]any{"driver": "file", "node-name": id + "-file", "filename": path}); err != nil {
			return fmt.Errorf("add %s: %w", id, err)
		}
		if err := mon.BlockdevAdd(ctx, map[string]any{"driver": format, "node-name": id + "-fmt", "file": id + "-file"}); err != nil {
			return fmt.Errorf("add %s: %w", id, err)
		}
		if err := mon.DeviceAdd(ctx, "scsi-hd", id, map[string]any{"bus": fmt.Sprintf("scsi%d.0", d.Controller),
			"channel": 0, "scsi-id": d.Unit, "lun": 0, "drive": id + "-fmt"}); err != nil {
			return fmt.Errorf("add %s: %w", id, err)
		}
		m.cfg.Publish("vm.disk_added", next.Name, vmconfig.DiskName(d))
	}
	m.mu.Lock()
	used := mc.hotNICs
	m.mu.Unlock()
	for j, n := range nics {
		i := len(cur.NICs) + j
		if used >= qemuargs.HotplugPorts {
			return fmt.Errorf("%w: all %d hot-plug slots are used; power the VM off to add more vNICs", ErrState, qemuargs.HotplugPorts)
		}
		tap, err := m.cfg.Ports.Attach(ctx, next.Name, i, n.PortGroup, n.MAC)
		if err != nil {
			return fmt.Errorf("ethernet%d on port group %q: %w", i, n.PortGroup, err)
		}
		netID := "hostnet" + strconv.Itoa(i)
		props := map[string]any{"ifname": tap, "script": "no", "downscript": "no"}
		if n.Model == api.NICVirtio {
			props["vhost"] = true
		}
		if err := mon.NetdevAdd(ctx, "tap", netID, props); err != nil {
			m.cfg.Ports.Detach(ctx, next.Name, i)
			return fmt.Errorf("add ethernet%d: %w", i, err)
		}
		model := map[string]string{api.NICVirtio: "virtio-net-pci", api.NICE1000: "e1000", api.NICVmxnet3: "vmxnet3"}[n.Model]
		mac, _ := macaddr.Canonical(n.MAC)
		if err := mon.DeviceAdd(ctx, model, fmt.Sprintf("ethernet%d", i), map[string]any{
			"netdev": netID, "mac": mac, "bus": qemuargs.HotplugPort(used)}); err != nil {
			mon.NetdevDel(ctx, netID)
			m.cfg.Ports.Detach(ctx, next.Name, i)
			return fmt.Errorf("add ethernet%d: %w", i, err)
		}
		used++
		m.mu.Lock()
		mc.hotNICs = used
		m.mu.Unlock()
		m.cfg.Publish("vm.nic_added", next.Name, fmt.Sprintf("ethernet%d on %s", i, n.PortGroup))
	}
	return nil
}
