package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

func TestNetworkCalls(t *testing.T) {
	pgs := []api.PortGroup{
		{Name: "VM Network"},
		{Name: "dmz", VLAN: 100, MaxMACs: 2, Violation: api.ViolationProtect, Ingress: &api.RateLimit{BitsPerSecond: 100_000_000}},
	}
	view := api.SwitchView{
		Uplinks:      []api.Uplink{{NIC: "eth1", Port: "Eth3/1", PortChannel: "Po1"}},
		PortChannels: []api.PortChannel{{Name: "Po1", Members: []string{"eth1"}, Mode: api.ChannelLACP}},
		PortGroups:   pgs,
		Veths:        []api.VethAssignment{{Port: "Veth1", VM: "web01", NIC: 0, PortGroup: "dmz", MAC: "00:50:56:40:00:01"}},
		Ports:        []api.PortStatus{{Name: "Veth1", Kind: api.PortVeth, State: api.PortDown}},
	}
	card := api.VEMCard{Hostname: "esx1", Mode: api.SwitchStandalone, Module: 3, Programmed: true, Ports: map[string]int{"veth": 1}, Bridge: "fvbr0"}
	ports := []api.PortStatus{{Name: "Eth3/1", Kind: api.PortEth, Interface: "eth1", State: api.PortUp, Counters: api.PortCounters{RxPackets: 7}}}
	macs := []api.MACEntry{{VLAN: 100, MAC: "00:50:56:40:00:01", Type: "static", Port: "Veth1"}}
	vmks := []api.VMKNICStatus{{Name: "vswif0", PortGroup: "Management Network", MAC: "52:54:00:12:34:56", MTU: 1500, Address: "10.0.2.15/24", Mode: api.VMKIPv4DHCP, Up: true}}
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"GET /api/v1/portgroups":                      fixed(200, pgs),
		"POST /api/v1/portgroups":                     fixed(201, pgs[1]),
		"PUT /api/v1/portgroups/VM Network":           fixed(200, pgs[0]),
		"DELETE /api/v1/portgroups/VM Network":        fixed(204, nil),
		"GET /api/v1/network":                         fixed(200, view),
		"POST /api/v1/network/uplinks":                fixed(201, api.Uplink{NIC: "eth2", Port: "Eth3/2"}),
		"DELETE /api/v1/network/uplinks/eth2":         fixed(204, nil),
		"POST /api/v1/network/portchannels":           fixed(201, view.PortChannels[0]),
		"DELETE /api/v1/network/portchannels/Po1":     fixed(204, nil),
		"GET /api/v1/vem/card":                        fixed(200, card),
		"GET /api/v1/vem/ports":                       fixed(200, ports),
		"GET /api/v1/vem/macs":                        fixed(200, macs),
		"GET /api/v1/network/vmknics":                 fixed(200, vmks),
		"POST /api/v1/network/confirm":                fixed(204, nil),
		"DELETE /api/v1/network/vmknics/vmk1":         fixed(204, nil),
		"PUT /api/v1/network/vmknics/vmk1":            fixed(200, api.VMKNIC{Name: "vmk1"}),
		"POST /api/v1/network/vmknics":                fixed(201, api.VMKNIC{Name: "vmk1"}),
		"PUT /api/v1/network/vmknics/Management 2/ x": fixed(200, api.VMKNIC{}),
	})
	ctx := context.Background()
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s = %v", name, err)
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	p, err := c.PortGroups(ctx)
	check("PortGroups()", p, pgs, err)
	check("AddPortGroup(dmz)", nil, nil, c.AddPortGroup(ctx, pgs[1]))
	nc, err := c.UpdatePortGroup(ctx, api.PortGroup{Name: "VM Network", VLAN: 5})
	check("UpdatePortGroup(VM Network)", nc, (*api.NetworkChange)(nil), err)
	check("RemovePortGroup(VM Network)", nil, nil, c.RemovePortGroup(ctx, "VM Network"))
	v, err := c.Network(ctx)
	check("Network()", v, view, err)
	u, err := c.AddUplink(ctx, "eth2")
	check("AddUplink(eth2)", u, api.Uplink{NIC: "eth2", Port: "Eth3/2"}, err)
	nc, err = c.RemoveUplink(ctx, "eth2")
	check("RemoveUplink(eth2)", nc, (*api.NetworkChange)(nil), err)
	nc, err = c.AddPortChannel(ctx, api.PortChannel{Name: "Po1", Members: []string{"eth1"}, Mode: api.ChannelLACP})
	check("AddPortChannel(Po1)", nc, (*api.NetworkChange)(nil), err)
	nc, err = c.RemovePortChannel(ctx, "Po1")
	check("RemovePortChannel(Po1)", nc, (*api.NetworkChange)(nil), err)
	cd, err := c.VEMCard(ctx)
	check("VEMCard()", cd, card, err)
	ps, err := c.VEMPorts(ctx)
	check("VEMPorts()", ps, ports, err)
	ms, err := c.VEMMACs(ctx)
	check("VEMMACs()", ms, macs, err)
	vs, err := c.VMKNICs(ctx)
	check("VMKNICs()", vs, vmks, err)
	vmk1 := api.VMKNIC{Name: "vmk1", PortGroup: "storage", IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.9.0.5/24"}, Services: []string{api.VMKServiceNFS}}
	nc, err = c.AddVMKNIC(ctx, vmk1)
	check("AddVMKNIC(vmk1)", nc, (*api.NetworkChange)(nil), err)
	nc, err = c.UpdateVMKNIC(ctx, vmk1)
	check("UpdateVMKNIC(vmk1)", nc, (*api.NetworkChange)(nil), err)
	nc, err = c.RemoveVMKNIC(ctx, "vmk1")
	check("RemoveVMKNIC(vmk1)", nc, (*api.NetworkChange)(nil), err)
	check("ConfirmNetworkChange(c-1)", nil, nil, c.ConfirmNetworkChange(ctx, "c-1"))
	c.UpdateVMKNIC(ctx, api.VMKNIC{Name: "Management 2/ x"})

	want := []string{
		"GET /api/v1/portgroups",
		`POST /api/v1/portgroups {"name":"dmz","vlan":100,"max_macs":2,"violation":"protect","ingress":{"bits_per_second":100000000}}`,
		`PUT /api/v1/portgroups/VM%20Network {"name":"VM Network","vlan":5}`,
		"DELETE /api/v1/portgroups/VM%20Network",
		"GET /api/v1/network",
		`POST /api/v1/network/uplinks {"nic":"eth2"}`,
		"DELETE /api/v1/network/uplinks/eth2",
		`POST /api/v1/network/portchannels {"name":"Po1","members":["eth1"],"mode":"802.3ad"}`,
		"DELETE /api/v1/network/portchannels/Po1",
		"GET /api/v1/vem/card",
		"GET /api/v1/vem/ports",
		"GET /api/v1/vem/macs",
		"GET /api/v1/network/vmknics",
		`POST /api/v1/network/vmknics {"name":"vmk1","port_group":"storage","ipv4":{"mode":"static","address":"10.9.0.5/24"},"services":["nfs"]}`,
		`PUT /api/v1/network/vmknics/vmk1 {"name":"vmk1","port_group":"storage","ipv4":{"mode":"static","address":"10.9.0.5/24"},"services":["nfs"]}`,
		"DELETE /api/v1/network/vmknics/vmk1",
		`POST /api/v1/network/confirm {"id":"c-1"}`,
		// Names are one escaped path segment.
		`PUT /api/v1/network/vmknics/Management%202%2F%20x {"name":"Management 2/ x","port_group":"","ipv4":{"mode":""}}`,
	}
	if diff := cmp.Diff(want, rec.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestGuardedChanges: a 202 answer is a change to confirm, returned; 200,
// 201 and 204 are final (nil); errors stay APIErrors.
func TestGuardedChanges(t *testing.T) {
	change := api.NetworkChange{ID: "chg-7", RollbackAt: time.Date(2025, 3, 4, 5, 7, 7, 0, time.UTC), What: "vmknic vswif0"}
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"POST /api/v1/network/vmknics":              fixed(202, change),
		"PUT /api/v1/network/vmknics/vswif0":        fixed(202, change),
		"DELETE /api/v1/network/vmknics/vswif0":     fixed(202, change),
		"PUT /api/v1/portgroups/Management Network": fixed(202, change),
		"DELETE /api/v1/network/uplinks/eth0":       fixed(202, change),
		"POST /api/v1/network/portchannels":         fixed(202, change),
		"DELETE /api/v1/network/portchannels/Po1":   fixed(202, change),
		"PUT /api/v1/network/vmknics/vmk9":          fixed(404, api.Error{Code: api.ErrNotFound, Message: "no vmknic vmk9"}),
		"DELETE /api/v1/network/vmknics/vmk2":       fixed(409, api.Error{Code: api.ErrInUse, Message: "vmk2 carries datastore nfs1"}),
		"DELETE /api/v1/network/vmknics/noid":       fixed(202, api.NetworkChange{What: "vmknic noid"}),
		"DELETE /api/v1/network/vmknics/junk":       fixed(202, "not a change"),
		"POST /api/v1/network/confirm": func(r *http.Request) (int, any) {
			return 404, api.Error{Code: api.ErrNotFound, Message: "no pending network change chg-7 (rolled back?)"}
		},
	})
	ctx := context.Background()
	vswif0 := api.VMKNIC{Name: "vswif0", PortGroup: "Management Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.0.0.9/24"}}
	for _, tc := range []struct {
		name string
		call func() (*api.NetworkChange, error)
	}{
		{"AddVMKNIC", func() (*api.NetworkChange, error) { return c.AddVMKNIC(ctx, vswif0) }},
		{"UpdateVMKNIC", func() (*api.NetworkChange, error) { return c.UpdateVMKNIC(ctx, vswif0) }},
		{"RemoveVMKNIC", func() (*api.NetworkChange, error) { return c.RemoveVMKNIC(ctx, "vswif0") }},
		{"UpdatePortGroup", func() (*api.NetworkChange, error) {
			return c.UpdatePortGroup(ctx, api.PortGroup{Name: "Management Network", VLAN: 10})
		}},
		{"RemoveUplink", func() (*api.NetworkChange, error) { return c.RemoveUplink(ctx, "eth0") }},
		{"AddPortChannel", func() (*api.NetworkChange, error) {
			return c.AddPortChannel(ctx, api.PortChannel{Name: "Po1", Members: []string{"eth0", "eth1"}})
		}},
		{"RemovePortChannel", func() (*api.NetworkChange, error) { return c.RemovePortChannel(ctx, "Po1") }},
	} {
		got, err := tc.call()
		if err != nil || got == nil {
			t.Errorf("%s = %v, %v, want the guarded change", tc.name, got, err)
			continue
		}
		if diff := cmp.Diff(change, *got); diff != "" {
			t.Errorf("%s change (-want +got):\n%s", tc.name, diff)
		}
	}
	for _, tc := range []struct {
		name   string
		call   func() (*api.NetworkChange, error)
		status int
		code   string
	}{
		{"UpdateVMKNIC(vmk9)", func() (*api.NetworkChange, error) { return c.UpdateVMKNIC(ctx, api.VMKNIC{Name: "vmk9"}) }, 404, api.ErrNotFound},
		{"RemoveVMKNIC(vmk2)", func() (*api.NetworkChange, error) { return c.RemoveVMKNIC(ctx, "vmk2") }, 409, api.ErrInUse},
	} {
		got, err := tc.call()
		var ae *APIError
		if got != nil || !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
			t.Errorf("%s = %v, %v, want APIError %d %s", tc.name, got, err, tc.status, tc.code)
		}
	}
	// A 202 that cannot be confirmed is an error, never a silent success.
	for _, name := range []string{"noid", "junk"} {
		if got, err := c.RemoveVMKNIC(ctx, name); got != nil || err == nil {
			t.Errorf("RemoveVMKNIC(%s) = %v, %v, want an error", name, got, err)
		}
	}
	var ae *APIError
	if err := c.ConfirmNetworkChange(ctx, "chg-7"); !errors.As(err, &ae) || ae.Code != api.ErrNotFound || !strings.Contains(ae.Message, "rolled back") {
		t.Errorf("ConfirmNetworkChange(rolled back) = %v, want APIError not_found", err)
	}
	if n := len(rec.requests()); n != 12 {
		t.Errorf("%d requests, want 12: %q", n, rec.requests())
	}
}

