package qmptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/flashvisor/flashvisor/hostd/qmp"
)

// StateMagic starts every fake state file NewVM writes on migrate "fd:..."
// and expects on migrate-incoming.
const StateMagic = "QMPTEST-VMSTATE\n"

// VM is the state behind NewVM's handlers.
type VM struct {
	*Server

	mu       sync.Mutex
	status   string
	devices  map[string]string // id -> driver
	netdevs  map[string]string // id -> type
	migrate  string            // query-migrate status
	incoming bool              // started with -incoming defer
	mem      memory

	// IgnorePowerdown makes system_powerdown do nothing, like a guest
	// without ACPI support (so callers fall back to quit).
	IgnorePowerdown bool
}

// VMOption configures NewVM.
type VMOption func(*VM)

// memory is the fake's RAM: what -m gave it and its memory devices.
type memory struct {
	base, max uint64 // bytes
	slots     int
	backends  map[string]*backend // object id -> backend
	dimms     []dimm              // in plug order
}

type backend struct {
	size uint64
	used bool
}

type dimm struct {
	id, memdev string
	slot       int
	addr, size uint64
	hotplugged bool
}

// dimmArea is where the fake places DIMMs: QEMU's hot-plug area starts at
// 4 GiB for VMs with at most 2 GiB of RAM (higher for bigger ones; the
// fake does not care).
const dimmArea = 4 << 30

// Memory gives the fake the memory of "-m size=baseMiB,slots=S,maxmem=maxMiB"
// (slots 0 and maxMiB = baseMiB for a plain "-m baseMiB"). Default: 256 MiB
// without slots.
func Memory(baseMiB, slots, maxMiB int) VMOption {
	return func(v *VM) {
		v.mem.base, v.mem.slots, v.mem.max = uint64(baseMiB)<<20, slots, uint64(maxMiB)<<20
	}
}

// ColdDIMM starts the fake with a DIMM given on the command line
// ("-object memory-backend-ram,id=MEMDEV,size=S -device pc-dimm,id=ID,
// memdev=MEMDEV"), as a VM resumed after a hot-add is. Give it after
// Memory.
func ColdDIMM(id, memdev string, sizeMiB int) VMOption {
	return func(v *VM) {
		v.mem.backends[memdev] = &backend{size: uint64(sizeMiB) << 20}
		if err := v.plugDIMM(id, memdev, -1, false); err != nil {
			panic("qmptest.ColdDIMM: " + err.Error())
		}
		v.devices[id] = "pc-dimm"
	}
}

// Paused starts the fake as QEMU run with -S ("prelaunch").
func Paused() VMOption { return func(v *VM) { v.status = qmp.StatePrelaunch } }

// Incoming starts the fake as QEMU run with "-incoming defer".
func Incoming() VMOption {
	return func(v *VM) { v.status, v.incoming = qmp.StateInMigrate, true }
}

