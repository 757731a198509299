package qemutest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recordingTB is a testing.TB whose Errorf, Fatalf and Cleanup are recorded
// instead of acting on the real test, so the harness's failure reporting can
// be tested without failing. Everything else goes to the real test.
type recordingTB struct {
	testing.TB

	mu       sync.Mutex
	logs     []string
	errs     []string
	fatals   []string
	cleanups []func()
	cleaned  bool
}

func newRecordingTB(t *testing.T) *recordingTB {
	r := &recordingTB{TB: t}
	// A safety net: whatever a test did not clean up itself goes at the end.
	t.Cleanup(r.runCleanups)
	return r
}

func (r *recordingTB) Logf(format string, args ...any) {
	r.mu.Lock()
	r.logs = append(r.logs, sprintf(format, args...))
	r.mu.Unlock()
	r.TB.Logf(format, args...)
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, sprintf(format, args...))
	r.mu.Unlock()
	r.TB.Logf("(recorded Errorf) "+format, args...)
}

// Fatalf records and stops the calling goroutine, like the real one.
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatals = append(r.fatals, sprintf(format, args...))
	r.mu.Unlock()
	r.TB.Logf("(recorded Fatalf) "+format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// runCleanups runs the recorded cleanups once, last registered first.
func (r *recordingTB) runCleanups() {
	r.mu.Lock()
	if r.cleaned {
		r.mu.Unlock()
		return
	}
	r.cleaned = true
	fs := r.cleanups
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func (r *recordingTB) recorded() (logs, errs, fatals []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...), append([]string(nil), r.errs...), append([]string(nil), r.fatals...)
}

// runRecorded calls f in its own goroutine (so a recorded Fatalf can stop
// it) and waits for it to return or stop.
func runRecorded(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// fakeQEMU writes a shell script standing in for qemu-system-x86_64: it
// saves its arguments, one a line, to DIR/argv and then runs body.
func fakeQEMU(t *testing.T, body string) (binary, argvFile string) {
	t.Helper()
	dir := t.TempDir()
	argvFile = filepath.Join(dir, "argv")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argvFile + "\n" + body + "\n"
	binary = filepath.Join(dir, "fake-qemu")
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, argvFile
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestConsoleCapturedAndLogged(t *testing.T) {
	qemu, argvFile := fakeQEMU(t, `echo "SeaBIOS (fake)"; printf 'Linux version 6.1\r\nlast line without newline'; exit 0`)
	rec := newRecordingTB(t)
	state := t.TempDir()
	vm := Start(rec, "host1", WithQEMU(qemu), WithStateDir(state), WithKernel("/k"))
	if err := vm.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Wait() = %v, want nil", err)
	}
	rec.runCleanups()

	want := []string{"SeaBIOS (fake)", "Linux version 6.1", "last line without newline"}
	if d := cmp.Diff(want, vm.Console()); d != "" {
		t.Errorf("Console() mismatch (-want +got):\n%s", d)
	}
	stamped := regexp.MustCompile(`^\[host1 \+\d+\.\d\ds\] Linux version 6\.1$`)
	logs, errs, _ := rec.recorded()
	if !anyMatch(logs, stamped) {
		t.Errorf("t.Logf lines %q: none matches %v", logs, stamped)
	}
	if len(errs) != 0 {
		t.Errorf("Errorf calls = %q, want none", errs)
	}
	file, err := os.ReadFile(filepath.Join(state, "host1.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !anyMatch(strings.Split(string(file), "\n"), stamped) {
		t.Errorf("log file:\n%s\nhas no line matching %v", file, stamped)
	}

	// The exact command: what the fake received, in the log file, and in
	// t.Logf at start and again at cleanup.
	gotArgv, err := os.ReadFile(argvFile)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(vm.Cmdline()[1:], strings.Split(strings.TrimSuffix(string(gotArgv), "\n"), "\n")); d != "" {
		t.Errorf("arguments QEMU received differ from Cmdline() (-cmdline +received):\n%s", d)
	}
	quoted := shellQuote(vm.Cmdline())
	if !strings.Contains(string(file), "QEMU command: "+quoted) {
		t.Errorf("log file does not contain the QEMU command %q:\n%s", quoted, file)
	}
	if n := countContaining(logs, quoted); n != 2 {
		t.Errorf("QEMU command printed %d times in t.Logf, want 2 (start and cleanup)", n)
	}
}

func TestKernelPanicMarked(t *testing.T) {
	qemu, _ := fakeQEMU(t, `echo "[   1.0] Linux version 6.1"; echo "[ 129.0] Kernel panic - not syncing: Fatal exception in interrupt"; exit 0`)
	rec := newRecordingTB(t)
	dir := t.TempDir()
	vm := Start(rec, "h", WithQEMU(qemu), WithStateDir(dir))
	vm.Wait(ctxFor(t, 10*time.Second))
	rec.runCleanups()
	b, err := os.ReadFile(filepath.Join(dir, PanicMarker))
	if err != nil {
		t.Fatalf("panic marker: %v", err)
	}
	if want := fmt.Sprintf("h: [ 129.0] Kernel panic - not syncing: Fatal exception in interrupt [pid %d]\n", os.Getpid()); string(b) != want {
		t.Errorf("panic marker = %q, want %q", b, want)
	}
	if got := PanicsSeen(dir); len(got) != 1 || got[0] != "h: [ 129.0] Kernel panic - not syncing: Fatal exception in interrupt" {
		t.Errorf("PanicsSeen = %q", got)
	}
	// Another process's marker (an earlier run) does not count; a
	// subtest's folder does.
	os.WriteFile(filepath.Join(dir, PanicMarker), []byte("h: old panic [pid 1]\n"), 0o644)
	os.MkdirAll(dir+"_sub", 0o755)
	os.WriteFile(filepath.Join(dir+"_sub", PanicMarker), b, 0o644)
	if got := PanicsSeen(dir); len(got) != 1 {
		t.Errorf("PanicsSeen with an old marker and a subtest's = %q, want the subtest's only", got)
	}

	// A test notes a fault it found itself (a nested VM stalled twice).
	other := t.TempDir()
	if err := NoteFault(other, "nested VM stalled: a1"); err != nil {
		t.Fatal(err)
	}
	if got := PanicsSeen(other); len(got) != 1 || got[0] != "nested VM stalled: a1" {
		t.Errorf("PanicsSeen after NoteFault = %q", got)
	}

	// A boot without a panic leaves no marker.
	qemu, _ = fakeQEMU(t, `echo "[   1.0] Linux version 6.1"; exit 0`)
	dir = t.TempDir()
	vm = Start(rec, "ok", WithQEMU(qemu), WithStateDir(dir))
	vm.Wait(ctxFor(t, 10*time.Second))
	rec.runCleanups()
	if _, err := os.Stat(filepath.Join(dir, PanicMarker)); !os.IsNotExist(err) {
		t.Errorf("marker after a clean boot: %v", err)
	}
}

// A kernel that boots again without the previous one saying it restarts
// is an emulator's silent reset: marked like a panic. A reboot is not.
func TestSilentResetMarked(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         string
	}{
		{"reboot", `echo "[ 1.0] Linux version 6.1 x"; echo "[ 9.0] reboot: Restarting system"; echo "[ 1.0] Linux version 6.1 x"`, ""},
		{"silent", `echo "[ 1.0] Linux version 6.1 x"; echo "[ 9.0] hostd: working"; echo "[ 1.0] Linux version 6.1 x"`,
			"h: silent reset: the kernel booted again without a reboot or panic message before (an emulator fault)"},
		{"one boot", `echo "[ 1.0] Linux version 6.1 x"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu, _ := fakeQEMU(t, tc.script+"; exit 0")
			rec := newRecordingTB(t)
			dir := t.TempDir()
			vm := Start(rec, "h", WithQEMU(qemu), WithStateDir(dir))
			vm.Wait(ctxFor(t, 10*time.Second))
			rec.runCleanups()
			got := strings.Join(PanicsSeen(dir), "\n")
			if got != tc.want {
				t.Errorf("marked %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQEMUStderrLogged(t *testing.T) {
	qemu, _ := fakeQEMU(t, `echo "qemu-system-x86_64: -accel kvm: failed" >&2; exit 1`)
	rec := newRecordingTB(t)
	vm := Start(rec, "h", WithQEMU(qemu), WithStateDir(t.TempDir()))
	vm.Wait(ctxFor(t, 10*time.Second))
	rec.runCleanups()
	logs, _, _ := rec.recorded()
	if !anyMatch(logs, regexp.MustCompile(`^\[h \+\S+\] qemu: qemu-system-x86_64: -accel kvm: failed$`)) {
		t.Errorf("t.Logf lines %q: QEMU's stderr line missing", logs)
	}
	if len(vm.Console()) != 0 {
		t.Errorf("Console() = %q, want no lines (stderr is not the console)", vm.Console())
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int // -1: Wait returns nil
	}{
		{"exit 0", -1},
		{"exit 3", 3},
		{"echo bye; exit 1", 1},
	} {
		qemu, _ := fakeQEMU(t, tc.script)
		rec := newRecordingTB(t)
		vm := Start(rec, "vm", WithQEMU(qemu), WithStateDir(t.TempDir()))
		err := vm.Wait(ctxFor(t, 10*time.Second))
		<-vm.Exited() // closed once Wait has returned
		rec.runCleanups()
		var ee *exec.ExitError
		switch {
		case tc.want < 0 && err != nil:
			t.Errorf("%q: Wait() = %v, want nil", tc.script, err)
		case tc.want >= 0 && !errors.As(err, &ee):
			t.Errorf("%q: Wait() = %v, want an *exec.ExitError", tc.script, err)
		case tc.want >= 0 && ee.ExitCode() != tc.want:
			t.Errorf("%q: exit code = %d, want %d", tc.script, ee.ExitCode(), tc.want)
		}
		if errors.Is(err, ErrTimeout) {
			t.Errorf("%q: Wait() = %v, must not be ErrTimeout", tc.script, err)
		}
	}
}

func TestTimeoutKillsAndReports(t *testing.T) {
	qemu, _ := fakeQEMU(t, `echo "booting the fake"; sleep 1000`)
	rec := newRecordingTB(t)
	vm := Start(rec, "hung", WithQEMU(qemu), WithStateDir(t.TempDir()), WithTimeout(500*time.Millisecond))
	start := time.Now()
	err := vm.Wait(ctxFor(t, 20*time.Second))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait() = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("killed after %v, want about 0.5s", el)
	}
	rec.runCleanups()
	_, errs, _ := rec.recorded()
	if len(errs) != 1 || !strings.Contains(errs[0], "deadline") || !strings.Contains(errs[0], "booting the fake") {
		t.Errorf("Errorf calls = %q, want one naming the deadline and showing the last console line", errs)
	}
}

func TestNoTimeoutReportWhenExitingInTime(t *testing.T) {
	qemu, _ := fakeQEMU(t, `exit 0`)
	rec := newRecordingTB(t)
	vm := Start(rec, "quick", WithQEMU(qemu), WithStateDir(t.TempDir()), WithTimeout(time.Minute))
	if err := vm.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Errorf("Wait() = %v, want nil", err)
	}
	rec.runCleanups()
	if _, errs, _ := rec.recorded(); len(errs) != 0 {
		t.Errorf("Errorf calls = %q, want none", errs)
	}
}

func TestCleanupKillsProcessGroup(t *testing.T) {
	// The fake's child stands for anything QEMU could leave behind.
	qemu, _ := fakeQEMU(t, `sleep 1000 & echo "child $!"; wait`)
	rec := newRecordingTB(t)
	vm := Start(rec, "group", WithQEMU(qemu), WithStateDir(t.TempDir()))
	line, err := vm.WaitConsole(ctxFor(t, 10*time.Second), regexp.MustCompile(`^child \d+$`))
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimPrefix(line, "child "))
	qemuPID := vm.cmd.Process.Pid
	select {
	case <-vm.Exited():
		t.Fatal("fake QEMU exited before cleanup")
	default:
	}

	rec.runCleanups()

	select {
	case <-vm.Exited():
	default:
		t.Error("Exited() not closed after cleanup")
	}
	for _, pid := range []int{qemuPID, child} {
		if !gone(pid, 5*time.Second) {
			t.Errorf("process %d still runs after cleanup", pid)
		}
	}
}

// gone reports whether pid disappears (or is a zombie nobody reaped yet)
// within d.
func gone(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); ; {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return true
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWaitConsole(t *testing.T) {
	qemu, _ := fakeQEMU(t, `echo one; echo "login: ready"; exit 0`)
	rec := newRecordingTB(t)
	vm := Start(rec, "wc", WithQEMU(qemu), WithStateDir(t.TempDir()))
	ctx := ctxFor(t, 10*time.Second)
	if got, err := vm.WaitConsole(ctx, regexp.MustCompile(`ready$`)); err != nil || got != "login: ready" {
		t.Errorf("WaitConsole(ready$) = %q, %v, want %q, nil", got, err, "login: ready")
	}
	if _, err := vm.WaitConsole(ctx, regexp.MustCompile(`never`)); !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("WaitConsole(never) error = %v, want ErrConsoleClosed", err)
	}
}

func TestBlankDisksAndForwards(t *testing.T) {
	qemu, argvFile := fakeQEMU(t, `exit 0`)
	rec := newRecordingTB(t)
	state := t.TempDir()
	vm := Start(rec, "disks", WithQEMU(qemu), WithStateDir(state),
		WithBlankDisk("state", 64), WithDisk("/images/a,b.img", "data"), WithForward(443), WithForwardPort(18022, 22))
	vm.Wait(ctxFor(t, 10*time.Second))
	rec.runCleanups()

	p := vm.DiskPath("state")
	if p != filepath.Join(state, "disks-state.img") {
		t.Errorf("DiskPath(state) = %q, want it in the state folder", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64<<20 {
		t.Errorf("blank disk size = %d, want %d", fi.Size(), 64<<20)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Blocks != 0 {
		t.Errorf("blank disk uses %d blocks, want 0 (sparse)", st.Blocks)
	}
	if got := vm.DiskPath("nope"); got != "" {
		t.Errorf("DiskPath(nope) = %q, want empty", got)
	}
	argv, _ := os.ReadFile(argvFile)
	args := string(argv)
	// Order of the options is the order of the disks: state is vda.
	i0 := strings.Index(args, "file="+p+",format=raw,if=none,id=disk0")
	i1 := strings.Index(args, "file=/images/a,,b.img,format=raw,if=none,id=disk1")
	if i0 < 0 || i1 < 0 {
		t.Errorf("argv lacks the disks in order:\n%s", args)
	}
	addr := vm.HostAddr(443)
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(addr) {
		t.Fatalf("HostAddr(443) = %q, want 127.0.0.1:PORT", addr)
	}
	port := strings.TrimPrefix(addr, "127.0.0.1:")
	if !strings.Contains(args, "hostfwd=tcp:127.0.0.1:"+port+"-:443,hostfwd=tcp:127.0.0.1:18022-:22") {
		t.Errorf("argv lacks the forwards:\n%s", args)
	}
	if got := vm.HostAddr(22); got != "127.0.0.1:18022" {
		t.Errorf("HostAddr(22) = %q, want 127.0.0.1:18022", got)
	}
	if got := vm.HostAddr(80); got != "" {
		t.Errorf("HostAddr(80) = %q, want empty (not forwarded)", got)
	}
}

func TestStartRejectsBadSetup(t *testing.T) {
	qemu, _ := fakeQEMU(t, `exit 0`)
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"bad/name", nil, "VM name"},
		{"ok", []Option{WithDisk("/x", "serial-longer-than-twenty")}, "20 bytes"},
		{"ok", []Option{WithBlankDisk("a", 0)}, "size 0"},
		{"ok", []Option{WithForward(443), WithForward(443)}, "twice"},
		{"ok", []Option{WithAccel("hvf")}, "unknown accelerator"},
		{"ok", []Option{WithQEMU(filepath.Join(t.TempDir(), "missing"))}, "start"},
	} {
		rec := newRecordingTB(t)
		runRecorded(func() {
			Start(rec, tc.name, append([]Option{WithQEMU(qemu), WithStateDir(t.TempDir())}, tc.opts...)...)
		})
		rec.runCleanups()
		if _, _, fatals := rec.recorded(); len(fatals) != 1 || !strings.Contains(fatals[0], tc.want) {
			t.Errorf("Start(%q, ...) Fatalf calls = %q, want one containing %q", tc.name, fatals, tc.want)
		}
	}
}

func TestDefaultStateDir(t *testing.T) {
	root := t.TempDir()
	t.Setenv("FV_E2E_DIR", root)
	qemu, _ := fakeQEMU(t, `exit 0`)
	rec := newRecordingTB(t)
	vm := Start(rec, "sd", WithQEMU(qemu))
	vm.Wait(ctxFor(t, 10*time.Second))
	rec.runCleanups()
	want := filepath.Join(root, "TestDefaultStateDir")
	if vm.StateDir() != want {
		t.Errorf("StateDir() = %q, want %q", vm.StateDir(), want)
	}
	if _, err := os.Stat(filepath.Join(want, "sd.log")); err != nil {
		t.Errorf("log file not kept in the state folder: %v", err)
	}
}

func TestLongStatePathQMPSocket(t *testing.T) {
	qemu, argvFile := fakeQEMU(t, `exit 0`)
	state := filepath.Join(t.TempDir(), strings.Repeat("deep", 30))
	rec := newRecordingTB(t)
	vm := Start(rec, "q", WithQEMU(qemu), WithStateDir(state))
	vm.Wait(ctxFor(t, 10*time.Second))
	argv, _ := os.ReadFile(argvFile)
	m := regexp.MustCompile(`(?m)^unix:(.*),server=on,wait=off$`).FindStringSubmatch(string(argv))
	if m == nil || len(m[1]) > 100 {
		t.Errorf("QMP socket argument %q: want a unix socket path of at most 100 bytes", m)
	}
	rec.runCleanups()
	if m != nil {
		if _, err := os.Stat(filepath.Dir(m[1])); !os.IsNotExist(err) {
			t.Errorf("temporary QMP folder %s left behind (%v)", filepath.Dir(m[1]), err)
		}
	}
}

func TestConsoleInputAndRawOutput(t *testing.T) {
	// The fake echoes its console input back, as a guest shell would.
	qemu, _ := fakeQEMU(t, `read line; echo "got $line"; printf 'prompt# '; exit 0`)
	var raw syncBuffer
	rec := newRecordingTB(t)
	vm := Start(rec, "io", WithQEMU(qemu), WithStateDir(t.TempDir()),
		WithConsoleInput(strings.NewReader("hello\n")), WithConsoleOutput(&raw))
	if err := vm.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	rec.runCleanups()
	if got, want := raw.String(), "got hello\nprompt# "; got != want {
		t.Errorf("raw console output = %q, want %q", got, want)
	}
	if d := cmp.Diff([]string{"got hello", "prompt# "}, vm.Console()); d != "" {
		t.Errorf("Console() mismatch (-want +got):\n%s", d)
	}
	logs, _, _ := rec.recorded()
	if countContaining(logs, "got hello") != 0 {
		t.Errorf("console lines went to t.Logf although shown raw: %q", logs)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func anyMatch(lines []string, re *regexp.Regexp) bool {
	for _, l := range lines {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

func countContaining(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func sprintf(format string, args ...any) string {
	return strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
}
