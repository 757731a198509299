package chassis_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/chassis"
	"github.com/flashvisor/flashvisor/vsm/chassis/chassistest"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// uuid returns a distinct canonical host UUID for n.
func uuid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func newChassis(t *testing.T, o chassis.Options) (*chassis.Chassis, *chassistest.Clock) {
	t.Helper()
	clk := chassistest.NewClock()
	if o.Clock == nil {
		o.Clock = clk
	}
	o.Logger = testLogger(t)
	c, err := chassis.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clk
}

func join(t *testing.T, c *chassis.Chassis, n, want int) chassis.Member {
	t.Helper()
	m, err := c.Join(chassis.Host{UUID: uuid(n), Hostname: fmt.Sprintf("esx%d", n), WantSlot: want})
	if err != nil {
		t.Fatalf("Join(host %d, want %d): %v", n, want, err)
	}
	return m
}

func TestJoinLowestFree(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{})
	for i := 1; i <= 3; i++ {
		if m := join(t, c, i, 0); m.Slot != i+2 || !m.New {
			t.Errorf("Join(host %d) = %+v, want slot %d, new", i, m, i+2)
		}
	}
	// Slot 4 goes offline and keeps its binding: a new host gets 6, not 4.
	m2, _ := c.Online(4)
	if err := c.Leave(4, m2); err != nil {
		t.Fatal(err)
	}
	if m := join(t, c, 9, 0); m.Slot != 6 {
		t.Errorf("Join(new host) = slot %d, want 6 (4 stays bound)", m.Slot)
	}
	// Host 2 comes back to 4.
	if m := join(t, c, 2, 0); m.Slot != 4 || m.New || m.Replaced {
		t.Errorf("Join(host 2 again) = %+v, want slot 4, not new, not replaced", m)
	}
	// After an operator unbinds host 3 (offline), slot 5 is free again.
	s3, _ := c.Online(5)
	if err := c.Unbind(uuid(3)); !errors.Is(err, chassis.ErrOnline) {
		t.Errorf("Unbind(online host) = %v, want ErrOnline", err)
	}
	if err := c.Leave(5, s3); err != nil {
		t.Fatal(err)
	}
	if err := c.Unbind(uuid(3)); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	if err := c.Unbind(uuid(3)); !errors.Is(err, chassis.ErrUnknownHost) {
		t.Errorf("Unbind twice = %v, want ErrUnknownHost", err)
	}
	if m := join(t, c, 10, 0); m.Slot != 5 {
		t.Errorf("Join after unbind = slot %d, want 5", m.Slot)
	}
}

func TestJoinBadUUID(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{})
	for _, u := range []string{"", "nope", strings.Repeat("0", 36)} {
		if _, err := c.Join(chassis.Host{UUID: u}); !errors.Is(err, chassis.ErrBadUUID) {
			t.Errorf("Join(%q) = %v, want ErrBadUUID", u, err)
		}
	}
}

func TestChassisFull(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{})
	for i := range 64 {
		if m := join(t, c, i, 0); m.Slot != i+3 {
			t.Fatalf("Join(host %d) = slot %d, want %d", i, m.Slot, i+3)
		}
	}
	_, err := c.Join(chassis.Host{UUID: uuid(64)})
	if !errors.Is(err, chassis.ErrChassisFull) {
		t.Fatalf("65th Join = %v, want ErrChassisFull", err)
	}
	if want := "chassis full: all 64 VEM slots 3-66 are bound"; !strings.Contains(err.Error(), want) {
		t.Errorf("65th Join error = %q, want it to contain %q", err, want)
	}
	// A known host still gets in when the chassis is full.
	if m := join(t, c, 10, 0); m.Slot != 13 || !m.Replaced {
		t.Errorf("Join(known host) = %+v, want slot 13 replaced", m)
	}
}

func TestMaxSlotForBenchmarks(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{MaxSlot: 200})
	for i := range 198 {
		join(t, c, i, 0)
	}
	if _, err := c.Join(chassis.Host{UUID: uuid(999)}); !errors.Is(err, chassis.ErrChassisFull) {
		t.Errorf("Join beyond 200 = %v, want ErrChassisFull", err)
	}
	if _, err := chassis.New(chassis.Options{MaxSlot: 2}); !errors.Is(err, chassis.ErrBadSlot) {
		t.Errorf("New(MaxSlot 2) = %v, want ErrBadSlot", err)
	}
}

