package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

// VM benchmarks (issue 3): power-on latency through hostd against the same
// QEMU command started by hand in the same host, hostd's resident memory
// per running VM, and ten VMs powered on at once. Everything goes through
// public interfaces: the API (client), and the host's emergency shell on
// its serial console (flashvisor.shell=true) for what the API does not
// offer: reading a QEMU's command line and starting QEMU by hand.

const (
	vmBenchHostMiB  = 6144
	vmBenchHostCPUs = 2
	vmBenchRunsMiB  = 256 // b0, the latency VM
	vmBenchManyMiB  = 128 // b1..bN
	vmBenchPortPG   = "VM Network"
	vmBenchDS       = "ds1"
	byHandName      = "bh" // fvguest.name of the by-hand runs: bh1, bh2, ...
	byHandDir       = "/run/fvbench-byhand"
	byHandScript    = "/run/fvbench-byhand.sh"
	// readyWait bounds one power-on: a nested guest under emulation now
	// and then stops early in its kernel's boot and never comes up; such an
	// attempt is counted as hung and retried.
	readyWait     = 4 * time.Minute
	manyReadyWait = 20 * time.Minute
	shellWait     = 2 * time.Minute
)

// vmBench is one benchmark host and the ways to talk to it.
type vmBench struct {
	host   *qemutest.VM
	c      *client.Client
	typing io.Writer // the host's serial console input (its emergency shell)
	out    io.Writer // progress
	mount  string    // ds1's mount point in the host
	seq    int       // shell command counter, for unique end markers
	logDir string    // guest consoles are saved here
}

type vmResults struct {
	runs       int
	hostd      []time.Duration // API call -> READY on the API console
	hostdTask  []time.Duration // API call -> power-on task done
	byHand     []time.Duration // typed line -> READY on the host console
	argv       []string        // hostd's QEMU command for b0
	dropped    []string        // arguments left out by hand
	many       int
	manyTasks  time.Duration // all power-on tasks done
	manyReady  time.Duration // all READY markers seen
	manyUp     int           // VMs that said READY within manyReadyWait
	hostdHung  int           // attempts retried because the guest hung
	byHandHung int
	loadStart  string // of the machine running the host, /proc/loadavg
	loadEnd    string
	rssBefore  float64
	rssAfter   float64
	heapBefore float64
	heapAfter  float64
	accel      string // inside the host, for the nested VMs
	hostAccel  string // of the host itself
}

// runVM boots a benchmark host, measures, and writes the "vm-power-on"
// section of the benchmarks file.
func runVM(ctx context.Context, root, outFile string, runs, many int, stdout io.Writer) error {
	if runs < 1 || many < 1 {
		return fmt.Errorf("vm bench: -vm-runs %d and -vm-many %d must be at least 1", runs, many)
	}
	hostDir, err := qemutest.ImageDir()
	if err != nil {
		return err
	}
	hk, hi, err := qemutest.HostImageIn(hostDir)
	if err != nil {
		return fmt.Errorf("host image not built (run make image): %w", err)
	}
	guestDir, err := qemutest.GuestImageDir()
	if err != nil {
		return err
	}
	gk, gi, err := qemutest.HostImageIn(guestDir)
	if err != nil {
		return fmt.Errorf("guest image not built (run make image): %w", err)
	}
	token, err := qemutest.NewToken()
	if err != nil {
		return err
	}
	stateDir := filepath.Join(qemutest.DefaultStateRoot(), "fvbench-vm")
	keyboard, typing := io.Pipe()
	defer typing.Close()
	fmt.Fprintf(stdout, "vm bench: booting the host (%d MiB, %d vCPUs); its console log is %s\n",
		vmBenchHostMiB, vmBenchHostCPUs, filepath.Join(stateDir, "fvbench-vm.log"))
	host, err := qemutest.Boot("fvbench-vm",
		qemutest.WithKernel(hk), qemutest.WithInitrd(hi),
		qemutest.WithMemory(vmBenchHostMiB), qemutest.WithCPUs(vmBenchHostCPUs),
		qemutest.WithForward(443), qemutest.WithStateDir(stateDir),
		// A whole run is well under this; it only bounds a hang.
		qemutest.WithTimeout(3*time.Hour),
		qemutest.WithConsoleInput(keyboard),
		qemutest.WithBlankDisk("state", 64), qemutest.WithBlankDisk("spare", 2048),
		qemutest.WithAppend("flashvisor.initstate=/dev/vda", "flashvisor.token="+token, "flashvisor.shell=true"))
	if err != nil {
		return fmt.Errorf("boot the benchmark host: %w", err)
	}
	// Killing the host's QEMU ends every VM in it, the by-hand ones too.
	defer host.Close()
	actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	_, fp, err := host.WaitAPI(actx, 443, token)
	cancel()
	if err != nil {
		return err
	}
	// With ten nested VMs starting, the emulated host can stall for more
	// than the client's default minute per call.
	c, err := client.New(client.Options{Addr: host.HostAddr(443), Token: token, Fingerprint: fp, Timeout: 10 * time.Minute})
	if err != nil {
		return err
	}
	b := &vmBench{host: host, c: c, typing: typing, out: stdout, logDir: stateDir}
	r := vmResults{runs: runs, many: many, hostAccel: host.Accel(), loadStart: loadavg()}
	if err := b.setup(ctx, gk, gi); err != nil {
		return err
	}
	if err := b.latency(ctx, &r); err != nil {
		return err
	}
	if err := b.concurrent(ctx, &r); err != nil {
		return err
	}
	r.loadEnd = loadavg()
	return updateSection(filepath.Join(root, outFile), "vm-power-on", "VM power-on", r.section(time.Now(), machine()))
}

