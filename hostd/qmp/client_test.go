package qmp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/hostd/qmp"
	"github.com/flashvisor/flashvisor/hostd/qmp/qmptest"
)

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeVersion(t *testing.T) {
	s := qmptest.NewServer(nil)
	s.Greeting = qmp.Version{Major: 7, Minor: 2, Micro: 22, Package: "Debian 1:7.2"}
	c := qmptest.Pipe(t, s, qmp.WithLogger(testLogger(t)))
	want := qmp.Version{Major: 7, Minor: 2, Micro: 22, Package: "Debian 1:7.2"}
	if diff := cmp.Diff(want, c.Version()); diff != "" {
		t.Errorf("Version() mismatch (-want +got):\n%s", diff)
	}
	if !c.Version().AtLeast(7, 1) || c.Version().AtLeast(8, 0) {
		t.Errorf("AtLeast wrong for %v", c.Version())
	}
	if got := c.Capabilities(); len(got) != 1 || got[0] != "oob" {
		t.Errorf("Capabilities() = %v, want [oob]", got)
	}
	if got := s.CommandNames(); len(got) != 0 {
		t.Errorf("commands after handshake = %v, want none (qmp_capabilities is not recorded)", got)
	}
}

func TestExecute(t *testing.T) {
	s := qmptest.NewServer(map[string]qmptest.Handler{
		"query-status": func(json.RawMessage) (any, error) {
			return map[string]any{"status": "paused", "running": false, "singlestep": false}, nil
		},
		"echo": func(args json.RawMessage) (any, error) { return args, nil },
		"fail": func(json.RawMessage) (any, error) {
			return nil, &qmp.Error{Class: "DeviceNotFound", Desc: "Device 'x' not found"}
		},
		"plainfail": func(json.RawMessage) (any, error) { return nil, errors.New("boom") },
	})
	c := qmptest.Pipe(t, s)
	ctx := ctxT(t)

	st, err := c.QueryStatus(ctx)
	if err != nil || st.Status != qmp.StatePaused || st.Running {
		t.Errorf("QueryStatus() = %+v, %v, want paused", st, err)
	}

	var got map[string]any
	if err := c.Execute(ctx, "echo", map[string]any{"a": 1.0, "b": "x"}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"a": 1.0, "b": "x"}, got); diff != "" {
		t.Errorf("echo mismatch (-want +got):\n%s", diff)
	}

	tests := []struct {
		cmd       string
		wantClass string
	}{
		{"fail", "DeviceNotFound"},
		{"plainfail", "GenericError"},
		{"no-such-command", "CommandNotFound"},
	}
	for _, tc := range tests {
		err := c.Execute(ctx, tc.cmd, nil, nil)
		var qe *qmp.Error
		if !errors.As(err, &qe) {
			t.Errorf("Execute(%s) = %v, want a *qmp.Error", tc.cmd, err)
			continue
		}
		if qe.Class != tc.wantClass || qe.Command != tc.cmd || qe.Desc == "" {
			t.Errorf("Execute(%s) error = %+v, want class %s", tc.cmd, qe, tc.wantClass)
		}
	}
	// The connection survives QMP errors.
	if _, err := c.QueryStatus(ctx); err != nil {
		t.Errorf("QueryStatus after errors: %v", err)
	}
	wantCmds := []string{"query-status", "echo", "fail", "plainfail", "no-such-command", "query-status"}
	if diff := cmp.Diff(wantCmds, s.CommandNames()); diff != "" {
		t.Errorf("recorded commands (-want +got):\n%s", diff)
	}
	if got := string(s.Commands()[1].Args); got != `{"a":1,"b":"x"}` {
		t.Errorf("recorded args = %s", got)
	}
}

// rawServer runs script on the server end of a pipe after the greeting and
// capability negotiation, reading requests as decoded JSON.
type rawServer struct {
	conn net.Conn
	sc   *bufio.Scanner
}

type rawReq struct {
	Execute string          `json:"execute"`
	ID      json.RawMessage `json:"id"`
}

func (r *rawServer) read(t *testing.T) rawReq {
	if !r.sc.Scan() {
		t.Errorf("server: read: %v", r.sc.Err())
		return rawReq{}
	}
	var q rawReq
	if err := json.Unmarshal(r.sc.Bytes(), &q); err != nil {
		t.Errorf("server: bad request %q: %v", r.sc.Bytes(), err)
	}
	return q
}

