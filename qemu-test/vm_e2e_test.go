//go:build e2e

package qemutest_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

// guestConsole reads a VM's serial console through the API (websocket).
type guestConsole struct {
	t     *testing.T
	rwc   io.ReadWriteCloser
	mu    sync.Mutex
	lines []string
	cond  chan struct{}
}

func attachConsole(t *testing.T, c *client.Client, vm string) *guestConsole {
	t.Helper()
	rwc, err := c.Console(context.Background(), vm, true)
	if err != nil {
		t.Fatalf("console of %s: %v", vm, err)
	}
	g := &guestConsole{t: t, rwc: rwc, cond: make(chan struct{})}
	t.Cleanup(func() { rwc.Close() })
	go func() {
		sc := bufio.NewScanner(rwc)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			t.Logf("[%s console] %s", vm, line)
			g.mu.Lock()
			g.lines = append(g.lines, line)
			close(g.cond)
			g.cond = make(chan struct{})
			g.mu.Unlock()
		}
	}()
	return g
}

// wait returns the first line from index `from` on that matches re.
func (g *guestConsole) wait(from int, re *regexp.Regexp, d time.Duration) (string, int) {
	g.t.Helper()
	l, i, ok := g.tryWait(from, re, d)
	if !ok {
		g.t.Fatalf("console: no line matching %s within %s", re, d)
	}
	return l, i
}

// tryWait is wait that reports a timeout instead of failing the test.
func (g *guestConsole) tryWait(from int, re *regexp.Regexp, d time.Duration) (string, int, bool) {
	g.t.Helper()
	deadline := time.After(d)
	for {
		g.mu.Lock()
		for i := from; i < len(g.lines); i++ {
			if re.MatchString(g.lines[i]) {
				l := g.lines[i]
				g.mu.Unlock()
				return l, i + 1, true
			}
		}
		ch := g.cond
		g.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return "", 0, false
		case <-time.After(5 * time.Second):
			if p := hostPanics(g.t); len(p) > 0 {
				g.t.Fatalf("console: waiting for %s: an emulated host failed (%s)", re, strings.Join(p, "; "))
			}
		}
	}
}

func (g *guestConsole) mark() int { g.mu.Lock(); defer g.mu.Unlock(); return len(g.lines) }

// ask sends a command and returns the guest's FVGUEST answer.
func (g *guestConsole) ask(cmd string, re *regexp.Regexp) string {
	g.t.Helper()
	from := g.mark()
	if _, err := io.WriteString(g.rwc, cmd+"\n"); err != nil {
		g.t.Fatalf("console send %q: %v", cmd, err)
	}
	l, _ := g.wait(from, re, time.Minute)
	return l
}

// waitTask follows a task: waitTask(t, c)(c.PowerVM(...)).
func waitTask(t *testing.T, c *client.Client) func(api.Task, error) api.Task {
	return func(task api.Task, err error) api.Task {
		t.Helper()
		return waitTaskDone(t, c, task, err)
	}
}

