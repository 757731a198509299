package netseam

import (
	"fmt"
	"strings"
	"testing"
)

// The names are how a restarted (or upgraded) hostd finds its links again:
// changing the derivation orphans every bridge and tap on upgrade, so the
// exact values are pinned here.
func TestNamesStable(t *testing.T) {
	tests := []struct{ got, want string }{
		{BridgeName("VM Network"), "fvpg-rh5zoovesp"},
		{BridgeName("vlan-100 (prod)"), "fvpg-5xktxcito3"},
		{TapName("web01", 0), "fvtxycnhztx4n0"},
		{TapName("web01", 9), "fvtxycnhztx4n9"},
		{TapName("web01", 99), "fvtxycnhztx4n99"},
		{vlanName(4094), "fvvlan4094"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("name = %q, want %q", tt.got, tt.want)
		}
	}
}

func TestNamesFitAndOwned(t *testing.T) {
	long := strings.Repeat("x", MaxNameLen)
	for _, n := range []string{BridgeName(long), BridgeName("a"), TapName(long, MaxNIC), TapName("a", 0), vlanName(MaxVLAN)} {
		if len(n) > maxIfName {
			t.Errorf("%q is %d bytes, more than IFNAMSIZ-1 = %d", n, len(n), maxIfName)
		}
		if !ours(n) {
			t.Errorf("ours(%q) = false, want true", n)
		}
	}
	for _, n := range []string{"eth0", "br0", "fvp", "tap0", "vnet3"} {
		if ours(n) {
			t.Errorf("ours(%q) = true, want false", n)
		}
	}
}

// Distinct inputs give distinct names, across a population far larger than a
// host's.
func TestNamesDistinct(t *testing.T) {
	const n = 200000
	bridges := map[string]string{}
	taps := map[string]string{}
	for i := range n {
		pg := fmt.Sprintf("pg-%d", i)
		if other, dup := bridges[BridgeName(pg)]; dup {
			t.Fatalf("BridgeName(%q) = BridgeName(%q) = %s", pg, other, BridgeName(pg))
		}
		bridges[BridgeName(pg)] = pg
		vm := fmt.Sprintf("vm%d", i)
		if other, dup := taps[TapName(vm, 0)]; dup {
			t.Fatalf("TapName(%q, 0) = TapName(%q, 0) = %s", vm, other, TapName(vm, 0))
		}
		taps[TapName(vm, 0)] = vm
	}
	// vNIC indexes of one VM never meet either ("n1"+"0" vs "n10" cannot
	// happen: the index is the whole suffix after the last 'n').
	seen := map[string]int{}
	for nic := 0; nic <= MaxNIC; nic++ {
		name := TapName("web01", nic)
		if other, dup := seen[name]; dup {
			t.Fatalf("TapName(web01, %d) = TapName(web01, %d)", nic, other)
		}
		seen[name] = nic
	}
}

func TestTapMAC(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"00:50:56:01:02:03", "fe:50:56:01:02:03", true},
		{"00-50-56-AA-BB-CC", "fe:50:56:aa:bb:cc", true},
		{"00:50:56:01:02", "", false},
		{"00:00:00:00:00:00:00:01", "", false},
		{"bogus", "", false},
	}
	for _, tt := range tests {
		got, err := tapMAC(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("tapMAC(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestAliasRoundTrip(t *testing.T) {
	p := Port{VM: "web 01", NIC: 3, PortGroup: "VM Network", MAC: "00:50:56:01:02:03"}
	got, ok := parseAlias(p.alias())
	if !ok || got != p {
		t.Errorf("parseAlias(%q) = %+v, %v; want %+v, true", p.alias(), got, ok, p)
	}
	for _, a := range []string{"", "VM Network", tapAliasPrefix + "{", tapAliasPrefix + `{"vm":"","nic":0,"pg":"x","mac":"00:50:56:00:00:01"}`} {
		if p, ok := parseAlias(a); ok {
			t.Errorf("parseAlias(%q) = %+v, true; want false", a, p)
		}
	}
}
