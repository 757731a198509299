package qemutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrTimeout is returned by Wait when the VM was killed at its deadline.
var ErrTimeout = errors.New("VM deadline reached")

// ErrConsoleClosed is returned by WaitConsole when QEMU's output ended first.
var ErrConsoleClosed = errors.New("console closed")

// tailLines is how many console lines a timeout report shows.
const tailLines = 30

// cleanupMargin is kept between the VM deadline derived from the test
// binary's -timeout and that timeout, so the harness can kill QEMU and report
// before the test binary panics (a panic skips t.Cleanup).
const cleanupMargin = 30 * time.Second

// VM is a running QEMU.
type VM struct {
	name     string
	stateDir string
	argv     []string // binary first
	accel    string
	start    time.Time
	logf     func(format string, args ...any)
	report   func(format string, args ...any) // failure reporting (t.Errorf)
	hostFwd  map[int]string                   // guest port -> 127.0.0.1:port
	// hostFwdTo maps "guestIP:port" -> 127.0.0.1:port (WithForwardTo).
	hostFwdTo map[string]string
	macs      []string          // by NIC index
	disks     map[string]string // blank disk name -> path
	qmpPath   string
	qmpTmp    string // short temporary folder for the QMP socket, removed at Close

	cmd        *exec.Cmd
	exited     chan struct{} // closed when QEMU has exited and been reaped
	consoleEOF chan struct{} // closed when QEMU's stdout and stderr ended
	waitErr    error         // valid after exited

	mu        sync.Mutex
	lines     []string
	changed   chan struct{} // closed and replaced on every new console line
	logFile   *os.File
	timedOut  bool
	closed    bool
	stdinDone func()

	consoleToLogf bool          // false when the console is shown raw elsewhere
	watchDone     chan struct{} // closed when the deadline watcher is done

	// boots counts kernel boots on the console; restartSeen says whether
	// the running kernel announced a restart (or a panic) or the test
	// reset the machine over QMP, so that the next boot is not a silent
	// reset (see addConsoleLine). Guarded by bootMu.
	bootMu      sync.Mutex
	boots       int
	restartSeen bool

	qmp       qmpConn
	closeOnce sync.Once
}

