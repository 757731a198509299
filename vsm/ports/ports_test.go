package ports_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/ports"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var profiles = []api.PortProfile{
	{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true},
	{Name: "db", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 200, Enabled: true, MaxPorts: 2},
	{Name: "draft", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 300},
	{Name: "uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, CapabilityUplink: true, Enabled: true},
	{Name: "uplink-off", Type: api.ProfileEthernet, Mode: api.ModeTrunk, CapabilityUplink: true},
	{Name: "eth-plain", Type: api.ProfileEthernet, Mode: api.ModeTrunk, Enabled: true},
	{Name: "uplink-2", Type: api.ProfileEthernet, Mode: api.ModeTrunk, CapabilityUplink: true, Enabled: true, MaxPorts: 2},
}

var lookup = ports.LookupIn(profiles)

func vm(n int) string { return fmt.Sprintf("vm:00000000-0000-4000-8000-%012d/nic0", n) }

func newRegistry(t *testing.T, o ports.Options) *ports.Registry {
	t.Helper()
	o.Logger = testLogger(t)
	r, err := ports.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func attach(t *testing.T, r *ports.Registry, req ports.AttachRequest) string {
	t.Helper()
	if req.Profile == "" {
		req.Profile = "web"
	}
	p, err := r.Attach(req, lookup)
	if err != nil {
		t.Fatalf("Attach(%+v): %v", req, err)
	}
	return p
}

func TestAttachNumbers(t *testing.T) {
	r := newRegistry(t, ports.Options{})
	for i, want := range []string{"Veth1", "Veth2", "Veth3"} {
		if got := attach(t, r, ports.AttachRequest{Owner: vm(i), Module: 3}); got != want {
			t.Errorf("Attach(vm %d) = %s, want %s", i, got, want)
		}
	}
	// Numbers are domain-wide: module 4 gets Veth4, skipping its host's
	// own Veth4 and Veth5.
	if got := attach(t, r, ports.AttachRequest{Owner: vm(10), Module: 4, LocalVeths: []int{4, 5}}); got != "Veth6" {
		t.Errorf("Attach(local 4,5) = %s, want Veth6", got)
	}
	// A known owner keeps its number across detach (power-off) and moves.
	if err := r.Detach(vm(1), 3); err != nil {
		t.Fatal(err)
	}
	if b, _ := r.Binding(vm(1)); b.Active {
		t.Errorf("after Detach: Active = true")
	}
	if got := attach(t, r, ports.AttachRequest{Owner: vm(20), Module: 3}); got != "Veth4" {
		t.Errorf("Attach(new) = %s, want Veth4 (Veth2 is kept while off)", got)
	}
	if got := attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 5, Profile: "db", MAC: "00:50:56:AA:BB:CC"}); got != "Veth2" {
		t.Errorf("re-Attach on module 5 = %s, want Veth2", got)
	}
	want := ports.Binding{Port: "Veth2", Owner: vm(1), Module: 5, Profile: "db", MAC: "00:50:56:aa:bb:cc", Active: true}
	if b, _ := r.Binding(vm(1)); b != want {
		t.Errorf("Binding = %+v, want %+v", b, want)
	}
	if b, ok := r.ByPort("Veth2"); !ok || b != want {
		t.Errorf("ByPort(Veth2) = %+v, %v, want %+v", b, ok, want)
	}
	for _, p := range []string{"Veth5", "Veth02", "Eth3/1", ""} {
		if b, ok := r.ByPort(p); ok {
			t.Errorf("ByPort(%q) = %+v, want none", p, b)
		}
	}
	// Release frees the number: the lowest free is reused.
	if err := r.Release(vm(1)); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(vm(1)); !errors.Is(err, ports.ErrUnknownOwner) {
		t.Errorf("Release twice = %v, want ErrUnknownOwner", err)
	}
	if got := attach(t, r, ports.AttachRequest{Owner: vm(30), Module: 3}); got != "Veth2" {
		t.Errorf("Attach after release = %s, want Veth2", got)
	}
	var got []string
	for _, b := range r.Bindings() {
		got = append(got, b.Port)
	}
	if diff := cmp.Diff([]string{"Veth1", "Veth2", "Veth3", "Veth4", "Veth6"}, got); diff != "" {
		t.Errorf("Bindings() ports (-want +got):\n%s", diff)
	}
}

