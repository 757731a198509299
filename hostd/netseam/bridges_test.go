package netseam

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

func newTestBridges(t *testing.T, k Kernel, cfg, uplink string) *Bridges {
	t.Helper()
	b, err := New(Options{ConfigFile: cfg, Uplink: uplink, Kernel: k, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBridgesLifecycle(t *testing.T) {
	ctx := context.Background()
	k := newFakeKernel()
	cfg := filepath.Join(t.TempDir(), "portgroups.json")
	b := newTestBridges(t, k, cfg, "")
	brA, brB := BridgeName("A"), BridgeName("B")

	for _, pg := range []api.PortGroup{{Name: "B"}, {Name: "A", HostAddress: "10.9.0.1/24"}} {
		if err := b.AddPortGroup(ctx, pg); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddPortGroup(ctx, api.PortGroup{Name: "A"}); !errors.Is(err, ErrExists) {
		t.Errorf("AddPortGroup(A again) = %v, want ErrExists", err)
	}
	if err := b.AddPortGroup(ctx, api.PortGroup{Name: "bad/name"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddPortGroup(bad/name) = %v, want ErrInvalid", err)
	}
	if d := cmp.Diff([]api.PortGroup{{Name: "A", HostAddress: "10.9.0.1/24"}, {Name: "B"}}, b.PortGroups()); d != "" {
		t.Errorf("PortGroups (-want +got):\n%s", d)
	}

	attach := []struct {
		vm  string
		nic int
		pg  string
		mac string
	}{
		{"vm1", 0, "A", "00:50:56:00:00:01"},
		{"vm2", 0, "A", "00:50:56:00:00:02"},
		{"vm3", 0, "B", "00:50:56:00:00:03"},
		{"vm3", 1, "A", "00:50:56:00:00:04"},
	}
	for _, a := range attach {
		tap, err := b.Attach(ctx, a.vm, a.nic, a.pg, a.mac)
		if err != nil {
			t.Fatal(err)
		}
		if tap != TapName(a.vm, a.nic) {
			t.Errorf("Attach(%s, %d) = %q, want %q", a.vm, a.nic, tap, TapName(a.vm, a.nic))
		}
	}
	want := map[string]string{
		brA: "", brB: "",
		TapName("vm1", 0): brA, TapName("vm2", 0): brA, TapName("vm3", 0): brB, TapName("vm3", 1): brA,
	}
	if d := cmp.Diff(want, k.masters()); d != "" {
		t.Errorf("links and masters (-want +got):\n%s", d)
	}
	if l := k.links[TapName("vm1", 0)]; l.MAC != "fe:50:56:00:00:01" || !l.Up {
		t.Errorf("vm1's tap = %+v, want MAC fe:50:56:00:00:01, up", l)
	}

	// Attach again, Reconcile again: nothing changes.
	n := len(k.applied)
	if _, err := b.Attach(ctx, "vm1", 0, "A", "00:50:56:00:00:01"); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if extra := k.applied[n:]; len(extra) > 0 {
		t.Errorf("repeated Attach and Reconcile applied %q, want nothing", extra)
	}

	// Errors.
	if _, err := b.Attach(ctx, "vm4", 0, "nope", "00:50:56:00:00:05"); !errors.Is(err, ErrNoPortGroup) {
		t.Errorf("Attach(missing port group) = %v, want ErrNoPortGroup", err)
	}
	if _, err := b.Attach(ctx, "vm4", 0, "A", "nope"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Attach(bad MAC) = %v, want ErrInvalid", err)
	}
	if _, err := b.Attach(ctx, "vm4", MaxNIC+1, "A", "00:50:56:00:00:05"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Attach(nic %d) = %v, want ErrInvalid", MaxNIC+1, err)
	}
	if err := b.RemovePortGroup(ctx, "A"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "vm1 vNIC 0") {
		t.Errorf("RemovePortGroup(A in use) = %v, want ErrInUse naming vm1 vNIC 0", err)
	}
	if err := b.RemovePortGroup(ctx, "nope"); !errors.Is(err, ErrNoPortGroup) {
		t.Errorf("RemovePortGroup(nope) = %v, want ErrNoPortGroup", err)
	}

	// A restarted hostd (same kernel, same file) adopts the taps and changes
	// nothing.
	n = len(k.applied)
	b = newTestBridges(t, k, cfg, "")
	if extra := k.applied[n:]; len(extra) > 0 {
		t.Errorf("restart applied %q, want nothing", extra)
	}
	if err := b.RemovePortGroup(ctx, "B"); !errors.Is(err, ErrInUse) {
		t.Errorf("after restart, RemovePortGroup(B) = %v, want ErrInUse (vm3's adopted tap)", err)
	}

	// Detach (power off) and Release (delete).
	if err := b.Detach(ctx, "vm1", 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Detach(ctx, "vm1", 0); err != nil {
		t.Errorf("second Detach = %v, want nil", err)
	}
	if err := b.Release(ctx, "vm3"); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{brA: "", brB: "", TapName("vm2", 0): brA}
	if d := cmp.Diff(want, k.masters()); d != "" {
		t.Errorf("after Detach and Release (-want +got):\n%s", d)
	}
	if err := b.RemovePortGroup(ctx, "B"); err != nil {
		t.Errorf("RemovePortGroup(B, unused) = %v", err)
	}
	if _, ok := k.links[brB]; ok {
		t.Errorf("bridge %s of removed port group B still exists", brB)
	}
	// The file says so too.
	b = newTestBridges(t, k, cfg, "")
	if d := cmp.Diff([]api.PortGroup{{Name: "A", HostAddress: "10.9.0.1/24"}}, b.PortGroups()); d != "" {
		t.Errorf("PortGroups after reload (-want +got):\n%s", d)
	}
}

func TestBridgesVLANWithoutKernelSupport(t *testing.T) {
	ctx := context.Background()
	k := newFakeKernel("eth0")
	k.noVLAN = true
	b := newTestBridges(t, k, filepath.Join(t.TempDir(), "pg.json"), "eth0")
	if err := b.AddPortGroup(ctx, api.PortGroup{Name: "untagged"}); err != nil {
		t.Fatal(err)
	}
	err := b.AddPortGroup(ctx, api.PortGroup{Name: "prod", VLAN: 100})
	if !errors.Is(err, ErrNoVLANSupport) {
		t.Errorf("AddPortGroup(VLAN 100) = %v, want ErrNoVLANSupport", err)
	}
	if _, err := b.Attach(ctx, "vm1", 0, "prod", "00:50:56:00:00:01"); !errors.Is(err, ErrNoVLANSupport) {
		t.Errorf("Attach(prod) = %v, want ErrNoVLANSupport", err)
	}
	// The untagged port group is unaffected.
	if _, err := b.Attach(ctx, "vm2", 0, "untagged", "00:50:56:00:00:02"); err != nil {
		t.Errorf("Attach(untagged) = %v, want nil", err)
	}
	if got := k.links["eth0"].Master; got != BridgeName("untagged") {
		t.Errorf("uplink master = %q, want %q", got, BridgeName("untagged"))
	}
	if err := b.AddPortGroup(ctx, api.PortGroup{Name: "also-untagged"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddPortGroup(second VLAN 0 on the uplink) = %v, want ErrInvalid", err)
	}
}

func TestBridgesDeletesStrayTaps(t *testing.T) {
	k := newFakeKernel()
	// A tap of ours without a readable alias (a crash between create and
	// alias) and one whose alias names another tap.
	k.add(Link{Name: "fvtaaaaaaaaan0", Kind: KindTap})
	k.add(Link{Name: "fvtbbbbbbbbbn0", Kind: KindTap, Alias: Port{VM: "x", NIC: 0, PortGroup: "A", MAC: "00:50:56:00:00:01"}.alias()})
	newTestBridges(t, k, filepath.Join(t.TempDir(), "pg.json"), "")
	if len(k.links) != 0 {
		t.Errorf("links after reconcile = %v, want none", k.masters())
	}
}
