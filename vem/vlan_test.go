package vem

import (
	"errors"
	"testing"
)

func TestParseVLANs(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means an error
	}{
		{"10-20,30", "10-20,30"},
		{" 1 , 3-4 ,2", "1-4"},
		{"4094", "4094"},
		{"all", "1-4094"},
		{"none", "none"},
		{"100-100", "100"},
		{"", ""},
		{"0", ""},
		{"4095", ""},
		{"20-10", ""},
		{"1,,2", ""},
		{"-5", ""},
		{"5-", ""},
		{"+5", ""},
		{"1-2-3", ""},
		{"00010", ""},
		{"abc", ""},
	} {
		got, err := ParseVLANs(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrVLANRange) {
				t.Errorf("ParseVLANs(%q) = %v, %v, want ErrVLANRange", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseVLANs(%q) = %v, %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestVLANSetOps(t *testing.T) {
	a, _ := ParseVLANs("1-10")
	b, _ := ParseVLANs("5-15")
	if got := a.Minus(b).String(); got != "1-4" {
		t.Errorf("Minus = %s, want 1-4", got)
	}
	if got := a.And(b).String(); got != "5-10" {
		t.Errorf("And = %s, want 5-10", got)
	}
	if got := a.Or(b).Len(); got != 15 {
		t.Errorf("Or.Len = %d, want 15", got)
	}
}

func FuzzParseVLANs(f *testing.F) {
	for _, s := range []string{"10-20,30", "all", "none", "1,4094", "0", "4095", "9-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseVLANs(s)
		if err != nil {
			return
		}
		again, err := ParseVLANs(set.String())
		if err != nil || again != set {
			t.Fatalf("ParseVLANs(%q).String() = %q does not parse back: %v", s, set.String(), err)
		}
		if set.Has(0) || set.Has(4095) {
			t.Fatalf("ParseVLANs(%q) has a reserved VLAN", s)
		}
	})
}