// NewVM returns a fake QEMU: query-status, stop, cont, system_powerdown
// (POWERDOWN, then SHUTDOWN from the guest), system_reset (RESET), quit
// (SHUTDOWN from the host, then hang up), query-version, screendump (a real
// PNG), human-monitor-command, device_add/device_del (DEVICE_DELETED),
// netdev_add/netdev_del, migrate/migrate-incoming with "fd:NAME",
// query-migrate, and memory hot-add as QEMU checks it: object-add and
// object-del of memory-backend-ram, device_add of pc-dimm (memdev, slots,
// maxmem), query-memory-devices and query-memory-size-summary (see
// Memory). Override or add commands with Handle.
func NewVM(opts ...VMOption) *VM {
	v := &VM{
		Server:  NewServer(nil),
		status:  qmp.StateRunning,
		devices: map[string]string{},
		netdevs: map[string]string{},
		migrate: qmp.MigrationNone,
		mem:     memory{base: 256 << 20, max: 256 << 20, backends: map[string]*backend{}},
	}
	for _, o := range opts {
		o(v)
	}
	h := map[string]Handler{
		"query-status": func(json.RawMessage) (any, error) {
			v.mu.Lock()
			defer v.mu.Unlock()
			return qmp.Status{Status: v.status, Running: v.status == qmp.StateRunning}, nil
		},
		"query-version": func(json.RawMessage) (any, error) {
			g := v.Greeting
			return map[string]any{"qemu": map[string]int{"major": g.Major, "minor": g.Minor, "micro": g.Micro}, "package": g.Package}, nil
		},
		"stop": func(json.RawMessage) (any, error) {
			if v.setIf(qmp.StatePaused, qmp.StateRunning) {
				v.Emit(qmp.EventStop, nil)
			}
			return nil, nil
		},
		"cont": func(json.RawMessage) (any, error) {
			v.mu.Lock()
			st := v.status
			v.mu.Unlock()
			switch st {
			case qmp.StateInMigrate:
				return nil, &qmp.Error{Class: "GenericError", Desc: "Migration is not finalized yet"}
			case qmp.StateShutdown:
				return nil, &qmp.Error{Class: "GenericError", Desc: "Resetting the Virtual Machine is required"}
			case qmp.StateRunning:
				return nil, nil
			}
			v.setIf(qmp.StateRunning, st)
			v.Emit(qmp.EventResume, nil)
			return nil, nil
		},
		"system_powerdown": func(json.RawMessage) (any, error) {
			v.Emit(qmp.EventPowerdown, nil)
			if v.ignoresPowerdown() {
				return nil, nil
			}
			if v.setIf(qmp.StateShutdown, qmp.StateRunning) {
				// The guest reacts after the command returned.
				go v.Emit(qmp.EventShutdown, qmp.ShutdownData{Guest: true, Reason: "guest-shutdown"})
			}
			return nil, nil
		},
		"system_reset": func(json.RawMessage) (any, error) {
			v.Emit(qmp.EventReset, qmp.ResetData{Guest: false, Reason: "host-qmp-system-reset"})
			return nil, nil
		},
		"quit": func(json.RawMessage) (any, error) {
			v.mu.Lock()
			v.status = qmp.StateShutdown
			v.mu.Unlock()
			v.Emit(qmp.EventShutdown, qmp.ShutdownData{Guest: false, Reason: "host-qmp-quit"})
			v.CloseAfterReply()
			return nil, nil
		},
		"screendump": func(args json.RawMessage) (any, error) {
			var a struct {
				Filename string `json:"filename"`
				Format   string `json:"format"`
			}
			if err := json.Unmarshal(args, &a); err != nil || a.Filename == "" {
				return nil, &qmp.Error{Class: "GenericError", Desc: "Parameter 'filename' is missing"}
			}
			var buf bytes.Buffer
			if a.Format == "png" {
				png.Encode(&buf, image.NewGray(image.Rect(0, 0, 4, 3)))
			} else {
				buf.WriteString("P6\n4 3\n255\n" + strings.Repeat("\x00", 36))
			}
			if err := os.WriteFile(a.Filename, buf.Bytes(), 0o644); err != nil {
				return nil, err
			}
			return nil, nil
		},
		"human-monitor-command": func(args json.RawMessage) (any, error) {
			var a struct {
				Cmd string `json:"command-line"`
			}
			json.Unmarshal(args, &a)
			return "fake HMP: " + a.Cmd + "\r\n", nil
		},
		"device_add": func(args json.RawMessage) (any, error) {
			var a struct {
				Driver string `json:"driver"`
				ID     string `json:"id"`
				Memdev string `json:"memdev"`
				Slot   *int   `json:"slot"`
			}
			json.Unmarshal(args, &a)
			v.mu.Lock()
			defer v.mu.Unlock()
			if _, dup := v.devices[a.ID]; dup && a.ID != "" {
				return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("Duplicate device ID '%s' for device", a.ID)}
			}
			if a.Driver == "pc-dimm" {
				slot := -1
				if a.Slot != nil {
					slot = *a.Slot
				}
				if err := v.plugDIMM(a.ID, a.Memdev, slot, true); err != nil {
					return nil, err
				}
			}
			v.devices[a.ID] = a.Driver
			return nil, nil
		},
		"object-add": func(args json.RawMessage) (any, error) {
			var a struct {
				Type string `json:"qom-type"`
				ID   string `json:"id"`
				Size uint64 `json:"size"`
			}
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, &qmp.Error{Class: "GenericError", Desc: err.Error()}
			}
			if a.Type != "memory-backend-ram" {
				return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("qmptest: object type %q is not faked", a.Type)}
			}
			v.mu.Lock()
			defer v.mu.Unlock()
			if _, dup := v.mem.backends[a.ID]; dup {
				return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("attempt to add duplicate property '%s' to object (type 'container')", a.ID)}
			}
			if a.Size == 0 || a.Size%4096 != 0 {
				return nil, &qmp.Error{Class: "GenericError", Desc: "property 'size' of memory-backend-ram doesn't take value '" + fmt.Sprint(a.Size) + "'"}
			}
			v.mem.backends[a.ID] = &backend{size: a.Size}
			return nil, nil
		},
		"object-del": func(args json.RawMessage) (any, error) {
			var a struct {
				ID string `json:"id"`
			}
			json.Unmarshal(args, &a)
			v.mu.Lock()
			defer v.mu.Unlock()
			b, ok := v.mem.backends[a.ID]
			switch {
			case !ok:
				return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("object '%s' not found", a.ID)}
			case b.used:
				return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("object '%s' is in use, can not be deleted", a.ID)}
			}
			delete(v.mem.backends, a.ID)
			return nil, nil
		},
		"query-memory-devices": func(json.RawMessage) (any, error) {
			v.mu.Lock()
			defer v.mu.Unlock()
			out := []qmp.MemoryDevice{}
			for _, d := range v.mem.dimms {
				out = append(out, qmp.MemoryDevice{Type: qmp.MemoryDeviceDIMM, Data: qmp.DIMMInfo{
					ID: d.id, Addr: d.addr, Size: d.size, Slot: d.slot, Memdev: "/objects/" + d.memdev,
					Hotplugged: d.hotplugged, Hotpluggable: true}})
			}
			return out, nil
		},
		"query-memory-size-summary": func(json.RawMessage) (any, error) {
			v.mu.Lock()
			defer v.mu.Unlock()
			return qmp.MemorySize{Base: v.mem.base, Plugged: v.mem.plugged()}, nil
		},
		"device_del": func(args json.RawMessage) (any, error) {
			var a struct {
				ID string `json:"id"`
			}
			json.Unmarshal(args, &a)
			v.mu.Lock()
			_, ok := v.devices[a.ID]
			delete(v.devices, a.ID)
			v.unplugDIMM(a.ID)
			v.mu.Unlock()
			if !ok {
				return nil, &qmp.Error{Class: "DeviceNotFound", Desc: fmt.Sprintf("Device '%s' not found", a.ID)}
			}
			go v.Emit(qmp.EventDeviceDeleted, qmp.DeviceDeletedData{Device: a.ID, Path: "/machine/peripheral/" + a.ID})
			return nil, nil
		},
		"netdev_add": func(args json.RawMessage) (any, error) {
			var a struct {
				Type string `json:"type"`
				ID   string `json:"id"`
			}
			json.Unmarshal(args, &a)
			v.mu.Lock()
			defer v.mu.Unlock()
			if _, dup := v.netdevs[a.ID]; dup {
				return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("Duplicate ID '%s' for netdev", a.ID)}
			}
			v.netdevs[a.ID] = a.Type
			return nil, nil
		},
		"netdev_del": func(args json.RawMessage) (any, error) {
			var a struct {
				ID string `json:"id"`
			}
			json.Unmarshal(args, &a)
			v.mu.Lock()
			defer v.mu.Unlock()
			if _, ok := v.netdevs[a.ID]; !ok {
				return nil, &qmp.Error{Class: "DeviceNotFound", Desc: fmt.Sprintf("Device '%s' not found", a.ID)}
			}
			delete(v.netdevs, a.ID)
			return nil, nil
		},
		"migrate":          v.migrateOut,
		"migrate-incoming": v.migrateIn,
		"query-migrate": func(json.RawMessage) (any, error) {
			v.mu.Lock()
			defer v.mu.Unlock()
			return qmp.MigrationInfo{Status: v.migrate}, nil
		},
	}
	for k, f := range h {
		v.Handle(k, f)
	}
	return v
}