// setup quiets the host's kernel console, makes the datastore, uploads the
// test guest, adds the port group and creates b0.
func (b *vmBench) setup(ctx context.Context, gk, gi string) error {
	// Kernel messages (taps joining bridges) would land between the shell's
	// lines on the console.
	if err := b.shellRetry(ctx, "dmesg -n 1"); err != nil {
		return err
	}
	if _, err := b.task(ctx, "create datastore", func() (api.Task, error) {
		return b.c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: vmBenchDS, Device: "vdb"})
	}); err != nil {
		return err
	}
	ds, err := b.c.Datastore(ctx, vmBenchDS)
	if err != nil {
		return fmt.Errorf("datastore %s: %w", vmBenchDS, err)
	}
	if ds.MountPoint == "" {
		return fmt.Errorf("datastore %s has no mount point: %+v", vmBenchDS, ds)
	}
	b.mount = ds.MountPoint
	for local, remote := range map[string]string{gk: "guest/vmlinuz", gi: "guest/initrd.img"} {
		if err := b.upload(ctx, local, remote); err != nil {
			return err
		}
	}
	if err := b.c.AddPortGroup(ctx, api.PortGroup{Name: vmBenchPortPG}); err != nil {
		return fmt.Errorf("add port group: %w", err)
	}
	return b.createVM(ctx, "b0", vmBenchRunsMiB)
}

func (b *vmBench) upload(ctx context.Context, local, remote string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := b.c.Upload(uctx, vmBenchDS, remote, f, st.Size()); err != nil {
		return fmt.Errorf("upload %s to [%s] %s: %w", local, vmBenchDS, remote, err)
	}
	return nil
}

// guestSpec is a benchmark VM: the test guest by direct kernel boot, one
// vNIC left down (fvguest.ip=none: no DHCP wait), serial console, no disk.
func guestSpec(name string, mib int) api.VMSpec {
	return api.VMSpec{
		Name: name, VCPUs: 1, MemoryMiB: mib, Firmware: api.FirmwareBIOS,
		KernelBoot: &api.KernelBoot{Kernel: "[" + vmBenchDS + "] guest/vmlinuz", Initrd: "[" + vmBenchDS + "] guest/initrd.img",
			Cmdline: "console=ttyS0 fvguest.name=" + name + " fvguest.ip=none"},
		NICs:          []api.NIC{{Model: api.NICVirtio, PortGroup: vmBenchPortPG, AddressType: api.MACGenerated}},
		SerialConsole: true,
	}
}

func (b *vmBench) createVM(ctx context.Context, name string, mib int) error {
	_, err := b.task(ctx, "create VM "+name, func() (api.Task, error) {
		return b.c.CreateVM(ctx, api.VMCreateRequest{Datastore: vmBenchDS, Spec: guestSpec(name, mib)})
	})
	return err
}

