package hostd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// do sends a raw request with an optional bearer token.
func do(t *testing.T, ts interface{ Client() *http.Client }, url, method, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decodeError(t *testing.T, b []byte) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q is not an api.Error: %v", b, err)
	}
	return e
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	_, ts := e.start(t)
	for _, tc := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"healthz needs no token", "GET", "/healthz", "", 200},
		{"no token", "GET", "/api/v1/host", "", 401},
		{"wrong token", "GET", "/api/v1/host", "wrong-token-0123456789", 401},
		{"token prefix only", "GET", "/api/v1/host", testToken[:10], 401},
		{"right token", "GET", "/api/v1/host", testToken, 200},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with token", "GET", "/metrics", testToken, 200},
		{"shutdown without token", "POST", "/api/v1/host/shutdown", "", 401},
		{"unknown path without token", "GET", "/api/v1/nope", "", 401},
		{"unknown path with token", "GET", "/api/v1/nope", testToken, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, ts, ts.URL, tc.method, tc.path, tc.token, "")
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s status = %d, want %d (body %s)", tc.method, tc.path, resp.StatusCode, tc.want, b)
			}
			if tc.want == 401 {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want Bearer ...", got)
				}
				if got := decodeError(t, b).Code; got != api.ErrUnauthorized {
					t.Errorf("error code = %q, want %q", got, api.ErrUnauthorized)
				}
			}
		})
	}
	if got := e.logBuf.String(); strings.Contains(got, testToken[:10]) {
		t.Errorf("log contains (a prefix of) the token:\n%s", got)
	}
}

func TestTLS12Refused(t *testing.T) {
	e := newEnv(t)
	_, ts := e.start(t)
	conn, err := tls.Dial("tcp", ts.Listener.Addr().String(), &tls.Config{
		InsecureSkipVerify: true,
		MaxVersion:         tls.VersionTLS12,
	})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded, want refusal")
	}
}

func TestEndpointsThroughClient(t *testing.T) {
	e := newEnv(t)
	s, ts := e.start(t)
	c := apiClient(t, s, ts, testToken)
	ctx := context.Background()

	if err := c.Healthz(ctx); err != nil {
		t.Errorf("Healthz() = %v", err)
	}

	h, err := c.Host(ctx)
	if err != nil {
		t.Fatalf("Host() = %v", err)
	}
	want := api.Host{
		Hostname: "esx1", UUID: testBoot.HostUUID, Version: "v0.1.0-test",
		UptimeSeconds: 4242.5, CPUModel: "AMD EPYC 7713 64-Core Processor", CPUs: 2,
		MemoryBytes: 16384000 * 1024, KVM: true, Kernel: "6.1.0-37-amd64",
		PersistentState: true, ManagementAddress: "10.0.2.15", Fingerprint: s.Fingerprint(),
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("Host() mismatch (-want +got):\n%s", diff)
	}

	svcs, err := c.Services(ctx)
	if err != nil {
		t.Fatalf("Services() = %v", err)
	}
	if diff := cmp.Diff(testServices, svcs); diff != "" {
		t.Errorf("Services() mismatch (-want +got):\n%s", diff)
	}

	l, err := c.ServiceLog(ctx, "vem")
	if err != nil {
		t.Fatalf("ServiceLog(vem) = %v", err)
	}
	if diff := cmp.Diff(api.ServiceLog{Name: "vem", Lines: []string{"starting", "failed: no uplink"}}, l); diff != "" {
		t.Errorf("ServiceLog(vem) mismatch (-want +got):\n%s", diff)
	}
	l, err = c.ServiceLog(ctx, "hostd")
	if err != nil || l.Lines == nil || len(l.Lines) != 0 {
		t.Errorf("ServiceLog(hostd) = %#v, %v, want empty non-nil lines", l, err)
	}

	if err := c.RestartService(ctx, "vem"); err != nil {
		t.Errorf("RestartService(vem) = %v", err)
	}
	if err := c.SignalService(ctx, "vem", "HUP"); err != nil {
		t.Errorf("SignalService(vem, HUP) = %v", err)
	}
	wantReqs := []api.InitRequest{
		{Op: api.InitOpServices},
		{Op: api.InitOpLog, Service: "vem"},
		{Op: api.InitOpLog, Service: "hostd"},
		{Op: api.InitOpRestart, Service: "vem"},
		{Op: api.InitOpSignal, Service: "vem", Signal: "HUP"},
	}
	if diff := cmp.Diff(wantReqs, e.init.Requests()); diff != "" {
		t.Errorf("init requests mismatch (-want +got):\n%s", diff)
	}

	// Errors, with their stable codes.
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"unknown service log", func() error { _, err := c.ServiceLog(ctx, "nope"); return err }, 404, api.ErrNotFound},
		{"unknown service restart", func() error { return c.RestartService(ctx, "nope") }, 404, api.ErrNotFound},
		{"unknown service signal", func() error { return c.SignalService(ctx, "nope", "TERM") }, 404, api.ErrNotFound},
		{"unknown signal", func() error { return c.SignalService(ctx, "vem", "STOP") }, 400, api.ErrBadRequest},
		{"lowercase signal", func() error { return c.SignalService(ctx, "vem", "term") }, 400, api.ErrBadRequest},
		{"invalid name", func() error { return c.RestartService(ctx, "Bad_Name") }, 400, api.ErrBadRequest},
		{"overlong name", func() error { return c.RestartService(ctx, strings.Repeat("a", 33)) }, 400, api.ErrBadRequest},
		{"name with dot dot", func() error { _, err := c.ServiceLog(ctx, ".."); return err }, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.status == 0 { // any refusal will do
				if err == nil {
					t.Fatal("call = nil, want an error")
				}
				return
			}
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("call = %v, want *client.APIError", err)
			}
			if ae.Status != tc.status || ae.Code != tc.code {
				t.Errorf("call = %d %s, want %d %s", ae.Status, ae.Code, tc.status, tc.code)
			}
		})
	}
	// Refused requests never reached init.
	if got := len(e.init.Requests()); got != len(wantReqs)+3 {
		t.Errorf("init got %d requests, want %d (only the unknown-service ones added)", got, len(wantReqs)+3)
	}
}