func TestPins(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{})
	if err := c.Pin(uuid(1), 10); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	// Slot 10 is reserved: new hosts never get it...
	for i := 2; i <= 9; i++ {
		join(t, c, i, 0) // slots 3..9 (7 hosts) then 11
	}
	if m, ok := c.Module(10); !ok || m.Status != chassis.StatusOffline || m.HostUUID != uuid(1) {
		t.Errorf("Module(10) = %+v, %v, want the pinned host, offline", m, ok)
	}
	if m, _ := c.Module(11); m.HostUUID != uuid(9) {
		t.Errorf("Module(11) host = %s, want %s (10 is pinned)", m.HostUUID, uuid(9))
	}
	// ...even when they ask for it.
	if m := join(t, c, 20, 10); m.Slot == 10 {
		t.Errorf("Join(want 10) got the pinned slot")
	}
	// The pinned host gets it, whatever it asks for.
	if m := join(t, c, 1, 3); m.Slot != 10 {
		t.Errorf("Join(pinned host) = slot %d, want 10", m.Slot)
	}
	for _, tc := range []struct {
		uuid string
		slot int
		want error
	}{
		{uuid(50), 10, chassis.ErrSlotTaken}, // pinned to host 1
		{uuid(50), 3, chassis.ErrSlotTaken},  // bound to host 2
		{uuid(50), 2, chassis.ErrBadSlot},
		{uuid(50), 67, chassis.ErrBadSlot},
		{"x", 30, chassis.ErrBadUUID},
		{uuid(2), 30, chassis.ErrOnline}, // moving an online host
		{uuid(1), 10, nil},               // idempotent
	} {
		if err := c.Pin(tc.uuid, tc.slot); !errors.Is(err, tc.want) {
			t.Errorf("Pin(%s, %d) = %v, want %v", tc.uuid, tc.slot, err, tc.want)
		}
	}
	// An offline bound host can be moved by a pin.
	s, _ := c.Online(3)
	if err := c.Leave(3, s); err != nil {
		t.Fatal(err)
	}
	if err := c.Pin(uuid(2), 30); err != nil {
		t.Fatalf("Pin(offline host elsewhere): %v", err)
	}
	if m := join(t, c, 2, 3); m.Slot != 30 {
		t.Errorf("Join(moved host) = slot %d, want 30", m.Slot)
	}
	if m := join(t, c, 51, 0); m.Slot != 3 {
		t.Errorf("Join(new) = slot %d, want 3 (freed by the move)", m.Slot)
	}
}

func TestWantSlot(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{})
	// A VSM that lost its state: VEMs come back asking for their slots.
	for _, tc := range []struct{ host, want, got int }{
		{1, 7, 7},
		{2, 5, 5},
		{3, 7, 3},  // taken by host 1: lowest free
		{4, 99, 4}, // out of range: ignored
		{5, 0, 6},
	} {
		if m := join(t, c, tc.host, tc.want); m.Slot != tc.got {
			t.Errorf("Join(host %d, want %d) = slot %d, want %d", tc.host, tc.want, m.Slot, tc.got)
		}
	}
	// The VSM's binding wins over a VEM's memory.
	if m := join(t, c, 1, 20); m.Slot != 7 {
		t.Errorf("Join(bound host, want 20) = slot %d, want 7", m.Slot)
	}
}