// Start boots a VM for a test and registers its cleanup: kill QEMU's process
// group if still running, wait for it, print the command line again. Any
// setup error is fatal to the test.
func Start(t testing.TB, name string, opts ...Option) *VM {
	t.Helper()
	base := []Option{WithLogf(t.Logf)}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			base = append(base, withTestDeadline(time.Until(dl)-cleanupMargin))
		}
	}
	c := buildConfig(append(base, opts...))
	if c.stateDir == "" {
		c.stateDir = TestStateDir(t)
	}
	vm, err := boot(name, c, t.Errorf)
	if err != nil {
		t.Fatalf("qemutest.Start(%s): %v", name, err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// Boot starts a VM outside of a test (fvrun). The caller must Close it.
// Without WithStateDir the state folder is under DefaultStateRoot.
func Boot(name string, opts ...Option) (*VM, error) {
	c := buildConfig(opts)
	if c.stateDir == "" {
		c.stateDir = filepath.Join(DefaultStateRoot(), sanitize(name))
	}
	return boot(name, c, nil)
}

// withTestDeadline caps the VM timeout by what is left of the test binary's.
func withTestDeadline(left time.Duration) Option {
	return func(c *config) {
		if left <= 0 {
			left = time.Second
		}
		c.testLeft = left
	}
}

func buildConfig(opts []Option) config {
	c := defaultConfig()
	for _, o := range opts {
		o(&c)
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	return c
}

// DefaultStateRoot is $FV_E2E_DIR, or os.TempDir()/flashvisor-e2e.
func DefaultStateRoot() string {
	if d := os.Getenv("FV_E2E_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "flashvisor-e2e")
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sanitize turns a test name (with slashes and spaces) into one path element.
func sanitize(name string) string {
	s := unsafeChars.ReplaceAllString(name, "_")
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}

var vmNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// effectiveTimeout is the smaller positive of the two deadlines (0: none).
func effectiveTimeout(vmTimeout, testLeft time.Duration) time.Duration {
	switch {
	case vmTimeout <= 0:
		return testLeft
	case testLeft <= 0 || vmTimeout < testLeft:
		return vmTimeout
	}
	return testLeft
}

func boot(name string, c config, report func(string, ...any)) (*VM, error) {
	if !vmNameRE.MatchString(name) {
		return nil, fmt.Errorf("VM name %q: want letters, digits, '.', '_' or '-'", name)
	}
	if err := os.MkdirAll(c.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	accel, err := chooseAccel(c.accel, kvmUsable(c.kvmDevice, "/sys/module"))
	if err != nil {
		return nil, err
	}
	vm := &VM{
		name:       name,
		stateDir:   c.stateDir,
		accel:      accel,
		logf:       c.logf,
		report:     report,
		hostFwd:    map[int]string{},
		hostFwdTo:  map[string]string{},
		disks:      map[string]string{},
		exited:     make(chan struct{}),
		consoleEOF: make(chan struct{}),
		changed:    make(chan struct{}),
		watchDone:  make(chan struct{}),

		consoleToLogf: c.consoleOut == nil,
	}
	ok := false
	defer func() {
		if !ok {
			vm.removeQMPTmp()
		}
	}()

	m := machine{
		Accel:     accel,
		MemoryMiB: c.memoryMiB,
		CPUs:      c.cpus,
		Kernel:    c.kernel,
		Initrd:    c.initrd,
		Append:    c.appendArg,
		NoReboot:  c.noReboot,
		Extra:     c.extraArgs,
	}
	if accel == "tcg" && c.kernel != "" {
		m.Append = append(slices.Clone(c.appendArg), TCGAppend()...)
	}
	for _, d := range c.disks {
		if len(d.serial) > 20 {
			return nil, fmt.Errorf("disk serial %q: virtio-blk allows at most 20 bytes", d.serial)
		}
		if d.blankName != "" {
			if !vmNameRE.MatchString(d.blankName) {
				return nil, fmt.Errorf("blank disk name %q: want letters, digits, '.', '_' or '-'", d.blankName)
			}
			if _, dup := vm.disks[d.blankName]; dup {
				return nil, fmt.Errorf("blank disk %q given twice", d.blankName)
			}
			d.path = filepath.Join(c.stateDir, name+"-"+d.blankName+".img")
			if err := createBlank(d.path, d.blankMiB); err != nil {
				return nil, err
			}
			vm.disks[d.blankName] = d.path
		}
		m.Disks = append(m.Disks, d)
	}
	var fwd []string
	for _, f := range c.forwards {
		hp := f.hostPort
		if hp == 0 {
			if hp, err = freePort(); err != nil {
				return nil, err
			}
		}
		if f.guestIP != "" {
			key := net.JoinHostPort(f.guestIP, strconv.Itoa(f.guestPort))
			if _, dup := vm.hostFwdTo[key]; dup {
				return nil, fmt.Errorf("%s forwarded twice", key)
			}
			vm.hostFwdTo[key] = net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
			fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-%s:%d", hp, f.guestIP, f.guestPort))
			continue
		}
		if _, dup := vm.hostFwd[f.guestPort]; dup {
			return nil, fmt.Errorf("guest port %d forwarded twice", f.guestPort)
		}
		vm.hostFwd[f.guestPort] = net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
		fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", hp, f.guestPort))
	}
	m.NICs = []nic{{ID: "net0", Model: c.nicModel, MAC: macFor(name, 0), Backend: netdev{Type: "user", Opts: fwd}}}
	for i, addr := range c.hubAddrs {
		// virtio-net whatever WithNICModel says: that option is about the
		// management NIC, and virtio is what every guest kernel drives.
		m.NICs = append(m.NICs, nic{ID: fmt.Sprintf("net%d", i+1), Model: DefaultNICModel, MAC: macFor(name, i+1),
			Backend: netdev{Type: "socket", Opts: []string{"connect=" + addr}}})
	}
	for _, n := range m.NICs {
		vm.macs = append(vm.macs, n.MAC)
	}

	// A unix socket path is limited to 107 bytes; deep test names overflow
	// it, so such sockets live in a short temporary folder instead.
	vm.qmpPath = filepath.Join(c.stateDir, name+".qmp")
	if len(vm.qmpPath) > 100 {
		if vm.qmpTmp, err = os.MkdirTemp("", "fvqmp"); err != nil {
			return nil, fmt.Errorf("QMP socket folder: %w", err)
		}
		vm.qmpPath = filepath.Join(vm.qmpTmp, "qmp")
	}
	os.Remove(vm.qmpPath) // a stale socket from an earlier run
	m.QMPSocket = vm.qmpPath
	vm.qmp.path = vm.qmpPath

	vm.argv = append([]string{c.qemu}, m.args()...)

	logPath := filepath.Join(c.stateDir, name+".log")
	if vm.logFile, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if err := vm.launch(c); err != nil {
		vm.logFile.Close()
		return nil, err
	}
	ok = true

	go vm.watchDeadline(effectiveTimeout(c.timeout, c.testLeft))
	return vm, nil
}

// launch starts QEMU in its own process group with its output on pipes.
func (vm *VM) launch(c config) error {
	cmdline := shellQuote(vm.argv)
	vm.logf("[%s] %s; state folder %s", vm.name, accelReason(c.accel, vm.accel), vm.stateDir)
	vm.logf("[%s] QEMU command: %s", vm.name, cmdline)
	fmt.Fprintf(vm.logFile, "=== %s start %s\n=== QEMU command: %s\n", vm.name, time.Now().Format(time.RFC3339), cmdline)

	// Plain pipes rather than cmd.StdoutPipe: Wait must not close the read
	// side before the last line is read.
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	cmd := exec.Command(vm.argv[0], vm.argv[1:]...)
	cmd.Stdout, cmd.Stderr = outW, errW
	var inW *os.File
	if c.consoleIn != nil {
		// A pipe even when the input is a terminal: QEMU in a background
		// process group must not touch the terminal (SIGTTOU).
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			return err
		}
		cmd.Stdin = inR
		defer inR.Close()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: cleanup kills QEMU and anything it started.
		Setpgid: true,
		// QEMU dies with the test binary even when a panic skips cleanup.
		Pdeathsig: syscall.SIGKILL,
	}
	vm.start = time.Now()
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
		return fmt.Errorf("start %s: %w", vm.argv[0], err)
	}
	vm.cmd = cmd
	if inW != nil {
		var once sync.Once
		vm.stdinDone = func() { once.Do(func() { inW.Close() }) }
		go func() {
			// Blocks on the user's input until QEMU is gone; the write end
			// is closed at exit so the copy stops at the next read.
			io.Copy(inW, c.consoleIn)
			vm.stdinDone()
		}()
	}

	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		vm.readOutput(outR, c.consoleOut, vm.addConsoleLine)
	}()
	go func() {
		defer readers.Done()
		vm.readOutput(errR, nil, func(l string) { vm.logLine("qemu: "+l, true) })
	}()
	go func() {
		readers.Wait()
		close(vm.consoleEOF)
	}()
	go func() {
		err := cmd.Wait()
		// Anything QEMU left behind in its group goes too, so the pipes
		// reach EOF. The group ID stays reserved while members exist.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		vm.mu.Lock()
		vm.waitErr = err
		vm.mu.Unlock()
		if vm.stdinDone != nil {
			vm.stdinDone()
		}
		close(vm.exited)
	}()
	return nil
}

// readOutput splits r into lines for emit and, when raw is set, copies the
// bytes as they come (an interactive prompt has no newline yet).
func (vm *VM) readOutput(r *os.File, raw io.Writer, emit func(string)) {
	defer r.Close()
	s := lineSplitter{emit: emit}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if raw != nil {
				raw.Write(buf[:n])
			}
			s.Write(buf[:n])
		}
		if err != nil {
			s.Flush()
			return
		}
	}
}

// PanicMarker is the file, in a VM's state folder, that lists the kernel
// panics and silent resets seen on its console ("<VM name>: <line> [pid
// N]"). Under TCG the emulated hosts' kernel sometimes dies of a recursive
// page fault in a KVM vCPU thread, or the machine resets without a word
// (QEMU's nested-SVM emulation, not our code: see docs/design.md); the e2e
// runner reruns, once, a failed test whose hosts left this marker.
const PanicMarker = "kernel-panics"

var kernelPanicRE = regexp.MustCompile(`Kernel panic - not syncing`)

// kernelBootRE is the first line a Linux kernel prints; restartRE what
// it prints when it restarts the machine on purpose (a reboot).
var (
	kernelBootRE = regexp.MustCompile(`\] Linux version \S+`)
	restartRE    = regexp.MustCompile(`reboot: Restarting system`)
)

// addConsoleLine records a serial console line. A kernel panic, and a
// kernel booting again without the previous one having said it restarts
// (an emulated host reset by an emulator fault, as a triple fault does),
// are noted in the state folder's PanicMarker.
func (vm *VM) addConsoleLine(line string) {
	switch {
	case kernelPanicRE.MatchString(line):
		vm.notePanic(line)
		vm.noteRestart()
	case restartRE.MatchString(line):
		vm.noteRestart()
	case kernelBootRE.MatchString(line):
		vm.bootMu.Lock()
		silent := vm.boots > 0 && !vm.restartSeen
		vm.boots++
		vm.restartSeen = false
		vm.bootMu.Unlock()
		if silent {
			vm.notePanic("silent reset: the kernel booted again without a reboot or panic message before (an emulator fault)")
		}
	}
	vm.mu.Lock()
	vm.lines = append(vm.lines, line)
	close(vm.changed)
	vm.changed = make(chan struct{})
	vm.mu.Unlock()
	vm.logLine(line, vm.consoleToLogf)
}

// noteRestart records that the next boot is expected.
func (vm *VM) noteRestart() {
	vm.bootMu.Lock()
	vm.restartSeen = true
	vm.bootMu.Unlock()
}

// notePanic appends a kernel panic line to the state folder's PanicMarker.
func (vm *VM) notePanic(line string) {
	f, err := os.OpenFile(filepath.Join(vm.stateDir, PanicMarker), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		vm.logf("[%s] kernel panic marker: %v", vm.name, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: %s [pid %d]\n", vm.name, strings.TrimSpace(line), os.Getpid())
}

// NoteFault records an emulator fault a test found itself in dir's
// PanicMarker (as the harness does for a host's panic or silent reset): a
// nested VM that stays stalled in early boot even after a reset, a TCG
// nested-SVM artifact. run-e2e then runs the test again.
func NoteFault(dir, what string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, PanicMarker), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s [pid %d]\n", what, os.Getpid())
	return err
}

// PanicsSeen returns the kernel panics this process's VMs left in the
// PanicMarker of dir and of its subtests' folders (dir_*): a test's waits
// give up at once on an emulated host that died, rather than at their
// deadline. Markers of earlier runs are not counted.
func PanicsSeen(dir string) []string {
	files, _ := filepath.Glob(dir + "_*/" + PanicMarker)
	files = append([]string{filepath.Join(dir, PanicMarker)}, files...)
	mine := fmt.Sprintf(" [pid %d]", os.Getpid())
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasSuffix(l, mine) {
				out = append(out, strings.TrimSuffix(l, mine))
			}
		}
	}
	return out
}