func TestAttachRefusals(t *testing.T) {
	r := newRegistry(t, ports.Options{MaxVethPerModule: 3})
	attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 3, Profile: "db", MAC: "00:50:56:00:00:01"})
	attach(t, r, ports.AttachRequest{Owner: vm(2), Module: 4, Profile: "db"})
	if err := r.Detach(vm(2), 4); err != nil {
		t.Fatal(err)
	}
	attach(t, r, ports.AttachRequest{Owner: vm(3), Module: 3})
	attach(t, r, ports.AttachRequest{Owner: vm(4), Module: 3})
	for _, tc := range []struct {
		req  ports.AttachRequest
		want error
	}{
		{ports.AttachRequest{Owner: "nope", Module: 3, Profile: "web"}, ports.ErrBadOwner},
		{ports.AttachRequest{Owner: vm(9), Module: 2, Profile: "web"}, ports.ErrBadModule},
		{ports.AttachRequest{Owner: vm(9), Module: 67, Profile: "web"}, ports.ErrBadModule},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "missing"}, ports.ErrNoProfile},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "draft"}, ports.ErrProfileState},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "uplink"}, ports.ErrProfileType},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "eth-plain"}, ports.ErrProfileType},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "web", MAC: "01:00:5e:00:00:01"}, ports.ErrBadMAC},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "web", MAC: "zz"}, ports.ErrBadMAC},
		// max-ports 2 counts the powered-off vm 2 too.
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "db"}, ports.ErrMaxPorts},
		// Module 3 has 3 vEths.
		{ports.AttachRequest{Owner: vm(9), Module: 3, Profile: "web"}, ports.ErrModuleFull},
		{ports.AttachRequest{Owner: vm(9), Module: 4, Profile: "web", MAC: "00:50:56:00:00:01"}, nil}, // other module: fine
		{ports.AttachRequest{Owner: vm(10), Module: 4, Profile: "web", MAC: "00:50:56:00:00:01"}, ports.ErrMACInUse},
		// vm 1 (Veth1) cannot move to a host whose own switch uses Veth1.
		{ports.AttachRequest{Owner: vm(1), Module: 5, Profile: "db", LocalVeths: []int{1}}, ports.ErrVethConflict},
		// Re-attaching the owners that are bound does not count them twice.
		{ports.AttachRequest{Owner: vm(1), Module: 3, Profile: "db", MAC: "00:50:56:00:00:01"}, nil},
		{ports.AttachRequest{Owner: vm(2), Module: 3, Profile: "db"}, ports.ErrModuleFull},
		{ports.AttachRequest{Owner: vm(2), Module: 4, Profile: "db"}, nil},
	} {
		_, err := r.Attach(tc.req, lookup)
		if !errors.Is(err, tc.want) {
			t.Errorf("Attach(%+v) = %v, want %v", tc.req, err, tc.want)
		}
	}
}

func TestMigration(t *testing.T) {
	r := newRegistry(t, ports.Options{})
	p := attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 3, MAC: "00:50:56:00:00:01"})
	names := func(m int) []string {
		var out []string
		for _, p := range r.Ports(m) {
			out = append(out, p.Name)
		}
		return out
	}
	// The destination attaches: the port runs on both until the source
	// detaches.
	if got := attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 4, MAC: "00:50:56:00:00:01"}); got != p {
		t.Fatalf("Attach on destination = %s, want %s", got, p)
	}
	if len(names(3)) != 1 || len(names(4)) != 1 {
		t.Errorf("during migration: module 3 %v, module 4 %v, want the port on both", names(3), names(4))
	}
	if err := r.Detach(vm(1), 3); err != nil {
		t.Fatal(err)
	}
	if len(names(3)) != 0 || len(names(4)) != 1 {
		t.Errorf("after migration: module 3 %v, module 4 %v, want it on 4 only", names(3), names(4))
	}
	if b, _ := r.Binding(vm(1)); !b.Active || b.Module != 4 || b.Leaving != 0 {
		t.Errorf("after migration: %+v", b)
	}
	// A failed migration: the destination (5) gives up, the port stays on 4.
	attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 5})
	if err := r.Detach(vm(1), 5); err != nil {
		t.Fatal(err)
	}
	if b, _ := r.Binding(vm(1)); !b.Active || b.Module != 4 || b.Leaving != 0 {
		t.Errorf("after failed migration: %+v, want active on 4", b)
	}
	// A stale detach from elsewhere changes nothing.
	if err := r.Detach(vm(1), 9); err != nil {
		t.Fatal(err)
	}
	if b, _ := r.Binding(vm(1)); !b.Active {
		t.Errorf("stale detach deactivated the port")
	}
	if err := r.Detach("vm:x/nic0", 3); !errors.Is(err, ports.ErrUnknownOwner) {
		t.Errorf("Detach(unknown) = %v, want ErrUnknownOwner", err)
	}
	// The host of module 4 is unbound: its ports stop running.
	attach(t, r, ports.AttachRequest{Owner: vm(2), Module: 4})
	attach(t, r, ports.AttachRequest{Owner: vm(3), Module: 6})
	attach(t, r, ports.AttachRequest{Owner: vm(3), Module: 4}) // migrating 6 -> 4
	got, err := r.DetachModule(4)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Veth1", "Veth2", "Veth3"}, got); diff != "" {
		t.Errorf("DetachModule (-want +got):\n%s", diff)
	}
	if n := names(4); len(n) != 0 {
		t.Errorf("module 4 after DetachModule: %v", n)
	}
	if b, _ := r.Binding(vm(3)); !b.Active || b.Module != 6 {
		t.Errorf("migrating port after DetachModule of its destination: %+v, want back on 6", b)
	}
}

