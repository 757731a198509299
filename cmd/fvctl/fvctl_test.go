package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

const token = "fvctl-test-token-0123456789"

// fakeHost is a minimal management API with the real wire types.
type fakeHost struct {
	ts   *httptest.Server
	fp   string
	addr string
	mu   sync.Mutex
	reqs []string // "METHOD PATH BODY"
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	f := &fakeHost{}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/host", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.Host{
			Hostname: "esx1", UUID: "u-1", Version: "v1.2.3", UptimeSeconds: 93784, CPUModel: "AMD EPYC",
			CPUs: 8, MemoryBytes: 32 << 30, KVM: true, Kernel: "6.1.0-37-amd64", PersistentState: false,
			ManagementAddress: "10.0.2.15", Fingerprint: "AA:BB",
		})
	})
	mux.HandleFunc("GET /api/v1/services", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Service{
			{Name: "hostd", State: "running", PID: 120, Restarts: 0},
			{Name: "vem", State: "backoff", PID: 0, Restarts: 4},
		})
	})
	mux.HandleFunc("GET /api/v1/services/{name}/log", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "vem" {
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no service " + r.PathValue("name")})
			return
		}
		reply(w, 200, api.ServiceLog{Name: "vem", Lines: []string{"line one", "line two"}})
	})
	accept := func(w http.ResponseWriter, r *http.Request) { reply(w, 202, api.Accepted{Message: "ok"}) }
	mux.HandleFunc("POST /api/v1/services/{name}/restart", accept)
	mux.HandleFunc("POST /api/v1/services/{name}/signal", accept)
	mux.HandleFunc("POST /api/v1/host/shutdown", accept)
	mux.HandleFunc("POST /api/v1/host/reboot", accept)
	f.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(bytes.TrimSpace(b))))
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", "Bearer")
			reply(w, 401, api.Error{Code: api.ErrUnauthorized, Message: "missing or invalid bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	f.ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	f.ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	f.fp = client.Fingerprint(f.ts.Certificate().Raw)
	f.addr = f.ts.Listener.Addr().String()
	return f
}

func (f *fakeHost) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// fvctl runs one invocation with env and returns stdout, stderr and error.
func fvctl(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	err := a.run(context.Background(), args)
	return out.String(), errb.String(), err
}

func TestTrustOnFirstUse(t *testing.T) {
	f := newFakeHost(t)
	cfg := t.TempDir()
	env := map[string]string{"FVCTL_HOST": f.addr, "FVCTL_TOKEN": token, "XDG_CONFIG_HOME": cfg}
	kh := filepath.Join(cfg, "flashvisor", "known_hosts")

	out, errOut, err := fvctl(t, env, "services")
	if err != nil {
		t.Fatalf("first fvctl services = %v (stderr %s)", err, errOut)
	}
	wantMsg := "Trusting " + f.addr + ", certificate fingerprint " + f.fp + " (first use; stored in " + kh + ")\n"
	if errOut != wantMsg {
		t.Errorf("first use stderr = %q, want %q", errOut, wantMsg)
	}
	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), f.addr+" "+f.fp+"\n"; got != want {
		t.Errorf("known_hosts = %q, want %q", got, want)
	}
	if !strings.Contains(out, "vem") {
		t.Errorf("services output %q lacks vem", out)
	}

	_, errOut, err = fvctl(t, env, "services")
	if err != nil || errOut != "" {
		t.Errorf("second fvctl services = %v, stderr %q, want no error and silence", err, errOut)
	}
	b2, _ := os.ReadFile(kh)
	if !bytes.Equal(b, b2) {
		t.Errorf("known_hosts changed on the second use: %q", b2)
	}
}

