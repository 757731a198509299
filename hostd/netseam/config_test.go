package netseam

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
)

func TestCheckPortGroup(t *testing.T) {
	tests := []struct {
		pg api.PortGroup
		ok bool
	}{
		{api.PortGroup{Name: "VM Network"}, true},
		{api.PortGroup{Name: "vlan-100 (prod)", VLAN: 100}, true},
		{api.PortGroup{Name: "a", VLAN: 1}, true},
		{api.PortGroup{Name: "a", VLAN: 4094}, true},
		{api.PortGroup{Name: "a", HostAddress: "10.0.0.1/24"}, true},
		{api.PortGroup{Name: "a", HostAddress: "fd00::1/64"}, true},
		{api.PortGroup{Name: strings.Repeat("a", MaxNameLen)}, true},
		{api.PortGroup{Name: ""}, false},
		{api.PortGroup{Name: strings.Repeat("a", MaxNameLen+1)}, false},
		{api.PortGroup{Name: " lead"}, false},
		{api.PortGroup{Name: "-lead"}, false},
		{api.PortGroup{Name: "trail "}, false},
		{api.PortGroup{Name: "a/b"}, false},
		{api.PortGroup{Name: "a\nb"}, false},
		{api.PortGroup{Name: "a", VLAN: -1}, false},
		{api.PortGroup{Name: "a", VLAN: 4095}, false},
		{api.PortGroup{Name: "a", HostAddress: "10.0.0.1"}, false},
		{api.PortGroup{Name: "a", HostAddress: "0.0.0.0/0"}, false},
		{api.PortGroup{Name: "a", HostAddress: "224.0.0.1/4"}, false},
		{api.PortGroup{Name: "a", HostAddress: "fe80::1/64"}, false},
	}
	for _, tt := range tests {
		err := CheckPortGroup(tt.pg)
		if (err == nil) != tt.ok {
			t.Errorf("CheckPortGroup(%+v) = %v, want ok=%v", tt.pg, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckPortGroup(%+v) = %v, want an ErrInvalid", tt.pg, err)
		}
	}
}

func TestCheckPortGroups(t *testing.T) {
	a0 := api.PortGroup{Name: "a"}
	b0 := api.PortGroup{Name: "b"}
	b5 := api.PortGroup{Name: "b", VLAN: 5}
	c5 := api.PortGroup{Name: "c", VLAN: 5}
	tests := []struct {
		name   string
		pgs    []api.PortGroup
		uplink string
		want   error
	}{
		{"empty", nil, "", nil},
		{"distinct", []api.PortGroup{a0, b5}, "eth0", nil},
		{"duplicate name", []api.PortGroup{a0, a0}, "", ErrExists},
		{"same VLAN without uplink", []api.PortGroup{a0, b0}, "", nil},
		{"same VLAN 0 on uplink", []api.PortGroup{a0, b0}, "eth0", ErrInvalid},
		{"same VLAN 5 on uplink", []api.PortGroup{b5, c5}, "eth0", ErrInvalid},
	}
	for _, tt := range tests {
		err := checkPortGroups(tt.pgs, tt.uplink)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: checkPortGroups = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "portgroups.json")
	got, err := loadConfig(path)
	if err != nil || got != nil {
		t.Fatalf("loadConfig(missing) = %v, %v; want nil, nil", got, err)
	}
	pgs := []api.PortGroup{
		{Name: "VM Network"},
		{Name: "prod", VLAN: 100, HostAddress: "10.1.0.1/24"},
	}
	if err := saveConfig(path, pgs); err != nil {
		t.Fatal(err)
	}
	got, err = loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(pgs, got); d != "" {
		t.Errorf("loadConfig after saveConfig (-want +got):\n%s", d)
	}
	if err := saveConfig(path, nil); err != nil {
		t.Fatal(err)
	}
	if got, err = loadConfig(path); err != nil || len(got) != 0 {
		t.Errorf("loadConfig(empty list) = %v, %v; want [], nil", got, err)
	}
}

func TestConfigCorrupt(t *testing.T) {
	tests := map[string]string{
		"not JSON":       "{",
		"empty":          "",
		"unknown field":  `{"version":1,"port_groups":[],"colour":"red"}`,
		"future version": `{"version":2,"port_groups":[]}`,
		"no version":     `{"port_groups":[]}`,
		"bad VLAN":       `{"version":1,"port_groups":[{"name":"a","vlan":5000}]}`,
		"duplicate":      `{"version":1,"port_groups":[{"name":"a","vlan":0},{"name":"a","vlan":1}]}`,
		"trailing data":  `{"version":1,"port_groups":[]} {}`,
	}
	for name, content := range tests {
		path := filepath.Join(t.TempDir(), "portgroups.json")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := loadConfig(path)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: loadConfig = %v, want ErrCorrupt", name, err)
		}
		if err != nil && !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("%s: file changed to %q", name, b)
		}
		// New refuses to start on it and leaves it alone too.
		if _, err := New(Options{ConfigFile: path, Kernel: newFakeKernel()}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: New = %v, want ErrCorrupt", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("%s: New changed the file to %q", name, b)
		}
	}
}
