package boot

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"golang.org/x/sys/unix"
)

// One reaper per process: two would steal each other's children.
var (
	testReaperOnce sync.Once
	testReaperVal  *Reaper
)

func testReaper(t *testing.T) *Reaper {
	testReaperOnce.Do(func() {
		// Orphans of the services become our children, as they would be
		// PID 1's, so the reaper's orphan path is exercised too.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			t.Logf("PR_SET_CHILD_SUBREAPER: %v", err)
		}
		testReaperVal = NewReaper(slog.New(slog.DiscardHandler))
	})
	return testReaperVal
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "svc.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestSupervisor(t *testing.T, specs ...api.ServiceSpec) *Supervisor {
	s := NewSupervisor(specs, SupervisorOptions{
		Log: testLogger(t), Reaper: testReaper(t), Console: io.Discard,
		Backoff:     Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond, Reset: time.Minute},
		StopTimeout: 300 * time.Millisecond,
	})
	t.Cleanup(s.StopAll)
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func status(s *Supervisor, name string) api.Service {
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	return api.Service{}
}

func TestSupervisorCapturesOutput(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "echo", Path: script(t, "echo hello; echo world >&2; exec sleep 60")})
	s.Start()
	waitFor(t, "two log lines", func() bool { l, _ := s.Log("echo"); return len(l) == 2 })
	l, _ := s.Log("echo")
	if !strings.HasSuffix(l[0], " hello") || !strings.HasSuffix(l[1], " world") {
		t.Errorf("Log(echo) = %q, want lines ending hello, world", l)
	}
	if st := status(s, "echo"); st.State != api.ServiceRunning || st.PID == 0 {
		t.Errorf("status = %+v, want running with a pid", st)
	}
}

func TestSupervisorRestartsKilledService(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "victim", Path: script(t, "exec sleep 60")})
	s.Start()
	waitFor(t, "running", func() bool { return status(s, "victim").PID != 0 })
	first := status(s, "victim").PID
	if err := s.Signal("victim", unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restart", func() bool {
		st := status(s, "victim")
		return st.State == api.ServiceRunning && st.PID != 0 && st.PID != first
	})
	st := status(s, "victim")
	if st.Restarts != 1 || st.LastExit != "signal: SIGKILL" {
		t.Errorf("after kill: restarts = %d, last exit = %q; want 1, %q", st.Restarts, st.LastExit, "signal: SIGKILL")
	}
}

func TestSupervisorDoNotRestart(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "oneshot", Path: script(t, "exit 125")})
	s.Start()
	waitFor(t, "exited", func() bool { return status(s, "oneshot").State == api.ServiceExited })
	time.Sleep(100 * time.Millisecond) // longer than the backoff: must stay down
	if st := status(s, "oneshot"); st.State != api.ServiceExited || st.Restarts != 0 {
		t.Fatalf("status = %+v, want exited with 0 restarts", st)
	}
	if err := s.Restart("oneshot"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second run", func() bool { return status(s, "oneshot").Restarts == 1 })
}

func TestSupervisorBackoffOnCrashLoop(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "crash", Path: script(t, "exit 3")})
	s.Start()
	waitFor(t, "several restarts", func() bool { return status(s, "crash").Restarts >= 3 })
	if st := status(s, "crash"); st.LastExit != "exit status 3" {
		t.Errorf("LastExit = %q, want %q", st.LastExit, "exit status 3")
	}
}

func TestSupervisorStopAllKillsStubborn(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "order")
	s := newTestSupervisor(t,
		api.ServiceSpec{Name: "first", Path: script(t, "trap 'echo first >> "+marker+"; exit 0' TERM; while :; do sleep 0.05; done")},
		api.ServiceSpec{Name: "stubborn", Path: script(t, "trap 'echo stubborn >> "+marker+"' TERM; while :; do sleep 0.05; done")},
	)
	s.Start()
	waitFor(t, "both running", func() bool {
		return status(s, "first").State == api.ServiceRunning && status(s, "stubborn").State == api.ServiceRunning
	})
	time.Sleep(50 * time.Millisecond) // let the shells install their traps
	s.StopAll()
	for _, n := range []string{"first", "stubborn"} {
		if st := status(s, n); st.State != api.ServiceStopped {
			t.Errorf("%s state = %q, want stopped", n, st.State)
		}
	}
	got, _ := os.ReadFile(marker)
	if string(got) != "stubborn\nfirst\n" {
		t.Errorf("TERM order = %q, want reverse start order stubborn, first", got)
	}
	if st := status(s, "stubborn"); st.LastExit != "signal: SIGKILL" {
		t.Errorf("stubborn LastExit = %q, want SIGKILL after the stop timeout", st.LastExit)
	}
}

func TestSupervisorUnknownService(t *testing.T) {
	s := newTestSupervisor(t)
	for name, err := range map[string]error{
		"Log":     func() error { _, err := s.Log("nope"); return err }(),
		"Restart": s.Restart("nope"),
		"Signal":  s.Signal("nope", unix.SIGTERM),
	} {
		if !errors.Is(err, ErrNoService) {
			t.Errorf("%s(nope) = %v, want ErrNoService", name, err)
		}
	}
}

func TestSupervisorMissingBinary(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "ghost", Path: "/nonexistent/ghost"})
	s.Start()
	waitFor(t, "backoff", func() bool { return status(s, "ghost").Restarts >= 1 })
	if st := status(s, "ghost"); !strings.Contains(st.LastExit, "no such file") {
		t.Errorf("LastExit = %q, want the start error", st.LastExit)
	}
}

func TestReaperReapsOrphans(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "parent", Path: script(t, "(sleep 0.1 &); exec sleep 60")})
	s.Start()
	waitFor(t, "running", func() bool { return status(s, "parent").PID != 0 })
	time.Sleep(400 * time.Millisecond) // the orphan sleep exits after 0.1 s
	waitFor(t, "no zombie children", func() bool { return countZombieChildren(t) == 0 })
}

func countZombieChildren(t *testing.T) int {
	me := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[0] == "Z" && f[1] == itoa(me) {
			n++
		}
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSupervisorPerServiceStopTimeout(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "slow", StopTimeoutSeconds: 1,
		Path: script(t, "trap 'sleep 0.6; exit 0' TERM; while :; do sleep 0.05; done")})
	s.Start()
	waitFor(t, "running", func() bool { return status(s, "slow").State == api.ServiceRunning })
	time.Sleep(50 * time.Millisecond)
	s.StopAll() // the supervisor default (300 ms) would kill it; its own 1 s does not
	if st := status(s, "slow"); st.LastExit != "exit status 0" {
		t.Errorf("LastExit = %q, want a clean exit within its own stop timeout", st.LastExit)
	}
}