// task starts a task and waits for its success; a failed VM task comes with
// QEMU's log from the VM's folder.
func (b *vmBench) task(ctx context.Context, what string, start func() (api.Task, error)) (api.Task, error) {
	t, err := start()
	if err != nil {
		return t, fmt.Errorf("%s: %w", what, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	done, err := b.c.WaitTask(wctx, t.ID)
	if err != nil {
		return done, fmt.Errorf("%s: wait for task %s: %w", what, t.ID, err)
	}
	if done.State != api.TaskSuccess {
		msg := fmt.Sprintf("%s: task %s %s: %+v", what, done.Kind, done.State, done.Error)
		if strings.HasPrefix(done.Kind, "vm.") {
			if log, err := b.c.Download(ctx, vmBenchDS, done.Target+"/qemu.log"); err == nil {
				msg += "\nqemu.log:\n" + string(log)
			}
		}
		return done, errors.New(msg)
	}
	return done, nil
}

// latency alternates power-ons through hostd and by hand, so a drift of the
// machine during the runs shows on both sides alike.
func (b *vmBench) latency(ctx context.Context, r *vmResults) error {
	attempt := 0
	for len(r.hostd) < r.runs || len(r.byHand) < r.runs {
		attempt++
		if attempt > 2*r.runs+4 {
			return fmt.Errorf("too many hung power-ons (hostd %d, by hand %d)", r.hostdHung, r.byHandHung)
		}
		if len(r.hostd) < r.runs {
			d, task, err := b.hostdRun(ctx, attempt, r)
			switch {
			case errors.Is(err, errHung):
				r.hostdHung++
				fmt.Fprintf(b.out, "vm bench: hostd attempt %d: %v\n", attempt, err)
			case err != nil:
				return fmt.Errorf("hostd attempt %d: %w", attempt, err)
			default:
				r.hostd, r.hostdTask = append(r.hostd, d), append(r.hostdTask, task)
				fmt.Fprintf(b.out, "vm bench: hostd attempt %d: READY %.2fs after the API call (task done after %.2fs)\n", attempt, d.Seconds(), task.Seconds())
			}
		}
		if len(r.byHand) < r.runs {
			d, err := b.byHandRun(ctx, attempt)
			switch {
			case errors.Is(err, errHung):
				r.byHandHung++
				fmt.Fprintf(b.out, "vm bench: by-hand attempt %d: %v\n", attempt, err)
			case err != nil:
				return fmt.Errorf("by-hand attempt %d: %w", attempt, err)
			default:
				r.byHand = append(r.byHand, d)
				fmt.Fprintf(b.out, "vm bench: by-hand attempt %d: READY %.2fs after typing the command\n", attempt, d.Seconds())
			}
		}
	}
	return nil
}

// errHung marks a power-on whose guest did not say READY in readyWait.
var errHung = errors.New("guest hung: no READY marker")

// hostdRun powers b0 on through the API and waits for its READY marker on
// the API console; the first run also records hostd's QEMU command and
// prepares the by-hand script from it. b0 is powered off (hard) after.
func (b *vmBench) hostdRun(ctx context.Context, i int, r *vmResults) (ready, task time.Duration, err error) {
	start := time.Now()
	if _, err := b.task(ctx, "power on b0", func() (api.Task, error) { return b.c.PowerVM(ctx, "b0", "on", "") }); err != nil {
		return 0, 0, err
	}
	task = time.Since(start)
	con, err := attach(ctx, b.c, "b0")
	if err != nil {
		return 0, 0, err
	}
	at, err := con.wait(ctx, regexp.MustCompile(`FVGUEST READY name=b0 `), readyWait)
	con.Close()
	con.save(filepath.Join(b.logDir, fmt.Sprintf("b0-attempt%d.log", i)))
	if errors.Is(err, errNoLine) {
		if _, oerr := b.task(ctx, "power off b0", func() (api.Task, error) { return b.c.PowerVM(ctx, "b0", "off", "") }); oerr != nil {
			return 0, 0, oerr
		}
		return 0, 0, fmt.Errorf("%w within %s (console in %s): %w", errHung, readyWait, b.logDir, err)
	}
	if err != nil {
		return 0, 0, err
	}
	ready = at.Sub(start)
	v, err := b.c.VM(ctx, "b0")
	if err != nil {
		return 0, 0, err
	}
	if v.Status.State != api.VMPoweredOn || v.Status.PID == 0 {
		return 0, 0, fmt.Errorf("b0 after READY = %+v, want poweredOn with a PID", v.Status)
	}
	r.accel = v.Status.Accel
	if len(r.argv) == 0 {
		if err := b.prepareByHand(ctx, v.Status.PID, r); err != nil {
			return 0, 0, err
		}
	}
	if _, err := b.task(ctx, "power off b0", func() (api.Task, error) { return b.c.PowerVM(ctx, "b0", "off", "") }); err != nil {
		return 0, 0, err
	}
	if v, err := b.c.VM(ctx, "b0"); err != nil || v.Status.State != api.VMPoweredOff {
		return 0, 0, fmt.Errorf("b0 after power off = %+v, %v; want poweredOff", v.Status, err)
	}
	return ready, task, nil
}

// prepareByHand saves the running QEMU's command line, binary and working
// folder to the datastore through the host shell, downloads them through
// the API, and installs the by-hand script in the host.
func (b *vmBench) prepareByHand(ctx context.Context, pid int, r *vmResults) error {
	dir := b.mount + "/fvbench"
	cmd := fmt.Sprintf("mkdir -p %[1]s && cat /proc/%[2]d/cmdline > %[1]s/cmdline && readlink /proc/%[2]d/exe > %[1]s/exe && readlink /proc/%[2]d/cwd > %[1]s/cwd", dir, pid)
	if err := b.shell(ctx, cmd); err != nil {
		return err
	}
	get := func(name string) ([]byte, error) {
		data, err := b.c.Download(ctx, vmBenchDS, "fvbench/"+name)
		if err != nil {
			return nil, fmt.Errorf("download the saved %s of QEMU (pid %d): %w", name, pid, err)
		}
		return data, nil
	}
	cmdline, err := get("cmdline")
	if err != nil {
		return err
	}
	exe, err := get("exe")
	if err != nil {
		return err
	}
	cwd, err := get("cwd")
	if err != nil {
		return err
	}
	r.argv = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if len(r.argv) < 2 {
		return fmt.Errorf("QEMU pid %d: command line %q", pid, cmdline)
	}
	args, dropped, err := byHandArgs(r.argv[1:], "b0", byHandDir)
	if err != nil {
		return err
	}
	r.dropped = dropped
	script := byHandShell(strings.TrimSpace(string(exe)), strings.TrimSpace(string(cwd)), args)
	if err := b.c.Upload(ctx, vmBenchDS, "fvbench/byhand.sh", strings.NewReader(script), int64(len(script))); err != nil {
		return fmt.Errorf("upload the by-hand script: %w", err)
	}
	// A short path in /run keeps the typed line short.
	return b.shell(ctx, fmt.Sprintf("cp %s/byhand.sh %s", dir, byHandScript))
}

// namePlaceholder stands for the by-hand guest's name in byHandArgs' result;
// byHandShell turns it into bh$1.
const namePlaceholder = "\x00NAME\x00"

// byHandArgs turns hostd's QEMU arguments for VM vm into the by-hand ones:
// the serial console goes to a file in dir, the NICs are left out (their
// taps are hostd's, passed as file descriptors), the guest's fvguest.name
// becomes namePlaceholder, and every path in the VM's runtime folder (QMP,
// serial, VNC sockets, PID file) moves to dir. It returns the arguments and
// the ones it dropped.
func byHandArgs(args []string, vm, dir string) ([]string, []string, error) {
	val := func(opts, key string) string {
		for _, kv := range strings.Split(opts, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
	serial := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-device" && strings.HasPrefix(args[i+1], "isa-serial,") {
			serial = val(args[i+1], "chardev")
		}
	}
	if serial == "" {
		return nil, nil, errors.New("no isa-serial device with a chardev in QEMU's arguments")
	}
	runDir := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-chardev" && val(args[i+1], "id") == serial {
			if p := val(args[i+1], "path"); p != "" {
				runDir = path.Dir(p)
			}
		}
	}
	if runDir == "" || runDir == "/" || runDir == "." {
		return nil, nil, fmt.Errorf("serial chardev %s has no socket path", serial)
	}
	var out, dropped []string
	named := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := ""
		if i+1 < len(args) {
			next = args[i+1]
		}
		switch {
		case a == "-netdev", a == "-device" && strings.Contains(next, "netdev="):
			dropped = append(dropped, a, next)
			i++
			continue
		case a == "-chardev" && val(next, "id") == serial:
			out = append(out, a, "file,id="+serial+",path="+dir+"/serial-"+namePlaceholder+".log")
			i++
			continue
		case a == "-append":
			tok := "fvguest.name=" + vm
			fields := strings.Fields(next)
			for j, f := range fields {
				if f == tok {
					fields[j] = "fvguest.name=" + namePlaceholder
					named = true
				}
			}
			out = append(out, a, strings.Join(fields, " "))
			i++
			continue
		}
		out = append(out, strings.ReplaceAll(a, runDir+"/", dir+"/"))
	}
	if !named {
		return nil, nil, fmt.Errorf("no fvguest.name=%s in QEMU's -append", vm)
	}
	return out, dropped, nil
}