// plugged is the memory in DIMMs; v.mu is held.
func (m *memory) plugged() uint64 {
	var n uint64
	for _, d := range m.dimms {
		n += d.size
	}
	return n
}

// plugDIMM checks a pc-dimm as QEMU does (memdev free, a free slot, room
// under maxmem) and plugs it; slot -1 takes the first free one. v.mu is
// held (or v is being built).
func (v *VM) plugDIMM(id, memdev string, slot int, hotplugged bool) error {
	m := &v.mem
	fail := func(format string, a ...any) error {
		return &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf(format, a...)}
	}
	b, ok := m.backends[memdev]
	switch {
	case memdev == "":
		return fail("'memdev' property is not set")
	case !ok:
		return fail("Property 'pc-dimm.memdev' can't find value '%s'", memdev)
	case b.used:
		return fail("can't use already busy memdev: %s", memdev)
	case m.slots == 0 || m.max <= m.base:
		return fail("the configuration is not prepared for memory devices (e.g., for memory hotplug), consider specifying the maxmem option")
	case slot >= m.slots:
		return fail("invalid slot number %d, valid range is [0-%d]", slot, m.slots-1)
	}
	busy := map[int]bool{}
	for _, d := range m.dimms {
		busy[d.slot] = true
	}
	if slot < 0 {
		for slot = 0; slot < m.slots && busy[slot]; slot++ {
		}
		if slot == m.slots {
			return fail("no free slots left")
		}
	} else if busy[slot] {
		return fail("slot %d is busy", slot)
	}
	used := m.plugged()
	if used+b.size > m.max-m.base {
		return fail("not enough space, currently 0x%x in use of total space for memory devices 0x%x", used, m.max-m.base)
	}
	b.used = true
	m.dimms = append(m.dimms, dimm{id: id, memdev: memdev, slot: slot, addr: dimmArea + used, size: b.size, hotplugged: hotplugged})
	return nil
}