// TestStateDir is the state folder Start gives t's VMs by default.
func TestStateDir(t testing.TB) string { return filepath.Join(DefaultStateRoot(), sanitize(t.Name())) }

// logLine writes one line, stamped with the VM name and time since start, to
// the log file and, if toLogf, to logf.
func (vm *VM) logLine(line string, toLogf bool) {
	stamped := fmt.Sprintf("[%s +%.2fs] %s", vm.name, time.Since(vm.start).Seconds(), line)
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		// Only a straggler after Close's grace period gets here; the test
		// may be over, when t.Logf would panic.
		return
	}
	fmt.Fprintln(vm.logFile, stamped)
	if toLogf {
		vm.logf("%s", stamped)
	}
}

// watchDeadline kills QEMU when d (if positive) passes before it exits, and
// reports the failure with the last console lines. Close waits for it, so the
// report always lands while the test is still running.
func (vm *VM) watchDeadline(d time.Duration) {
	defer close(vm.watchDone)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-vm.exited:
		return
	case <-timer.C:
	}
	vm.mu.Lock()
	select {
	case <-vm.exited: // exited on its own at the same moment: no timeout
		vm.mu.Unlock()
		return
	default:
	}
	vm.timedOut = true
	vm.mu.Unlock()
	vm.Kill()
	<-vm.exited
	msg := fmt.Sprintf("VM %s: deadline %v reached, QEMU killed; last console lines:\n%s",
		vm.name, d, strings.Join(vm.tail(tailLines), "\n"))
	vm.mu.Lock()
	fmt.Fprintln(vm.logFile, "=== "+msg)
	vm.mu.Unlock()
	if vm.report != nil {
		vm.report("%s", msg)
	} else {
		vm.logf("%s", msg)
	}
}