// shellQuote quotes one word for sh; namePlaceholder becomes bh$1.
func shellQuote(s string) string {
	parts := strings.Split(s, namePlaceholder)
	for i, p := range parts {
		parts[i] = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
	}
	return strings.Join(parts, `"`+byHandName+`$1"`)
}

// byHandShell is the script that starts QEMU by hand: `sh byhand.sh N`
// starts the guest named bhN with its serial console to a file, waits
// (polling every 10 ms) for its READY marker, prints that marker line on the
// host console, kills QEMU and prints FVB-BYHAND-END-N. A guest without
// READY after readyWait is killed (FVB-BYHAND-HUNG-N).
func byHandShell(exe, cwd string, args []string) string {
	var q []string
	for _, a := range args {
		q = append(q, shellQuote(a))
	}
	var s strings.Builder
	s.WriteString("#!/bin/sh\n# fvbench: hostd's QEMU command for b0, started by hand (docs/benchmarks.md).\n")
	fmt.Fprintf(&s, "d=%s\nmkdir -p $d || exit 1\nrm -f $d/hung\nf=$d/serial-%s$1.log\nrm -f $f\n", byHandDir, byHandName)
	if cwd != "" {
		fmt.Fprintf(&s, "cd %s || exit 1\n", shellQuote(cwd))
	}
	fmt.Fprintf(&s, "%s %s </dev/null >$d/qemu.log 2>&1 &\nq=$!\n", shellQuote(exe), strings.Join(q, " "))
	// b[h] keeps this pattern from matching itself anywhere it is shown.
	fmt.Fprintf(&s, "(sleep %d; touch $d/hung; kill $q) </dev/null >/dev/null 2>&1 &\nw=$!\n", int(readyWait.Seconds()))
	s.WriteString(`while ! grep -q 'FVGUEST READY name=b[h]' $f 2>/dev/null; do
	if ! kill -0 $q 2>/dev/null; then
		kill $w 2>/dev/null
		if [ -e $d/hung ]; then echo "FVB-BYHAND-HUNG-$1"; exit 2; fi
		echo "FVB-BYHAND-FAILED-$1"; cat $d/qemu.log; exit 1
	fi
	usleep 10000
done
grep -m1 'FVGUEST READY name=b[h]' $f
kill $w 2>/dev/null; kill $q; wait $q
echo "FVB-BYHAND-END-$1"
`)
	return s.String()
}

