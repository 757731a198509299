package netseamtest

import (
	"context"
	"errors"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/google/go-cmp/cmp"
)

func TestPorts(t *testing.T) {
	ctx := context.Background()
	p := New(api.PortGroup{Name: "VM Network"}, api.PortGroup{Name: "A", VLAN: 5})
	if d := cmp.Diff([]api.PortGroup{{Name: "A", VLAN: 5}, {Name: "VM Network"}}, p.PortGroups()); d != "" {
		t.Errorf("PortGroups (-want +got):\n%s", d)
	}
	tap, err := p.Attach(ctx, "web", 1, "VM Network", "00:50:56:00:00:01")
	if err != nil || tap != TapName("web", 1) {
		t.Errorf("Attach = %q, %v; want %q, nil", tap, err, TapName("web", 1))
	}
	p.Attach(ctx, "web", 1, "VM Network", "00:50:56:00:00:01") // idempotent
	p.Attach(ctx, "db", 0, "A", "00:50:56:00:00:02")
	if _, err := p.Attach(ctx, "db", 1, "nope", "00:50:56:00:00:03"); !errors.Is(err, netseam.ErrNoPortGroup) {
		t.Errorf("Attach(nope) = %v, want ErrNoPortGroup", err)
	}
	want := []Attachment{
		{VM: "db", NIC: 0, PortGroup: "A", MAC: "00:50:56:00:00:02", Tap: TapName("db", 0)},
		{VM: "web", NIC: 1, PortGroup: "VM Network", MAC: "00:50:56:00:00:01", Tap: tap},
	}
	if d := cmp.Diff(want, p.Attached()); d != "" {
		t.Errorf("Attached (-want +got):\n%s", d)
	}
	if err := p.Detach(ctx, "web", 1); err != nil {
		t.Error(err)
	}
	if err := p.Detach(ctx, "web", 1); err != nil {
		t.Errorf("second Detach = %v", err)
	}
	p.Release(ctx, "db")
	if got := p.Attached(); len(got) != 0 {
		t.Errorf("Attached after Detach and Release = %v, want none", got)
	}
	if got := len(p.Calls()); got != 7 {
		t.Errorf("len(Calls) = %d, want 7: %q", got, p.Calls())
	}
	p.Err = errors.New("boom")
	if _, err := p.Attach(ctx, "web", 0, "A", "00:50:56:00:00:01"); err == nil {
		t.Error("Attach with Err set = nil, want the error")
	}
}
