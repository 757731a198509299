package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

func TestParseVLANs(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "100", want: "100"},
		{in: "102,100-101, 200", want: "100-102,200"},
		{in: "all", want: "1-4094"},
		{in: "none", want: "none"},
		{in: "1-4094", want: "1-4094"},
		{in: "", bad: true},
		{in: "0", bad: true},
		{in: "4095", bad: true},
		{in: "10-5", bad: true},
		{in: "1,,2", bad: true},
		{in: "x", bad: true},
	} {
		s, err := ParseVLANs(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrVLANList) {
				t.Errorf("ParseVLANs(%q) = %v, want an ErrVLANList error", tc.in, err)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("ParseVLANs(%q) = %q, %v, want %q", tc.in, s.String(), err, tc.want)
		}
	}
}

func validConfig() Config {
	c := Default()
	c.SVSDomain.ID = 34
	c.VLANs[100] = "WEB"
	c.VLANs[260] = ""
	c.PutProfile(Profile{Name: "WEB", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true})
	c.PutProfile(Profile{Name: "UPLINK", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "100,260",
		SystemVLANs: "260", CapabilityUplink: true, Enabled: true, ChannelGroup: api.ChannelMACPinning})
	c.HostModules["80c34566-7e89-b601-b4f9-001a64dc9054"] = 3
	return c
}