func TestBodies(t *testing.T) {
	e := newEnv(t)
	_, ts := e.start(t)
	const p = "/api/v1/services/vem/signal"
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"ok", `{"signal":"USR1"}`, 202, ""},
		{"oversized", `{"signal":"` + strings.Repeat("A", MaxBodyBytes) + `"}`, 413, api.ErrBodyTooLarge},
		{"malformed", `{"signal":`, 400, api.ErrBadRequest},
		{"empty", ``, 400, api.ErrBadRequest},
		{"unknown field", `{"signal":"TERM","pid":1}`, 400, api.ErrBadRequest},
		{"trailing data", `{"signal":"TERM"}{}`, 400, api.ErrBadRequest},
		{"wrong type", `{"signal":9}`, 400, api.ErrBadRequest},
		{"null", `null`, 400, api.ErrBadRequest},
		{"unknown signal", `{"signal":"SEGV"}`, 400, api.ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, ts, ts.URL, "POST", p, testToken, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("POST %s %s: status = %d, want %d (body %s)", p, tc.name, resp.StatusCode, tc.status, b)
			}
			if tc.code != "" {
				if got := decodeError(t, b).Code; got != tc.code {
					t.Errorf("code = %q, want %q", got, tc.code)
				}
			}
		})
	}
}

func TestNotFoundAndMethodAreJSON(t *testing.T) {
	e := newEnv(t)
	_, ts := e.start(t)
	resp, b := do(t, ts, ts.URL, "GET", "/api/v1/clusters", testToken, "")
	if resp.StatusCode != 404 || decodeError(t, b).Code != api.ErrNotFound {
		t.Errorf("GET /api/v1/clusters = %d %s, want 404 not_found", resp.StatusCode, b)
	}
	resp, b = do(t, ts, ts.URL, "DELETE", "/api/v1/host", testToken, "")
	if resp.StatusCode != 405 || decodeError(t, b).Code != api.ErrMethodNotAllowed {
		t.Errorf("DELETE /api/v1/host = %d %s, want 405 method_not_allowed", resp.StatusCode, b)
	}
	if got := resp.Header.Get("Allow"); !strings.Contains(got, "GET") {
		t.Errorf("Allow = %q, want GET in it", got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

func TestPowerAnswersBeforeInit(t *testing.T) {
	for _, op := range []string{api.InitOpShutdown, api.InitOpReboot} {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t)
			asked := make(chan struct{})
			release := make(chan struct{})
			e.init.Before = func(r api.InitRequest) {
				if r.Op == op {
					close(asked)
					<-release // init busy: "hostd is being stopped"
				}
			}
			s, ts := e.start(t)
			c := apiClient(t, s, ts, testToken)
			call := c.Shutdown
			if op == api.InitOpReboot {
				call = c.Reboot
			}
			select {
			case <-asked:
				t.Fatal("init was asked before the request was sent")
			default:
			}
			// The answer arrives although init never answers hostd.
			if err := call(context.Background()); err != nil {
				t.Fatalf("%s() = %v", op, err)
			}
			select {
			case <-asked:
			case <-time.After(5 * time.Second):
				t.Fatalf("init was never asked to %s", op)
			}
			close(release)
			waitFor(t, func() bool { return slices.Contains(e.init.Requests(), api.InitRequest{Op: op}) })
		})
	}
}