func TestUplinks(t *testing.T) {
	r := newRegistry(t, ports.Options{})
	ul := func(pairs ...string) []api.VSMUplink {
		var out []api.VSMUplink
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, api.VSMUplink{Interface: pairs[i], Profile: pairs[i+1]})
		}
		return out
	}
	ports_ := func(bs []ports.UplinkBinding) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Interface+"="+b.Port)
		}
		return out
	}
	for i, tc := range []struct {
		module int
		in     []api.VSMUplink
		want   []string
	}{
		// ethN is EthM/(N+1) like vmnicN; other names from 33 up.
		{3, ul("eth1", "uplink", "eth0", "uplink"), []string{"eth1=Eth3/2", "eth0=Eth3/1"}},
		{3, ul("eth0", "uplink", "eth1", "uplink"), []string{"eth0=Eth3/1", "eth1=Eth3/2"}}, // stable
		{3, ul("eth2", "uplink"), []string{"eth2=Eth3/3"}},
		{3, ul("eth0", "uplink", "eth2", "uplink", "ens3", "uplink"), []string{"eth0=Eth3/1", "eth2=Eth3/3", "ens3=Eth3/33"}},
		{4, ul("eth0", "uplink"), []string{"eth0=Eth4/1"}},
	} {
		got, err := r.SetUplinks(tc.module, tc.in, lookup)
		if err != nil {
			t.Fatalf("step %d: SetUplinks: %v", i, err)
		}
		if diff := cmp.Diff(tc.want, ports_(got)); diff != "" {
			t.Errorf("step %d: SetUplinks(%d, %v) (-want +got):\n%s", i, tc.module, tc.in, diff)
		}
	}
	want := []api.Port{
		{Name: "Eth3/1", Kind: api.PortEth, Interface: "eth0", Profile: "uplink"},
		{Name: "Eth3/3", Kind: api.PortEth, Interface: "eth2", Profile: "uplink"},
		{Name: "Eth3/33", Kind: api.PortEth, Interface: "ens3", Profile: "uplink"},
	}
	if diff := cmp.Diff(want, r.Ports(3)); diff != "" {
		t.Errorf("Ports(3) (-want +got):\n%s", diff)
	}
	before := r.State()
	for _, tc := range []struct {
		in   []api.VSMUplink
		want error
	}{
		{ul("eth0", "missing"), ports.ErrNoProfile},
		{ul("eth0", "uplink-off"), ports.ErrProfileState},
		{ul("eth0", "eth-plain"), ports.ErrProfileType},
		{ul("eth0", "web"), ports.ErrProfileType},
		{ul("eth0", "uplink", "eth0", "uplink"), ports.ErrBadUplink},
		{ul("eth/0", "uplink"), ports.ErrBadUplink},
		{ul("eth0", "uplink-2", "eth1", "uplink-2", "eth2", "uplink-2"), ports.ErrMaxPorts},
	} {
		if _, err := r.SetUplinks(3, tc.in, lookup); !errors.Is(err, tc.want) {
			t.Errorf("SetUplinks(%v) = %v, want %v", tc.in, err, tc.want)
		}
	}
	if diff := cmp.Diff(before, r.State()); diff != "" {
		t.Errorf("refused SetUplinks changed the state (-before +after):\n%s", diff)
	}
	if _, err := r.SetUplinks(3, make([]api.VSMUplink, 33), lookup); !errors.Is(err, ports.ErrTooManyUplinks) {
		t.Errorf("SetUplinks(33) = %v, want ErrTooManyUplinks", err)
	}
	if got := r.Users("uplink"); !cmp.Equal(got, []string{"Eth3/1", "Eth3/3", "Eth3/33", "Eth4/1"}) {
		t.Errorf("Users(uplink) = %v", got)
	}
}