func (vm *VM) tail(n int) []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if len(vm.lines) < n {
		n = len(vm.lines)
	}
	return append([]string(nil), vm.lines[len(vm.lines)-n:]...)
}

// Name is the VM's name.
func (vm *VM) Name() string { return vm.name }

// StateDir is the folder with the VM's log file, QMP socket and blank disks.
func (vm *VM) StateDir() string { return vm.stateDir }

// LogPath is the file every console line is appended to.
func (vm *VM) LogPath() string { return filepath.Join(vm.stateDir, vm.name+".log") }

// Cmdline is the exact QEMU command, binary first.
func (vm *VM) Cmdline() []string { return append([]string(nil), vm.argv...) }

// Accel is the accelerator in use: AccelKVM or AccelTCG.
func (vm *VM) Accel() string { return vm.accel }

// HostAddr is the 127.0.0.1:PORT forwarded to guestPort, or "" when the port
// was not forwarded (WithForward).
func (vm *VM) HostAddr(guestPort int) string { return vm.hostFwd[guestPort] }

// HostAddrTo is the 127.0.0.1:port forwarded to guestIP:guestPort
// (WithForwardTo).
func (vm *VM) HostAddrTo(guestIP string, guestPort int) string {
	return vm.hostFwdTo[net.JoinHostPort(guestIP, strconv.Itoa(guestPort))]
}