// byHandRun types `sh byhand.sh i` into the host shell and times it until
// the by-hand guest's READY marker is on the host's console.
func (b *vmBench) byHandRun(ctx context.Context, i int) (time.Duration, error) {
	readyRE := regexp.MustCompile(fmt.Sprintf(`FVGUEST READY name=%s%d `, byHandName, i))
	endRE := regexp.MustCompile(fmt.Sprintf(`FVB-BYHAND-(END|FAILED|HUNG)-%d$`, i))
	wctx, cancel := context.WithTimeout(ctx, readyWait+time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := io.WriteString(b.typing, fmt.Sprintf("sh %s %d\n", byHandScript, i)); err != nil {
		return 0, fmt.Errorf("type into the host shell: %w", err)
	}
	ready := make(chan time.Time, 1)
	go func() {
		if _, err := b.host.WaitConsole(wctx, readyRE); err == nil {
			ready <- time.Now()
		}
	}()
	end, err := b.host.WaitConsole(wctx, endRE)
	if err != nil {
		return 0, fmt.Errorf("by-hand QEMU: %w; host console:\n%s", err, b.consoleTail(20))
	}
	if strings.Contains(end, "HUNG") {
		return 0, fmt.Errorf("%w within %s (its console is %s/serial-%s%d.log in the host)", errHung, readyWait, byHandDir, byHandName, i)
	}
	if strings.Contains(end, "FAILED") {
		return 0, fmt.Errorf("by-hand QEMU exited before READY; host console:\n%s", b.consoleTail(20))
	}
	select {
	case t := <-ready:
		return t.Sub(start), nil
	case <-wctx.Done():
		return 0, fmt.Errorf("by-hand run ended without the marker %s on the host console", readyRE)
	}
}

// concurrent creates b1..bN, powers them on at once and waits for every
// task and every READY marker; hostd's memory is read before and after.
func (b *vmBench) concurrent(ctx context.Context, r *vmResults) error {
	var names []string
	for i := 1; i <= r.many; i++ {
		name := fmt.Sprintf("b%d", i)
		names = append(names, name)
		if err := b.createVM(ctx, name, vmBenchManyMiB); err != nil {
			return err
		}
	}
	var err error
	if r.rssBefore, r.heapBefore, err = b.hostdMemory(ctx); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "vm bench: hostd RSS %.1f MiB with %d VMs defined, none running\n", r.rssBefore/(1<<20), r.many+1)
	type result struct {
		task, ready time.Duration
		con         *console
		err         error
	}
	results := make([]result, len(names))
	var wg sync.WaitGroup
	start := time.Now()
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			if _, res.err = b.task(ctx, "power on "+name, func() (api.Task, error) { return b.c.PowerVM(ctx, name, "on", "") }); res.err != nil {
				return
			}
			res.task = time.Since(start)
			if res.con, res.err = attach(ctx, b.c, name); res.err != nil {
				return
			}
			var at time.Time
			if at, res.err = res.con.wait(ctx, regexp.MustCompile(`FVGUEST READY name=`+name+` `), manyReadyWait); res.err == nil {
				res.ready = at.Sub(start)
			}
		}()
	}
	wg.Wait()
	var errs []error
	for i, res := range results {
		if res.con != nil {
			res.con.Close()
			res.con.save(filepath.Join(b.logDir, names[i]+".log"))
		}
		switch {
		case errors.Is(res.err, errNoLine):
			fmt.Fprintf(b.out, "vm bench: %s hung: %v\n", names[i], res.err)
		case res.err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", names[i], res.err))
		default:
			r.manyUp++
			r.manyReady = max(r.manyReady, res.ready)
		}
		r.manyTasks = max(r.manyTasks, res.task)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "vm bench: %d VMs at once: all tasks done after %.1fs, %d READY, the last after %.1fs\n", r.many, r.manyTasks.Seconds(), r.manyUp, r.manyReady.Seconds())
	if r.rssAfter, r.heapAfter, err = b.hostdMemory(ctx); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "vm bench: hostd RSS %.1f MiB with %d VMs running\n", r.rssAfter/(1<<20), r.many)
	return nil
}