func TestPortsAndUsers(t *testing.T) {
	r := newRegistry(t, ports.Options{})
	for i := 1; i <= 11; i++ {
		attach(t, r, ports.AttachRequest{Owner: vm(i), Module: 3, MAC: fmt.Sprintf("00:50:56:00:00:%02x", i)})
	}
	attach(t, r, ports.AttachRequest{Owner: "vmk:esx1/vmk1", Module: 4, Profile: "db"})
	if err := r.Detach(vm(5), 3); err != nil {
		t.Fatal(err)
	}
	got := r.Ports(3)
	if len(got) != 10 || got[0].Name != "Veth1" || got[9].Name != "Veth11" {
		t.Errorf("Ports(3) = %v, want Veth1..Veth11 without Veth5, in numeric order", got)
	}
	want := api.Port{Name: "Veth1", Kind: api.PortVeth, Profile: "web", MACs: []string{"00:50:56:00:00:01"}, Owner: vm(1)}
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("Ports(3)[0] (-want +got):\n%s", diff)
	}
	if u := r.Users("web"); len(u) != 11 || u[10] != "Veth11" {
		t.Errorf("Users(web) = %v, want all 11 (powered-off ones too)", u)
	}
	if u := r.Users("db"); !cmp.Equal(u, []string{"Veth12"}) {
		t.Errorf("Users(db) = %v", u)
	}
}

type memStore struct {
	st  ports.State
	err error
}

func (m *memStore) Load() (ports.State, error) { return m.st, nil }
func (m *memStore) Save(s ports.State) error {
	if m.err != nil {
		return m.err
	}
	m.st = s
	return nil
}

func TestSaveFailureLeavesNothing(t *testing.T) {
	st := &memStore{}
	r := newRegistry(t, ports.Options{Store: st})
	attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 3})
	before := r.State()
	st.err = errors.New("disk full")
	for name, f := range map[string]func() error{
		"attach": func() error {
			_, err := r.Attach(ports.AttachRequest{Owner: vm(2), Module: 3, Profile: "web"}, lookup)
			return err
		},
		"move": func() error {
			_, err := r.Attach(ports.AttachRequest{Owner: vm(1), Module: 4, Profile: "web"}, lookup)
			return err
		},
		"detach":  func() error { return r.Detach(vm(1), 3) },
		"release": func() error { return r.Release(vm(1)) },
		"uplinks": func() error {
			_, err := r.SetUplinks(3, []api.VSMUplink{{Interface: "eth0", Profile: "uplink"}}, lookup)
			return err
		},
		"module": func() error { _, err := r.DetachModule(3); return err },
	} {
		if err := f(); !errors.Is(err, st.err) {
			t.Errorf("%s with failing store = %v, want %v", name, err, st.err)
		}
		if diff := cmp.Diff(before, r.State()); diff != "" {
			t.Errorf("%s with failing store changed the state (-before +after):\n%s", name, diff)
		}
	}
	// An attach that changes nothing does not need the disk.
	if _, err := r.Attach(ports.AttachRequest{Owner: vm(1), Module: 3, Profile: "web"}, lookup); err != nil {
		t.Errorf("idempotent Attach = %v", err)
	}
}

