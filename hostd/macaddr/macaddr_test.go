package macaddr

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
)

func gen(mac string) api.NIC    { return api.NIC{AddressType: api.MACGenerated, MAC: mac} }
func static(mac string) api.NIC { return api.NIC{AddressType: api.MACStatic, MAC: mac} }

// rnd returns a reader that yields the given 3-byte draws in order.
func rnd(draws ...string) *bytes.Reader {
	var b []byte
	for _, d := range draws {
		b = append(b, d...)
	}
	return bytes.NewReader(b)
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		draw string
		want string
	}{
		{"\x00\x00\x00", "00:50:56:40:00:00"},
		{"\xff\xff\xff", "00:50:56:7f:ff:ff"},
		{"\x80\x12\x34", "00:50:56:40:12:34"}, // the top bits never leave 40-7F
		{"\x3f\xab\xcd", "00:50:56:7f:ab:cd"},
	}
	for _, tt := range tests {
		got, err := Generate(rnd(tt.draw))
		if err != nil || got != tt.want {
			t.Errorf("Generate(% x) = %q, %v, want %q", tt.draw, got, err, tt.want)
		}
	}
	if _, err := Generate(rnd("\x00")); err == nil {
		t.Errorf("Generate(short reader) = nil error, want one")
	}
}

func TestCheckStatic(t *testing.T) {
	tests := []struct {
		mac  string
		want error
	}{
		{"00:50:56:00:00:00", nil},
		{"00:50:56:3f:ff:ff", nil},
		{"00:50:56:3F:FF:FF", nil},
		{"00:50:56:40:00:00", ErrStaticRange},
		{"00:50:56:80:00:01", ErrStaticRange},
		{"00:0c:29:00:00:01", ErrStaticRange},
		{"52:54:00:12:34:56", ErrStaticRange},
		{"00-50-56-00-00-01", ErrSyntax},
		{"0050.5600.0001", ErrSyntax},
		{"00:50:56:00:00", ErrSyntax},
		{"zz:50:56:00:00:01", ErrSyntax},
		{"", ErrSyntax},
	}
	for _, tt := range tests {
		if err := CheckStatic(tt.mac); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("CheckStatic(%q) = %v, want %v", tt.mac, err, tt.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	if got, err := Canonical("00:50:56:AB:cd:EF"); err != nil || got != "00:50:56:ab:cd:ef" {
		t.Errorf("Canonical(mixed case) = %q, %v, want 00:50:56:ab:cd:ef", got, err)
	}
	if _, err := Canonical("01:00:5e:00:00:01"); !errors.Is(err, ErrMulticast) {
		t.Errorf("Canonical(multicast) = %v, want ErrMulticast", err)
	}
}

func TestAssign(t *testing.T) {
	host := []VMNICs{
		{VM: "db01", NICs: []api.NIC{gen("00:50:56:40:00:01"), static("00:50:56:00:00:01")}},
		{VM: "off02", NICs: []api.NIC{gen("00:50:56:40:00:02")}},
	}
	tests := []struct {
		name        string
		nics        []api.NIC
		random      []string
		want        []string
		wantChanges []Change
	}{
		{"fills in a missing generated MAC",
			[]api.NIC{gen("")}, []string{"\x00\x12\x34"},
			[]string{"00:50:56:40:12:34"},
			[]Change{{VM: "web01", NIC: 0, New: "00:50:56:40:12:34", Reason: "new"}}},
		{"keeps its generated MAC (moved or re-registered VM)",
			[]api.NIC{gen("00:50:56:4A:BC:DE")}, nil,
			[]string{"00:50:56:4a:bc:de"}, nil},
		{"keeps a generated MAC of a vCenter-like manager",
			[]api.NIC{gen("00:50:56:80:00:09")}, nil,
			[]string{"00:50:56:80:00:09"}, nil},
		{"regenerates a generated MAC another VM holds",
			[]api.NIC{gen("00:50:56:40:00:01")}, []string{"\x00\x00\x07"},
			[]string{"00:50:56:40:00:07"},
			[]Change{{VM: "web01", NIC: 0, Old: "00:50:56:40:00:01", New: "00:50:56:40:00:07", Reason: "conflict with db01 ethernet0"}}},
		{"regenerates a generated MAC that equals another VM's static one",
			[]api.NIC{gen("00:50:56:00:00:01")}, []string{"\x00\x00\x08"},
			[]string{"00:50:56:40:00:08"},
			[]Change{{VM: "web01", NIC: 0, Old: "00:50:56:00:00:01", New: "00:50:56:40:00:08", Reason: "conflict with db01 ethernet1"}}},
		{"regenerates a MAC from another hypervisor",
			[]api.NIC{gen("00:0c:29:12:34:56")}, []string{"\x00\x00\x09"},
			[]string{"00:50:56:40:00:09"},
			[]Change{{VM: "web01", NIC: 0, Old: "00:0c:29:12:34:56", New: "00:50:56:40:00:09", Reason: "outside 00:50:56"}}},
		{"draws again when the random MAC is taken",
			[]api.NIC{gen("")}, []string{"\x00\x00\x01", "\x00\x00\x02", "\x00\x00\x03"},
			[]string{"00:50:56:40:00:03"},
			[]Change{{VM: "web01", NIC: 0, New: "00:50:56:40:00:03", Reason: "new"}}},
		{"a generated MAC yields to a static one of the same VM, whatever the order",
			[]api.NIC{gen("00:50:56:00:00:05"), static("00:50:56:00:00:05")}, []string{"\x00\x00\x0a"},
			[]string{"00:50:56:40:00:0a", "00:50:56:00:00:05"},
			[]Change{{VM: "web01", NIC: 0, Old: "00:50:56:00:00:05", New: "00:50:56:40:00:0a", Reason: "conflict with web01 ethernet1"}}},
		{"two vNICs of one VM with the same generated MAC",
			[]api.NIC{gen("00:50:56:40:00:10"), gen("00:50:56:40:00:10")}, []string{"\x00\x00\x11"},
			[]string{"00:50:56:40:00:10", "00:50:56:40:00:11"},
			[]Change{{VM: "web01", NIC: 1, Old: "00:50:56:40:00:10", New: "00:50:56:40:00:11", Reason: "conflict with web01 ethernet0"}}},
		{"free static MAC accepted", []api.NIC{static("00:50:56:3f:00:01")}, nil,
			[]string{"00:50:56:3f:00:01"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := VMNICs{VM: "web01", NICs: tt.nics}
			before := append([]api.NIC(nil), tt.nics...)
			got, changes, err := Assign(host, vm, rnd(tt.random...))
			if err != nil {
				t.Fatalf("Assign(%v) = %v, want no error", tt.nics, err)
			}
			var macs []string
			for _, n := range got {
				macs = append(macs, n.MAC)
			}
			if diff := cmp.Diff(tt.want, macs); diff != "" {
				t.Errorf("Assign(%v) MACs mismatch (-want +got):\n%s", tt.nics, diff)
			}
			if diff := cmp.Diff(tt.wantChanges, changes); diff != "" {
				t.Errorf("Assign(%v) changes mismatch (-want +got):\n%s", tt.nics, diff)
			}
			if diff := cmp.Diff(before, tt.nics); diff != "" {
				t.Errorf("Assign modified its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestAssignRefuses(t *testing.T) {
	host := []VMNICs{{VM: "db01", NICs: []api.NIC{gen("00:50:56:40:00:01"), static("00:50:56:00:00:01"), gen("00:50:56:00:00:09")}}}
	tests := []struct {
		name string
		nics []api.NIC
		want []string // each must appear in the error
		is   error
	}{
		{"static MAC held by another VM's static vNIC", []api.NIC{static("00:50:56:00:00:01")},
			[]string{"web01 ethernet0: static 00:50:56:00:00:01: MAC address already in use by db01 ethernet1"}, ErrConflict},
		{"static MAC held by another VM's generated vNIC", []api.NIC{static("00:50:56:00:00:09")},
			[]string{"web01 ethernet0: static 00:50:56:00:00:09: MAC address already in use by db01 ethernet2"}, ErrConflict},
		{"static MAC outside the static range", []api.NIC{static("00:50:56:40:00:99")},
			[]string{"web01 ethernet0: 00:50:56:40:00:99: static MAC addresses must be within"}, ErrStaticRange},
		{"two static vNICs, one MAC", []api.NIC{static("00:50:56:00:00:02"), static("00:50:56:00:00:02")},
			[]string{"web01 ethernet1: static 00:50:56:00:00:02: MAC address already in use by web01 ethernet0"}, ErrConflict},
		{"all problems at once", []api.NIC{static("00:50:56:00:00:01"), static("bogus")},
			[]string{"by db01 ethernet1", `web01 ethernet1: "bogus": not a MAC address`}, ErrSyntax},
		{"broken random source", []api.NIC{gen("")},
			[]string{"web01 ethernet0: generate MAC: EOF"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changes, err := Assign(host, VMNICs{VM: "web01", NICs: tt.nics}, rnd())
			if err == nil {
				t.Fatalf("Assign(%v) = %v, %v, want an error", tt.nics, got, changes)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Assign(%v) error = %q, want it to contain %q", tt.nics, err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Assign(%v) error = %v, want errors.Is %v", tt.nics, err, tt.is)
			}
		})
	}
}

func TestAssignExhausted(t *testing.T) {
	// A random source that always draws the same taken MAC.
	host := []VMNICs{{VM: "db01", NICs: []api.NIC{gen("00:50:56:40:00:00")}}}
	zeros := bytes.NewReader(make([]byte, 3*maxAttempts))
	_, _, err := Assign(host, VMNICs{VM: "web01", NICs: []api.NIC{gen("")}}, zeros)
	if !errors.Is(err, ErrExhausted) {
		t.Errorf("Assign(always the same draw) = %v, want ErrExhausted", err)
	}
}

func TestConflicts(t *testing.T) {
	vms := []VMNICs{
		{VM: "a", NICs: []api.NIC{gen("00:50:56:40:00:01"), static("00:50:56:00:00:01")}},
		{VM: "b", NICs: []api.NIC{gen("00:50:56:40:00:02"), gen("")}},
		{VM: "c", NICs: []api.NIC{static("00:50:56:00:00:01"), gen("00:50:56:40:00:01"), gen("")}},
	}
	want := []Conflict{
		{MAC: "00:50:56:40:00:01", Holders: []string{"a ethernet0", "c ethernet1"}},
		{MAC: "00:50:56:00:00:01", Holders: []string{"a ethernet1", "c ethernet0"}},
	}
	if diff := cmp.Diff(want, Conflicts(vms)); diff != "" {
		t.Errorf("Conflicts mismatch (-want +got):\n%s", diff)
	}
	if got := want[0].String(); got != "00:50:56:40:00:01 used by a ethernet0, c ethernet1" {
		t.Errorf("Conflict.String() = %q", got)
	}
}
