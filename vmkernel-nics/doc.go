// Package vmknic manages the host's vmkernel NICs (SPEC VMK-1..3): vswif0,
// the management interface, and vmk1..vmk255, host interfaces on port
// groups of the host's virtual switch.
//
// Each vmknic is a veth pair. The host end is named as the vmknic (vswif0,
// vmk1) and carries the MAC, the MTU and the IPv4 address; the switch end
// (SwitchportName: fvk-vmk1) is what the caller hands to the VEM, which
// enslaves it as the vEth port of the vmknic's port group. VLAN tagging is
// the switch port's business, so the host end is untagged. This package
// never touches the bridge.
//
// Desired state -> applied state, as in the VEM:
//
//	[]api.VMKNIC --Validate, AssignMACs--> Desired(specs, Runtime) -> KernelState
//	Kernel.Observe() -> KernelState --Plan(desired, observed)--> []Change --Kernel.Apply
//
// Validate, AssignMACs, Desired and Plan are pure. Kernel is the thin
// apply layer (NetlinkKernel; vmknictest.Kernel in tests). Plan is
// diff-based, so an unchanged configuration applies nothing and a
// restarted manager does not flap the interfaces.
//
// The Manager ties them together for hostd: Apply, Status, the DHCP
// clients of dhcp-mode vmknics (one per vmknic, over a small DHCP
// interface; NClient4 is the real one), and ApplyGuarded/Confirm, the
// rollback guard of management changes (VMK-3). See docs/vmknic-design.md.
package vmknic
