package vmknictest_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
	"github.com/flashvisor/flashvisor/vmkernel-nics/vmknictest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := vmknictest.NewClock(t0)
	var got []string
	c.AfterFunc(2*time.Second, func() { got = append(got, "b@"+c.Now().Sub(t0).String()) })
	c.AfterFunc(time.Second, func() { got = append(got, "a@"+c.Now().Sub(t0).String()) })
	stop := c.AfterFunc(time.Second, func() { got = append(got, "stopped") })
	if !stop() || stop() {
		t.Error("stop() = false for a waiting function, or true twice")
	}
	if c.Timers() != 2 || !c.WaitTimers(2, time.Millisecond) || c.WaitTimers(3, time.Millisecond) {
		t.Errorf("Timers() = %d, want 2", c.Timers())
	}
	c.Advance(1500 * time.Millisecond)
	if !slices.Equal(got, []string{"a@1s"}) || !c.Now().Equal(t0.Add(1500*time.Millisecond)) {
		t.Errorf("after Advance(1.5s): ran %v, now %s", got, c.Now())
	}
	// A function added by a function that runs is run too if due.
	c.AfterFunc(time.Second, func() {
		c.AfterFunc(0, func() { got = append(got, "chained") })
	})
	if !c.AdvanceToNext() || !slices.Equal(got, []string{"a@1s", "b@2s"}) {
		t.Errorf("AdvanceToNext ran %v", got)
	}
	c.Advance(time.Second)
	if !slices.Equal(got, []string{"a@1s", "b@2s", "chained"}) || c.AdvanceToNext() {
		t.Errorf("ran %v; or functions still waiting", got)
	}
}

func TestKernel(t *testing.T) {
	ctx := context.Background()
	k := vmknictest.New("eth0", "vmk9")
	n := vmknic.NIC{Name: "vmk1", Switchport: "fvk-vmk1", MAC: "00:50:56:00:00:01", MTU: 1500, Gateway: netip.MustParseAddr("10.0.0.1")}
	addr := vmknic.Addr{Prefix: netip.MustParsePrefix("10.0.0.5/24")}
	apply := func(op vmknic.Op, a vmknic.Addr) error { return k.Apply(ctx, vmknic.Change{Op: op, NIC: n, Addr: a}) }
	if err := apply(vmknic.OpCreate, vmknic.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := apply(vmknic.OpCreate, vmknic.Addr{}); !errors.Is(err, vmknictest.ErrKernel) {
		t.Errorf("creating vmk1 twice = %v, want ErrKernel", err)
	}
	if err := k.Apply(ctx, vmknic.Change{Op: vmknic.OpCreate, NIC: vmknic.NIC{Name: "vmk9", Switchport: "fvk-vmk9"}}); err == nil {
		t.Error("created over the foreign vmk9")
	}
	if err := apply(vmknic.OpSetGateway, vmknic.Addr{}); err == nil {
		t.Error("a gateway on a down link without an address works")
	}
	for _, op := range []vmknic.Op{vmknic.OpSetSwitchportUp, vmknic.OpSetUp} {
		if err := apply(op, vmknic.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply(vmknic.OpSetGateway, vmknic.Addr{}); err == nil {
		t.Error("a gateway outside every subnet works")
	}
	if err := apply(vmknic.OpAddAddr, addr); err != nil {
		t.Fatal(err)
	}
	if err := apply(vmknic.OpSetGateway, vmknic.Addr{}); err != nil {
		t.Fatal(err)
	}
	got, _ := k.State().Find("vmk1")
	if !got.Carrier || got.Gateway != n.Gateway || len(got.Addrs) != 1 {
		t.Errorf("vmk1 = %+v", got)
	}
	if err := apply(vmknic.OpDelAddr, addr); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.State().Find("vmk1"); got.Gateway.IsValid() {
		t.Error("the gateway outlived the address covering it")
	}
	if err := apply(vmknic.OpDelete, vmknic.Addr{}); err != nil || len(k.State().NICs) != 0 {
		t.Errorf("delete: %v, %+v", err, k.State())
	}
	if st := k.State(); !slices.Equal(st.Foreign, []string{"eth0", "vmk9"}) {
		t.Errorf("Foreign = %v", st.Foreign)
	}
	if k.Changes() != 7 {
		t.Errorf("Changes() = %d, want 7 (refusals not counted)", k.Changes())
	}
}

func TestDHCP(t *testing.T) {
	ctx := context.Background()
	d := vmknictest.NewDHCP()
	c, err := d.Open("vmk1", net.HardwareAddr{0, 0x50, 0x56, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Request(ctx, netip.Addr{}); !errors.Is(err, vmknictest.ErrNoAnswer) {
		t.Errorf("Request without a lease = %v, want ErrNoAnswer", err)
	}
	l := vmknic.Lease{Address: netip.MustParsePrefix("10.0.0.5/24"), Duration: time.Hour}
	d.SetLease("vmk1", l)
	if got, err := c.Request(ctx, netip.MustParseAddr("10.0.0.9")); err != nil || got.Address != l.Address {
		t.Errorf("Request = %+v, %v", got, err)
	}
	d.SetError("vmk1", vmknic.ErrNAK)
	if _, err := c.Renew(ctx); !errors.Is(err, vmknic.ErrNAK) {
		t.Errorf("Renew = %v, want ErrNAK", err)
	}
	c.Release()
	c.Close()
	want := []string{"open vmk1 00:50:56:00:00:01", "request vmk1 -", "request vmk1 10.0.0.9", "renew vmk1", "release vmk1", "close vmk1"}
	if got := d.Calls(); !slices.Equal(got, want) {
		t.Errorf("Calls() = %v, want %v", got, want)
	}
	if d.Count("request vmk1") != 2 {
		t.Errorf("Count(request vmk1) = %d, want 2", d.Count("request vmk1"))
	}
}
