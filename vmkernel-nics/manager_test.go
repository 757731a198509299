package vmknic_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
	"github.com/flashvisor/flashvisor/vmkernel-nics/vmknictest"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testLog writes to t.Log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type rig struct {
	k     *vmknictest.Kernel
	dhcp  *vmknictest.DHCP
	clk   *vmknictest.Clock
	m     *vmknic.Manager
	rolls chan vmknic.RollbackEvent
}

func newRig(t *testing.T, k *vmknictest.Kernel, d *vmknictest.DHCP) *rig {
	t.Helper()
	r := &rig{k: k, dhcp: d, clk: vmknictest.NewClock(t0), rolls: make(chan vmknic.RollbackEvent, 10)}
	m, err := vmknic.New(vmknic.Options{
		Kernel: k, DHCP: d, Clock: r.clk, Host: host, Log: logger(t),
		OnRollback: func(ev vmknic.RollbackEvent) { r.rolls <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	t.Cleanup(m.Close)
	return r
}

// eventually polls cond for up to 5 s (the manager reconciles leases in
// its own goroutine).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// step waits until the DHCP client is parked on the clock, then moves the
// clock to its wake-up time.
func (r *rig) step(t *testing.T) {
	t.Helper()
	if !r.clk.WaitTimers(1, 5*time.Second) {
		t.Fatal("the DHCP client never waits on the clock")
	}
	r.clk.AdvanceToNext()
}

func (r *rig) nic(name string) vmknic.NIC {
	n, _ := r.k.State().Find(name)
	return n
}

func hasAddr(n vmknic.NIC, p string) bool {
	return slices.ContainsFunc(n.Addrs, func(a vmknic.Addr) bool { return a.Prefix.String() == p })
}

var mgmtLease = vmknic.Lease{
	Address: netip.MustParsePrefix("192.168.1.50/24"), Router: netip.MustParseAddr("192.168.1.1"),
	DNS: []netip.Addr{netip.MustParseAddr("192.168.1.53")}, Server: netip.MustParseAddr("192.168.1.1"),
	Duration: time.Hour,
}

func TestManagerApplyAndStatus(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vswif0", mgmtLease)
	r := newRig(t, vmknictest.New(), d)
	ctx := context.Background()
	if err := r.m.Apply(ctx, baseSpecs()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "vswif0's lease applied", func() bool { return hasAddr(r.nic("vswif0"), "192.168.1.50/24") })

	st, err := r.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.VMKNICStatus{
		{Name: "vswif0", PortGroup: "Management Network", MAC: vmknic.GenerateMAC("vswif0", host, 0), MTU: 1500,
			Switchport: "fvk-vswif0", Address: "192.168.1.50/24", Gateway: "192.168.1.1", DNS: []string{"192.168.1.53"},
			Mode: "dhcp", Services: []string{"management"}, Up: true, LeaseExpires: t0.Add(time.Hour)},
		{Name: "vmk1", PortGroup: "Storage", MAC: vmknic.GenerateMAC("vmk1", host, 0), MTU: 1500, Switchport: "fvk-vmk1",
			Address: "10.1.0.5/24", Gateway: "10.1.0.1", Mode: "static", Services: []string{"nfs"}, Up: true},
		{Name: "vmk2", PortGroup: "vMotion", MAC: vmknic.GenerateMAC("vmk2", host, 0), MTU: 9000, Switchport: "fvk-vmk2",
			Address: "10.2.0.5/24", Mode: "static", Services: []string{"migration"}, Up: true},
	}
	// vmk1's static gateway owns the default route: vswif0 must not
	// have taken it.
	want[0].Gateway = ""
	if r.nic("vswif0").Gateway.IsValid() {
		t.Errorf("vswif0 took the default route while vmk1 has a static gateway")
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}

	// The same configuration again changes nothing.
	n := r.k.Changes()
	if err := r.m.Apply(ctx, baseSpecs()); err != nil {
		t.Fatal(err)
	}
	if got := r.k.AppliedSince(n); len(got) != 0 {
		t.Errorf("re-Apply changed %v", got)
	}
	if c := d.Count("open vswif0"); c != 1 {
		t.Errorf("re-Apply opened vswif0's DHCP client %d times in all, want 1", c)
	}
}

func TestManagerDHCPDefaultRoute(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vswif0", mgmtLease)
	r := newRig(t, vmknictest.New(), d)
	specs := []api.VMKNIC{dhcp("vswif0", "management"), static("vmk1", "10.1.0.5/24", "")}
	if err := r.m.Apply(context.Background(), specs); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the default route through vswif0", func() bool { return r.nic("vswif0").Gateway == mgmtLease.Router })
	if v := r.nic("vswif0"); !hasAddr(v, "192.168.1.50/24") || !v.Addrs[0].Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("vswif0 addresses = %v, want 192.168.1.50/24 until %s", v.Addrs, t0.Add(time.Hour))
	}
	if got := d.Calls()[:2]; !cmp.Equal(got, []string{"open vswif0 " + vmknic.GenerateMAC("vswif0", host, 0), "request vswif0 -"}) {
		t.Errorf("DHCP calls = %v", got)
	}
}

func TestManagerRestartDoesNotFlap(t *testing.T) {
	d := vmknictest.NewDHCP()
	kernel := vmknictest.New()
	d.SetLease("vswif0", mgmtLease)
	first := newRig(t, kernel, d)
	ctx := context.Background()
	if err := first.m.Apply(ctx, baseSpecs()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease", func() bool { return hasAddr(first.nic("vswif0"), "192.168.1.50/24") })
	first.m.Close()
	if c := d.Count("release"); c != 0 {
		t.Errorf("Close released %d leases, want none", c)
	}
	if c := d.Count("close vswif0"); c != 1 {
		t.Errorf("Close closed vswif0's client %d times, want 1", c)
	}

	// The new manager's DHCP server is silent for now: nothing may move.
	d2 := vmknictest.NewDHCP()
	second := newRig(t, kernel, d2)
	n := kernel.Changes()
	if err := second.m.Apply(ctx, baseSpecs()); err != nil {
		t.Fatal(err)
	}
	second.step(t) // a failed request, a retry
	if got := kernel.AppliedSince(n); len(got) != 0 {
		t.Errorf("a restarted manager changed %v", got)
	}
	if got := d2.Calls(); len(got) < 2 || got[1] != "request vswif0 192.168.1.50" {
		t.Errorf("DHCP calls = %v, want a request for the address vswif0 has", got)
	}
	// The server answers (the same address, an hour later): the address
	// stays, only its lifetime is refreshed.
	lease := mgmtLease
	d2.SetLease("vswif0", lease)
	second.step(t)
	eventually(t, "the refreshed lifetime", func() bool {
		v := second.nic("vswif0")
		return len(v.Addrs) == 1 && v.Addrs[0].Expires.After(t0.Add(time.Hour))
	})
	for _, c := range kernel.AppliedSince(n) {
		if c.Op != vmknic.OpAddAddr {
			t.Errorf("after the restart: %s, want only the lifetime refresh", c)
		}
	}
}

func TestManagerDHCPRenewAndExpiry(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vswif0", mgmtLease)
	r := newRig(t, vmknictest.New(), d)
	if err := r.m.Apply(context.Background(), []api.VMKNIC{dhcp("vswif0")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease", func() bool { return hasAddr(r.nic("vswif0"), "192.168.1.50/24") })

	// Renewal at half the lease.
	r.step(t)
	if now := r.clk.Now(); !now.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("renewed at %s, want %s", now, t0.Add(30*time.Minute))
	}
	eventually(t, "the renewal applied", func() bool {
		v := r.nic("vswif0")
		return len(v.Addrs) == 1 && v.Addrs[0].Expires.Equal(t0.Add(90*time.Minute))
	})
	if c := d.Count("renew vswif0"); c != 1 {
		t.Errorf("renewals = %d, want 1", c)
	}

	// The server goes silent: retries with backoff until the lease
	// expires, then the address and the route go.
	d.SetError("vswif0", vmknictest.ErrNoAnswer)
	for hasAddr(r.nic("vswif0"), "192.168.1.50/24") {
		r.step(t)
		eventually(t, "the client to react", func() bool { return r.clk.Timers() > 0 || !hasAddr(r.nic("vswif0"), "192.168.1.50/24") })
		if r.clk.Now().After(t0.Add(3 * time.Hour)) {
			t.Fatal("the address outlived its lease")
		}
	}
	if now, exp := r.clk.Now(), t0.Add(90*time.Minute); now.Before(exp) {
		t.Errorf("address removed at %s, before the lease's end %s", now, exp)
	}
	retries := d.Count("renew vswif0") - 1
	if retries < 5 || retries > 60 {
		t.Errorf("%d renewal retries between T1 and the end of the lease, want backoff (5..60)", retries)
	}
	if v := r.nic("vswif0"); v.Gateway.IsValid() || len(v.Addrs) != 0 {
		t.Errorf("vswif0 after expiry = %+v, want no address, no route", v)
	}

	// Back: a new request, the address returns.
	d.SetLease("vswif0", mgmtLease)
	for !hasAddr(r.nic("vswif0"), "192.168.1.50/24") {
		r.step(t)
		eventually(t, "the client to react", func() bool { return r.clk.Timers() > 0 || hasAddr(r.nic("vswif0"), "192.168.1.50/24") })
	}
}

func TestManagerDHCPNAK(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vswif0", mgmtLease)
	r := newRig(t, vmknictest.New(), d)
	if err := r.m.Apply(context.Background(), []api.VMKNIC{dhcp("vswif0")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease", func() bool { return hasAddr(r.nic("vswif0"), "192.168.1.50/24") })
	d.SetError("vswif0", vmknic.ErrNAK)
	r.step(t) // T1: refused
	eventually(t, "the refused lease removed", func() bool { return len(r.nic("vswif0").Addrs) == 0 })

	moved := mgmtLease
	moved.Address = netip.MustParsePrefix("192.168.1.77/24")
	eventually(t, "a refused request", func() bool { return d.Count("request vswif0") >= 2 })
	d.SetLease("vswif0", moved)
	r.step(t)
	eventually(t, "the new address", func() bool { return hasAddr(r.nic("vswif0"), "192.168.1.77/24") })
	calls := d.Calls()
	if last := slices.IndexFunc(calls, func(c string) bool { return c == "request vswif0 -" }); last < 0 {
		t.Errorf("after a refusal the client still asks for its old address: %v", calls)
	}
}

func TestManagerRemovalReleasesFirst(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vmk1", mgmtLease)
	k := vmknictest.New()
	r := newRig(t, k, d)
	ctx := context.Background()
	if err := r.m.Apply(ctx, []api.VMKNIC{dhcp("vmk1")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease", func() bool { return hasAddr(r.nic("vmk1"), "192.168.1.50/24") })
	releasedBeforeDelete := false
	k.Fail = func(c vmknic.Change) error {
		if c.Op == vmknic.OpDelete {
			releasedBeforeDelete = d.Count("release vmk1") == 1 && d.Count("close vmk1") == 1
		}
		return nil
	}
	if err := r.m.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !releasedBeforeDelete {
		t.Errorf("vmk1 deleted before its lease was released: %v", d.Calls())
	}
	if len(k.State().NICs) != 0 {
		t.Errorf("kernel after removing everything = %+v", k.State())
	}
}

func TestManagerMACAndModeChanges(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vmk1", mgmtLease)
	r := newRig(t, vmknictest.New(), d)
	ctx := context.Background()
	spec := static("vmk1", "10.0.0.5/24", "")
	if err := r.m.Apply(ctx, []api.VMKNIC{spec}); err != nil {
		t.Fatal(err)
	}
	// static -> dhcp: the static address goes at once, the lease comes.
	spec.IPv4 = api.VMKIPv4{Mode: api.VMKIPv4DHCP}
	if err := r.m.Apply(ctx, []api.VMKNIC{spec}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease replacing the static address", func() bool {
		v := r.nic("vmk1")
		return len(v.Addrs) == 1 && hasAddr(v, "192.168.1.50/24")
	})
	// A new MAC: the old lease is released, a client with the new MAC
	// starts.
	spec.MAC = "00:50:56:00:00:42"
	if err := r.m.Apply(ctx, []api.VMKNIC{spec}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a client with the new MAC", func() bool { return d.Count("open vmk1 00:50:56:00:00:42") == 1 })
	calls := d.Calls()
	rel, open := slices.Index(calls, "release vmk1"), slices.Index(calls, "open vmk1 00:50:56:00:00:42")
	if rel < 0 || rel > open {
		t.Errorf("DHCP calls = %v, want the old lease released before the new client opens", calls)
	}
	if v := r.nic("vmk1"); v.MAC != "00:50:56:00:00:42" {
		t.Errorf("vmk1 MAC = %s", v.MAC)
	}
	// dhcp -> none: released, no address.
	spec.IPv4 = api.VMKIPv4{Mode: api.VMKIPv4None}
	if err := r.m.Apply(ctx, []api.VMKNIC{spec}); err != nil {
		t.Fatal(err)
	}
	if c := d.Count("release vmk1"); c != 2 {
		t.Errorf("releases = %d, want 2", c)
	}
	if v := r.nic("vmk1"); len(v.Addrs) != 0 {
		t.Errorf("vmk1 in mode none has %v", v.Addrs)
	}
}

func TestManagerRecreatesDeletedLink(t *testing.T) {
	d := vmknictest.NewDHCP()
	d.SetLease("vswif0", mgmtLease)
	k := vmknictest.New()
	r := newRig(t, k, d)
	ctx := context.Background()
	if err := r.m.Apply(ctx, []api.VMKNIC{dhcp("vswif0")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease", func() bool { return hasAddr(r.nic("vswif0"), "192.168.1.50/24") })
	k.Remove("vswif0") // ip link del vswif0
	if err := r.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new client on the new link with its lease", func() bool {
		return d.Count("open vswif0") == 2 && hasAddr(r.nic("vswif0"), "192.168.1.50/24")
	})
	if c := d.Count("release"); c != 0 {
		t.Errorf("re-creating the link released the lease")
	}
}

func TestManagerErrors(t *testing.T) {
	d := vmknictest.NewDHCP()
	k := vmknictest.New("vmk1")
	k.Put(vmknic.NIC{Name: "vmk7", Switchport: "fvk-vmk7", Kind: "veth", PortGroup: "old", MAC: "00:50:56:00:00:07", MTU: 1500, SwitchportMTU: 1500})
	r := newRig(t, k, d)
	ctx := context.Background()

	// Before the first Apply: nothing touched, leftovers reported.
	st, err := r.m.Status(ctx)
	if err != nil || len(st) != 1 || st[0].Name != "vmk7" || st[0].Mode != "" || st[0].PortGroup != "old" {
		t.Errorf("Status before Apply = %+v, %v, want the unconfigured vmk7", st, err)
	}
	if err := r.m.Apply(ctx, []api.VMKNIC{static("vmk1", "10.0.0.0/24", "")}); !errors.Is(err, vmknic.ErrInvalid) {
		t.Errorf("Apply(invalid) = %v, want ErrInvalid", err)
	}
	if k.Changes() != 0 {
		t.Errorf("an invalid Apply changed %v", k.AppliedSince(0))
	}
	err = r.m.Apply(ctx, []api.VMKNIC{dhcp("vmk1"), static("vmk2", "10.0.0.5/24", "")})
	if !errors.Is(err, vmknic.ErrNotOurs) {
		t.Errorf("Apply with vmk1 taken = %v, want ErrNotOurs", err)
	}
	if _, ok := k.State().Find("vmk2"); !ok {
		t.Error("vmk2 not created because vmk1 is taken")
	}
	if _, ok := k.State().Find("vmk7"); ok {
		t.Error("the unconfigured vmk7 was left")
	}
	time.Sleep(10 * time.Millisecond)
	if c := d.Count("open vmk1"); c != 0 {
		t.Errorf("a DHCP client was started on the foreign vmk1")
	}
	r.m.Close()
	if err := r.m.Apply(ctx, nil); !errors.Is(err, vmknic.ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	if _, err := vmknic.New(vmknic.Options{Kernel: k}); err == nil {
		t.Error("New without a host UUID works")
	}
}
