package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/console"
	"github.com/flashvisor/flashvisor/hostd/qemuargs"
	"github.com/flashvisor/flashvisor/hostd/qmp"
)

// Runtime file names in a VM's run directory.
const (
	qmpSock    = "qmp.sock"
	serialSock = "serial.sock"
	vncSock    = "vnc.sock"
	pidFile    = "qemu.pid"
)

// suspendFile is the saved state of a suspended VM, in its directory
// (ESXi's .vmss).
func suspendFile(mc *machine) string { return filepath.Join(mc.dir, mc.spec.Name+".fvss") }

func (m *Manager) runDir(name string) string { return filepath.Join(m.cfg.RunDir, name) }

// SerialSocket is the serial console socket of a running VM.
func (m *Manager) SerialSocket(name string) string {
	return filepath.Join(m.runDir(name), serialSock)
}

// VNCSocket is the VNC socket of a running VM.
func (m *Manager) VNCSocket(name string) string { return filepath.Join(m.runDir(name), vncSock) }

// admit checks memory admission for mc running with memMiB (at power-on,
// or grown by a hot-add); m.mu is held.
func (m *Manager) admit(mc *machine, memMiB int) error {
	var used int64
	for _, o := range m.vms {
		if o != mc && o.proc != nil {
			used += int64(o.spec.MemoryMiB)
		}
	}
	limit := int64(float64(m.cfg.HostMemoryMiB) * m.cfg.OvercommitRatio)
	if used+int64(memMiB) > limit {
		return fmt.Errorf("%w: %s needs %d MiB; other running VMs use %d MiB of the %d MiB allowed (host memory %d MiB x overcommit ratio %.2f)",
			ErrAdmission, mc.spec.Name, memMiB, used, limit, m.cfg.HostMemoryMiB, m.cfg.OvercommitRatio)
	}
	return nil
}

// PowerOn starts the VM (or resumes it when suspended).
func (m *Manager) PowerOn(ctx context.Context, name string) (api.VM, error) {
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	if m.cfg.Accel == "" {
		return api.VM{}, fmt.Errorf("%w: /dev/kvm cannot be opened (enable virtualisation in the firmware, or start hostd with software emulation allowed)", ErrNoKVM)
	}
	m.mu.Lock()
	state := mc.state
	if mc.reason != "" && strings.HasPrefix(mc.reason, "unavailable") {
		m.mu.Unlock()
		return api.VM{}, fmt.Errorf("%w: %s is %s", ErrState, name, mc.reason)
	}
	if state != api.VMPoweredOff && state != api.VMSuspended && state != api.VMCrashed {
		m.mu.Unlock()
		return api.VM{}, fmt.Errorf("%w: %s is already %s", ErrState, name, state)
	}
	if err := m.admit(mc, mc.spec.MemoryMiB); err != nil {
		m.mu.Unlock()
		return api.VM{}, err
	}
	// MACs may collide with a VM registered since this one was last on.
	before := fmt.Sprint(mc.spec.NICs)
	if err := m.assignMACs(&mc.spec); err != nil {
		m.mu.Unlock()
		return api.VM{}, err
	}
	spec := mc.spec
	m.mu.Unlock()
	if fmt.Sprint(spec.NICs) != before {
		if err := m.saveSpec(mc, spec); err != nil {
			return api.VM{}, err
		}
	}
	resume := state == api.VMSuspended
	if err := m.start(ctx, mc, spec, resume); err != nil {
		return api.VM{}, err
	}
	m.cfg.Publish("vm.powered_on", name, "")
	return m.Get(name)
}

func (m *Manager) saveSpec(mc *machine, spec api.VMSpec) error {
	return saveSpecFile(filepath.Join(mc.dir, filepath.Base(mc.relPath)), spec)
}