func (r *rawServer) send(s string) { fmt.Fprintf(r.conn, "%s\r\n", s) }

func newRaw(t *testing.T, greet bool) (*rawServer, net.Conn) {
	cc, sc := net.Pipe()
	t.Cleanup(func() { sc.Close(); cc.Close() })
	r := &rawServer{conn: sc, sc: bufio.NewScanner(sc)}
	if greet {
		go func() {
			r.send(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""}, "capabilities": ["oob"]}}`)
			q := r.read(t)
			r.send(fmt.Sprintf(`{"return": {}, "id": %s}`, q.ID))
		}()
	}
	return r, cc
}

func TestConcurrentCallsMatchedByID(t *testing.T) {
	r, cc := newRaw(t, true)
	c, err := qmp.New(ctxT(t), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server answers the two requests in reverse order, with an
	// event in between.
	go func() {
		a, b := r.read(t), r.read(t)
		r.send(fmt.Sprintf(`{"return": {"name": %q}, "id": %s}`, b.Execute, b.ID))
		r.send(`{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}`)
		r.send(fmt.Sprintf(`{"return": {"name": %q}, "id": %s}`, a.Execute, a.ID))
	}()
	var wg sync.WaitGroup
	got := make([]string, 2)
	for i, cmd := range []string{"first", "second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res struct{ Name string }
			if err := c.Execute(ctxT(t), cmd, nil, &res); err != nil {
				t.Errorf("Execute(%s): %v", cmd, err)
			}
			got[i] = res.Name
		}()
		time.Sleep(10 * time.Millisecond) // keep "first" first on the wire
	}
	wg.Wait()
	if diff := cmp.Diff([]string{"first", "second"}, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	ev := <-c.Events()
	if ev.Name != qmp.EventStop || !ev.Time.Equal(time.Unix(1, 2000)) {
		t.Errorf("event = %+v, want STOP at 1.000002", ev)
	}
}

func TestEvents(t *testing.T) {
	v := qmptest.NewVM()
	c := qmptest.Pipe(t, v.Server)
	ctx := ctxT(t)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SystemReset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for len(names) < 5 {
		select {
		case ev := <-c.Events():
			names = append(names, ev.Name)
			if ev.Name == qmp.EventShutdown {
				var d qmp.ShutdownData
				if err := ev.DecodeData(&d); err != nil || !d.Guest || d.Reason != "guest-shutdown" {
					t.Errorf("SHUTDOWN data = %+v, %v, want guest shutdown", d, err)
				}
			}
		case <-ctx.Done():
			t.Fatalf("events so far %v: %v", names, ctx.Err())
		}
	}
	want := []string{"STOP", "RESUME", "RESET", "POWERDOWN", "SHUTDOWN"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if st, _ := c.QueryStatus(ctx); st.Status != qmp.StateShutdown {
		t.Errorf("status after powerdown = %q, want shutdown", st.Status)
	}
}

func TestQuitClosesCleanly(t *testing.T) {
	v := qmptest.NewVM()
	c := qmptest.Pipe(t, v.Server)
	ctx := ctxT(t)
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("Quit() = %v, want nil", err)
	}
	var got []string
	for ev := range c.Events() { // closed after the hang-up
		got = append(got, ev.Name)
	}
	if diff := cmp.Diff([]string{"SHUTDOWN"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	<-c.Done()
	if err := c.Stop(ctx); !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("Stop() after hang-up = %v, want ErrClosed", err)
	}
}

func TestHangupFailsPendingCalls(t *testing.T) {
	s := qmptest.NewServer(nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	s.Handle("slow", func(json.RawMessage) (any, error) {
		close(entered)
		<-release
		return nil, nil
	})
	c := qmptest.Pipe(t, s)
	errc := make(chan error, 1)
	go func() { errc <- c.Execute(ctxT(t), "slow", nil, nil) }()
	<-entered
	s.Hangup()
	err := <-errc
	close(release)
	if !errors.Is(err, qmp.ErrClosed) {
		t.Fatalf("Execute(slow) during hang-up = %v, want ErrClosed", err)
	}
	if c.Err() == nil {
		t.Error("Err() = nil after hang-up")
	}
}

func TestContextDeadline(t *testing.T) {
	s := qmptest.NewServer(nil)
	release := make(chan struct{})
	s.Handle("slow", func(json.RawMessage) (any, error) { <-release; return nil, nil })
	s.Handle("fast", func(json.RawMessage) (any, error) { return "ok", nil })
	c := qmptest.Pipe(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Execute(ctx, "slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Execute(slow) = %v, want DeadlineExceeded", err)
	}
	close(release) // the late answer is dropped
	var got string
	if err := c.Execute(ctxT(t), "fast", nil, &got); err != nil || got != "ok" {
		t.Errorf("Execute(fast) after a timeout = %q, %v, want ok", got, err)
	}
}

func TestWriteBlockedByContext(t *testing.T) {
	r, cc := newRaw(t, true)
	_ = r
	c, err := qmp.New(ctxT(t), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Nobody reads the server end: the write itself blocks.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop() with a stuck peer = %v, want DeadlineExceeded", err)
	}
	if c.Err() != nil {
		t.Errorf("Err() = %v: a write that sent nothing must keep the connection", c.Err())
	}
}

func TestHandshakeErrors(t *testing.T) {
	tests := []struct {
		name   string
		script func(t *testing.T, r *rawServer)
	}{
		{"silent", func(*testing.T, *rawServer) {}},
		{"garbage greeting", func(_ *testing.T, r *rawServer) { r.send(`hello`) }},
		{"answer first", func(_ *testing.T, r *rawServer) { r.send(`{"return": {}}`) }},
		{"capabilities refused", func(t *testing.T, r *rawServer) {
			r.send(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}}, "capabilities": []}}`)
			q := r.read(t)
			r.send(fmt.Sprintf(`{"error": {"class": "GenericError", "desc": "no"}, "id": %s}`, q.ID))
		}},
		{"hang-up", func(_ *testing.T, r *rawServer) { r.conn.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, cc := newRaw(t, false)
			go tc.script(t, r)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			c, err := qmp.New(ctx, cc)
			if err == nil {
				c.Close()
				t.Fatal("New() = nil error")
			}
			t.Logf("New() = %v", err)
		})
	}
}