func TestHeartbeatTiming(t *testing.T) {
	c, clk := newChassis(t, chassis.Options{})
	a := join(t, c, 1, 0)
	b := join(t, c, 2, 0)
	clk.Advance(5 * time.Second)
	if err := c.Heartbeat(b.Slot, b.Session); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2900 * time.Millisecond) // a silent 7.9 s, b 2.9 s
	if got := c.Sweep(); len(got) != 0 {
		t.Errorf("Sweep after 7.9 s = %v, want none", got)
	}
	clk.Advance(200 * time.Millisecond) // a silent 8.1 s
	if got := c.Sweep(); !cmp.Equal(got, []int{a.Slot}) {
		t.Errorf("Sweep after 8.1 s = %v, want [%d]", got, a.Slot)
	}
	if got := c.Sweep(); len(got) != 0 {
		t.Errorf("second Sweep = %v, want none (already offline)", got)
	}
	if err := c.Heartbeat(a.Slot, a.Session); !errors.Is(err, chassis.ErrStaleSession) {
		t.Errorf("Heartbeat after sweep = %v, want ErrStaleSession", err)
	}
	if m, _ := c.Module(a.Slot); m.Status != chassis.StatusOffline {
		t.Errorf("Module(%d).Status = %q, want offline", a.Slot, m.Status)
	}
	// It comes back in the same slot.
	if m := join(t, c, 1, 0); m.Slot != a.Slot || m.New || m.Replaced {
		t.Errorf("rejoin = %+v, want slot %d, not new, not replaced", m, a.Slot)
	}
	if m, _ := c.Module(a.Slot); m.Status != chassis.StatusOK {
		t.Errorf("Module(%d).Status = %q, want ok", a.Slot, m.Status)
	}
	// Acks count as signs of life too.
	s, _ := c.Online(b.Slot)
	clk.Advance(7 * time.Second)
	if err := c.Acked(b.Slot, s, 42); err != nil {
		t.Fatal(err)
	}
	clk.Advance(7 * time.Second)
	if got := c.Sweep(); !cmp.Equal(got, []int{a.Slot}) {
		t.Errorf("Sweep = %v, want only [%d] (b acked)", got, a.Slot)
	}
	if m, _ := c.Module(b.Slot); m.Generation != 42 {
		t.Errorf("Module(%d).Generation = %d, want 42", b.Slot, m.Generation)
	}
}

func TestReplacedConnection(t *testing.T) {
	c, _ := newChassis(t, chassis.Options{})
	old := join(t, c, 1, 0)
	cur := join(t, c, 1, 0)
	if !cur.Replaced || cur.Slot != old.Slot || cur.Session == old.Session {
		t.Fatalf("second Join = %+v, want replaced, same slot, new session (old %+v)", cur, old)
	}
	// The old connection closing late must not take the module offline.
	if err := c.Leave(old.Slot, old.Session); !errors.Is(err, chassis.ErrStaleSession) {
		t.Errorf("Leave(old session) = %v, want ErrStaleSession", err)
	}
	if s, ok := c.Online(cur.Slot); !ok || s != cur.Session {
		t.Errorf("Online = %d, %v, want %d, true", s, ok, cur.Session)
	}
	if err := c.Leave(cur.Slot, cur.Session); err != nil {
		t.Errorf("Leave(current) = %v", err)
	}
	if _, ok := c.Online(cur.Slot); ok {
		t.Errorf("Online after Leave = true")
	}
}