func TestNetworkErrors(t *testing.T) {
	c, _ := newRecorder(t, map[string]func(*http.Request) (int, any){
		"POST /api/v1/portgroups":                 fixed(409, api.Error{Code: api.ErrExists, Message: `port group "dmz" already exists`}),
		"PUT /api/v1/portgroups/dmz":              fixed(400, api.Error{Code: api.ErrBadRequest, Message: "VLAN 5000: must be 0 (none) to 4094"}),
		"DELETE /api/v1/network/uplinks/eth1":     fixed(409, api.Error{Code: api.ErrInUse, Message: "eth1 is a member of Po1"}),
		"POST /api/v1/network/portchannels":       fixed(400, api.Error{Code: api.ErrBadRequest, Message: "port-channel Po0: bad name"}),
		"GET /api/v1/vem/card":                    fixed(502, api.Error{Code: api.ErrUnavailable, Message: "VEM agent: connection refused"}),
		"GET /api/v1/network":                     fixed(503, api.Error{Code: api.ErrUnavailable, Message: "networking is unavailable"}),
		"DELETE /api/v1/network/portchannels/Po9": fixed(404, api.Error{Code: api.ErrNotFound, Message: "no port-channel Po9"}),
		"PUT /api/v1/network/vmknics/vswif0":      fixed(409, api.Error{Code: api.ErrConflict, Message: "a management change waits for confirmation: netchg-1"}),
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"AddPortGroup", c.AddPortGroup(ctx, api.PortGroup{Name: "dmz"}), 409, api.ErrExists},
		{"UpdatePortGroup", func() error { _, err := c.UpdatePortGroup(ctx, api.PortGroup{Name: "dmz", VLAN: 5000}); return err }(), 400, api.ErrBadRequest},
		{"RemoveUplink", func() error { _, err := c.RemoveUplink(ctx, "eth1"); return err }(), 409, api.ErrInUse},
		{"AddPortChannel", func() error { _, err := c.AddPortChannel(ctx, api.PortChannel{Name: "Po0"}); return err }(), 400, api.ErrBadRequest},
		{"VEMCard", func() error { _, err := c.VEMCard(ctx); return err }(), 502, api.ErrUnavailable},
		{"Network", func() error { _, err := c.Network(ctx); return err }(), 503, api.ErrUnavailable},
		{"RemovePortChannel", func() error { _, err := c.RemovePortChannel(ctx, "Po9"); return err }(), 404, api.ErrNotFound},
		{"UpdateVMKNIC pending", func() error { _, err := c.UpdateVMKNIC(ctx, api.VMKNIC{Name: "vswif0"}); return err }(), 409, api.ErrConflict},
	} {
		var ae *APIError
		if !errors.As(tc.err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
			t.Errorf("%s = %v, want APIError %d %s", tc.name, tc.err, tc.status, tc.code)
		}
	}
}