// start launches QEMU for spec; mc.busy is held.
func (m *Manager) start(ctx context.Context, mc *machine, spec api.VMSpec, resume bool) (err error) {
	run := m.runDir(spec.Name)
	os.RemoveAll(run)
	if err := os.MkdirAll(run, 0o700); err != nil {
		return err
	}
	var taps []qemuargs.Tap
	defer func() {
		if err != nil {
			m.detachAll(context.Background(), spec)
		}
	}()
	for i, n := range spec.NICs {
		tap, err := m.cfg.Ports.Attach(ctx, spec.Name, i, n.PortGroup, n.MAC)
		if err != nil {
			return fmt.Errorf("ethernet%d on port group %q: %w", i, n.PortGroup, err)
		}
		taps = append(taps, qemuargs.Tap{Name: tap})
	}
	rt := qemuargs.Runtime{
		VMDir: mc.dir,
		ResolveDatastore: func(ds, p string) (string, error) {
			return m.resolve(mc.dir, "["+ds+"] "+p)
		},
		Accel:        m.cfg.Accel,
		QMPSocket:    filepath.Join(run, qmpSock),
		SerialSocket: filepath.Join(run, serialSock),
		VNCSocket:    filepath.Join(run, vncSock),
		PIDFile:      filepath.Join(run, pidFile),
		Taps:         taps,
		OVMFCode:     m.cfg.OVMFCode,
	}
	// A fresh start gets all the spec's memory; a resume, the layout its
	// saved state was made with.
	mem := memoryLayout{BootMiB: spec.MemoryMiB}
	if resume {
		if mem, err = resumeLayout(mc, spec); err != nil {
			return err
		}
		rt.DIMMs = mem.runtime()
	} else {
		m.removeLayout(mc)
	}
	if spec.Firmware == api.FirmwareUEFI {
		rt.NVRAM = filepath.Join(mc.dir, spec.Name+".nvram")
		if _, err := os.Stat(rt.NVRAM); errors.Is(err, os.ErrNotExist) {
			if err := copyFile(m.cfg.OVMFVars, rt.NVRAM); err != nil {
				return fmt.Errorf("NVRAM: %w", err)
			}
		}
	}
	args, err := qemuargs.Build(spec, rt)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if resume {
		args = append(args, "-S", "-incoming", "defer")
	}
	proc, err := m.cfg.Launcher.Launch(ctx, LaunchSpec{Name: spec.Name, Args: args, Dir: mc.dir,
		LogFile: filepath.Join(mc.dir, "qemu.log"), MemoryMiB: spec.MemoryMiB, QMPSocket: rt.QMPSocket})
	if err != nil {
		return fmt.Errorf("start QEMU: %w", err)
	}
	mon, err := m.connect(ctx, rt.QMPSocket, proc)
	if err != nil {
		proc.Kill()
		<-proc.Done()
		return fmt.Errorf("QEMU for %s did not come up (see %s): %w (exit: %s)", spec.Name, filepath.Join(mc.dir, "qemu.log"), err, proc.ExitStatus())
	}
	if resume {
		if err := mon.MigrateIncomingFromFile(ctx, suspendFile(mc), 200*time.Millisecond); err != nil {
			mon.Quit(ctx)
			<-proc.Done()
			return fmt.Errorf("resume %s: %w", spec.Name, err)
		}
		if err := mon.Cont(ctx); err != nil {
			mon.Quit(ctx)
			<-proc.Done()
			return fmt.Errorf("resume %s: %w", spec.Name, err)
		}
		os.Remove(suspendFile(mc))
	}
	m.mu.Lock()
	mc.proc, mc.mon, mc.state, mc.reason, mc.started, mc.stopping = proc, mon, api.VMPoweredOn, "", time.Now().UTC(), false
	mc.hub, mc.hotNICs, mc.mem = m.newHub(spec), 0, mem
	m.mu.Unlock()
	go m.watch(mc, proc, mon)
	return nil
}

// newHub attaches to a running VM's serial console, which QEMU serves to
// one client: the hub is that client and fans it out to API sessions.
func (m *Manager) newHub(spec api.VMSpec) *console.Hub {
	if !spec.SerialConsole {
		return nil
	}
	return console.NewHub(console.UnixDialer(m.SerialSocket(spec.Name)), console.Options{Log: m.cfg.Log.With("vm", spec.Name)})
}