func TestKnownHostMismatchRefused(t *testing.T) {
	f := newFakeHost(t)
	cfg := t.TempDir()
	kh := filepath.Join(cfg, "known_hosts")
	stale := strings.Repeat("11:", 31) + "11"
	content := "# hosts\n" + f.addr + " " + stale + "\n"
	if err := os.WriteFile(kh, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := fvctl(t, nil, "--host", f.addr, "--token", token, "--config", cfg, "host", "info")
	if err == nil {
		t.Fatalf("fvctl host info with a changed certificate = nil error, output %q", out)
	}
	if exitCode(err) != 1 {
		t.Errorf("exitCode = %d, want 1", exitCode(err))
	}
	for _, want := range []string{"REMOTE HOST IDENTIFICATION HAS CHANGED", stale, f.fp, kh + " line 2"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
	if got, _ := os.ReadFile(kh); string(got) != content {
		t.Errorf("known_hosts = %q, want it untouched", got)
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("host got requests %q, want none (nothing may be sent, not even the token)", reqs)
	}
}

func TestPinnedFingerprint(t *testing.T) {
	f := newFakeHost(t)
	cfg := t.TempDir()
	lower := strings.ToLower(strings.ReplaceAll(f.fp, ":", ""))
	_, errOut, err := fvctl(t, nil, "--host", f.addr, "--token", token, "--config", cfg, "--fingerprint", lower, "host", "reboot")
	if err != nil {
		t.Fatalf("fvctl with the right fingerprint = %v (%s)", err, errOut)
	}
	wrong := strings.Repeat("22:", 31) + "22"
	_, _, err = fvctl(t, nil, "--host", f.addr, "--token", token, "--config", cfg, "--fingerprint", wrong, "host", "reboot")
	if err == nil || !strings.Contains(err.Error(), "refusing to connect") || !strings.Contains(err.Error(), f.fp) {
		t.Errorf("fvctl with a wrong fingerprint = %v, want a refusal naming the presented fingerprint", err)
	}
	if _, err := os.Stat(filepath.Join(cfg, "known_hosts")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known_hosts written with --fingerprint (stat: %v)", err)
	}
	if got := f.requests(); !cmp.Equal(got, []string{"POST /api/v1/host/reboot"}) {
		t.Errorf("requests = %q, want exactly one reboot", got)
	}
}

func TestCommands(t *testing.T) {
	f := newFakeHost(t)
	base := []string{"--host", f.addr, "--token", token, "--fingerprint", f.fp}
	for _, tc := range []struct {
		name    string
		args    []string
		want    string // stdout
		wantReq string
	}{
		{"host info", []string{"host", "info"}, `Hostname:            esx1
UUID:                u-1
Version:             v1.2.3
Kernel:              6.1.0-37-amd64
CPU:                 AMD EPYC (8 CPUs)
Memory:              32.0 GiB
KVM:                 yes
Uptime:              1d 2h 3m
Persistent state:    no
Management address:  10.0.2.15
Fingerprint:         AA:BB
`, "GET /api/v1/host"},
		{"services", []string{"services"}, "NAME   STATE    PID  RESTARTS\nhostd  running  120  0\nvem    backoff  -    4\n", "GET /api/v1/services"},
		{"services list", []string{"services", "list"}, "NAME   STATE    PID  RESTARTS\nhostd  running  120  0\nvem    backoff  -    4\n", "GET /api/v1/services"},
		{"log", []string{"services", "log", "vem"}, "line one\nline two\n", "GET /api/v1/services/vem/log"},
		{"restart", []string{"services", "restart", "vem"}, "Service vem restarted.\n", "POST /api/v1/services/vem/restart"},
		{"kill default TERM", []string{"services", "kill", "vem"}, "Sent SIGTERM to service vem.\n", `POST /api/v1/services/vem/signal {"signal":"TERM"}`},
		{"kill flag after name", []string{"services", "kill", "vem", "--signal", "KILL"}, "Sent SIGKILL to service vem.\n", `POST /api/v1/services/vem/signal {"signal":"KILL"}`},
		{"kill sighup lowercase", []string{"services", "kill", "--signal=sighup", "vem"}, "Sent SIGHUP to service vem.\n", `POST /api/v1/services/vem/signal {"signal":"HUP"}`},
		{"shutdown", []string{"host", "shutdown"}, "Host " + f.addr + ": shutdown accepted.\n", "POST /api/v1/host/shutdown"},
		{"global flag after command", []string{"host", "reboot", "--insecure"}, "Host " + f.addr + ": reboot accepted.\n", "POST /api/v1/host/reboot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(f.requests())
			out, errOut, err := fvctl(t, nil, append(base, tc.args...)...)
			if err != nil {
				t.Fatalf("fvctl %q = %v (stderr %s)", tc.args, err, errOut)
			}
			if diff := cmp.Diff(tc.want, out); diff != "" {
				t.Errorf("fvctl %q output (-want +got):\n%s", tc.args, diff)
			}
			if got := f.requests()[n:]; !cmp.Equal(got, []string{tc.wantReq}) {
				t.Errorf("fvctl %q requests = %q, want [%q]", tc.args, got, tc.wantReq)
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	f := newFakeHost(t)
	out, _, err := fvctl(t, nil, "--host", f.addr, "--token", token, "--fingerprint", f.fp, "host", "info", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var h api.Host
	if err := json.Unmarshal([]byte(out), &h); err != nil || h.Hostname != "esx1" || h.MemoryBytes != 32<<30 {
		t.Errorf("host info --json = %q (%v), want the api.Host", out, err)
	}
}

func TestAPIErrors(t *testing.T) {
	f := newFakeHost(t)
	base := []string{"--host", f.addr, "--fingerprint", f.fp}
	_, _, err := fvctl(t, nil, append(base, "services")...)
	if err == nil || !strings.Contains(err.Error(), "FVCTL_TOKEN") || exitCode(err) != 1 {
		t.Errorf("fvctl without token = %v, want a hint at FVCTL_TOKEN and exit 1", err)
	}
	_, _, err = fvctl(t, nil, append(base, "--token", "wrong-token-000000000", "services")...)
	if err == nil || !strings.Contains(err.Error(), "rejected the API token") {
		t.Errorf("fvctl with a wrong token = %v, want a rejection", err)
	}
	_, _, err = fvctl(t, nil, append(base, "--token", token, "services", "log", "nope")...)
	if err == nil || !strings.Contains(err.Error(), "no service nope") {
		t.Errorf("fvctl services log nope = %v, want not found", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"host"},
		{"host", "explode"},
		{"host", "info", "extra"},
		{"services", "log"},
		{"services", "log", "a", "b"},
		{"services", "kill"},
		{"services", "kill", "vem", "--signal"},
		{"services", "restart", "vem", "--bogus"},
		{"--bogus", "services"},
		{"services"}, // no host
		{"--host", "h:99999", "services"},
		{"--host", "h", "--fingerprint", "abc", "services"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"--config", t.TempDir()}, args...), &out, &errb)
		if exitCode(err) != 2 {
			t.Errorf("fvctl %q = %v, exit %d, want exit 2", args, err, exitCode(err))
			continue
		}
		if !strings.Contains(errb.String(), "Usage: fvctl") {
			t.Errorf("fvctl %q: stderr lacks the usage:\n%s", args, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, &errb); exitCode(err) != 0 || !strings.Contains(errb.String(), "services kill") {
		t.Errorf("fvctl help = %v (exit %d), want usage and exit 0", err, exitCode(err))
	}
}

func TestParseKnownHosts(t *testing.T) {
	fp := strings.Repeat("AB:", 31) + "AB"
	for _, tc := range []struct {
		name, in string
		want     map[string]knownHost
		err      bool
	}{
		{"empty", "", map[string]knownHost{}, false},
		{"comments and default port", "# x\n\nESX1 " + strings.ToLower(fp) + "\n", map[string]knownHost{"esx1:443": {fp, 3}}, false},
		{"first wins", "h:1 " + fp + "\nh:1 " + strings.Repeat("CD:", 31) + "CD\n", map[string]knownHost{"h:1": {fp, 1}}, false},
		{"ipv6", "[fd00::1]:443 " + fp, map[string]knownHost{"[fd00::1]:443": {fp, 1}}, false},
		{"three fields", "h:1 " + fp + " extra\n", nil, true},
		{"bad fingerprint", "h:1 ABCD\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKnownHosts([]byte(tc.in), "kh")
			if (err != nil) != tc.err {
				t.Fatalf("parseKnownHosts(%q) error = %v, want error %v", tc.in, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(knownHost{})); diff != "" {
				t.Errorf("parseKnownHosts(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func FuzzParseKnownHosts(f *testing.F) {
	f.Add("h:443 " + strings.Repeat("AB:", 31) + "AB\n# c\n")
	f.Add("[::1] 00\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseKnownHosts([]byte(s), "kh")
		if err != nil {
			return
		}
		for addr, e := range m {
			if _, err := client.NormalizeFingerprint(e.fp); err != nil {
				t.Errorf("entry %s has fingerprint %q: %v", addr, e.fp, err)
			}
		}
	})
}

func TestFormatUptime(t *testing.T) {
	for _, tc := range []struct {
		sec  float64
		want string
	}{{0, "0s"}, {59.9, "59s"}, {60, "1m"}, {3661, "1h 1m"}, {93784, "1d 2h 3m"}} {
		if got := formatUptime(tc.sec); got != tc.want {
			t.Errorf("formatUptime(%v) = %q, want %q", tc.sec, got, tc.want)
		}
	}
}