// unplugDIMM forgets DIMM id, if it is one; v.mu is held.
func (v *VM) unplugDIMM(id string) {
	for i, d := range v.mem.dimms {
		if d.id == id {
			v.mem.backends[d.memdev].used = false
			v.mem.dimms = append(v.mem.dimms[:i], v.mem.dimms[i+1:]...)
			return
		}
	}
}

// Status is the fake's run state.
func (v *VM) Status() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

// Devices returns the devices added with device_add (and ColdDIMM),
// id -> driver.
func (v *VM) Devices() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := make(map[string]string, len(v.devices))
	for k, d := range v.devices {
		m[k] = d
	}
	return m
}

func (v *VM) ignoresPowerdown() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.IgnorePowerdown
}

// setIf moves to state to when the current state is from.
func (v *VM) setIf(to, from string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.status != from {
		return false
	}
	v.status = to
	return true
}

func (v *VM) fdArg(args json.RawMessage) (*os.File, error) {
	var a struct {
		URI string `json:"uri"`
	}
	json.Unmarshal(args, &a)
	name, ok := strings.CutPrefix(a.URI, "fd:")
	if !ok {
		return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("qmptest: only fd: URIs are faked, got %q", a.URI)}
	}
	f, ok := v.TakeFD(name)
	if !ok {
		return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("File descriptor named '%s' has not been found", name)}
	}
	return f, nil
}

func (v *VM) migrateOut(args json.RawMessage) (any, error) {
	f, err := v.fdArg(args)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := fmt.Fprintf(f, "%sstatus=%s\n", StateMagic, v.status); err != nil {
		v.migrate = qmp.MigrationFailed
		return nil, nil
	}
	v.migrate = qmp.MigrationCompleted
	v.status = qmp.StatePostMigrate
	return nil, nil
}

func (v *VM) migrateIn(args json.RawMessage) (any, error) {
	v.mu.Lock()
	incoming := v.incoming
	v.mu.Unlock()
	if !incoming {
		return nil, &qmp.Error{Class: "GenericError", Desc: "'-incoming' was not specified on the command line"}
	}
	f, err := v.fdArg(args)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.incoming = false
	if !bytes.HasPrefix(b, []byte(StateMagic)) {
		v.migrate = qmp.MigrationFailed
		return nil, nil
	}
	v.migrate = qmp.MigrationCompleted
	v.status = qmp.StatePaused
	return nil, nil
}
