package guest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	dhcp := &cmdline.Mgmt{DHCP: true}
	def := Config{Name: "fvguest", IP: dhcp, Console: DefaultConsole}
	with := func(f func(*Config)) Config { c := def; f(&c); return c }
	for _, tc := range []struct {
		line    string
		want    Config
		wantErr string
	}{
		{"console=ttyS0,115200 panic=-1", def, ""},
		{"fvguest.name=vm-1.a_b", with(func(c *Config) { c.Name = "vm-1.a_b" }), ""},
		{"fvguest.ip=dhcp", def, ""},
		{"fvguest.ip=none", with(func(c *Config) { c.IP = nil }), ""},
		{"fvguest.ip=192.168.100.11/24", with(func(c *Config) {
			c.IP = &cmdline.Mgmt{Address: netip.MustParsePrefix("192.168.100.11/24")}
		}), ""},
		{"fvguest.ip=192.168.100.11/24,192.168.100.1", with(func(c *Config) {
			c.IP = &cmdline.Mgmt{Address: netip.MustParsePrefix("192.168.100.11/24"), Gateway: netip.MustParseAddr("192.168.100.1")}
		}), ""},
		{"fvguest.disk=vdb fvguest.console=/dev/hvc0", with(func(c *Config) { c.Disk, c.Console = "/dev/vdb", "/dev/hvc0" }), ""},
		// Bad keys keep their defaults, the others still apply.
		{"fvguest.ip=10.0.0.1 fvguest.name=ok", with(func(c *Config) { c.Name = "ok" }), "fvguest.ip="},
		{`fvguest.name="two words"`, def, "fvguest.name="},
		{"fvguest.name=", def, "fvguest.name="},
		{"fvguest.disk=../etc/passwd", def, "fvguest.disk="},
		{"fvguest.console=/tmp/x", def, "fvguest.console="},
	} {
		got, err := ParseConfig(tc.line)
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("ParseConfig(%q) (-want +got):\n%s", tc.line, diff)
		}
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ParseConfig(%q) error = %v, want %q", tc.line, err, tc.wantErr)
		}
	}
}

func TestReadyMarker(t *testing.T) {
	for _, tc := range []struct {
		r    Ready
		want string
	}{
		{Ready{"g1", "52:54:00:12:34:56", "10.0.2.15"}, "FVGUEST READY name=g1 mac=52:54:00:12:34:56 ip=10.0.2.15"},
		{Ready{"g2", "none", "none"}, "FVGUEST READY name=g2 mac=none ip=none"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}
