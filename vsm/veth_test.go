package vsm_test

import (
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
)

// `interface vethernet N`: its shutdown reaches the VEM as the port's
// own, live, on top of the profile; its description shows on the VSM;
// and the block goes when the vEth is released (a VM destroyed), so the
// next VM given the number does not inherit it.
func TestVethInterface(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	in.cli(t, uplinkProfile...)
	in.cli(t, webProfile...)
	v, _ := in.join(t, hostA, 3, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	owner := "vm:aaaaaaaa-0000-0000-0000-000000000001/nic0"
	v.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 1, Owner: owner, Profile: "web", MAC: "02:00:00:00:00:01"}})
	if res, err := v.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Port != "Veth1" {
		t.Fatalf("attach: %+v, %v; want Veth1", res.AttachResult, err)
	}
	if p, ok := port(nextConfig(t, v), "Veth1"); !ok || p.Shutdown {
		t.Fatalf("Veth1 after attach: %+v (present %v), want up", p, ok)
	}

	in.cli(t, "configure terminal", "interface vethernet 1", "description web01 frontend", "shutdown", "end")
	var shut api.Port
	for shut.Name == "" {
		c := nextConfig(t, v)
		if p, ok := port(c, "Veth1"); ok {
			shut = p
		}
	}
	if !shut.Shutdown || shut.Profile != "web" {
		t.Errorf("Veth1 after shutdown: %+v, want shut down on profile web", shut)
	}
	if out := in.cli(t, "show interface Veth1"); !strings.Contains(out, "web01 frontend") {
		t.Errorf("show interface Veth1 lacks the description:\n%s", out)
	}
	if out := in.cli(t, "show running-config"); !strings.Contains(out, "interface Vethernet1\n  description web01 frontend\n  shutdown\n") {
		t.Errorf("show running-config lacks the interface block:\n%s", out)
	}
	in.cli(t, "configure terminal", "interface Veth1", "no shutdown", "end")
	if p, ok := port(nextConfig(t, v), "Veth1"); !ok || p.Shutdown {
		t.Errorf("Veth1 after no shutdown: %+v (present %v), want up", p, ok)
	}
	in.cli(t, "configure terminal", "interface Veth1", "shutdown", "end")
	nextConfig(t, v)

	// The VM is destroyed: the vEth and its block go.
	v.Send(api.VSMMessage{Type: api.VSMDetach, Detach: &api.VSMDetachBody{Owner: owner, Release: true}})
	waitFor(t, func() bool { return len(in.s.Config().Veths) == 0 }, "the released vEth's interface block to go")
	if out := in.cli(t, "show running-config"); strings.Contains(out, "Vethernet1") {
		t.Errorf("show running-config still has the released vEth:\n%s", out)
	}
}