func TestPersistence(t *testing.T) {
	store := ports.FileStore{Path: filepath.Join(t.TempDir(), "vsm", "ports.json")}
	r := newRegistry(t, ports.Options{Store: store})
	attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 3, MAC: "00:50:56:00:00:01", Description: "web01, nic 0"})
	attach(t, r, ports.AttachRequest{Owner: vm(2), Module: 3})
	attach(t, r, ports.AttachRequest{Owner: vm(2), Module: 4}) // migrating
	attach(t, r, ports.AttachRequest{Owner: vm(3), Module: 4})
	if err := r.Detach(vm(3), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetUplinks(3, []api.VSMUplink{{Interface: "eth1", Profile: "uplink"}, {Interface: "eth0", Profile: "uplink"}}, lookup); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetUplinks(3, []api.VSMUplink{{Interface: "eth0", Profile: "uplink"}}, lookup); err != nil {
		t.Fatal(err)
	}
	r2 := newRegistry(t, ports.Options{Store: store})
	if diff := cmp.Diff(r.State(), r2.State()); diff != "" {
		t.Errorf("State after reload (-before +after):\n%s", diff)
	}
	if got := attach(t, r2, ports.AttachRequest{Owner: vm(3), Module: 5}); got != "Veth3" {
		t.Errorf("after reload Attach(vm 3) = %s, want Veth3", got)
	}
	got, err := r2.SetUplinks(3, []api.VSMUplink{{Interface: "eth1", Profile: "uplink"}}, lookup)
	if err != nil || len(got) != 1 || got[0].Port != "Eth3/2" {
		t.Errorf("after reload SetUplinks(eth1) = %v, %v, want Eth3/2", got, err)
	}
}

