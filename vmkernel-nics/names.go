package vmknic

import (
	"strconv"
	"strings"
)

// Names.
const (
	// VswifName is the management vmknic (ESXi's vmk0).
	VswifName = "vswif0"
	vmkPrefix = "vmk"
	// MaxVMK is the highest N of vmkN.
	MaxVMK = 255
	// switchportPrefix + vmknic name is the switch end of the veth pair
	// ("fvk-vmk255" is 10 bytes, within IFNAMSIZ-1). The VEM's own names
	// (fvvem0, fvvethN, fvpoN) never start with it.
	switchportPrefix = "fvk-"
	// aliasPrefix starts the alias (IFLA_IFALIAS) of every host end this
	// package creates: "fvvmk <port group>". The alias of the switch end
	// belongs to the VEM (it records its port there), so the mark is on
	// the host end.
	aliasPrefix = "fvvmk "
)

// SwitchportName is the kernel name of the switch end of vmknic name: the
// interface the caller gives the VEM as the vmknic's vEth port
// (api.Port.Interface).
func SwitchportName(name string) string { return switchportPrefix + name }

// HostEnd is the vmknic whose switch end is switchport (SwitchportName's
// inverse); ok is false for any other interface name.
func HostEnd(switchport string) (name string, ok bool) {
	name, ok = strings.CutPrefix(switchport, switchportPrefix)
	if !ok {
		return "", false
	}
	if _, valid := vmkIndex(name); !valid {
		return "", false
	}
	return name, true
}

// vmkIndex returns N for vmkN (1..MaxVMK, no leading zeros) and 0 for
// vswif0; ok is false for any other name.
func vmkIndex(name string) (n int, ok bool) {
	if name == VswifName {
		return 0, true
	}
	rest, found := strings.CutPrefix(name, vmkPrefix)
	if !found || rest == "" || rest[0] == '0' || len(rest) > 3 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || n > MaxVMK || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// isVMKName reports whether name is a vmknic name.
func isVMKName(name string) bool {
	_, ok := vmkIndex(name)
	return ok
}

// isSwitchportName reports whether name is the switch end of some vmknic.
func isSwitchportName(name string) bool {
	rest, ok := strings.CutPrefix(name, switchportPrefix)
	return ok && isVMKName(rest)
}

// vmkLess orders vmknic names: vswif0, vmk1, vmk2, ..., vmk10.
func vmkLess(a, b string) bool { return vmkCompare(a, b) < 0 }

func vmkCompare(a, b string) int {
	na, oka := vmkIndex(a)
	nb, okb := vmkIndex(b)
	switch {
	case oka && okb:
		return na - nb
	case oka:
		return -1
	case okb:
		return 1
	}
	return strings.Compare(a, b)
}
