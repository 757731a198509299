package hostd

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/hostd/initclient"
	"github.com/flashvisor/flashvisor/hostd/initclient/initclienttest"
)

const testToken = "test-token-0123456789abcdef"

// syncBuffer is a goroutine-safe bytes.Buffer for captured output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// testLogger captures the log and shows it when the test fails. It does not
// write to t.Log: async handlers may log after the test returned.
func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hostd log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b))
}

var testBoot = api.BootInfo{
	Hostname:        "esx1",
	HostUUID:        "0b5f6a0e-3c1d-4d8e-9a55-1f2e3d4c5b6a",
	PersistentState: true,
	Management:      api.MgmtInfo{NIC: "eth0", Mode: "static", Address: "10.0.2.15/24"},
}

var testServices = []api.Service{
	{Name: "hostd", State: api.ServiceRunning, PID: 100, Restarts: 0, Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
	{Name: "vem", State: api.ServiceBackoff, PID: 0, Restarts: 3, LastExit: "exit status 1"},
}

// env is a prepared host: files for New, a fake init, captured console and
// log.
type env struct {
	dir     string
	opts    Options
	init    *initclienttest.Server
	console *syncBuffer
	logBuf  *syncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, console: &syncBuffer{}}
	boot := testBoot
	boot.StateDir = filepath.Join(dir, "state")
	writeJSONFile(t, filepath.Join(dir, "boot.json"), boot)
	writeJSONFile(t, filepath.Join(dir, "manifest.json"), api.Manifest{Profile: "host", Version: "v0.1.0-test"})
	writeFile(t, filepath.Join(dir, "cmdline"), "console=ttyS0 flashvisor.token="+testToken+" quiet\n")
	writeFile(t, filepath.Join(dir, "uptime"), "4242.50 8000.00\n")
	writeFile(t, filepath.Join(dir, "cpuinfo"), "processor\t: 0\nmodel name\t: AMD EPYC 7713 64-Core Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7713 64-Core Processor\n")
	writeFile(t, filepath.Join(dir, "meminfo"), "MemTotal:       16384000 kB\nMemFree:         1000 kB\n")
	writeFile(t, filepath.Join(dir, "osrelease"), "6.1.0-37-amd64\n")
	writeFile(t, filepath.Join(dir, "kvm"), "") // a regular file opens O_RDWR: "KVM usable"
	e.init = initclienttest.Start(t, testServices...)
	e.init.SetLog("vem", "starting", "failed: no uplink")
	ic := initclient.New(e.init.Path)
	log, buf := testLogger(t)
	e.logBuf = buf
	e.opts = Options{
		BootInfoFile: filepath.Join(dir, "boot.json"),
		ManifestFile: filepath.Join(dir, "manifest.json"),
		CmdlineFile:  filepath.Join(dir, "cmdline"),
		Listen:       "127.0.0.1:0",
		Sys: SysPaths{
			Uptime:    filepath.Join(dir, "uptime"),
			CPUInfo:   filepath.Join(dir, "cpuinfo"),
			MemInfo:   filepath.Join(dir, "meminfo"),
			OSRelease: filepath.Join(dir, "osrelease"),
			KVM:       filepath.Join(dir, "kvm"),
		},
		Services:   ic,
		Power:      ic,
		Logger:     log,
		Console:    e.console,
		PowerDelay: time.Millisecond,
	}
	return e
}

func (e *env) stateDir() string { return filepath.Join(e.dir, "state") }

// start builds the server and serves it over httptest TLS.
func (e *env) start(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(e.opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = s.TLSConfig()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return s, ts
}

// apiClient returns a pinned client for ts with token.
func apiClient(t *testing.T, s *Server, ts *httptest.Server, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{
		Addr:        ts.Listener.Addr().String(),
		Token:       token,
		Fingerprint: s.Fingerprint(),
		Timeout:     10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