func TestModules(t *testing.T) {
	c, clk := newChassis(t, chassis.Options{})
	c.SetSupervisors(
		api.VSMModule{Slot: 1, Type: "Virtual Supervisor Module", Model: "Flashvisor-VSM", Status: "active *"},
		api.VSMModule{},
	)
	if _, err := c.Join(chassis.Host{UUID: uuid(1), Hostname: "esx1", Address: "10.0.0.1", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Pin(uuid(2), 9); err != nil {
		t.Fatal(err)
	}
	seen := clk.Now().UTC().Format(time.RFC3339)
	want := []api.VSMModule{
		{Slot: 1, Type: "Virtual Supervisor Module", Model: "Flashvisor-VSM", Status: "active *"},
		{Slot: 3, Ports: 248, Type: chassis.VEMType, Model: chassis.VEMModel, Status: "ok", Version: "1.0",
			HostUUID: uuid(1), Hostname: "esx1", Address: "10.0.0.1", LastSeen: seen},
		{Slot: 9, Ports: 248, Type: chassis.VEMType, Model: chassis.VEMModel, Status: "offline", HostUUID: uuid(2)},
	}
	if diff := cmp.Diff(want, c.Modules()); diff != "" {
		t.Errorf("Modules() (-want +got):\n%s", diff)
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vsm", "chassis.json")
	store := chassis.FileStore{Path: path}
	c, _ := newChassis(t, chassis.Options{Store: store})
	join(t, c, 1, 0) // 3
	join(t, c, 2, 0) // 4
	if err := c.Pin(uuid(3), 20); err != nil {
		t.Fatal(err)
	}
	join(t, c, 4, 0) // 5

	// A new VSM process from the same file: every host back in its slot,
	// nobody online yet.
	c2, _ := newChassis(t, chassis.Options{Store: store})
	if diff := cmp.Diff(c.State(), c2.State()); diff != "" {
		t.Errorf("State after reload (-before +after):\n%s", diff)
	}
	for _, m := range c2.Modules() {
		if m.Status != chassis.StatusOffline {
			t.Errorf("module %d status %q after restart, want offline", m.Slot, m.Status)
		}
	}
	for _, tc := range []struct{ host, slot int }{{4, 5}, {3, 20}, {2, 4}, {1, 3}, {5, 6}} {
		if m := join(t, c2, tc.host, 0); m.Slot != tc.slot {
			t.Errorf("after reload Join(host %d) = slot %d, want %d", tc.host, m.Slot, tc.slot)
		}
	}
	if st, err := store.Load(); err != nil || len(st.Bindings) != 5 {
		t.Errorf("Load() = %d bindings, %v, want 5", len(st.Bindings), err)
	}
	// No temp files left next to the state.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("state dir has %d entries, want 1", len(ents))
	}
}

func TestSaveFailureRefusesNewBinding(t *testing.T) {
	store := &chassistest.Store{}
	c, _ := newChassis(t, chassis.Options{Store: store})
	join(t, c, 1, 0)
	boom := errors.New("disk full")
	store.SetErr(boom)
	if _, err := c.Join(chassis.Host{UUID: uuid(2)}); !errors.Is(err, boom) {
		t.Errorf("Join with failing store = %v, want %v", err, boom)
	}
	if err := c.Pin(uuid(3), 30); !errors.Is(err, boom) {
		t.Errorf("Pin with failing store = %v, want %v", err, boom)
	}
	// A known host still joins: its binding is already stored.
	if m := join(t, c, 1, 0); m.Slot != 3 {
		t.Errorf("Join(known) = slot %d, want 3", m.Slot)
	}
	store.SetErr(nil)
	if m := join(t, c, 2, 0); m.Slot != 4 {
		t.Errorf("Join after recovery = slot %d, want 4 (nothing leaked)", m.Slot)
	}
	if _, ok := c.Module(30); ok {
		t.Errorf("failed Pin left slot 30 bound")
	}
}

func TestLoadBadState(t *testing.T) {
	for name, content := range map[string]string{
		"not json":     "{",
		"version":      `{"version": 9}`,
		"slot range":   `{"version": 1, "bindings": [{"slot": 2, "host_uuid": "` + uuid(1) + `"}]}`,
		"slot high":    `{"version": 1, "bindings": [{"slot": 67, "host_uuid": "` + uuid(1) + `"}]}`,
		"bad uuid":     `{"version": 1, "bindings": [{"slot": 3, "host_uuid": "x"}]}`,
		"slot twice":   `{"version": 1, "bindings": [{"slot": 3, "host_uuid": "` + uuid(1) + `"}, {"slot": 3, "host_uuid": "` + uuid(2) + `"}]}`,
		"host twice":   `{"version": 1, "bindings": [{"slot": 3, "host_uuid": "` + uuid(1) + `"}, {"slot": 4, "host_uuid": "` + uuid(1) + `"}]}`,
		"wrong types":  `{"version": "1"}`,
		"null binding": `{"version": 1, "bindings": [null]}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chassis.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := chassis.New(chassis.Options{Store: chassis.FileStore{Path: path}})
			if err == nil {
				t.Fatalf("New(%s) = %v, nil; want an error", content, c.State())
			}
			if !errors.Is(err, chassis.ErrBadState) {
				t.Errorf("New(%s) = %v, want ErrBadState", content, err)
			}
		})
	}
	// Unknown fields are tolerated (a newer version wrote the file).
	path := filepath.Join(t.TempDir(), "chassis.json")
	os.WriteFile(path, []byte(`{"version": 1, "future": true, "bindings": [{"slot": 3, "host_uuid": "`+uuid(1)+`", "x": 1}]}`), 0o600)
	if _, err := chassis.New(chassis.Options{Store: chassis.FileStore{Path: path}}); err != nil {
		t.Errorf("New(unknown fields) = %v, want nil", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"version": 1, "bindings": [{"slot": 3, "host_uuid": "` + uuid(1) + `"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "chassis.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Load from the file, save to memory: fsyncs would slow the fuzzer down.
		c, err := chassis.New(chassis.Options{Store: loadOnly{chassis.FileStore{Path: path}}})
		if err != nil {
			return
		}
		// Whatever loaded must be usable.
		if _, err := c.Join(chassis.Host{UUID: uuid(7)}); err != nil && !errors.Is(err, chassis.ErrChassisFull) {
			t.Errorf("Join after loading %q: %v", data, err)
		}
	})
}

// loadOnly loads from a FileStore and drops saves.
type loadOnly struct{ chassis.FileStore }

func (loadOnly) Save(chassis.State) error { return nil }

func TestReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chassis.json")
	c, err := chassis.New(chassis.Options{Store: chassis.FileStore{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	const u1, u2 = "11111111-2222-3333-4444-555555555501", "11111111-2222-3333-4444-555555555502"
	want := chassis.State{Version: chassis.StateVersion, Bindings: []chassis.Binding{
		{Slot: 3, HostUUID: u1, Hostname: "h1"}, {Slot: 7, HostUUID: u2, Pinned: true},
	}}
	if err := c.Replace(want); err != nil {
		t.Fatalf("Replace = %v", err)
	}
	if diff := cmp.Diff(want, c.State()); diff != "" {
		t.Errorf("State after Replace (-want +got):\n%s", diff)
	}
	if got, _ := (chassis.FileStore{Path: path}).Load(); !cmp.Equal(got, want) {
		t.Errorf("stored state = %+v, want %+v", got, want)
	}
	bad := chassis.State{Version: chassis.StateVersion, Bindings: []chassis.Binding{{Slot: 3, HostUUID: u1}, {Slot: 3, HostUUID: u2}}}
	if err := c.Replace(bad); !errors.Is(err, chassis.ErrBadState) {
		t.Errorf("Replace(slot twice) = %v, want ErrBadState", err)
	}
	if diff := cmp.Diff(want, c.State()); diff != "" {
		t.Errorf("a refused Replace changed the state (-want +got):\n%s", diff)
	}
	if m, err := c.Join(chassis.Host{UUID: u2}); err != nil || m.Slot != 7 {
		t.Errorf("Join of the replaced pin = %+v, %v; want slot 7", m, err)
	}
}

func TestReserve(t *testing.T) {
	store := &chassistest.Store{}
	c, _ := newChassis(t, chassis.Options{Store: store})
	join(t, c, 1, 0) // 3
	if err := c.Pin(uuid(2), 4); err != nil {
		t.Fatal(err)
	}
	// A pinned host gets its pin; a new one the lowest free slot, offline
	// until its hello, which lands in the same slot.
	for _, tc := range []struct{ host, slot int }{{2, 4}, {3, 5}, {3, 5}, {1, 3}} {
		if slot, err := c.Reserve(uuid(tc.host)); err != nil || slot != tc.slot {
			t.Errorf("Reserve(host %d) = %d, %v; want %d", tc.host, slot, err, tc.slot)
		}
	}
	if m, ok := c.Module(5); !ok || m.Status != chassis.StatusOffline || m.HostUUID != uuid(3) {
		t.Errorf("reserved module 5 = %+v, %v; want host 3 offline", m, ok)
	}
	if m := join(t, c, 3, 0); m.Slot != 5 || m.New {
		t.Errorf("Join after Reserve = %+v, want slot 5", m)
	}
	if _, err := c.Reserve("nope"); !errors.Is(err, chassis.ErrBadUUID) {
		t.Errorf("Reserve(bad uuid) = %v, want ErrBadUUID", err)
	}
	// Nothing is kept when the binding cannot be stored.
	boom := errors.New("disk full")
	store.SetErr(boom)
	if _, err := c.Reserve(uuid(9)); !errors.Is(err, boom) {
		t.Errorf("Reserve with failing store = %v, want %v", err, boom)
	}
	if _, ok := c.Module(6); ok {
		t.Errorf("failed Reserve left slot 6 bound")
	}
	store.SetErr(nil)
	// A full chassis refuses a new host.
	for i := 10; ; i++ {
		if _, err := c.Reserve(uuid(i)); err != nil {
			if !errors.Is(err, chassis.ErrChassisFull) {
				t.Errorf("Reserve on a full chassis = %v, want ErrChassisFull", err)
			}
			break
		}
		if i > 100 {
			t.Fatal("Reserve never filled the chassis")
		}
	}
}
