package vmknic_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
	"github.com/flashvisor/flashvisor/vmkernel-nics/vmknictest"
	"github.com/google/go-cmp/cmp"
)

// baseSpecs: a management vmknic on DHCP, a storage vmknic with the
// default gateway, a jumbo migration vmknic without an address.
func baseSpecs() []api.VMKNIC {
	return []api.VMKNIC{
		dhcp("vswif0", api.VMKServiceManagement),
		{Name: "vmk1", PortGroup: "Storage", IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.1.0.5/24", Gateway: "10.1.0.1"}, Services: []string{"nfs"}},
		{Name: "vmk2", PortGroup: "vMotion", MTU: 9000, IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.2.0.5/24"}, Services: []string{"migration"}},
	}
}

func desired(t *testing.T, specs []api.VMKNIC, rt vmknic.Runtime) vmknic.KernelState {
	t.Helper()
	if err := vmknic.Validate(specs); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return vmknic.Desired(vmknic.AssignMACs(specs, host), rt)
}

// reconcile plans d against k, applies the plan and checks that nothing
// is left to do; it returns the plan.
func reconcile(t *testing.T, k *vmknictest.Kernel, d vmknic.KernelState) []vmknic.Change {
	t.Helper()
	plan, err := vmknic.Plan(d, k.State())
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	for _, c := range plan {
		if err := k.Apply(context.Background(), c); err != nil {
			t.Fatalf("Apply: %v (plan %v)", err, plan)
		}
	}
	if again, err := vmknic.Plan(d, k.State()); len(again) != 0 || err != nil {
		t.Fatalf("Plan after applying = %v, %v, want nothing", again, err)
	}
	return plan
}

func steps(plan []vmknic.Change) []string {
	var out []string
	for _, c := range plan {
		out = append(out, c.Op.String()+" "+c.NIC.Name)
	}
	return out
}

func TestPlanFromScratch(t *testing.T) {
	k := vmknictest.New("eth0")
	plan := reconcile(t, k, desired(t, baseSpecs(), vmknic.Runtime{}))
	want := []string{
		"create vswif0", "switchport up vswif0", "up vswif0",
		"create vmk1", "switchport up vmk1", "up vmk1", "add address vmk1", "set gateway vmk1",
		"create vmk2", "switchport up vmk2", "up vmk2", "add address vmk2",
	}
	if diff := cmp.Diff(want, steps(plan)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	st := k.State()
	vmk2, _ := st.Find("vmk2")
	if vmk2.MTU != 9000 || vmk2.SwitchportMTU != 9000 || vmk2.Switchport != "fvk-vmk2" || vmk2.PortGroup != "vMotion" || !vmk2.Carrier {
		t.Errorf("vmk2 = %+v, want MTU 9000 on both ends of vmk2/fvk-vmk2, up", vmk2)
	}
	vmk1, _ := st.Find("vmk1")
	if vmk1.Gateway != netip.MustParseAddr("10.1.0.1") || vmk1.MAC != vmknic.GenerateMAC("vmk1", host, 0) {
		t.Errorf("vmk1 = %+v, want the default gateway 10.1.0.1 and its generated MAC", vmk1)
	}
	if vswif, _ := st.Find("vswif0"); len(vswif.Addrs) != 0 {
		t.Errorf("vswif0 without a lease has addresses %v", vswif.Addrs)
	}
}

func TestPlanMinimalChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func([]api.VMKNIC) []api.VMKNIC
		want   []string
	}{
		{"nothing", func(s []api.VMKNIC) []api.VMKNIC { return s }, nil},
		{"mtu", func(s []api.VMKNIC) []api.VMKNIC { s[2].MTU = 0; return s },
			[]string{"set switchport mtu vmk2", "set mtu vmk2"}},
		{"port group", func(s []api.VMKNIC) []api.VMKNIC { s[1].PortGroup = "NFS"; return s },
			[]string{"set alias vmk1"}},
		{"mac", func(s []api.VMKNIC) []api.VMKNIC { s[1].MAC = "00:50:56:01:02:03"; return s },
			[]string{"set mac vmk1"}},
		{"services only", func(s []api.VMKNIC) []api.VMKNIC { s[1].Services = []string{"iscsi"}; return s }, nil},
		{"address, same gateway", func(s []api.VMKNIC) []api.VMKNIC { s[1].IPv4.Address = "10.1.0.6/24"; return s },
			[]string{"del address vmk1", "add address vmk1", "set gateway vmk1"}},
		{"gateway moves", func(s []api.VMKNIC) []api.VMKNIC {
			s[1].IPv4.Gateway, s[2].IPv4.Gateway = "", "10.2.0.1"
			return s
		}, []string{"del gateway vmk1", "set gateway vmk2"}},
		{"gateway only", func(s []api.VMKNIC) []api.VMKNIC { s[1].IPv4.Gateway = "10.1.0.254"; return s },
			[]string{"del gateway vmk1", "set gateway vmk1"}},
		{"static to none", func(s []api.VMKNIC) []api.VMKNIC { s[1].IPv4 = api.VMKIPv4{Mode: "none"}; return s },
			[]string{"del gateway vmk1", "del address vmk1"}},
		{"remove", func(s []api.VMKNIC) []api.VMKNIC { return s[:2] }, []string{"delete vmk2"}},
		{"add", func(s []api.VMKNIC) []api.VMKNIC { return append(s, static("vmk10", "10.3.0.5/24", "")) },
			[]string{"create vmk10", "switchport up vmk10", "up vmk10", "add address vmk10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := vmknictest.New()
			reconcile(t, k, desired(t, baseSpecs(), vmknic.Runtime{}))
			plan := reconcile(t, k, desired(t, tc.change(baseSpecs()), vmknic.Runtime{}))
			if diff := cmp.Diff(tc.want, steps(plan)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanDHCP(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	lease := vmknic.Lease{
		Address: netip.MustParsePrefix("192.168.1.50/24"), Router: netip.MustParseAddr("192.168.1.1"),
		Duration: time.Hour, Acquired: t0,
	}
	specs := []api.VMKNIC{dhcp("vswif0", "management"), dhcp("vmk1")}
	rt := func(l map[string]vmknic.Lease) vmknic.Runtime { return vmknic.Runtime{Leases: l} }
	k := vmknictest.New()
	reconcile(t, k, desired(t, specs, rt(nil)))

	// The lease: address with its expiry, and the default route (vswif0
	// is the management vmknic).
	other := lease
	other.Address, other.Router = netip.MustParsePrefix("172.16.0.9/16"), netip.MustParseAddr("172.16.0.1")
	plan := reconcile(t, k, desired(t, specs, rt(map[string]vmknic.Lease{"vswif0": lease, "vmk1": other})))
	if diff := cmp.Diff([]string{"add address vswif0", "set gateway vswif0", "add address vmk1"}, steps(plan)); diff != "" {
		t.Errorf("lease plan (-want +got):\n%s", diff)
	}
	v, _ := k.State().Find("vswif0")
	if len(v.Addrs) != 1 || !v.Addrs[0].Expires.Equal(t0.Add(time.Hour)) || v.Gateway != lease.Router {
		t.Errorf("vswif0 = %+v, want %s until %s via %s", v, lease.Address, t0.Add(time.Hour), lease.Router)
	}
	if v, _ := k.State().Find("vmk1"); v.Gateway.IsValid() {
		t.Errorf("vmk1 took the default route %s from its lease", v.Gateway)
	}

	// A client that has not answered yet keeps what is there.
	if plan, _ := vmknic.Plan(desired(t, specs, rt(nil)), k.State()); len(plan) != 0 {
		t.Errorf("Plan without leases = %v, want nothing (keep)", plan)
	}
	// A renewal a few seconds off changes nothing; a real one refreshes
	// the lifetime only.
	renewed := lease
	renewed.Acquired = t0.Add(2 * time.Second)
	if plan, _ := vmknic.Plan(desired(t, specs, rt(map[string]vmknic.Lease{"vswif0": renewed, "vmk1": other})), k.State()); len(plan) != 0 {
		t.Errorf("Plan(lease 2s later) = %v, want nothing", plan)
	}
	renewed.Acquired = t0.Add(30 * time.Minute)
	plan = reconcile(t, k, desired(t, specs, rt(map[string]vmknic.Lease{"vswif0": renewed, "vmk1": other})))
	if diff := cmp.Diff([]string{"add address vswif0"}, steps(plan)); diff != "" {
		t.Errorf("renewal plan (-want +got):\n%s", diff)
	}
	// A lost lease takes the address and the route away.
	plan = reconcile(t, k, desired(t, specs, rt(map[string]vmknic.Lease{"vswif0": {}, "vmk1": other})))
	if diff := cmp.Diff([]string{"del gateway vswif0", "del address vswif0"}, steps(plan)); diff != "" {
		t.Errorf("lost lease plan (-want +got):\n%s", diff)
	}
	// A router outside the subnet is ignored; an infinite lease is
	// permanent.
	odd := lease
	odd.Router, odd.Duration = netip.MustParseAddr("10.9.9.9"), vmknic.InfiniteLease
	d := desired(t, specs, rt(map[string]vmknic.Lease{"vswif0": odd}))
	if n, _ := d.Find("vswif0"); n.Gateway.IsValid() || len(n.Addrs) != 1 || !n.Addrs[0].Expires.IsZero() {
		t.Errorf("Desired(odd lease) vswif0 = %+v, want a permanent address and no gateway", n)
	}
}

func TestDefaultRouteOwner(t *testing.T) {
	for _, tc := range []struct {
		specs []api.VMKNIC
		want  string
	}{
		{nil, ""},
		{[]api.VMKNIC{dhcp("vswif0")}, "vswif0"},
		{[]api.VMKNIC{dhcp("vswif0"), dhcp("vmk1", "management")}, "vmk1"},
		{[]api.VMKNIC{dhcp("vswif0"), static("vmk1", "10.0.0.5/24", "")}, "vswif0"},
		{[]api.VMKNIC{dhcp("vswif0"), static("vmk1", "10.0.0.5/24", "10.0.0.1")}, "vmk1"},
		{[]api.VMKNIC{dhcp("vswif0"), func() api.VMKNIC {
			s := static("vmk1", "10.0.0.5/24", "")
			s.Services = []string{"management"}
			return s
		}()}, ""},
		{[]api.VMKNIC{dhcp("vmk1"), dhcp("vmk2")}, ""},
	} {
		if got := vmknic.DefaultRouteOwner(tc.specs); got != tc.want {
			t.Errorf("DefaultRouteOwner(%v) = %q, want %q", tc.specs, got, tc.want)
		}
	}
}

func TestPlanForeignLinks(t *testing.T) {
	k := vmknictest.New("vmk1", "fvk-vmk2")
	specs := append(baseSpecs(), static("vmk3", "10.3.0.5/24", ""))
	plan, err := vmknic.Plan(desired(t, specs, vmknic.Runtime{}), k.State())
	if !errors.Is(err, vmknic.ErrNotOurs) {
		t.Errorf("Plan with vmk1 and fvk-vmk2 taken: err = %v, want ErrNotOurs", err)
	}
	for _, c := range plan {
		if c.NIC.Name == "vmk1" || c.NIC.Name == "vmk2" {
			t.Errorf("Plan touches %s, whose names are taken: %s", c.NIC.Name, c)
		}
	}
	if len(plan) == 0 {
		t.Error("Plan skips the vmknics whose names are free")
	}
}

func TestPlanRepairs(t *testing.T) {
	d := desired(t, baseSpecs(), vmknic.Runtime{})
	for _, tc := range []struct {
		name   string
		break_ func(*vmknic.NIC)
		want   []string
	}{
		{"not a veth", func(n *vmknic.NIC) { n.Kind = "dummy"; n.Switchport = "" },
			[]string{"delete vmk1", "create vmk1", "switchport up vmk1", "up vmk1", "add address vmk1", "set gateway vmk1"}},
		{"wrong peer", func(n *vmknic.NIC) { n.Switchport = "fvk-other" },
			[]string{"delete vmk1", "create vmk1", "switchport up vmk1", "up vmk1", "add address vmk1", "set gateway vmk1"}},
		{"set down", func(n *vmknic.NIC) { n.Up, n.Gateway = false, netip.Addr{} }, []string{"up vmk1", "set gateway vmk1"}},
		{"switch end down", func(n *vmknic.NIC) { n.SwitchportUp = false }, []string{"switchport up vmk1"}},
		{"extra address", func(n *vmknic.NIC) {
			n.Addrs = append(n.Addrs, vmknic.Addr{Prefix: netip.MustParsePrefix("10.1.0.99/24")})
		}, []string{"del address vmk1", "set gateway vmk1"}},
		{"no alias (crash after create)", func(n *vmknic.NIC) { n.PortGroup = "" }, []string{"set alias vmk1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := vmknictest.New()
			reconcile(t, k, d)
			n, _ := k.State().Find("vmk1")
			tc.break_(&n)
			k.Put(n)
			if diff := cmp.Diff(tc.want, steps(reconcile(t, k, d))); diff != "" {
				t.Errorf("repair plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangeString(t *testing.T) {
	d := desired(t, baseSpecs(), vmknic.Runtime{})
	plan, _ := vmknic.Plan(d, vmknic.KernelState{})
	for _, c := range plan {
		if s := c.String(); s == "" || s == fmt.Sprint(c.Op) {
			t.Errorf("Change %+v String() = %q", c, s)
		}
	}
	if got := plan[0].String(); got != fmt.Sprintf("create vswif0 (fvk-vswif0) mac %s mtu 1500", vmknic.GenerateMAC("vswif0", host, 0)) {
		t.Errorf("create String() = %q", got)
	}
}
