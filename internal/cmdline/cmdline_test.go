package cmdline

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplit(t *testing.T) {
	got := Split(`console=ttyS0 quiet flashvisor.hostname=esx1 foo="a b c" x=`)
	want := map[string]string{"console": "ttyS0", "quiet": "", "flashvisor.hostname": "esx1", "foo": "a b c", "x": ""}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Split mismatch (-want +got):\n%s", d)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Config
	}{
		{"console=ttyS0", Config{}},
		{"flashvisor.hostname=esx1.lab flashvisor.mgmt=dhcp flashvisor.mgmtnic=eth0",
			Config{Hostname: "esx1.lab", Mgmt: &Mgmt{DHCP: true}, MgmtNIC: "eth0"}},
		{"flashvisor.mgmt=10.0.0.5/24,10.0.0.1 flashvisor.mgmtvlan=12 flashvisor.token=0123456789abcdef",
			Config{Mgmt: &Mgmt{Address: netip.MustParsePrefix("10.0.0.5/24"), Gateway: netip.MustParseAddr("10.0.0.1")}, MgmtVLAN: 12, Token: "0123456789abcdef"}},
		{"flashvisor.initstate=/dev/vda flashvisor.shell=1 flashvisor.ntp=a.pool,b.pool flashvisor.syslog=10.0.0.9:514",
			Config{InitState: "/dev/vda", Shell: true, NTP: []string{"a.pool", "b.pool"}, Syslog: "10.0.0.9:514"}},
	} {
		got, err := Parse(tc.line)
		if err != nil {
			t.Errorf("Parse(%q) error: %v", tc.line, err)
			continue
		}
		if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tc.line, d)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, mention string }{
		{"flashvisor.hostname=-bad", "flashvisor.hostname"},
		{"flashvisor.mgmt=10.0.0.5", "flashvisor.mgmt"},
		{"flashvisor.mgmt=10.0.0.5/24,192.168.1.1", "not in"},
		{"flashvisor.mgmtvlan=4095", "VLAN"},
		{"flashvisor.initstate=vda", "/dev/"},
		{"flashvisor.hostnmae=x", "unknown key"},
		{"flashvisor.shell=maybe", "true or false"},
	} {
		_, err := Parse(tc.line)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid mentioning %q", tc.line, err, tc.mention)
		}
	}
}

func TestParseRedactsToken(t *testing.T) {
	_, err := Parse("flashvisor.token=short")
	if err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("Parse(bad token) = %v, want an error that does not contain the token", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("console=ttyS0 flashvisor.mgmt=10.0.0.5/24,10.0.0.1 flashvisor.hostname=a")
	f.Add(`flashvisor.ntp="a, b" flashvisor.mgmt=dhcp`)
	f.Fuzz(func(t *testing.T, line string) {
		c, err := Parse(line)
		if err != nil {
			return
		}
		if c.Mgmt != nil {
			if _, err := ParseMgmt(c.Mgmt.String()); err != nil {
				t.Errorf("ParseMgmt(%q) of a parsed value failed: %v", c.Mgmt.String(), err)
			}
		}
	})
}

func TestParseVSMKeys(t *testing.T) {
	c, err := Parse("flashvisor.vsm.domain=18 flashvisor.vsm.role=primary flashvisor.vsm.advertise=10.0.2.2:2001,10.0.2.16:2001 flashvisor.vsm.peer=10.0.2.17:2002 flashvisor.vsm.controlnic=eth0 flashvisor.vsm.packetnic=eth2")
	if err != nil || c.VSMDomain != 18 || c.VSMRole != "primary" || len(c.VSMAdvertise) != 2 || c.VSMPeer != "10.0.2.17:2002" || c.VSMControlNIC != "eth0" || c.VSMPacketNIC != "eth2" {
		t.Errorf("Parse(vsm keys) = %+v, %v", c, err)
	}
	for _, bad := range []string{"flashvisor.vsm.domain=0", "flashvisor.vsm.domain=4096", "flashvisor.vsm.role=boss",
		"flashvisor.vsm.advertise=10.0.2.2", "flashvisor.vsm.peer=x", "flashvisor.vsm.controlnic=a/b", "flashvisor.vsm.packetnic=a:b"} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