func TestSelfRestartAnswersFirst(t *testing.T) {
	e := newEnv(t)
	asked := make(chan struct{})
	release := make(chan struct{})
	e.init.Before = func(r api.InitRequest) {
		if r.Op == api.InitOpRestart {
			close(asked)
			<-release
		}
	}
	s, ts := e.start(t)
	c := apiClient(t, s, ts, testToken)
	if err := c.RestartService(context.Background(), "hostd"); err != nil {
		t.Fatalf("RestartService(hostd) = %v", err)
	}
	<-asked
	close(release)
	waitFor(t, func() bool {
		return slices.Contains(e.init.Requests(), api.InitRequest{Op: api.InitOpRestart, Service: "hostd"})
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	s, ts := e.start(t)
	c := apiClient(t, s, ts, testToken)
	ctx := context.Background()
	if _, err := c.Host(ctx); err != nil {
		t.Fatal(err)
	}
	do(t, ts, ts.URL, "GET", "/api/v1/host", "", "") // a 401 to count
	m, err := c.Metrics(ctx)
	if err != nil {
		t.Fatalf("Metrics() = %v", err)
	}
	for _, want := range []string{
		"flashvisor_host_uptime_seconds 4242.5",
		`flashvisor_service_up{service="hostd",state="running"} 1`,
		`flashvisor_service_up{service="vem",state="backoff"} 0`,
		`flashvisor_service_restarts_total{service="vem"} 3`,
		"flashvisor_init_up 1",
		`flashvisor_api_requests_total{code="200",method="GET"} 1`,
		`flashvisor_api_requests_total{code="401",method="GET"} 1`,
		`flashvisor_build_info{version="v0.1.0-test"} 1`,
		"go_goroutines ",
		"process_",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("Metrics() lacks %q", want)
		}
	}
}

// panicky is a ServiceControl whose every call panics.
type panicky struct{ Power }

func (panicky) Services(context.Context) ([]api.Service, error) { panic("boom") }
func (panicky) Log(context.Context, string) ([]string, error)   { panic("boom") }
func (panicky) Restart(context.Context, string) error           { panic("boom") }
func (panicky) Signal(context.Context, string, string) error    { panic("boom") }

func TestPanicIsA500(t *testing.T) {
	e := newEnv(t)
	e.opts.Services = panicky{}
	_, ts := e.start(t)
	for range 2 { // still alive after the first
		resp, b := do(t, ts, ts.URL, "GET", "/api/v1/services", testToken, "")
		if resp.StatusCode != 500 || decodeError(t, b).Code != api.ErrInternal {
			t.Fatalf("GET /api/v1/services = %d %s, want 500 internal", resp.StatusCode, b)
		}
	}
	if !strings.Contains(e.logBuf.String(), "panic") {
		t.Error("panic not logged")
	}
}

func TestInitUnavailable(t *testing.T) {
	e := newEnv(t)
	e.opts.Services = unreachable{}
	_, ts := e.start(t)
	resp, b := do(t, ts, ts.URL, "GET", "/api/v1/services", testToken, "")
	if resp.StatusCode != 503 || decodeError(t, b).Code != api.ErrUnavailable {
		t.Errorf("GET /api/v1/services with init down = %d %s, want 503 unavailable", resp.StatusCode, b)
	}
	resp, b = do(t, ts, ts.URL, "GET", "/metrics", testToken, "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), "flashvisor_init_up 0") {
		t.Errorf("GET /metrics with init down = %d, want 200 with flashvisor_init_up 0", resp.StatusCode)
	}
}

type unreachable struct{}

func (unreachable) Services(ctx context.Context) ([]api.Service, error) {
	return nil, context.DeadlineExceeded
}
func (unreachable) Log(context.Context, string) ([]string, error) {
	return nil, context.DeadlineExceeded
}
func (unreachable) Restart(context.Context, string) error        { return context.DeadlineExceeded }
func (unreachable) Signal(context.Context, string, string) error { return context.DeadlineExceeded }

func TestRequestLog(t *testing.T) {
	e := newEnv(t)
	_, ts := e.start(t)
	do(t, ts, ts.URL, "GET", "/api/v1/services", testToken, "")
	log := e.logBuf.String()
	for _, want := range []string{"method=GET", "path=/api/v1/services", "status=200", "duration=", "remote=127.0.0.1:"} {
		if !strings.Contains(log, want) {
			t.Errorf("request log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, testToken) || strings.Contains(log, "Bearer") {
		t.Errorf("request log shows the Authorization header:\n%s", log)
	}
}

func FuzzParseSignalRequest(f *testing.F) {
	for _, s := range []string{`{"signal":"TERM"}`, `{"signal":"KILL"} `, `{"signal":1}`, `{}`, `null`, `[`, `{"signal":"TERM","x":1}`, "{\"signal\":\"HUP\"}\n{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, err := parseSignalRequest(b)
		if err != nil {
			if sig != "" {
				t.Errorf("parseSignalRequest(%q) = %q, %v: a signal with an error", b, sig, err)
			}
			return
		}
		if !slices.Contains(Signals, sig) {
			t.Errorf("parseSignalRequest(%q) = %q, want one of %v", b, sig, Signals)
		}
		// Whatever was accepted re-encodes to the same request.
		var req api.SignalRequest
		if err := json.Unmarshal(b, &req); err != nil || req.Signal != sig {
			t.Errorf("accepted body %q does not decode to signal %q: %v", b, sig, err)
		}
	})
}
