package vmknic_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
	"github.com/flashvisor/flashvisor/vmkernel-nics/vmknictest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpNet compares netip values by ==.
var cmpNet = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// guardSpecs is static only, so the fake clock carries nothing but the
// guard.
func guardSpecs() []api.VMKNIC {
	mgmt := static("vswif0", "192.168.1.10/24", "192.168.1.1")
	mgmt.Services = []string{"management"}
	return []api.VMKNIC{mgmt, static("vmk1", "10.1.0.5/24", "")}
}

// newMgmt moves the management address and gateway.
func newMgmt() []api.VMKNIC {
	s := guardSpecs()
	s[0].IPv4 = api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "192.168.2.10/24", Gateway: "192.168.2.1"}
	return s
}

func guardRig(t *testing.T) (*rig, vmknic.KernelState) {
	t.Helper()
	r := newRig(t, vmknictest.New(), vmknictest.NewDHCP())
	if err := r.m.Apply(context.Background(), guardSpecs()); err != nil {
		t.Fatal(err)
	}
	return r, r.k.State()
}

func (r *rig) noRollback(t *testing.T) {
	t.Helper()
	select {
	case ev := <-r.rolls:
		t.Errorf("unexpected rollback %+v", ev)
	default:
	}
}

func (r *rig) rollback(t *testing.T) vmknic.RollbackEvent {
	t.Helper()
	select {
	case ev := <-r.rolls:
		return ev
	default:
		t.Fatal("no rollback event")
	}
	return vmknic.RollbackEvent{}
}

func TestGuardRollsBackWithoutConfirm(t *testing.T) {
	r, before := guardRig(t)
	ctx := context.Background()
	id, err := r.m.ApplyGuarded(ctx, newMgmt(), 2*time.Minute)
	if err != nil || id == "" {
		t.Fatalf("ApplyGuarded = %q, %v", id, err)
	}
	after := r.k.State()
	if v, _ := after.Find("vswif0"); !hasAddr(v, "192.168.2.10/24") {
		t.Fatalf("the guarded change was not applied: %+v", v)
	}
	if p, ok := r.m.Pending(); !ok || p.ID != id || !p.Deadline.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("Pending() = %+v, %t, want %s until %s", p, ok, id, t0.Add(2*time.Minute))
	}

	r.clk.Advance(2*time.Minute - time.Second)
	r.noRollback(t)
	if diff := cmp.Diff(after, r.k.State(), cmpNet); diff != "" {
		t.Errorf("changed before the deadline (-want +got):\n%s", diff)
	}
	r.clk.Advance(time.Second)
	ev := r.rollback(t)
	if ev.ChangeID != id || ev.Err != nil || !ev.Time.Equal(t0.Add(2*time.Minute)) || ev.Reason == "" {
		t.Errorf("rollback event = %+v, want change %s rolled back cleanly at the deadline", ev, id)
	}
	if diff := cmp.Diff(before, r.k.State(), cmpNet); diff != "" {
		t.Errorf("after the rollback (-before +now):\n%s", diff)
	}
	if _, ok := r.m.Pending(); ok {
		t.Error("still pending after the rollback")
	}
	if err := r.m.Confirm(id); !errors.Is(err, vmknic.ErrRolledBack) {
		t.Errorf("Confirm after the rollback = %v, want ErrRolledBack", err)
	}
	// Changes are accepted again.
	if err := r.m.Apply(ctx, guardSpecs()); err != nil {
		t.Errorf("Apply after the rollback = %v", err)
	}
}

