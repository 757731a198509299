package vlanset

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The VEM's tests (vem/vlan_test.go) cover parsing and formatting at
// length; these cover what the VSM's configuration adds.
func TestSetOps(t *testing.T) {
	s, err := Parse("100-102, 200")
	if err != nil {
		t.Fatal(err)
	}
	s.Remove(101)
	if got := s.List(); !slices.Equal(got, []int{100, 102, 200}) || s.String() != "100,102,200" {
		t.Errorf("after Remove(101): %v %q", got, s.String())
	}
	if all, err := Parse("ALL"); err != nil || !all.IsAll() || s.IsAll() {
		t.Errorf(`Parse("ALL") = %v, %v; IsAll wrong`, all.String(), err)
	}
	if _, err := Parse(strings.Repeat("1,", 3000)); !errors.Is(err, ErrList) {
		t.Errorf("Parse(too long) = %v, want ErrList", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1", "1-4094", "all", "none", "10-20,30", "5-1", "0", "4095", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		again, err := Parse(s.String())
		if err != nil || again != s {
			t.Fatalf("Parse(%q).String() = %q does not parse back to the same set: %v", in, s.String(), err)
		}
	})
}