// ConsoleHub returns a running VM's serial console hub.
func (m *Manager) ConsoleHub(name string) (*console.Hub, error) {
	mc, err := m.get(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", console.ErrNoVM, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mc.hub == nil {
		return nil, fmt.Errorf("%w: %s is %s or has no serial console", console.ErrNoConsole, name, mc.state)
	}
	return mc.hub, nil
}

// VNCPath returns a running VM's VNC socket.
func (m *Manager) VNCPath(name string) (string, error) {
	mc, err := m.get(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", console.ErrNoVM, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mc.proc == nil || !mc.spec.VNCConsole {
		return "", fmt.Errorf("%w: %s is %s or has no VNC console", console.ErrNoConsole, name, mc.state)
	}
	return m.VNCSocket(name), nil
}

// connect waits for QEMU's QMP socket.
func (m *Manager) connect(ctx context.Context, sock string, proc Process) (*qmp.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		mon, err := m.cfg.Dial(ctx, sock)
		if err == nil {
			return mon, nil
		}
		last = err
		select {
		case <-proc.Done():
			return nil, fmt.Errorf("QEMU exited: %w", last)
		case <-ctx.Done():
			return nil, last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watch follows a running VM's events until its QEMU is gone.
func (m *Manager) watch(mc *machine, proc Process, mon *qmp.Client) {
	for {
		select {
		case ev, ok := <-mon.Events():
			if !ok {
				<-proc.Done()
				m.exited(mc, proc)
				return
			}
			m.event(mc, ev)
		case <-proc.Done():
			mon.Close()
			m.exited(mc, proc)
			return
		}
	}
}

func (m *Manager) event(mc *machine, ev qmp.Event) {
	name := mc.spec.Name
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Name {
	case qmp.EventStop:
		if mc.state == api.VMPoweredOn {
			mc.state = api.VMPaused
			m.cfg.Publish("vm.paused", name, "")
		}
	case qmp.EventResume:
		if mc.state == api.VMPaused {
			mc.state = api.VMPoweredOn
			m.cfg.Publish("vm.resumed", name, "")
		}
	case qmp.EventShutdown:
		var d qmp.ShutdownData
		_ = ev.DecodeData(&d)
		if d.Guest {
			mc.reason = "guest shut down"
			m.cfg.Publish("vm.guest_shutdown", name, d.Reason)
		}
	case qmp.EventReset:
		m.cfg.Publish("vm.reset", name, "")
	case qmp.EventGuestPanicked:
		mc.state, mc.reason = api.VMCrashed, "guest panicked"
		m.cfg.Publish("vm.guest_panicked", name, "")
	}
}

// exited records that a VM's QEMU is gone and frees its taps. The
// cleanup happens before mc.proc is cleared: waitExited (and so a power-on
// right after a suspend) must not race with the removal of the run
// directory.
func (m *Manager) exited(mc *machine, proc Process) {
	m.mu.Lock()
	if mc.proc != proc {
		m.mu.Unlock()
		return
	}
	spec, hub := mc.spec, mc.hub
	mc.hub = nil
	m.mu.Unlock()
	if hub != nil {
		hub.Close()
	}
	m.detachAll(context.Background(), spec)
	os.RemoveAll(m.runDir(spec.Name))

	m.mu.Lock()
	mc.proc, mc.mon = nil, nil
	switch {
	case mc.state == api.VMSuspended:
	case mc.state == api.VMCrashed:
	case mc.stopping || mc.reason == "guest shut down":
		mc.state = api.VMPoweredOff
	default:
		mc.state, mc.reason = api.VMCrashed, "QEMU exited unexpectedly: "+proc.ExitStatus()
	}
	state, reason := mc.state, mc.reason
	mc.mem = memoryLayout{}
	m.mu.Unlock()
	if state != api.VMSuspended {
		// The next power-on starts afresh with all the memory.
		m.removeLayout(mc)
	}
	m.cfg.Publish("vm.powered_off", spec.Name, state+" "+reason)
}

func (m *Manager) detachAll(ctx context.Context, spec api.VMSpec) {
	for i := range spec.NICs {
		if err := m.cfg.Ports.Detach(ctx, spec.Name, i); err != nil {
			m.cfg.Log.Warn("detach vNIC", "vm", spec.Name, "nic", i, "err", err)
		}
	}
}

// running returns the monitor and process of a running VM; mc.busy is held.
func (m *Manager) running(mc *machine) (*qmp.Client, Process, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mc.proc == nil || mc.mon == nil {
		return nil, nil, fmt.Errorf("%w: %s is %s", ErrState, mc.spec.Name, mc.state)
	}
	return mc.mon, mc.proc, nil
}

// PowerOff stops the VM at once (pulling the plug).
func (m *Manager) PowerOff(ctx context.Context, name string) (api.VM, error) {
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	if err := m.powerOff(ctx, mc); err != nil {
		return api.VM{}, err
	}
	return m.Get(name)
}

func (m *Manager) powerOff(ctx context.Context, mc *machine) error {
	mon, proc, err := m.running(mc)
	if err != nil {
		return err
	}
	m.mu.Lock()
	mc.stopping = true
	mc.reason = "powered off"
	m.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := mon.Quit(qctx); err != nil {
		proc.Kill()
	}
	select {
	case <-proc.Done():
	case <-time.After(15 * time.Second):
		proc.Kill()
		<-proc.Done()
	}
	m.waitExited(mc, proc)
	return nil
}

// waitExited waits until watch has recorded the exit.
func (m *Manager) waitExited(mc *machine, proc Process) {
	for i := 0; i < 200; i++ {
		m.mu.Lock()
		gone := mc.proc != proc
		m.mu.Unlock()
		if gone {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Shutdown asks the guest to shut down (ACPI power button) and forces a
// power off after timeout (0 = the configured default).
func (m *Manager) Shutdown(ctx context.Context, name string, timeout time.Duration) (api.VM, error) {
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	if err := m.shutdown(ctx, mc, timeout); err != nil {
		return api.VM{}, err
	}
	return m.Get(name)
}

func (m *Manager) shutdown(ctx context.Context, mc *machine, timeout time.Duration) error {
	if timeout == 0 {
		timeout = m.cfg.ShutdownTimeout
	}
	mon, proc, err := m.running(mc)
	if err != nil {
		return err
	}
	m.mu.Lock()
	mc.stopping = true
	m.mu.Unlock()
	if err := mon.SystemPowerdown(ctx); err != nil {
		m.cfg.Log.Warn("ACPI shutdown request failed; forcing", "vm", mc.spec.Name, "err", err)
	} else {
		select {
		case <-proc.Done():
			m.waitExited(mc, proc)
			return nil
		case <-time.After(timeout):
			m.cfg.Publish("vm.shutdown_forced", mc.spec.Name, fmt.Sprintf("guest did not shut down in %s", timeout))
		case <-ctx.Done():
		}
	}
	return m.powerOff(context.Background(), mc)
}

// Reset resets the VM's hardware.
func (m *Manager) Reset(ctx context.Context, name string) (api.VM, error) {
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	mon, _, err := m.running(mc)
	if err != nil {
		return api.VM{}, err
	}
	if err := mon.SystemReset(ctx); err != nil {
		return api.VM{}, err
	}
	return m.Get(name)
}

// Suspend saves the VM's state to a file in its directory and stops QEMU.
func (m *Manager) Suspend(ctx context.Context, name string) (api.VM, error) {
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	mon, proc, err := m.running(mc)
	if err != nil {
		return api.VM{}, err
	}
	if err := mon.Stop(ctx); err != nil {
		return api.VM{}, err
	}
	if err := mon.MigrateToFile(ctx, suspendFile(mc), 200*time.Millisecond); err != nil {
		mon.Cont(ctx)
		return api.VM{}, fmt.Errorf("suspend %s: %w", name, err)
	}
	m.mu.Lock()
	mc.state, mc.reason = api.VMSuspended, "suspended to "+filepath.Base(suspendFile(mc))
	m.mu.Unlock()
	mon.Quit(ctx)
	<-proc.Done()
	m.waitExited(mc, proc)
	m.cfg.Publish("vm.suspended", name, "")
	return m.Get(name)
}

// Adopt re-attaches to the QEMU processes that outlived a previous hostd
// (HOSTD-3), and marks VMs with a saved state as suspended.
func (m *Manager) Adopt(ctx context.Context) {
	m.mu.Lock()
	var all []*machine
	for _, mc := range m.vms {
		all = append(all, mc)
	}
	m.mu.Unlock()
	for _, mc := range all {
		if mc.dir != "" {
			if _, err := os.Stat(suspendFile(mc)); err == nil {
				m.mu.Lock()
				mc.state = api.VMSuspended
				m.mu.Unlock()
				continue
			}
		}
		b, err := os.ReadFile(filepath.Join(m.runDir(mc.spec.Name), pidFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		proc, err := m.cfg.Launcher.Adopt(pid)
		if err != nil {
			m.cfg.Log.Info("VM process gone", "vm", mc.spec.Name, "pid", pid, "err", err)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		mon, err := m.cfg.Dial(dctx, filepath.Join(m.runDir(mc.spec.Name), qmpSock))
		cancel()
		if err != nil {
			m.cfg.Log.Error("VM process alive but its QMP socket does not answer", "vm", mc.spec.Name, "pid", pid, "err", err)
			continue
		}
		st, err := mon.QueryStatus(ctx)
		state := api.VMPoweredOn
		if err == nil && !st.Running {
			state = api.VMPaused
		}
		m.adoptMemory(ctx, mc, mon)
		m.mu.Lock()
		mc.proc, mc.mon, mc.state, mc.reason, mc.started = proc, mon, state, "", processStart(pid)
		mc.hub = m.newHub(mc.spec)
		m.mu.Unlock()
		go m.watch(mc, proc, mon)
		m.cfg.Log.Info("adopted running VM", "vm", mc.spec.Name, "pid", pid)
		m.cfg.Publish("vm.adopted", mc.spec.Name, fmt.Sprintf("pid %d", pid))
	}
}

// processStart approximates a process's start time from /proc.
func processStart(pid int) time.Time {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return time.Now().UTC()
	}
	return fi.ModTime().UTC()
}

// ShutdownAll shuts every running VM down in parallel (ACPI, then forced
// after the timeout): the host is going down (INIT-5).
func (m *Manager) ShutdownAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, v := range m.List() {
		if v.Status.State != api.VMPoweredOn && v.Status.State != api.VMPaused {
			continue
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if _, err := m.Shutdown(ctx, name, 0); err != nil {
				m.cfg.Log.Error("shutdown at host shutdown", "vm", name, "err", err)
			}
		}(v.Spec.Name)
	}
	wg.Wait()
}

// Autostart powers on the VMs marked for it, in order, with their delays
// (like ESXi's autostart manager). VMs with order 0 come last, by name.
func (m *Manager) Autostart(ctx context.Context) {
	var list []api.VM
	for _, v := range m.List() {
		if v.Spec.Autostart.Enabled {
			list = append(list, v)
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i].Spec.Autostart.Order, list[j].Spec.Autostart.Order
		if (a == 0) != (b == 0) {
			return b == 0
		}
		return a < b
	})
	for _, v := range list {
		if v.Status.State == api.VMPoweredOn || v.Status.State == api.VMPaused {
			continue
		}
		if _, err := m.PowerOn(ctx, v.Spec.Name); err != nil {
			m.cfg.Log.Error("autostart", "vm", v.Spec.Name, "err", err)
			m.cfg.Publish("vm.autostart_failed", v.Spec.Name, err.Error())
			continue
		}
		m.cfg.Publish("vm.autostarted", v.Spec.Name, "")
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(v.Spec.Autostart.DelaySeconds) * time.Second):
		}
	}
}

// Screendump returns a PNG of the VM's display (QMP screendump).
func (m *Manager) Screendump(ctx context.Context, name string) ([]byte, error) {
	mc, err := m.get(name)
	if err != nil {
		return nil, err
	}
	mon, _, err := m.running(mc)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(m.cfg.RunDir, "screendump-*.png")
	if err != nil {
		return nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	if err := mon.Screendump(ctx, f.Name(), "png"); err != nil {
		return nil, err
	}
	return os.ReadFile(f.Name())
}