func waitTaskDone(t *testing.T, c *client.Client, task api.Task, err error) api.Task {
	t.Helper()
	if err != nil {
		t.Fatalf("start task: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done, err := c.WaitTask(ctx, task.ID)
	if err != nil {
		t.Fatalf("wait for %s %s: %v", task.Kind, task.Target, err)
	}
	return done
}

// mustSucceed follows a task that must succeed: mustSucceed(t, c)(c.X(...)).
func mustSucceed(t *testing.T, c *client.Client) func(api.Task, error) api.Task {
	return func(task api.Task, err error) api.Task {
		t.Helper()
		return mustSucceedDone(t, c, task, err)
	}
}

func mustSucceedDone(t *testing.T, c *client.Client, task api.Task, err error) api.Task {
	t.Helper()
	done := waitTaskDone(t, c, task, err)
	if done.State != api.TaskSuccess && strings.HasPrefix(done.Kind, "vm.") {
		// QEMU's own words are in the VM's directory.
		if b, err := c.Download(ctx(t), "ds1", done.Target+"/qemu.log"); err == nil {
			t.Logf("%s/qemu.log:\n%s", done.Target, b)
		}
	}
	if done.State != api.TaskSuccess {
		t.Fatalf("%s %s: %s: %+v", done.Kind, done.Target, done.State, done.Error)
	}
	return done
}

func upload(t *testing.T, c *client.Client, ds, local, remote string) {
	t.Helper()
	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Upload(ctx, ds, remote, f, st.Size()); err != nil {
		t.Fatalf("upload %s: %v", remote, err)
	}
}

var (
	readyLine = regexp.MustCompile(`FVGUEST READY name=g1 mac=(\S+) ip=192\.168\.77\.11`)
	pongLine  = regexp.MustCompile(`FVGUEST PONG`)
	wroteLine = regexp.MustCompile(`FVGUEST WROTE`)
	dataLine  = regexp.MustCompile(`FVGUEST DATA (.*)$`)
	memLine   = regexp.MustCompile(`FVGUEST MEM (\d+) kB`)
)

// guestMemKiB asks the test guest for its MemTotal.
func guestMemKiB(t *testing.T, con *guestConsole) int64 {
	t.Helper()
	n, err := strconv.ParseInt(memLine.FindStringSubmatch(con.ask("mem", memLine))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitGuestMem waits until the guest's MemTotal reaches atLeast KiB (the
// kernel onlines hot-added memory a moment after the DIMM arrives).
func waitGuestMem(t *testing.T, con *guestConsole, atLeast int64) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n := guestMemKiB(t, con)
		if n >= atLeast || time.Now().After(deadline) {
			return n
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestVMLifecycle runs a nested test guest on a host under KVM-in-emulation:
// datastore, upload, port group, create, power on, console, ping from the
// host, snapshots, memory hot-add, hostd restart, suspend and resume,
// hot-add of a disk and a vNIC, ACPI shutdown, unregister/register,
// admission, destroy, and autostart after a host reboot.
func TestVMLifecycle(t *testing.T) {
	gk, gi := qemutest.GuestImage(t)
	token := qemutest.RandomToken(t)
	keyboard, typing := io.Pipe()
	t.Cleanup(func() { typing.Close() }) // after the failure diagnostics, which type
	host := bootHost(t, "vmhost", qemutest.WithConsoleInput(keyboard), qemutest.WithMemory(3072), qemutest.WithTimeout(40*time.Minute),
		qemutest.WithBlankDisk("state", 64), qemutest.WithBlankDisk("spare", 2048),
		qemutest.WithAppend("flashvisor.initstate=/dev/vda", "flashvisor.token="+token, "flashvisor.shell=true"))
	c, _ := waitAPI(t, host, token)
	t.Cleanup(func() {
		if t.Failed() && !hostHung(t, "vmhost", host, typing) {
			diagnoseHost(t, c, host)
		}
	})

	// A datastore on the spare disk (/dev/vdb).
	mustSucceed(t, c)(c.CreateDatastore(ctx(t), api.DatastoreCreateRequest{Name: "ds1", Device: "vdb"}))
	ds, err := c.Datastore(ctx(t), "ds1")
	if err != nil || ds.Status != api.DatastoreMounted || !strings.HasPrefix(ds.MountPoint, "/vmfs/volumes/") {
		t.Fatalf("datastore ds1 = %+v, %v; want mounted under /vmfs/volumes", ds, err)
	}
	upload(t, c, "ds1", gk, "guest/vmlinuz")
	upload(t, c, "ds1", gi, "guest/initrd.img")
	// "VM Network" exists on a fresh host (vSwitch0's); the host reaches
	// its VMs through a vmknic on it.
	if _, err := c.AddVMKNIC(ctx(t), api.VMKNIC{Name: "vmk1", PortGroup: "VM Network",
		IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "192.168.77.1/24"}}); err != nil {
		t.Fatal(err)
	}

	// Memory hot-add is on (up to 512 MiB); the guest kernel onlines
	// hot-added memory as it arrives (memhp_default_state=online: the test
	// guest has no udev to do it).
	spec := api.VMSpec{
		Name: "g1", VCPUs: 1, MemoryMiB: 256, MemoryHotAdd: true, MaxMemoryMiB: 512, Firmware: api.FirmwareBIOS,
		KernelBoot:      &api.KernelBoot{Kernel: "[ds1] guest/vmlinuz", Initrd: "[ds1] guest/initrd.img", Cmdline: "console=ttyS0 memhp_default_state=online fvguest.name=g1 fvguest.ip=192.168.77.11/24"},
		SCSIControllers: []api.SCSIController{{Model: api.SCSIVirtio}},
		Disks:           []api.VirtualDisk{{Bus: api.DiskBusSCSI, File: "g1.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 64}},
		NICs:            []api.NIC{{Model: api.NICVirtio, PortGroup: "VM Network", AddressType: api.MACGenerated}},
		SerialConsole:   true,
		Autostart:       api.Autostart{Enabled: true, Order: 1},
	}
	mustSucceed(t, c)(c.CreateVM(ctx(t), api.VMCreateRequest{Datastore: "ds1", Spec: spec}))
	v, err := c.VM(ctx(t), "g1")
	if err != nil {
		t.Fatal(err)
	}
	mac := v.Spec.NICs[0].MAC
	if !strings.HasPrefix(mac, "00:50:56:") {
		t.Errorf("generated MAC %q not in 00:50:56", mac)
	}

	start := time.Now()
	mustSucceed(t, c)(c.PowerVM(ctx(t), "g1", "on", ""))
	con := attachConsole(t, c, "g1")
	ready, next := con.wait(0, readyLine, 6*time.Minute)
	t.Logf("guest READY %.1fs after power-on: %s", time.Since(start).Seconds(), ready)
	if got := readyLine.FindStringSubmatch(ready)[1]; !strings.EqualFold(got, mac) {
		t.Errorf("guest sees MAC %s, want %s", got, mac)
	}
	_ = next
	v, _ = c.VM(ctx(t), "g1")
	if v.Status.State != api.VMPoweredOn || v.Status.Accel != "kvm" {
		t.Errorf("g1 status = %+v; want poweredOn under kvm (nested)", v.Status)
	}

	// Ping the guest from the host (the emergency shell's busybox).
	io.WriteString(typing, "ping -c 3 -W 2 192.168.77.11 && echo PING-G1-OK\n")
	if _, err := host.WaitConsole(ctx(t), regexp.MustCompile(`^PING-G1-OK`)); err != nil {
		t.Errorf("host cannot ping the guest: %v", err)
	}

	// Snapshot with memory, change the disk, revert: the change is gone.
	con.ask("write before", wroteLine)
	mustSucceed(t, c)(c.CreateSnapshot(ctx(t), "g1", api.SnapshotRequest{Name: "s1"}))
	con.ask("write after", wroteLine)
	if got := dataLine.FindStringSubmatch(con.ask("read", dataLine))[1]; got != "after" {
		t.Fatalf("read after write = %q", got)
	}
	mustSucceed(t, c)(c.RevertSnapshot(ctx(t), "g1", "s1"))
	if got := dataLine.FindStringSubmatch(con.ask("read", dataLine))[1]; got != "before" {
		t.Errorf("read after revert = %q, want %q", got, "before")
	}

	// Memory hot-add: 256 MiB more for the running guest, as one DIMM.
	// The spec records the new total, QEMU reports the DIMM, the guest
	// sees the memory.
	memBefore := guestMemKiB(t, con)
	hotStart := time.Now()
	v, _ = c.VM(ctx(t), "g1")
	more := v.Spec
	more.MemoryMiB = 512
	if v, err = c.ReconfigureVM(ctx(t), "g1", more); err != nil {
		t.Fatalf("memory hot-add to running g1: %v", err)
	}
	if v.Spec.MemoryMiB != 512 || v.Status.HotAddedMemoryMiB != 256 || v.Status.State != api.VMPoweredOn {
		t.Errorf("after memory hot-add: memory %d MiB, hot-added %d MiB, %s; want 512, 256, poweredOn",
			v.Spec.MemoryMiB, v.Status.HotAddedMemoryMiB, v.Status.State)
	}
	const grownKiB = 256<<10 - 4<<10 // 256 MiB, less a little the kernel may keep
	memAfter := waitGuestMem(t, con, memBefore+grownKiB)
	t.Logf("memory hot-add: guest MemTotal %d kB -> %d kB in %.1fs", memBefore, memAfter, time.Since(hotStart).Seconds())
	if memAfter < memBefore+grownKiB {
		t.Errorf("guest MemTotal after hot-add of 256 MiB = %d kB, want at least %d kB", memAfter, memBefore+grownKiB)
	}
	for _, tc := range []struct {
		what string
		mib  int
	}{{"shrinking", 256}, {"growing beyond max_memory_mib", 640}} {
		bad := v.Spec
		bad.MemoryMiB = tc.mib
		var ae *client.APIError
		if _, err := c.ReconfigureVM(ctx(t), "g1", bad); !errors.As(err, &ae) || ae.Code != api.ErrState {
			t.Errorf("%s a running VM's memory = %v, want %s", tc.what, err, api.ErrState)
		}
	}

	// hostd restarts: the VM keeps running and is controllable.
	pid := v.Status.PID
	before, err := hostdService(c, t)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SignalService(ctx(t), "hostd", "KILL")
	waitFor(t, "hostd restarted", 2*time.Minute, func() error {
		s, err := hostdService(c, t)
		if err != nil {
			return err
		}
		if s.State != api.ServiceRunning || s.Restarts != before.Restarts+1 {
			return errors.New("not yet")
		}
		return nil
	})
	waitFor(t, "hostd back with g1 adopted", 2*time.Minute, func() error {
		v2, err := c.VM(ctx(t), "g1")
		if err != nil {
			return err
		}
		if v2.Status.State != api.VMPoweredOn || v2.Status.PID != pid {
			t.Fatalf("after hostd restart g1 = %+v, want poweredOn with pid %d", v2.Status, pid)
		}
		if v2.Status.HotAddedMemoryMiB != 256 {
			t.Errorf("after hostd restart g1 has %d MiB hot-added, want 256 (from QEMU)", v2.Status.HotAddedMemoryMiB)
		}
		return nil
	})
	con = attachConsole(t, c, "g1")
	con.ask("ping", pongLine)

	// A screenshot of the VM's display (QMP screendump).
	png, err := c.Screenshot(ctx(t), "g1")
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Errorf("screenshot: %d bytes, %v; want a PNG", len(png), err)
	}

	// Suspend to a state file and resume: the guest carries on where it
	// was, with its hot-added memory (QEMU is started with the DIMM).
	mustSucceed(t, c)(c.PowerVM(ctx(t), "g1", "suspend", ""))
	if v, _ := c.VM(ctx(t), "g1"); v.Status.State != api.VMSuspended || v.Status.PID != 0 {
		t.Errorf("after suspend g1 = %+v, want suspended without a process", v.Status)
	}
	mustSucceed(t, c)(c.PowerVM(ctx(t), "g1", "on", ""))
	con = attachConsole(t, c, "g1")
	if got := dataLine.FindStringSubmatch(con.ask("read", dataLine))[1]; got != "before" {
		t.Errorf("read after resume = %q, want %q", got, "before")
	}
	if n := guestMemKiB(t, con); n != memAfter {
		t.Errorf("guest MemTotal after resume = %d kB, want %d kB as before the suspend", n, memAfter)
	}
	if v, _ := c.VM(ctx(t), "g1"); v.Status.HotAddedMemoryMiB != 256 {
		t.Errorf("after resume g1 has %d MiB hot-added, want 256", v.Status.HotAddedMemoryMiB)
	}

	// Hot-add a SCSI disk and a vNIC while the VM runs: QEMU must accept
	// them, and the parameter file keeps them.
	v, _ = c.VM(ctx(t), "g1")
	grown := v.Spec
	grown.Disks = append(grown.Disks, api.VirtualDisk{Bus: api.DiskBusSCSI, Unit: 1, File: "g1_1.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 32})
	grown.NICs = append(grown.NICs, api.NIC{Model: api.NICVirtio, PortGroup: "VM Network", AddressType: api.MACGenerated})
	if v, err = c.ReconfigureVM(ctx(t), "g1", grown); err != nil {
		t.Errorf("hot add to running g1: %v", err)
	} else if len(v.Spec.Disks) != 2 || len(v.Spec.NICs) != 2 || v.Status.State != api.VMPoweredOn {
		t.Errorf("after hot add: %d disks, %d NICs, %s", len(v.Spec.Disks), len(v.Spec.NICs), v.Status.State)
	}
	bad := v.Spec
	bad.VCPUs = 2
	var ae2 *client.APIError
	if _, err := c.ReconfigureVM(ctx(t), "g1", bad); !errors.As(err, &ae2) || ae2.Code != api.ErrState {
		t.Errorf("vCPU change on a running VM = %v, want %s", err, api.ErrState)
	}

	// ACPI shutdown.
	mustSucceed(t, c)(c.PowerVM(ctx(t), "g1", "shutdown", "2m"))
	if v, _ := c.VM(ctx(t), "g1"); v.Status.State != api.VMPoweredOff {
		t.Errorf("after shutdown g1 is %s", v.Status.State)
	}

	// Unregister and register again: same MAC.
	if err := c.UnregisterVM(ctx(t), "g1"); err != nil {
		t.Fatal(err)
	}
	v, err = c.RegisterVM(ctx(t), "ds1", "g1/g1.fvx")
	if err != nil || v.Spec.NICs[0].MAC != mac {
		t.Errorf("re-registered g1: %v, MAC %s; want %s", err, v.Spec.NICs[0].MAC, mac)
	}

	// Admission: a VM bigger than the host's memory is refused clearly.
	big := api.VMSpec{Name: "big", VCPUs: 1, MemoryMiB: 64 << 10, Firmware: api.FirmwareBIOS, SerialConsole: true}
	mustSucceed(t, c)(c.CreateVM(ctx(t), api.VMCreateRequest{Datastore: "ds1", Spec: big}))
	done := waitTask(t, c)(c.PowerVM(ctx(t), "big", "on", ""))
	if done.State != api.TaskError || done.Error.Code != api.ErrAdmission || !strings.Contains(done.Error.Message, "65536") {
		t.Errorf("power on big = %+v, want an admission error naming 65536 MiB", done)
	}
	mustSucceed(t, c)(c.DestroyVM(ctx(t), "big"))
	list, err := c.Browse(ctx(t), "ds1", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.Name == "big" {
			t.Errorf("big's directory is still on ds1 after destroy")
		}
	}
	var ae *client.APIError
	if _, err := c.VM(ctx(t), "big"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("VM(big) after destroy = %v, want 404", err)
	}

	// Other virtual hardware on real QEMU: the LSI-compatible SCSI HBA,
	// NVMe, a CD-ROM from an ISO on the datastore, an e1000 vNIC and VNC.
	// (UEFI is not booted here: OVMF under KVM nested in software emulation
	// takes many minutes; its arguments are golden-tested and were booted
	// under plain QEMU.)
	iso := filepath.Join(t.TempDir(), "empty.iso")
	if err := os.WriteFile(iso, make([]byte, 2048*16), 0o644); err != nil {
		t.Fatal(err)
	}
	upload(t, c, "ds1", iso, "iso/empty.iso")
	hw := api.VMSpec{
		Name: "g2", VCPUs: 1, MemoryMiB: 256, Firmware: api.FirmwareBIOS,
		KernelBoot:      &api.KernelBoot{Kernel: "[ds1] guest/vmlinuz", Initrd: "[ds1] guest/initrd.img", Cmdline: "console=ttyS0 fvguest.name=g2 fvguest.ip=192.168.77.12/24"},
		SCSIControllers: []api.SCSIController{{Model: api.SCSILSILogic}},
		Disks: []api.VirtualDisk{
			{Bus: api.DiskBusSCSI, File: "g2.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 32},
			{Bus: api.DiskBusNVMe, File: "g2_nvme.img", Provisioning: api.ProvisionThick, SizeMiB: 16},
		},
		CDROM:         &api.CDROM{File: "[ds1] iso/empty.iso", StartConnected: true},
		NICs:          []api.NIC{{Model: api.NICE1000, PortGroup: "VM Network", AddressType: api.MACGenerated}},
		SerialConsole: true, VNCConsole: true,
	}
	mustSucceed(t, c)(c.CreateVM(ctx(t), api.VMCreateRequest{Datastore: "ds1", Spec: hw}))
	mustSucceed(t, c)(c.PowerVM(ctx(t), "g2", "on", ""))
	con2 := attachConsole(t, c, "g2")
	ready2 := regexp.MustCompile(`FVGUEST READY name=g2 mac=\S+ ip=192\.168\.77\.12`)
	waitReady(t, c, "g2", con2, ready2)
	vnc, err := c.VNC(ctx(t), "g2")
	if err != nil {
		t.Errorf("VNC of g2: %v", err)
	} else {
		banner := make([]byte, 12)
		if _, err := io.ReadFull(vnc, banner); err != nil || !strings.HasPrefix(string(banner), "RFB ") {
			t.Errorf("VNC banner = %q, %v; want RFB", banner, err)
		}
		vnc.Close()
	}
	mustSucceed(t, c)(c.PowerVM(ctx(t), "g2", "off", ""))
	mustSucceed(t, c)(c.DestroyVM(ctx(t), "g2"))

	// Host reboot: the datastore is mounted again, the VM listed and, being
	// marked for autostart, running again.
	up, err := c.Host(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reboot(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// Going down includes shutting g1 down over ACPI; judge the new host
	// only once the old one is gone (its uptime drops).
	waitFor(t, "host going down", 5*time.Minute, func() error {
		h, err := c.Host(ctx(t))
		if err == nil && h.UptimeSeconds >= up.UptimeSeconds {
			return errors.New("still up")
		}
		return nil
	})
	waitFor(t, "host rebooted with g1 autostarted", 6*time.Minute, func() error {
		if _, err := c.Host(ctx(t)); err != nil {
			return err
		}
		v, err := c.VM(ctx(t), "g1")
		if err != nil {
			return err
		}
		if v.Status.State != api.VMPoweredOn {
			return errors.New("g1 is " + v.Status.State)
		}
		return nil
	})
	con = attachConsole(t, c, "g1")
	con.wait(0, readyLine, 6*time.Minute)
	// A fresh power-on: all 512 MiB from the start, no DIMM.
	if v, _ := c.VM(ctx(t), "g1"); v.Spec.MemoryMiB != 512 || v.Status.HotAddedMemoryMiB != 0 {
		t.Errorf("g1 after the reboot: memory %d MiB, hot-added %d MiB; want 512, 0", v.Spec.MemoryMiB, v.Status.HotAddedMemoryMiB)
	}
	if n := guestMemKiB(t, con); n < memBefore+grownKiB {
		t.Errorf("guest MemTotal after a power-on with 512 MiB = %d kB, want at least %d kB", n, memBefore+grownKiB)
	}

	// Host shutdown stops the VM cleanly first.
	if err := c.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := host.Wait(wctx); err != nil {
		t.Fatalf("host after shutdown: %v", err)
	}
	for _, l := range host.Console() {
		if strings.Contains(l, "host shutting down: shutting VMs down") {
			return
		}
	}
	t.Errorf("hostd did not shut the VMs down at host shutdown")
}

// diagnoseHost logs what a failed test needs to tell a hostd fault from an
// emulation stall: the host console's tail, hostd's log and recent events.
func diagnoseHost(t *testing.T, c *client.Client, host *qemutest.VM) {
	tail := host.Console()
	if len(tail) > 80 {
		tail = tail[len(tail)-80:]
	}
	t.Logf("host console, last %d lines:\n%s", len(tail), strings.Join(tail, "\n"))
	cx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if log, err := c.ServiceLog(cx, "hostd"); err == nil {
		lines := log.Lines
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		t.Logf("hostd log, last %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	} else {
		t.Logf("hostd log: %v", err)
	}
	if evs, err := c.Events(cx, 0); err == nil {
		if len(evs) > 40 {
			evs = evs[len(evs)-40:]
		}
		for _, e := range evs {
			t.Logf("event %+v", e)
		}
	}
}

// waitReady waits for a nested guest's READY line and returns it. Nested
// guests under this machine's emulated SVM sometimes stop in early boot
// (seen in CI: silent after the XSAVE warning for minutes; the VM bench
// saw the same): such a guest is reset once through hostd, and the test
// says so; a second stall fails it.
func waitReady(t *testing.T, c *client.Client, name string, con *guestConsole, ready *regexp.Regexp) string {
	t.Helper()
	if l, _, ok := con.tryWait(0, ready, 4*time.Minute); ok {
		return l
	}
	v, err := c.VM(ctx(t), name)
	t.Logf("%s not READY after 4 minutes (status %+v, %v): resetting it once through the API", name, v.Status, err)
	from := con.mark()
	mustSucceed(t, c)(c.PowerVM(ctx(t), name, "reset", ""))
	l, _, ok := con.tryWait(from, ready, 6*time.Minute)
	if !ok {
		nestedStall(t, "%s not READY 6 minutes after its reset", name)
	}
	return l
}