func TestMalformedInputClosesConnection(t *testing.T) {
	for _, bad := range []string{
		`{"return": {}, "id": 1}`, // not our id type
		`not json at all`,
		`{"return": {}, "error": {"class": "x", "desc": "y"}, "id": "fv-1"}`,
		`{"event": "STOP"} {"event": "RESUME"}`,
		`{"QMP": {}, "event": "x"}`,
	} {
		t.Run(bad, func(t *testing.T) {
			r, cc := newRaw(t, true)
			c, err := qmp.New(ctxT(t), cc, qmp.WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				r.read(t)
				r.send(bad)
			}()
			err = c.Stop(ctxT(t))
			if !errors.Is(err, qmp.ErrClosed) || !errors.Is(err, qmp.ErrProtocol) {
				t.Errorf("Stop() answered by %s = %v, want ErrClosed and ErrProtocol", bad, err)
			}
		})
	}
}

func TestCommandsAgainstFakeVM(t *testing.T) {
	v := qmptest.NewVM()
	v.Greeting = qmp.Version{Major: 9, Minor: 1, Micro: 2}
	c := qmptest.Pipe(t, v.Server)
	ctx := ctxT(t)

	if got, err := c.QueryVersion(ctx); err != nil || got.String() != "9.1.2" {
		t.Errorf("QueryVersion() = %v, %v, want 9.1.2", got, err)
	}
	png := filepath.Join(t.TempDir(), "shot.png")
	if err := c.Screendump(ctx, png, "png"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || string(b[1:4]) != "PNG" {
		t.Errorf("screendump wrote %q, %v; want a PNG", b, err)
	}
	if out, err := c.HumanMonitorCommand(ctx, "info block"); err != nil || out == "" {
		t.Errorf("HumanMonitorCommand() = %q, %v", out, err)
	}
	if err := c.NetdevAdd(ctx, "tap", "net1", map[string]any{"ifname": "fvtap1", "script": "no"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeviceAdd(ctx, "virtio-net-pci", "nic1", map[string]any{"netdev": "net1", "mac": "00:50:56:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeviceAdd(ctx, "virtio-net-pci", "nic1", nil); err == nil {
		t.Error("DeviceAdd(duplicate id) = nil, want error")
	}
	if err := c.DeviceDel(ctx, "nic1"); err != nil {
		t.Fatal(err)
	}
	ev := <-c.Events()
	var d qmp.DeviceDeletedData
	if ev.Name != qmp.EventDeviceDeleted || ev.DecodeData(&d) != nil || d.Device != "nic1" {
		t.Errorf("event after device_del = %+v, want DEVICE_DELETED nic1", ev)
	}
	err := c.DeviceDel(ctx, "nic1")
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Class != "DeviceNotFound" {
		t.Errorf("DeviceDel(gone) = %v, want DeviceNotFound", err)
	}
	if err := c.NetdevDel(ctx, "net1"); err != nil {
		t.Fatal(err)
	}
	args := string(v.Commands()[4].Args)
	if args != `{"driver":"virtio-net-pci","id":"nic1","mac":"00:50:56:00:00:01","netdev":"net1"}` {
		t.Errorf("device_add args = %s", args)
	}
	if err := c.GetFD(ctx, "x", os.Stdin); !errors.Is(err, qmp.ErrNoFDPassing) {
		t.Errorf("GetFD over net.Pipe = %v, want ErrNoFDPassing", err)
	}
}

func TestMemoryHotAddAgainstFakeVM(t *testing.T) {
	v := qmptest.NewVM(qmptest.Memory(1024, 2, 1024+512), qmptest.ColdDIMM("dimm0", "mem-dimm0", 128))
	c := qmptest.Pipe(t, v.Server)
	ctx := ctxT(t)
	genericError := func(what string, err error, desc string) {
		t.Helper()
		var qe *qmp.Error
		if !errors.As(err, &qe) || qe.Class != "GenericError" || !strings.Contains(qe.Desc, desc) {
			t.Errorf("%s = %v, want a GenericError saying %q", what, err, desc)
		}
	}
	if err := c.ObjectAdd(ctx, "memory-backend-ram", "mem-dimm1", map[string]any{"size": 256 << 20}); err != nil {
		t.Fatal(err)
	}
	genericError("ObjectAdd(same id)", c.ObjectAdd(ctx, "memory-backend-ram", "mem-dimm1", map[string]any{"size": 256 << 20}), "duplicate")
	genericError("DeviceAdd(busy memdev)", c.DeviceAdd(ctx, "pc-dimm", "dimmX", map[string]any{"memdev": "mem-dimm0"}), "busy memdev")
	genericError("DeviceAdd(no memdev)", c.DeviceAdd(ctx, "pc-dimm", "dimmX", map[string]any{"memdev": "nope"}), "can't find value 'nope'")
	if err := c.DeviceAdd(ctx, "pc-dimm", "dimm1", map[string]any{"memdev": "mem-dimm1", "slot": 1}); err != nil {
		t.Fatal(err)
	}
	genericError("ObjectDel(in use)", c.ObjectDel(ctx, "mem-dimm1"), "in use")
	// Room for 128 MiB more, but both slots are taken.
	if err := c.ObjectAdd(ctx, "memory-backend-ram", "mem-dimm2", map[string]any{"size": 128 << 20}); err != nil {
		t.Fatal(err)
	}
	genericError("DeviceAdd(third DIMM)", c.DeviceAdd(ctx, "pc-dimm", "dimm2", map[string]any{"memdev": "mem-dimm2"}), "no free slots")
	if err := c.ObjectDel(ctx, "mem-dimm2"); err != nil {
		t.Fatal(err)
	}
	devs, err := c.QueryMemoryDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []qmp.MemoryDevice{
		{Type: "dimm", Data: qmp.DIMMInfo{ID: "dimm0", Addr: 4 << 30, Size: 128 << 20, Slot: 0, Memdev: "/objects/mem-dimm0", Hotpluggable: true}},
		{Type: "dimm", Data: qmp.DIMMInfo{ID: "dimm1", Addr: 4<<30 + 128<<20, Size: 256 << 20, Slot: 1, Memdev: "/objects/mem-dimm1", Hotplugged: true, Hotpluggable: true}},
	}
	if diff := cmp.Diff(want, devs); diff != "" {
		t.Errorf("QueryMemoryDevices() mismatch (-want +got):\n%s", diff)
	}
	if got, err := c.QueryMemorySizeSummary(ctx); err != nil || got != (qmp.MemorySize{Base: 1024 << 20, Plugged: 384 << 20}) {
		t.Errorf("QueryMemorySizeSummary() = %+v, %v; want 1024 MiB base, 384 MiB plugged", got, err)
	}
	if got := string(v.Commands()[0].Args); got != `{"id":"mem-dimm1","qom-type":"memory-backend-ram","size":268435456}` {
		t.Errorf("object-add args = %s", got)
	}

	// Without slots (plain -m), and beyond maxmem.
	plain := qmptest.NewVM()
	pc := qmptest.Pipe(t, plain.Server)
	if err := pc.ObjectAdd(ctx, "memory-backend-ram", "m", map[string]any{"size": 128 << 20}); err != nil {
		t.Fatal(err)
	}
	genericError("DeviceAdd(without slots)", pc.DeviceAdd(ctx, "pc-dimm", "d", map[string]any{"memdev": "m"}), "consider specifying the maxmem option")
	small := qmptest.NewVM(qmptest.Memory(256, 4, 384))
	sc := qmptest.Pipe(t, small.Server)
	if err := sc.ObjectAdd(ctx, "memory-backend-ram", "m", map[string]any{"size": 256 << 20}); err != nil {
		t.Fatal(err)
	}
	genericError("DeviceAdd(beyond maxmem)", sc.DeviceAdd(ctx, "pc-dimm", "d", map[string]any{"memdev": "m"}), "not enough space")
}

func TestSuspendResumeThroughFile(t *testing.T) {
	ctx := ctxT(t)
	state := filepath.Join(t.TempDir(), "vm.fvss")

	src := qmptest.NewVM()
	c, err := qmp.Dial(ctx, qmptest.ListenUnix(t, src.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.MigrateToFile(ctx, state, time.Millisecond); err != nil {
		t.Fatalf("MigrateToFile: %v", err)
	}
	if got := src.Status(); got != qmp.StatePostMigrate {
		t.Errorf("source status = %q, want postmigrate", got)
	}
	if b, _ := os.ReadFile(state); string(b) != qmptest.StateMagic+"status=paused\n" {
		t.Errorf("state file = %q", b)
	}

	dst := qmptest.NewVM(qmptest.Incoming())
	c2, err := qmp.Dial(ctx, qmptest.ListenUnix(t, dst.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.MigrateIncomingFromFile(ctx, state, time.Millisecond); err != nil {
		t.Fatalf("MigrateIncomingFromFile: %v", err)
	}
	if err := c2.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c2.QueryStatus(ctx); st.Status != qmp.StateRunning {
		t.Errorf("resumed status = %q, want running", st.Status)
	}

	// A file that is not a state file fails the load.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("junk"), 0o600)
	dst2 := qmptest.NewVM(qmptest.Incoming())
	c3, err := qmp.Dial(ctx, qmptest.ListenUnix(t, dst2.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.MigrateIncomingFromFile(ctx, bad, time.Millisecond); !errors.Is(err, qmp.ErrMigrationFailed) {
		t.Errorf("MigrateIncomingFromFile(junk) = %v, want ErrMigrationFailed", err)
	}
}

func TestDialMissingSocket(t *testing.T) {
	_, err := qmp.Dial(ctxT(t), filepath.Join(t.TempDir(), "none.sock"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Dial(missing) = %v, want ErrNotExist", err)
	}
}

func TestReconnectAfterClientRestart(t *testing.T) {
	v := qmptest.NewVM()
	path := qmptest.ListenUnix(t, v.Server)
	ctx := ctxT(t)
	for i := range 2 { // hostd restarted: the VM is adopted again
		c, err := qmp.Dial(ctx, path)
		if err != nil {
			t.Fatalf("Dial #%d: %v", i, err)
		}
		if st, err := c.QueryStatus(ctx); err != nil || st.Status != qmp.StateRunning {
			t.Errorf("QueryStatus #%d = %+v, %v", i, st, err)
		}
		c.Close()
	}
}