func TestGuardConfirm(t *testing.T) {
	r, _ := guardRig(t)
	id, err := r.m.ApplyGuarded(context.Background(), newMgmt(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	after := r.k.State()
	r.clk.Advance(59 * time.Second)
	if err := r.m.Confirm(id); err != nil {
		t.Fatalf("Confirm = %v", err)
	}
	if n := r.clk.Timers(); n != 0 {
		t.Errorf("%d timers left after Confirm", n)
	}
	r.clk.Advance(time.Hour)
	r.noRollback(t)
	if diff := cmp.Diff(after, r.k.State(), cmpNet); diff != "" {
		t.Errorf("confirmed change undone (-want +got):\n%s", diff)
	}
	if err := r.m.Confirm(id); !errors.Is(err, vmknic.ErrUnknownChange) {
		t.Errorf("second Confirm = %v, want ErrUnknownChange", err)
	}
}

func TestGuardOneChangeAtATime(t *testing.T) {
	r, _ := guardRig(t)
	ctx := context.Background()
	id, err := r.m.ApplyGuarded(ctx, newMgmt(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	n := r.k.Changes()
	other := newMgmt()
	other[1].MTU = 9000
	if _, err := r.m.ApplyGuarded(ctx, other, time.Minute); !errors.Is(err, vmknic.ErrChangePending) {
		t.Errorf("second ApplyGuarded = %v, want ErrChangePending", err)
	}
	if err := r.m.Apply(ctx, other); !errors.Is(err, vmknic.ErrChangePending) {
		t.Errorf("Apply while a change is pending = %v, want ErrChangePending", err)
	}
	if got := r.k.AppliedSince(n); len(got) != 0 {
		t.Errorf("refused changes applied %v", got)
	}
	if err := r.m.Confirm("vmkchg-bogus"); !errors.Is(err, vmknic.ErrUnknownChange) {
		t.Errorf("Confirm(bogus) = %v, want ErrUnknownChange", err)
	}
	if err := r.m.Confirm(id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.ApplyGuarded(ctx, other, time.Minute); err != nil {
		t.Errorf("ApplyGuarded after Confirm = %v", err)
	}
}

func TestGuardNeedsBaselineAndValidSpecs(t *testing.T) {
	r := newRig(t, vmknictest.New(), vmknictest.NewDHCP())
	ctx := context.Background()
	if _, err := r.m.ApplyGuarded(ctx, guardSpecs(), time.Minute); !errors.Is(err, vmknic.ErrNoBaseline) {
		t.Errorf("ApplyGuarded before any Apply = %v, want ErrNoBaseline", err)
	}
	if err := r.m.Apply(ctx, nil); err != nil { // an empty host is a baseline
		t.Fatal(err)
	}
	bad := guardSpecs()
	bad[0].MTU = 100
	if _, err := r.m.ApplyGuarded(ctx, bad, time.Minute); !errors.Is(err, vmknic.ErrInvalid) {
		t.Errorf("ApplyGuarded(invalid) = %v, want ErrInvalid", err)
	}
	if _, err := r.m.ApplyGuarded(ctx, guardSpecs(), 0); !errors.Is(err, vmknic.ErrInvalid) {
		t.Errorf("ApplyGuarded(window 0) = %v, want ErrInvalid", err)
	}
	if _, ok := r.m.Pending(); ok || r.k.Changes() != 0 {
		t.Errorf("refused guarded changes left something: pending %t, changes %v", ok, r.k.AppliedSince(0))
	}
	if _, err := r.m.ApplyGuarded(ctx, guardSpecs(), time.Minute); err != nil {
		t.Errorf("ApplyGuarded after an empty Apply = %v", err)
	}
	r.clk.Advance(time.Minute)
	r.rollback(t)
	if n := len(r.k.State().NICs); n != 0 {
		t.Errorf("rolled back to the empty host, %d vmknics left", n)
	}
}

func TestGuardApplyFailureRestoresAtOnce(t *testing.T) {
	r, before := guardRig(t)
	boom := errors.New("boom")
	r.k.Fail = func(c vmknic.Change) error {
		if c.Op == vmknic.OpSetGateway && c.NIC.Gateway.String() == "192.168.2.1" {
			return boom
		}
		return nil
	}
	id, err := r.m.ApplyGuarded(context.Background(), newMgmt(), time.Minute)
	if !errors.Is(err, boom) || id != "" {
		t.Errorf("ApplyGuarded with a failing change = %q, %v, want the failure", id, err)
	}
	ev := r.rollback(t)
	if ev.Err != nil {
		t.Errorf("rollback event = %+v, want a clean restore", ev)
	}
	if diff := cmp.Diff(before, r.k.State(), cmpNet); diff != "" {
		t.Errorf("after the failed change (-before +now):\n%s", diff)
	}
	if _, ok := r.m.Pending(); ok {
		t.Error("a failed change is pending")
	}
}

func TestGuardCloseRollsBack(t *testing.T) {
	r, before := guardRig(t)
	if _, err := r.m.ApplyGuarded(context.Background(), newMgmt(), time.Minute); err != nil {
		t.Fatal(err)
	}
	r.m.Close()
	r.rollback(t)
	if diff := cmp.Diff(before, r.k.State(), cmpNet); diff != "" {
		t.Errorf("after Close with a pending change (-before +now):\n%s", diff)
	}
	r.clk.Advance(time.Hour)
	r.noRollback(t)
}

func TestTouchesManagement(t *testing.T) {
	base := guardSpecs()
	for _, tc := range []struct {
		name string
		next func([]api.VMKNIC) []api.VMKNIC
		want bool
	}{
		{"same", func(s []api.VMKNIC) []api.VMKNIC { return s }, false},
		{"same, normalised", func(s []api.VMKNIC) []api.VMKNIC {
			s[0].MTU = 1500
			s[0].Services = []string{"management"}
			return s
		}, false},
		{"other vmknic", func(s []api.VMKNIC) []api.VMKNIC { s[1].MTU = 9000; return s }, false},
		{"add a vmknic", func(s []api.VMKNIC) []api.VMKNIC { return append(s, static("vmk2", "10.2.0.5/24", "")) }, false},
		{"management address", func(s []api.VMKNIC) []api.VMKNIC { return newMgmt() }, true},
		{"management MTU", func(s []api.VMKNIC) []api.VMKNIC { s[0].MTU = 9000; return s }, true},
		{"management port group", func(s []api.VMKNIC) []api.VMKNIC { s[0].PortGroup = "Other"; return s }, true},
		{"management tag moves", func(s []api.VMKNIC) []api.VMKNIC {
			s[0].Services, s[1].Services = nil, []string{"management"}
			return s
		}, true},
		{"management removed", func(s []api.VMKNIC) []api.VMKNIC { return s[1:] }, true},
		{"default route moves", func(s []api.VMKNIC) []api.VMKNIC {
			s[0].IPv4.Gateway, s[1].IPv4.Gateway = "", "10.1.0.1"
			return s
		}, true},
	} {
		if got := vmknic.TouchesManagement(base, tc.next(guardSpecs())); got != tc.want {
			t.Errorf("TouchesManagement(%s) = %t, want %t", tc.name, got, tc.want)
		}
	}
	if got := vmknic.ManagementNIC([]api.VMKNIC{dhcp("vswif0"), static("vmk1", "10.0.0.5/24", "")}); got != "vswif0" {
		t.Errorf("ManagementNIC(untagged vswif0) = %q, want vswif0", got)
	}
}