func TestLoadBadState(t *testing.T) {
	const (
		o1 = `"owner": "vm:a/nic0"`
		o2 = `"owner": "vm:b/nic0"`
	)
	for name, content := range map[string]string{
		"not json":       `{"version": 1,`,
		"version":        `{"version": 2}`,
		"port":           `{"version": 1, "veths": [{"port": "Eth1", ` + o1 + `, "module": 3, "profile": "p"}]}`,
		"number twice":   `{"version": 1, "veths": [{"port": "Veth1", ` + o1 + `, "module": 3, "profile": "p"}, {"port": "Veth1", ` + o2 + `, "module": 3, "profile": "p"}]}`,
		"owner twice":    `{"version": 1, "veths": [{"port": "Veth1", ` + o1 + `, "module": 3, "profile": "p"}, {"port": "Veth2", ` + o1 + `, "module": 3, "profile": "p"}]}`,
		"owner":          `{"version": 1, "veths": [{"port": "Veth1", "owner": "x", "module": 3, "profile": "p"}]}`,
		"module":         `{"version": 1, "veths": [{"port": "Veth1", ` + o1 + `, "module": 70, "profile": "p"}]}`,
		"leaving":        `{"version": 1, "veths": [{"port": "Veth1", ` + o1 + `, "module": 3, "leaving": 3, "active": true, "profile": "p"}]}`,
		"profile":        `{"version": 1, "veths": [{"port": "Veth1", ` + o1 + `, "module": 3}]}`,
		"mac":            `{"version": 1, "veths": [{"port": "Veth1", ` + o1 + `, "module": 3, "profile": "p", "mac": "00:50:56:AA:00:01"}]}`,
		"uplink module":  `{"version": 1, "uplinks": [{"module": 1, "interface": "eth0", "number": 1}]}`,
		"uplink number":  `{"version": 1, "uplinks": [{"module": 3, "interface": "eth0", "number": 0}]}`,
		"uplink iface":   `{"version": 1, "uplinks": [{"module": 3, "interface": "a b", "number": 1}]}`,
		"uplink twice":   `{"version": 1, "uplinks": [{"module": 3, "interface": "eth0", "number": 1}, {"module": 3, "interface": "eth0", "number": 2}]}`,
		"eth twice":      `{"version": 1, "uplinks": [{"module": 3, "interface": "eth0", "number": 1}, {"module": 3, "interface": "eth1", "number": 1}]}`,
		"uplink profile": `{"version": 1, "uplinks": [{"module": 3, "interface": "eth0", "number": 1, "present": true}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ports.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := ports.New(ports.Options{Store: ports.FileStore{Path: path}}); !errors.Is(err, ports.ErrBadState) {
				t.Errorf("New(%s) = %v, want ErrBadState", content, err)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"version": 1, "veths": [{"port": "Veth1", "owner": "vm:a/nic0", "module": 3, "profile": "web", "active": true}], "uplinks": [{"module": 3, "interface": "eth0", "number": 1, "profile": "uplink", "present": true}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "ports.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Load from the file, save to memory: fsyncs would slow the fuzzer down.
		r, err := ports.New(ports.Options{Store: loadOnly{ports.FileStore{Path: path}}})
		if err != nil {
			return
		}
		// Whatever loaded must be usable and keep its invariants.
		p, err := r.Attach(ports.AttachRequest{Owner: "vm:fuzz/nic0", Module: 3, Profile: "web"}, lookup)
		if err != nil && !errors.Is(err, ports.ErrModuleFull) {
			t.Errorf("Attach after loading %q: %v", data, err)
		}
		for _, b := range r.Bindings() {
			if b.Port == p && b.Owner != "vm:fuzz/nic0" {
				t.Errorf("Attach returned %s, already bound to %s", p, b.Owner)
			}
		}
		for m := 3; m <= 4; m++ {
			r.Ports(m)
		}
	})
}

// loadOnly loads from a FileStore and drops saves.
type loadOnly struct{ ports.FileStore }

func (loadOnly) Save(ports.State) error { return nil }

func TestLimitsApplyToNewPorts(t *testing.T) {
	r := newRegistry(t, ports.Options{MaxVethPerModule: 2})
	attach(t, r, ports.AttachRequest{Owner: vm(1), Module: 3, Profile: "db"})
	attach(t, r, ports.AttachRequest{Owner: vm(2), Module: 3, Profile: "db"})
	if err := r.Detach(vm(1), 3); err != nil {
		t.Fatal(err)
	}
	// The operator lowers max-ports below what is bound: the powered-off
	// VM still powers on, a new one is refused.
	lowered := make([]api.PortProfile, len(profiles))
	copy(lowered, profiles)
	lowered[1].MaxPorts = 1
	lk := ports.LookupIn(lowered)
	if _, err := r.Attach(ports.AttachRequest{Owner: vm(1), Module: 3, Profile: "db"}, lk); err != nil {
		t.Errorf("power-on over lowered max-ports = %v, want nil", err)
	}
	if _, err := r.Attach(ports.AttachRequest{Owner: vm(3), Module: 4, Profile: "db"}, lk); !errors.Is(err, ports.ErrMaxPorts) {
		t.Errorf("new port over max-ports = %v, want ErrMaxPorts", err)
	}
	// A full module still takes updates of the ports it has.
	if _, err := r.Attach(ports.AttachRequest{Owner: vm(2), Module: 3, Profile: "db", Description: "renamed"}, lk); err != nil {
		t.Errorf("re-attach on a full module = %v, want nil", err)
	}
	if _, err := r.Attach(ports.AttachRequest{Owner: vm(3), Module: 3, Profile: "web"}, lk); !errors.Is(err, ports.ErrModuleFull) {
		t.Errorf("new port on a full module = %v, want ErrModuleFull", err)
	}
}

func TestReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	r, err := ports.New(ports.Options{Store: ports.FileStore{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	want := ports.State{Version: ports.StateVersion,
		Veths:   []ports.Binding{{Port: "Veth4", Owner: "vm:a/nic0", Module: 3, Profile: "web", Active: true}},
		Uplinks: []ports.UplinkRecord{{Module: 3, Interface: "eth1", Number: 2, Profile: "uplink", Present: true}},
	}
	if err := r.Replace(want); err != nil {
		t.Fatalf("Replace = %v", err)
	}
	if diff := cmp.Diff(want, r.State()); diff != "" {
		t.Errorf("State after Replace (-want +got):\n%s", diff)
	}
	if got, _ := (ports.FileStore{Path: path}).Load(); !cmp.Equal(got, want) {
		t.Errorf("stored state = %+v, want %+v", got, want)
	}
	bad := want
	bad.Veths = append(bad.Veths, ports.Binding{Port: "Veth4", Owner: "vm:b/nic0", Module: 3, Profile: "web"})
	if err := r.Replace(bad); !errors.Is(err, ports.ErrBadState) {
		t.Errorf("Replace(Veth4 twice) = %v, want ErrBadState", err)
	}
	if diff := cmp.Diff(want, r.State()); diff != "" {
		t.Errorf("a refused Replace changed the state (-want +got):\n%s", diff)
	}
}

// TestPortChannels: the uplinks of a module on a profile with a
// channel-group form one PoN, numbered switch-wide around the hosts' own
// port-channels, stable across reloads, and undone when the profile
// loses its channel-group.
func TestPortChannels(t *testing.T) {
	store := ports.FileStore{Path: filepath.Join(t.TempDir(), "vsm", "ports.json")}
	r := newRegistry(t, ports.Options{Store: store})
	chans := append(slices.Clone(profiles),
		api.PortProfile{Name: "lacp", Type: api.ProfileEthernet, Mode: api.ModeTrunk, CapabilityUplink: true, Enabled: true, ChannelGroup: api.ChannelLACP},
		api.PortProfile{Name: "pin", Type: api.ProfileEthernet, Mode: api.ModeTrunk, CapabilityUplink: true, Enabled: true, ChannelGroup: api.ChannelMACPinning})
	withChans := ports.LookupIn(chans)
	set := func(module int, local []int, pairs ...string) {
		t.Helper()
		var ul []api.VSMUplink
		for i := 0; i < len(pairs); i += 2 {
			ul = append(ul, api.VSMUplink{Interface: pairs[i], Profile: pairs[i+1]})
		}
		r.SetLocalChannels(module, local)
		if _, err := r.SetUplinks(module, ul, withChans); err != nil {
			t.Fatalf("SetUplinks(%d): %v", module, err)
		}
	}
	pos := func(module int) []string {
		var out []string
		for _, p := range r.Ports(module) {
			if p.Kind == api.PortPortChannel {
				out = append(out, fmt.Sprintf("%s %s %v", p.Name, p.Profile, p.Members))
			}
		}
		return out
	}
	set(3, nil, "eth1", "lacp", "eth2", "lacp", "eth0", "uplink")
	set(4, nil, "eth1", "lacp", "eth2", "pin", "eth3", "pin")
	set(5, []int{3, 4}, "eth1", "lacp", "eth2", "lacp") // its own switch has Po3, Po4
	for _, tc := range []struct {
		module int
		want   []string
	}{
		{3, []string{"Po1 lacp [Eth3/2 Eth3/3]"}},
		{4, []string{"Po2 lacp [Eth4/2]", "Po3 pin [Eth4/3 Eth4/4]"}},
		{5, []string{"Po5 lacp [Eth5/2 Eth5/3]"}},
	} {
		if diff := cmp.Diff(tc.want, pos(tc.module)); diff != "" {
			t.Errorf("module %d port-channels (-want +got):\n%s", tc.module, diff)
		}
	}
	// Members keep their profile; the plain uplink is in no channel.
	for _, p := range r.Ports(3) {
		if p.Name == "Eth3/1" && p.Kind != api.PortEth {
			t.Errorf("Eth3/1 = %+v", p)
		}
	}
	// A host says hello again with one NIC fewer: its channel keeps the
	// number; a reloaded registry has the same numbers.
	set(3, nil, "eth1", "lacp", "eth0", "uplink")
	if diff := cmp.Diff([]string{"Po1 lacp [Eth3/2]"}, pos(3)); diff != "" {
		t.Errorf("module 3 with one member (-want +got):\n%s", diff)
	}
	r2 := newRegistry(t, ports.Options{Store: store})
	if diff := cmp.Diff(r.State(), r2.State()); diff != "" {
		t.Errorf("State after reload (-before +after):\n%s", diff)
	}
	// lacp loses its channel-group: modules 3, 4 and 5 change; pin stays.
	noLACP := slices.Clone(chans)
	noLACP[len(noLACP)-2].ChannelGroup = ""
	changed, err := r.Rechannel(ports.LookupIn(noLACP))
	if err != nil || !slices.Equal(changed, []int{3, 4, 5}) {
		t.Errorf("Rechannel = %v, %v; want modules 3, 4, 5", changed, err)
	}
	if got := pos(3); len(got) != 0 {
		t.Errorf("module 3 port-channels after rechannel = %v, want none", got)
	}
	if diff := cmp.Diff([]string{"Po3 pin [Eth4/3 Eth4/4]"}, pos(4)); diff != "" {
		t.Errorf("module 4 after rechannel (-want +got):\n%s", diff)
	}
	if changed, err := r.Rechannel(ports.LookupIn(noLACP)); err != nil || changed != nil {
		t.Errorf("Rechannel again = %v, %v; want no change", changed, err)
	}
	// A stored state with one number on two channels is refused.
	st := r.State()
	for i := range st.Uplinks {
		if st.Uplinks[i].Module == 4 && st.Uplinks[i].Interface == "eth1" {
			st.Uplinks[i].Channel = 3
		}
	}
	if err := st.Validate(api.VSMSlots); !errors.Is(err, ports.ErrBadState) {
		t.Errorf("Validate(Po3 on two profiles) = %v, want ErrBadState", err)
	}
}
