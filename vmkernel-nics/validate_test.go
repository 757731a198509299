package vmknic_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
	"github.com/google/go-cmp/cmp"
)

// field is a FieldError without its prose.
type field struct{ NIC, Field, Value string }

func fieldErrors(t *testing.T, err error) []field {
	t.Helper()
	if err == nil {
		return nil
	}
	if !errors.Is(err, vmknic.ErrInvalid) {
		t.Errorf("error %v does not wrap ErrInvalid", err)
	}
	var out []field
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*vmknic.FieldError); ok {
			out = append(out, field{fe.NIC, fe.Field, fe.Value})
			if fe.Reason == "" {
				t.Errorf("%+v has no reason", fe)
			}
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		t.Errorf("error %v is not a *FieldError", err)
	}
	walk(err)
	return out
}

func static(name, addr, gw string) api.VMKNIC {
	return api.VMKNIC{Name: name, PortGroup: "PG " + name, IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: addr, Gateway: gw}}
}

func dhcp(name string, services ...string) api.VMKNIC {
	return api.VMKNIC{Name: name, PortGroup: "Management Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4DHCP}, Services: services}
}

func TestValidate(t *testing.T) {
	with := func(s api.VMKNIC, f func(*api.VMKNIC)) api.VMKNIC { f(&s); return s }
	good := static("vmk1", "10.0.0.5/24", "10.0.0.1")
	for _, tc := range []struct {
		name  string
		specs []api.VMKNIC
		want  []field
	}{
		{"empty", nil, nil},
		{"typical", []api.VMKNIC{
			dhcp("vswif0", api.VMKServiceManagement),
			with(static("vmk1", "10.1.0.5/24", ""), func(s *api.VMKNIC) { s.MTU = 9000; s.Services = []string{"nfs", "iscsi"} }),
			with(static("vmk2", "10.1.0.6/24", ""), func(s *api.VMKNIC) { s.Services = []string{"iscsi"} }), // same subnet: port binding
			with(static("vmk3", "192.168.1.2/31", "192.168.1.3"), func(s *api.VMKNIC) { s.MAC = "00:50:56:AB:CD:EF" }),
			{Name: "vmk255", PortGroup: "x", IPv4: api.VMKIPv4{Mode: "none"}, MTU: 1280, Services: []string{"migration", "vsm-control"}},
		}, nil},
		{"/32 without gateway", []api.VMKNIC{static("vmk1", "10.0.0.5/32", "")}, nil},
		{"bad names", []api.VMKNIC{
			with(good, func(s *api.VMKNIC) { s.Name = "vmk0" }),
			with(good, func(s *api.VMKNIC) { s.Name = "vmk256"; s.IPv4.Address = "10.0.0.6/24"; s.IPv4.Gateway = "" }),
			with(good, func(s *api.VMKNIC) { s.Name = ""; s.IPv4.Address = "10.0.0.7/24"; s.IPv4.Gateway = "" }),
			with(good, func(s *api.VMKNIC) { s.Name = "eth0"; s.IPv4.Address = "10.0.0.8/24"; s.IPv4.Gateway = "" }),
		}, []field{{"vmk0", "name", "vmk0"}, {"vmk256", "name", "vmk256"}, {"#2", "name", ""}, {"eth0", "name", "eth0"}}},
		{"duplicate name", []api.VMKNIC{static("vmk1", "10.0.0.5/24", ""), static("vmk1", "10.0.0.6/24", "")},
			[]field{{"vmk1", "name", "vmk1"}}},
		{"port group", []api.VMKNIC{
			with(good, func(s *api.VMKNIC) { s.PortGroup = "" }),
			with(static("vmk2", "10.0.0.6/24", ""), func(s *api.VMKNIC) { s.PortGroup = "a\nb" }),
			with(static("vmk3", "10.0.0.7/24", ""), func(s *api.VMKNIC) { s.PortGroup = strings.Repeat("p", 81) }),
		}, []field{{"vmk1", "port_group", ""}, {"vmk2", "port_group", "a\nb"}, {"vmk3", "port_group", strings.Repeat("p", 81)}}},
		{"macs", []api.VMKNIC{
			with(good, func(s *api.VMKNIC) { s.MAC = "00:11:22:33:44:55" }),
			with(static("vmk2", "10.0.0.6/24", ""), func(s *api.VMKNIC) { s.MAC = "01:50:56:00:00:01" }),
			with(static("vmk3", "10.0.0.7/24", ""), func(s *api.VMKNIC) { s.MAC = "00:50:56" }),
			with(static("vmk4", "10.0.0.8/24", ""), func(s *api.VMKNIC) { s.MAC = "00:50:56:00:00:01" }),
			with(static("vmk5", "10.0.0.9/24", ""), func(s *api.VMKNIC) { s.MAC = "00-50-56-00-00-01" }),
			with(static("vmk6", "10.0.0.10/24", ""), func(s *api.VMKNIC) { s.MAC = "00:50:56:00:00:00:00:01" }),
			// vswif0 takes its uplink's burned-in MAC, any OUI; still unicast.
			with(static("vswif0", "10.0.0.11/24", ""), func(s *api.VMKNIC) { s.MAC = "52:54:00:12:34:56" }),
		}, []field{
			{"vmk1", "mac", "00:11:22:33:44:55"}, {"vmk2", "mac", "01:50:56:00:00:01"}, {"vmk3", "mac", "00:50:56"},
			{"vmk5", "mac", "00-50-56-00-00-01"}, {"vmk6", "mac", "00:50:56:00:00:00:00:01"},
		}},
		{"mtu", []api.VMKNIC{
			with(good, func(s *api.VMKNIC) { s.MTU = 1279 }),
			with(static("vmk2", "10.0.0.6/24", ""), func(s *api.VMKNIC) { s.MTU = 9001 }),
			with(static("vmk3", "10.0.0.7/24", ""), func(s *api.VMKNIC) { s.MTU = -1 }),
		}, []field{{"vmk1", "mtu", "1279"}, {"vmk2", "mtu", "9001"}, {"vmk3", "mtu", "-1"}}},
		{"mode", []api.VMKNIC{
			with(good, func(s *api.VMKNIC) { s.IPv4.Mode = "" }),
			with(good, func(s *api.VMKNIC) { s.Name = "vmk2"; s.IPv4.Mode = "DHCP" }),
		}, []field{{"vmk1", "ipv4.mode", ""}, {"vmk2", "ipv4.mode", "DHCP"}}},
		{"addresses", []api.VMKNIC{
			static("vmk1", "", ""),
			static("vmk2", "10.0.0.5", ""),
			static("vmk3", "10.0.0.0/24", ""),
			static("vmk4", "10.0.0.255/24", ""),
			static("vmk5", "fd00::1/64", ""),
			static("vmk6", "127.0.0.1/8", ""),
			static("vmk7", "224.0.0.5/24", ""),
			static("vmk8", "0.0.0.0/24", ""),
			static("vmk9", "10.0.0.5/0", ""),
			static("vmk10", "250.0.0.1/8", ""),
			static("vmk11", "10.9.9.9/24", ""),
			static("vmk12", "10.9.9.9/16", ""),
		}, []field{
			{"vmk1", "ipv4.address", ""}, {"vmk2", "ipv4.address", "10.0.0.5"}, {"vmk3", "ipv4.address", "10.0.0.0/24"},
			{"vmk4", "ipv4.address", "10.0.0.255/24"}, {"vmk5", "ipv4.address", "fd00::1/64"}, {"vmk6", "ipv4.address", "127.0.0.1/8"},
			{"vmk7", "ipv4.address", "224.0.0.5/24"}, {"vmk8", "ipv4.address", "0.0.0.0/24"}, {"vmk9", "ipv4.address", "10.0.0.5/0"},
			{"vmk10", "ipv4.address", "250.0.0.1/8"}, {"vmk12", "ipv4.address", "10.9.9.9/16"},
		}},
		{"gateways", []api.VMKNIC{
			static("vmk1", "10.0.0.5/24", "10.0.1.1"),
			static("vmk2", "10.0.2.5/24", "10.0.2.5"),
			static("vmk3", "10.0.3.5/24", "10.0.3.0"),
			static("vmk4", "10.0.4.5/24", "10.0.4.255"),
			static("vmk5", "10.0.5.5/24", "gw"),
			static("vmk6", "10.0.6.5/32", "10.0.6.1"),
		}, []field{
			{"vmk1", "ipv4.gateway", "10.0.1.1"}, {"vmk2", "ipv4.gateway", "10.0.2.5"}, {"vmk3", "ipv4.gateway", "10.0.3.0"},
			{"vmk4", "ipv4.gateway", "10.0.4.255"}, {"vmk5", "ipv4.gateway", "gw"}, {"vmk6", "ipv4.gateway", "10.0.6.1"},
		}},
		{"one default gateway", []api.VMKNIC{static("vmk1", "10.0.0.5/24", "10.0.0.1"), static("vmk2", "10.0.1.5/24", "10.0.1.1")},
			[]field{{"vmk2", "ipv4.gateway", "10.0.1.1"}}},
		{"address outside static mode", []api.VMKNIC{
			with(dhcp("vswif0"), func(s *api.VMKNIC) { s.IPv4.Address = "10.0.0.5/24"; s.IPv4.Gateway = "10.0.0.1" }),
			{Name: "vmk1", PortGroup: "x", IPv4: api.VMKIPv4{Mode: "none", Gateway: "10.0.0.1"}},
		}, []field{{"vswif0", "ipv4.address", "10.0.0.5/24"}, {"vswif0", "ipv4.gateway", "10.0.0.1"}, {"vmk1", "ipv4.gateway", "10.0.0.1"}}},
		{"services", []api.VMKNIC{
			dhcp("vswif0", "management", "vsm-control"),
			with(static("vmk1", "10.0.0.5/24", ""), func(s *api.VMKNIC) { s.Services = []string{"management", "nfs", "nfs", "vMotion"} }),
			with(static("vmk2", "10.0.0.6/24", ""), func(s *api.VMKNIC) { s.Services = []string{"vsm-control"} }),
		}, []field{{"vmk1", "services", "management"}, {"vmk1", "services", "nfs"}, {"vmk1", "services", "vMotion"}, {"vmk2", "services", "vsm-control"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := vmknic.Validate(tc.specs)
			if diff := cmp.Diff(tc.want, fieldErrors(t, err)); diff != "" {
				t.Errorf("Validate: field errors (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
}

func TestValidateDuplicateMACs(t *testing.T) {
	a, b := static("vmk1", "10.0.0.5/24", ""), static("vmk2", "10.0.0.6/24", "")
	a.MAC, b.MAC = "00:50:56:00:00:01", "00:50:56:00:00:01"
	b.MAC = strings.ToUpper(b.MAC)
	got := fieldErrors(t, vmknic.Validate([]api.VMKNIC{a, b}))
	if want := []field{{"vmk2", "mac", b.MAC}}; !cmp.Equal(got, want) {
		t.Errorf("Validate(same MAC twice) = %v, want %v", got, want)
	}
	var fe *vmknic.FieldError
	if err := vmknic.Validate([]api.VMKNIC{a, b}); !errors.As(err, &fe) || !strings.Contains(fe.Error(), "vmk2") {
		t.Errorf("Validate(same MAC twice) = %v, want a *FieldError naming vmk2", err)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("vmk1", "PG", "00:50:56:00:00:01", 1500, "static", "10.0.0.5/24", "10.0.0.1", "nfs")
	f.Add("vswif0", "Management Network", "", 0, "dhcp", "", "", "management")
	f.Add("vmk2", "x", "", 9000, "none", "", "", "")
	f.Fuzz(func(t *testing.T, name, pg, mac string, mtu int, mode, addr, gw, svc string) {
		spec := api.VMKNIC{Name: name, PortGroup: pg, MAC: mac, MTU: mtu, IPv4: api.VMKIPv4{Mode: mode, Address: addr, Gateway: gw}}
		if svc != "" {
			spec.Services = strings.Split(svc, ",")
		}
		specs := []api.VMKNIC{spec}
		if err := vmknic.Validate(specs); err != nil {
			if !errors.Is(err, vmknic.ErrInvalid) {
				t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Whatever is valid can be planned from scratch and then plans
		// nothing more.
		specs = vmknic.AssignMACs(specs, vmknic.Host{UUID: "fuzz"})
		d := vmknic.Desired(specs, vmknic.Runtime{})
		if len(d.NICs) != 1 || d.NICs[0].MAC == "" || d.NICs[0].MTU < vmknic.MinMTU {
			t.Fatalf("Desired(%+v) = %+v", spec, d)
		}
		if plan, err := vmknic.Plan(d, vmknic.KernelState{}); err != nil || len(plan) == 0 {
			t.Fatalf("Plan from nothing = %v, %v", plan, err)
		}
	})
}
