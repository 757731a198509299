package vmknic

import (
	"fmt"
	"testing"
)

func TestVMKIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		ok   bool
	}{
		{"vswif0", 0, true}, {"vmk1", 1, true}, {"vmk10", 10, true}, {"vmk255", 255, true},
		{"vmk0", 0, false}, {"vmk256", 0, false}, {"vmk01", 0, false}, {"vmk", 0, false},
		{"vmk-1", 0, false}, {"vmk+1", 0, false}, {"vmk1a", 0, false}, {"vswif1", 0, false},
		{"VMK1", 0, false}, {"", 0, false}, {"vmk0001", 0, false},
	} {
		n, ok := vmkIndex(tc.name)
		if n != tc.n || ok != tc.ok {
			t.Errorf("vmkIndex(%q) = %d, %t, want %d, %t", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}

func TestSwitchportNames(t *testing.T) {
	names := []string{VswifName}
	for i := 1; i <= MaxVMK; i++ {
		names = append(names, fmt.Sprintf("vmk%d", i))
	}
	seen := map[string]bool{}
	for _, n := range names {
		sp := SwitchportName(n)
		if len(sp) > 15 {
			t.Errorf("SwitchportName(%q) = %q, longer than IFNAMSIZ-1", n, sp)
		}
		if !isSwitchportName(sp) || isVMKName(sp) || seen[sp] {
			t.Errorf("SwitchportName(%q) = %q: not recognised, or taken", n, sp)
		}
		seen[sp] = true
	}
	if got := SwitchportName("vmk1"); got != "fvk-vmk1" {
		t.Errorf(`SwitchportName("vmk1") = %q, want "fvk-vmk1"`, got)
	}
}

func TestVMKOrder(t *testing.T) {
	if !vmkLess("vswif0", "vmk1") || !vmkLess("vmk2", "vmk10") || vmkLess("vmk10", "vmk9") {
		t.Error("vmknic order is not vswif0, vmk1, vmk2, ..., vmk10")
	}
}