// MAC is the MAC address of the VM's NIC number index: 0 is the
// user-mode NIC, 1 the first WithHubNIC... "" for no such NIC.
func (vm *VM) MAC(index int) string {
	if index < 0 || index >= len(vm.macs) {
		return ""
	}
	return vm.macs[index]
}

// DiskPath is the file of a blank disk made by WithBlankDisk, or "".
func (vm *VM) DiskPath(name string) string { return vm.disks[name] }

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Wait waits for QEMU to exit and returns its exit status: nil for 0, an
// error wrapping *exec.ExitError otherwise, wrapping ErrTimeout as well when
// the harness killed it at the deadline.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.exited:
	case <-ctx.Done():
		return fmt.Errorf("wait for VM %s: %w", vm.name, ctx.Err())
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	switch {
	case vm.timedOut:
		return fmt.Errorf("VM %s: %w: %w", vm.name, ErrTimeout, vm.waitErr)
	case vm.waitErr != nil:
		return fmt.Errorf("VM %s: qemu: %w", vm.name, vm.waitErr)
	}
	return nil
}

// Kill sends SIGKILL to QEMU's process group. It does not wait.
func (vm *VM) Kill() {
	select {
	case <-vm.exited:
		return
	default:
	}
	syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
}

// Console returns every serial console line so far, without line endings.
func (vm *VM) Console() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}