// Memory samples: the Go runtime holds garbage until its next collection
// (forced at least every 2 minutes) and returns freed pages lazily, so one
// reading says little; the smallest over a little more than 2 minutes is
// the steady state.
const (
	memSamples  = 14
	memInterval = 10 * time.Second
)

// hostdMemory reads hostd's resident memory and Go heap in use from its
// Prometheus metrics (process and Go collectors): the smallest of
// memSamples readings memInterval apart.
func (b *vmBench) hostdMemory(ctx context.Context) (rss, heap float64, err error) {
	for i := range memSamples {
		if i > 0 {
			select {
			case <-time.After(memInterval):
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
		text, err := b.c.Metrics(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("metrics: %w", err)
		}
		r, err := metricValue(text, "process_resident_memory_bytes")
		if err != nil {
			return 0, 0, err
		}
		h, err := metricValue(text, "go_memstats_heap_inuse_bytes")
		if err != nil {
			return 0, 0, err
		}
		if i == 0 {
			rss, heap = r, h
		}
		rss, heap = min(rss, r), min(heap, h)
	}
	return rss, heap, nil
}

// metricValue is the value of an unlabelled metric in Prometheus text.
func metricValue(text, name string) (float64, error) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", name, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("metric %s not in hostd's metrics", name)
}

// shell runs a command in the host's emergency shell and waits for its
// exit status on the console.
func (b *vmBench) shell(ctx context.Context, cmd string) error {
	return b.shellFor(ctx, cmd, shellWait)
}

// shellRetry is shell for the first command, typed again if the shell was
// not reading yet.
func (b *vmBench) shellRetry(ctx context.Context, cmd string) error {
	var err error
	for range 3 {
		if err = b.shellFor(ctx, cmd, 30*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return err
}

func (b *vmBench) shellFor(ctx context.Context, cmd string, d time.Duration) error {
	b.seq++
	marker := fmt.Sprintf("FVB-DONE-%d", b.seq)
	// The echo of the typed line shows rc=$?, never rc=DIGITS.
	re := regexp.MustCompile(marker + ` rc=(\d+)`)
	if _, err := io.WriteString(b.typing, cmd+`; echo "`+marker+` rc=$?"`+"\n"); err != nil {
		return fmt.Errorf("type into the host shell: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	l, err := b.host.WaitConsole(wctx, re)
	if err != nil {
		return fmt.Errorf("host shell %q: %w; host console:\n%s", cmd, err, b.consoleTail(15))
	}
	if rc := re.FindStringSubmatch(l)[1]; rc != "0" {
		return fmt.Errorf("host shell %q: exit status %s; host console:\n%s", cmd, rc, b.consoleTail(15))
	}
	return nil
}

func (b *vmBench) consoleTail(n int) string {
	l := b.host.Console()
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// console reads a VM's serial console through the API, noting when each
// line arrived.
type console struct {
	rwc     io.ReadWriteCloser
	mu      sync.Mutex
	lines   []string
	at      []time.Time
	changed chan struct{}
	done    chan struct{}
}

func attach(ctx context.Context, c *client.Client, vm string) (*console, error) {
	rwc, err := c.Console(ctx, vm, false)
	if err != nil {
		return nil, fmt.Errorf("console of %s: %w", vm, err)
	}
	con := &console{rwc: rwc, changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(con.done)
		sc := bufio.NewScanner(rwc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			now := time.Now()
			con.mu.Lock()
			con.lines = append(con.lines, strings.TrimRight(sc.Text(), "\r"))
			con.at = append(con.at, now)
			close(con.changed)
			con.changed = make(chan struct{})
			con.mu.Unlock()
		}
	}()
	return con, nil
}

// wait returns when the first line matching re arrived.
func (c *console) wait(ctx context.Context, re *regexp.Regexp, d time.Duration) (time.Time, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	next := 0
	for {
		c.mu.Lock()
		for ; next < len(c.lines); next++ {
			if re.MatchString(c.lines[next]) {
				at := c.at[next]
				c.mu.Unlock()
				return at, nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-c.done:
			c.mu.Lock()
			more := next < len(c.lines)
			c.mu.Unlock()
			if !more {
				return time.Time{}, fmt.Errorf("console closed before a line matching %s; last lines:\n%s", re, c.tail(10))
			}
		case <-timer.C:
			return time.Time{}, fmt.Errorf("%w matching %s within %s; last lines:\n%s", errNoLine, re, d, c.tail(3))
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines[max(0, len(c.lines)-n):], "\n")
}

func (c *console) Close() error { return c.rwc.Close() }

// errNoLine is console.wait's timeout.
var errNoLine = errors.New("no console line")

// save writes the lines read so far, each with its arrival time, to path;
// best effort (it is for a person looking into a hang).
func (c *console) save(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s strings.Builder
	for i, l := range c.lines {
		fmt.Fprintf(&s, "%s %s\n", c.at[i].Format("15:04:05.000"), l)
	}
	os.WriteFile(path, []byte(s.String()), 0o644)
}

// loadavg is the machine's 1, 5 and 15-minute load average.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " / ")
	}
	return "unknown"
}

// section is the benchmarks file's text for these results.
func (r vmResults) section(now time.Time, machine string) string {
	var s bytes.Buffer
	fmt.Fprintf(&s, "Measured %s by `make bench` (this section alone: `go run ./qemu-test/cmd/fvbench -only vm`) on: %s.\n\n", now.UTC().Format("2006-01-02"), machine)
	fmt.Fprintf(&s, "One host under QEMU (%s, %d MiB, %d vCPUs); the test VMs run inside it under %s (nested). "+
		"Each VM is the test guest (`testguest`) by direct kernel boot: 1 vCPU, serial console, one virtio vNIC left down "+
		"(`fvguest.ip=none`, so no DHCP wait), no disk. READY is the guest's `FVGUEST READY` line, printed by its PID 1 once booted.\n\n",
		r.hostAccel, vmBenchHostMiB, vmBenchHostCPUs, r.accel)
	fmt.Fprintf(&s, "The machine was shared with other work during the run (1/5/15-minute load average %s at the start, %s at the end, on %d cores): "+
		"on an emulated host every figure moves with that, so compare the two sides of one run rather than runs on different days.\n\n",
		r.loadStart, r.loadEnd, runtime.NumCPU())
	hm, bm := median(r.hostd), median(r.byHand)
	fmt.Fprintf(&s, "| power-on to READY (%d MiB VM, median of %d) | seconds | min / max |\n|---|---|---|\n", vmBenchRunsMiB, r.runs)
	fmt.Fprintf(&s, "| through hostd: API call → READY on the API console | %.2f | %.2f / %.2f |\n", hm.Seconds(), minD(r.hostd).Seconds(), maxD(r.hostd).Seconds())
	fmt.Fprintf(&s, "| of which: API call → power-on task done | %.2f | %.2f / %.2f |\n", median(r.hostdTask).Seconds(), minD(r.hostdTask).Seconds(), maxD(r.hostdTask).Seconds())
	fmt.Fprintf(&s, "| by hand: same QEMU command typed into the host shell → READY on the host console | %.2f | %.2f / %.2f |\n", bm.Seconds(), minD(r.byHand).Seconds(), maxD(r.byHand).Seconds())
	fmt.Fprintf(&s, "| ratio hostd / by hand (medians) | %.2f | |\n\n", hm.Seconds()/bm.Seconds())
	if r.hostdHung+r.byHandHung > 0 {
		fmt.Fprintf(&s, "Attempts left out because the guest hung early in its kernel's boot and said nothing more for %s "+
			"(powered off and tried again): %d through hostd, %d by hand. Such hangs come from the nested VM under emulation on both sides, not from how QEMU was started.\n\n",
			readyWait, r.hostdHung, r.byHandHung)
	}
	s.WriteString("Method. *Through hostd*: the clock starts before `POST /vms/b0/power` (op `on`) from the machine running the host; " +
		"the bench waits for the task, attaches to `GET /vms/b0/console` (the websocket's scrollback holds the output from QEMU's start) " +
		"and stops the clock when the READY line arrives there (pushed, no polling). Then a hard power-off (`off`) and a wait for poweredOff. " +
		"*By hand*: during the first hostd run the bench saves `/proc/PID/cmdline`, `exe` and `cwd` of b0's QEMU (PID from the API's VM status) " +
		"to the datastore through the host's emergency shell (`flashvisor.shell=true`) and downloads them through the API. " +
		"It then writes a script that runs that same command with these changes: ")
	fmt.Fprintf(&s, "the serial chardev writes to a file instead of hostd's socket; the NIC (`%s`) is left out, since its tap is hostd's, made and put on the port group's bridge at power-on "+
		"(the guest ignores a down NIC either way); sockets and the PID file move from hostd's run folder to `%s`; `fvguest.name` becomes `bhN` so its marker is told apart. "+
		"It is not put in hostd's per-VM cgroup (a memory limit only). The clock starts when `sh %s N` is typed into the host's serial console "+
		"and stops when the by-hand guest's READY line, which the script copies from the file (polling every 10 ms with `grep`), reaches the host's console. "+
		"Both sides include the reading end's delivery: HTTPS + websocket through QEMU user networking for hostd, the emulated UART for the shell. "+
		"Runs alternate hostd, by hand, hostd, … so drift hits both alike. "+
		"hostd's own work before the guest runs is the power-on task (table); the rest of the difference builds up while the guest boots, "+
		"where the two differ in the NIC, the serial console's path (hostd's socket, read by its console hub and relayed to the API client, against a file) and the cgroup.\n\n",
		strings.Join(r.dropped, " "), byHandDir, byHandScript)
	fmt.Fprintf(&s, "hostd's QEMU command for b0:\n\n```\n%s\n```\n\n", shellJoin(r.argv))
	fmt.Fprintf(&s, "| %d VMs of %d MiB powered on at once | seconds |\n|---|---|\n", r.many, vmBenchManyMiB)
	fmt.Fprintf(&s, "| all %d power-on tasks done | %.1f |\n", r.many, r.manyTasks.Seconds())
	if r.manyUp == r.many {
		fmt.Fprintf(&s, "| all %d READY markers seen (total) | %.1f |\n\n", r.many, r.manyReady.Seconds())
	} else {
		fmt.Fprintf(&s, "| %d of %d READY markers seen, the last at (the others hung: no READY in %s) | %.1f |\n\n", r.manyUp, r.many, manyReadyWait, r.manyReady.Seconds())
	}
	fmt.Fprintf(&s, "%d power-on calls are made at the same moment (one goroutine each); each then waits for its task, attaches to its console "+
		"through the API and waits for READY. The total is from the first call to the last READY line.\n\n", r.many)
	per := (r.rssAfter - r.rssBefore) / float64(r.many)
	fmt.Fprintf(&s, "| hostd memory | MiB |\n|---|---|\n")
	fmt.Fprintf(&s, "| resident, %d VMs defined, none running | %.1f |\n", r.many+1, r.rssBefore/(1<<20))
	fmt.Fprintf(&s, "| resident, %d of them running | %.1f |\n", r.many, r.rssAfter/(1<<20))
	fmt.Fprintf(&s, "| **resident per running VM** ((after − before) / %d) | **%.2f** |\n", r.many, per/(1<<20))
	fmt.Fprintf(&s, "| Go heap in use per running VM | %.2f |\n\n", (r.heapAfter-r.heapBefore)/float64(r.many)/(1<<20))
	fmt.Fprintf(&s, "From hostd's own metrics (`process_resident_memory_bytes`, `go_memstats_heap_inuse_bytes` on `/metrics`): "+
		"each figure is the smallest of %d readings %s apart (spanning the Go runtime's forced collection every 2 minutes), "+
		"taken once the VMs were created and again after the last READY with the bench's console sessions closed. "+
		"hostd's per-VM state is small (console hub with a 64 KiB scrollback, QMP connection, watcher), so the resident difference is "+
		"of the order of the Go runtime's own swings and can come out near zero or below; the heap figure is the steadier one. "+
		"QEMU's own memory is not hostd's and is not counted.\n\n", memSamples, memInterval)
	return s.String()
}

// shellJoin shows a command line as sh would take it.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+") == "" {
			q[i] = a
		} else {
			q[i] = shellQuote(a)
		}
	}
	return strings.Join(q, " ")
}