func TestValidate(t *testing.T) {
	ok := validConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(valid config) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"hostname", func(c *Config) { c.SwitchName = "bad name" }, `hostname "bad name"`},
		{"domain", func(c *Config) { c.SVSDomain.ID = 4096 }, "domain id 4096"},
		{"mode", func(c *Config) { c.SVSDomain.Mode = "L4" }, `svs mode "L4"`},
		{"L2 with interface", func(c *Config) { c.SVSDomain.Mode = api.SVSModeL2 }, "set in L2 mode"},
		{"vlan 1 missing", func(c *Config) { delete(c.VLANs, 1) }, "vlan 1: the default VLAN cannot be removed"},
		{"vlan 1 renamed", func(c *Config) { c.VLANs[1] = "x" }, "vlan 1: the default VLAN's name cannot be changed"},
		{"vlan range", func(c *Config) { c.VLANs[4095] = "" }, "vlan 4095: must be 1-4094"},
		{"unsorted", func(c *Config) { c.Profiles[0], c.Profiles[1] = c.Profiles[1], c.Profiles[0] }, "sorted by name"},
		{"system vlan not carried", func(c *Config) { c.Profile("WEB").SystemVLANs = "260" },
			"port-profile WEB: system vlan 260 is not carried by the profile"},
		{"uplink on veth", func(c *Config) { c.Profile("WEB").CapabilityUplink = true }, "capability uplink is only for ethernet"},
		{"port security on eth", func(c *Config) { c.Profile("UPLINK").PortSecurity.Enabled = true }, "port-security is only for vethernet"},
		{"max-ports on eth", func(c *Config) { c.Profile("UPLINK").MaxPorts = 3 }, "max-ports is only for vethernet"},
		{"channel on veth", func(c *Config) { c.Profile("WEB").ChannelGroup = api.ChannelLACP }, "channel-group is only for ethernet"},
		{"rate", func(c *Config) { c.Profile("WEB").Ingress = &api.RateLimit{BitsPerSecond: 10} }, "rate-limit input 10 bps"},
		{"pin slot", func(c *Config) { c.HostModules["80c34566-7e89-b601-b4f9-001a64dc9055"] = 67 }, "vem 67: module must be 3-66"},
		{"pin twice", func(c *Config) { c.HostModules["80c34566-7e89-b601-b4f9-001a64dc9055"] = 3 }, "vem 3: pinned to both"},
		{"role", func(c *Config) { c.Redundancy = "" }, `system redundancy role ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok.Clone()
			tc.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	c := validConfig()
	c.Profile("WEB").Ingress = &api.RateLimit{BitsPerSecond: 1e6}
	d := c.Clone()
	d.VLANs[300] = ""
	d.HostModules["x"] = 9
	d.Profile("WEB").Ingress.BitsPerSecond = 2e6
	d.Profile("WEB").AccessVLAN = 200
	if diff := cmp.Diff(validConfigWithRate(), c); diff != "" {
		t.Errorf("changing a clone changed the original (-want +got):\n%s", diff)
	}
}

func validConfigWithRate() Config {
	c := validConfig()
	c.Profile("WEB").Ingress = &api.RateLimit{BitsPerSecond: 1e6}
	return c
}

func TestProfileVEM(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Profile
		want api.PortProfile
	}{
		{"access defaults", Profile{Name: "A", Type: api.ProfileVethernet, AllowedVLANs: "5", NativeVLAN: 5},
			api.PortProfile{Name: "A", Type: api.ProfileVethernet, Mode: api.ModeAccess, MaxPorts: DefaultMaxPorts}},
		{"trunk keeps trunk settings only", Profile{Name: "T", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AccessVLAN: 7,
			AllowedVLANs: "10-20", NativeVLAN: 10, SystemVLANs: "10", CapabilityUplink: true, Enabled: true, MaxPorts: 0},
			api.PortProfile{Name: "T", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "10-20", NativeVLAN: 10,
				SystemVLANs: "10", CapabilityUplink: true, Enabled: true}},
		{"port security and rates", Profile{Name: "P", Type: api.ProfileVethernet, AccessVLAN: 100, MaxPorts: 64, Shutdown: true,
			PortSecurity: PortSecurity{Enabled: true}, Egress: &api.RateLimit{BitsPerSecond: 1e6, BurstBytes: 9000}, Description: "d"},
			api.PortProfile{Name: "P", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, MaxPorts: 64, Shutdown: true,
				PortSecurity: &api.PortSecurity{MaxMACs: 1, Violation: api.ViolationShutdown},
				Egress:       &api.RateLimit{BitsPerSecond: 1e6, BurstBytes: 9000}, Description: "d"}},
		{"port security off keeps settings out", Profile{Name: "Q", Type: api.ProfileVethernet, PortSecurity: PortSecurity{Maximum: 5}},
			api.PortProfile{Name: "Q", Type: api.ProfileVethernet, Mode: api.ModeAccess, MaxPorts: DefaultMaxPorts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.in.VEM()); diff != "" {
				t.Errorf("VEM() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRender(t *testing.T) {
	c := validConfig()
	c.Profile("WEB").Ingress = &api.RateLimit{BitsPerSecond: 100e6, BurstBytes: 65536}
	c.Profile("WEB").PortGroup = "WEB"
	want := `version 1.0(1)
hostname vsm
system redundancy role standalone

vem 3
  host id 80c34566-7e89-b601-b4f9-001a64dc9054

vlan 1,100,260
vlan 100
  name WEB

port-profile type ethernet UPLINK
  capability uplink
  switchport mode trunk
  switchport trunk allowed vlan 100,260
  channel-group auto mode on mac-pinning
  no shutdown
  system vlan 260
  state enabled

port-profile type vethernet WEB
  port-group
  switchport mode access
  switchport access vlan 100
  rate-limit input 100 mbps burst 65536
  no shutdown
  state enabled

svs-domain
  domain id 34
  svs mode L3 interface mgmt0
`
	if diff := cmp.Diff(want, c.Render()); diff != "" {
		t.Errorf("Render() (-want +got):\n%s", diff)
	}
}

func TestFormatRate(t *testing.T) {
	for in, want := range map[api.RateLimit]string{
		{BitsPerSecond: 8000}:                  "8 kbps",
		{BitsPerSecond: 8001}:                  "8001 bps",
		{BitsPerSecond: 2e9, BurstBytes: 1500}: "2 gbps burst 1500",
		{BitsPerSecond: 1500000}:               "1500 kbps",
	} {
		if got := FormatRate(in); got != want {
			t.Errorf("FormatRate(%+v) = %q, want %q", in, got, want)
		}
	}
}

func TestSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "startup-config")
	c := validConfig()
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != c.Render() {
		t.Errorf("Save wrote %q, %v; want the rendered config", got, err)
	}
	if err := c.Save(filepath.Join(t.TempDir(), "missing", "f")); err == nil {
		t.Errorf("Save into a missing directory = nil, want an error")
	}
}

func TestProfileHelpers(t *testing.T) {
	var c Config
	for _, n := range []string{"b", "a", "c", "b"} {
		c.PutProfile(Profile{Name: n})
	}
	var names []string
	for _, p := range c.Profiles {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" {
		t.Errorf("PutProfile order (-want +got):\n%s", diff)
	}
	if !c.DeleteProfile("b") || c.DeleteProfile("b") || c.Profile("b") != nil || c.Profile("c") == nil {
		t.Errorf("DeleteProfile/Profile misbehave: %+v", c.Profiles)
	}
}