// WaitConsole waits for a console line (from the start of the boot) that
// matches re and returns it. For smoke checks only: tests decide pass/fail
// through the API.
func (vm *VM) WaitConsole(ctx context.Context, re *regexp.Regexp) (string, error) {
	next := 0
	for {
		vm.mu.Lock()
		lines, changed := vm.lines[next:], vm.changed
		next = len(vm.lines)
		vm.mu.Unlock()
		for _, l := range lines {
			if re.MatchString(l) {
				return l, nil
			}
		}
		select {
		case <-changed:
		case <-vm.consoleEOF:
			// Lines may have arrived between the copy and EOF.
			vm.mu.Lock()
			rest := vm.lines[next:]
			vm.mu.Unlock()
			for _, l := range rest {
				if re.MatchString(l) {
					return l, nil
				}
			}
			return "", fmt.Errorf("VM %s: waiting for %q: %w", vm.name, re, ErrConsoleClosed)
		case <-ctx.Done():
			return "", fmt.Errorf("VM %s: waiting for %q: %w", vm.name, re, ctx.Err())
		}
	}
}

// Close kills QEMU's process group if it still runs, waits for it and for
// its output, and prints the command line again so it sits next to the
// failure. Start registers it with t.Cleanup; Boot callers call it.
func (vm *VM) Close() { vm.closeOnce.Do(vm.close) }

func (vm *VM) close() {
	vm.Kill()
	<-vm.exited
	<-vm.watchDone
	select {
	case <-vm.consoleEOF:
	case <-time.After(10 * time.Second):
		// Only a process outside the group can hold the pipe this long.
		vm.logf("[%s] console still open 10s after QEMU exited", vm.name)
	}
	vm.qmp.close()
	os.Remove(vm.qmpPath) // QEMU killed by a signal leaves it behind
	vm.removeQMPTmp()
	status := "exited"
	if err := vm.Wait(context.Background()); err != nil {
		status = err.Error()
	}
	vm.logf("[%s] %s; QEMU command was: %s", vm.name, status, shellQuote(vm.argv))
	vm.mu.Lock()
	vm.closed = true
	fmt.Fprintf(vm.logFile, "=== %s %s\n", vm.name, status)
	vm.logFile.Close()
	vm.mu.Unlock()
}

func (vm *VM) removeQMPTmp() {
	if vm.qmpTmp != "" {
		os.RemoveAll(vm.qmpTmp)
	}
}

// createBlank makes a sparse raw disk file of sizeMiB, replacing an old one
// so every run starts blank.
func createBlank(path string, sizeMiB int) error {
	if sizeMiB <= 0 {
		return fmt.Errorf("blank disk %s: size %d MiB", path, sizeMiB)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("blank disk: %w", err)
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		f.Close()
		return fmt.Errorf("blank disk %s: %w", path, err)
	}
	return f.Close()
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. QEMU binds it a
// moment later; another process could take it in between, which is rare
// enough on a test machine to accept.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineSplitter turns a byte stream into lines without their "\n" or "\r\n"
// (the guest's serial driver sends CRLF).
type lineSplitter struct {
	pending []byte
	emit    func(string)
}

func (s *lineSplitter) Write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			return
		}
		s.pending = append(s.pending, p[:i]...)
		s.emit(strings.TrimRight(string(s.pending), "\r"))
		s.pending = s.pending[:0]
		p = p[i+1:]
	}
}

// Flush emits an unterminated last line.
func (s *lineSplitter) Flush() {
	if len(s.pending) > 0 {
		s.emit(strings.TrimRight(string(s.pending), "\r"))
		s.pending = nil
	}
}
