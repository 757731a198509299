package boot

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

func TestControlOverSocket(t *testing.T) {
	s := newTestSupervisor(t, api.ServiceSpec{Name: "svc", Path: script(t, "echo up; exec sleep 60")})
	s.Start()
	waitFor(t, "running", func() bool { return status(s, "svc").PID != 0 })
	power := make(chan PowerAction, 2)
	c := &Control{Sup: s, Power: func(a PowerAction) { power <- a }, Log: testLogger(t)}
	sock := filepath.Join(t.TempDir(), "init.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go c.Serve(l)

	ask := func(raw string) api.InitResponse {
		t.Helper()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		var resp api.InitResponse
		if err := json.NewDecoder(conn).Decode(&resp); err != nil {
			t.Fatalf("decoding answer to %s: %v", raw, err)
		}
		return resp
	}

	if r := ask(`{"op":"services"}`); len(r.Services) != 1 || r.Services[0].Name != "svc" {
		t.Errorf("services = %+v, want one named svc", r)
	}
	waitFor(t, "log line", func() bool { return len(ask(`{"op":"log","service":"svc"}`).Log) == 1 })
	for _, tc := range []struct{ req, code string }{
		{`{"op":"log","service":"nope"}`, api.ErrNotFound},
		{`{"op":"log","service":"../etc"}`, api.ErrBadRequest},
		{`{"op":"signal","service":"svc","signal":"STOP"}`, api.ErrBadRequest},
		{`{"op":"dance"}`, api.ErrBadRequest},
		{`{"op":"release-network"}`, api.ErrUnavailable}, // no ReleaseNetwork yet
		{`{"op":"services","extra":1}`, api.ErrBadRequest},
		{`not json`, api.ErrBadRequest},
		{`{"op":"restart","service":"` + strings.Repeat("a", 100) + `"}`, api.ErrBadRequest},
	} {
		if r := ask(tc.req); r.ErrorCode != tc.code || r.Error == "" {
			t.Errorf("ask(%s) = %+v, want error code %s", tc.req, r, tc.code)
		}
	}
	if r := ask(`{"op":"signal","service":"svc","signal":"KILL"}`); r.Error != "" {
		t.Errorf("signal KILL: %s", r.Error)
	}
	waitFor(t, "restart after kill", func() bool { return status(s, "svc").Restarts == 1 })
	if r := ask(`{"op":"reboot"}`); r.Error != "" {
		t.Errorf("reboot: %s", r.Error)
	}
	if r := ask(`{"op":"shutdown"}`); r.Error != "" {
		t.Errorf("shutdown: %s", r.Error)
	}
	if a, b := <-power, <-power; a != Reboot || b != PowerOff {
		t.Errorf("power actions = %v, %v; want reboot, power off", a, b)
	}
}

func FuzzControlHandle(f *testing.F) {
	f.Add(`{"op":"log","service":"svc"}`)
	f.Add(`{"op":"signal","service":"svc","signal":"HUP"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var req api.InitRequest
		if json.Unmarshal([]byte(raw), &req) != nil {
			return
		}
		if req.Op == api.InitOpShutdown || req.Op == api.InitOpReboot || req.Op == api.InitOpSignal {
			return // side effects on real processes are covered above
		}
		c := &Control{Sup: NewSupervisor(nil, SupervisorOptions{}), Power: func(PowerAction) {}, Log: testLogger(t)}
		r := c.Handle(req)
		if r.Error != "" && r.ErrorCode == "" {
			t.Errorf("Handle(%s) error without code: %+v", raw, r)
		}
	})
}

func TestControlReleaseNetwork(t *testing.T) {
	released := 0
	c := &Control{Power: func(PowerAction) {}, ReleaseNetwork: func() error { released++; return nil }, Log: testLogger(t)}
	if r := c.Handle(api.InitRequest{Op: api.InitOpReleaseNetwork}); r.Error != "" || released != 1 {
		t.Errorf("release-network = %+v, released %d times", r, released)
	}
}
