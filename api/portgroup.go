package api

import "time"

// PortGroup is a named group of ports with common settings on the host's
// standalone switch (VEM-7, a vSphere standard switch's port group): what
// vNICs and vmknics name. hostd turns each into a vethernet port profile of
// the VEM (VEM-5); a change reaches every port on it, live.
type PortGroup struct {
	// Name is what vNICs and vmknics name, e.g. "VM Network". 1-64
	// printable characters; spaces are allowed.
	Name string `json:"name"`
	// VLAN is the access VLAN: 0 for none (untagged on the uplinks),
	// 1-4094 otherwise. Ignored for a trunk port group.
	VLAN int `json:"vlan"`
	// Trunk makes the ports trunks (a guest that tags its own frames, ESXi's
	// VLAN 4095): AllowedVLANs ("10-20,30", "all"; "" is "all") and
	// NativeVLAN, the VLAN of untagged frames (0: VLAN 1, the switch's
	// default). Untagged frames are dropped when the native VLAN is not
	// in the allowed list.
	Trunk        bool   `json:"trunk,omitempty"`
	AllowedVLANs string `json:"allowed_vlans,omitempty"`
	NativeVLAN   int    `json:"native_vlan,omitempty"`
	// MaxMACs enables port security: at most this many source MACs per
	// port, the vNIC's own first (0: off). Violation is "shutdown" (the
	// port is err-disabled; the default) or "protect" (offending frames
	// are dropped and counted).
	MaxMACs   int    `json:"max_macs,omitempty"`
	Violation string `json:"violation,omitempty"`
	// Ingress limits traffic from a port into the switch (what the VM
	// sends), Egress traffic to the port (what it receives); nil: none.
	Ingress *RateLimit `json:"ingress,omitempty"`
	Egress  *RateLimit `json:"egress,omitempty"`
	// Shutdown takes every port of the group administratively down.
	Shutdown bool `json:"shutdown,omitempty"`
	// System marks a port group whose VLAN must come up at boot before
	// anything else (management, storage): a system VLAN (VEM-6).
	System bool `json:"system,omitempty"`
	// Switch is empty for the host's standalone switch; for a port profile
	// of the distributed switch (exported by the VSM, read-only here) it
	// is the switch's name.
	Switch string `json:"switch,omitempty"`
}

// Uplink is a physical NIC on the standalone switch: an Eth port.
type Uplink struct {
	// NIC is the kernel's name of the physical NIC, e.g. "eth1".
	NIC string `json:"nic"`
	// Port is its switch port, EthM/P; assigned by hostd when the uplink
	// is added and kept for the NIC.
	Port string `json:"port,omitempty"`
	// PortChannel is the PoN the uplink is a member of, if any.
	PortChannel string `json:"port_channel,omitempty"`
}

// PortChannel bundles uplinks (a bond), created only by explicit
// configuration (VEM-2).
type PortChannel struct {
	// Name is PoN, N 1-4096.
	Name string `json:"name"`
	// Members are the NICs of its uplinks (added as uplinks if they are
	// not yet).
	Members []string `json:"members"`
	// Mode is ChannelActiveBackup (default), ChannelLACP or
	// ChannelMACPinning.
	Mode string `json:"mode,omitempty"`
}

// VethAssignment records the vEth port of a vNIC: created with the vNIC,
// kept while the VM is off, freed when the VM is deleted (HOSTD-6, VEM-2).
type VethAssignment struct {
	Port string `json:"port"` // VethN
	// VM and NIC name a vNIC's vEth, VMKNIC a vmknic's.
	VM        string `json:"vm,omitempty"`
	NIC       int    `json:"nic"`
	VMKNIC    string `json:"vmknic,omitempty"`
	PortGroup string `json:"port_group"`
	MAC       string `json:"mac"`
}

// SwitchView is the standalone switch as GET /api/v1/network shows it:
// configuration and the VEM's view of its ports.
type SwitchView struct {
	Uplinks      []Uplink         `json:"uplinks"`
	PortChannels []PortChannel    `json:"port_channels"`
	PortGroups   []PortGroup      `json:"port_groups"`
	VMKNICs      []VMKNIC         `json:"vmknics"`
	Veths        []VethAssignment `json:"veths"`
	Ports        []PortStatus     `json:"ports"`
	// Pending is a guarded management change waiting for confirmation.
	Pending *NetworkChange `json:"pending,omitempty"`
}

// NetworkChange is a change to the management network applied under the
// rollback guard (VMK-3): unless confirmed (POST /api/v1/network/confirm)
// before RollbackAt, the host puts the previous configuration back by
// itself. A client confirms through the management network as it is after
// the change, which proves the host is still reachable.
type NetworkChange struct {
	ID         string    `json:"id"`
	RollbackAt time.Time `json:"rollback_at"`
	// What says what changed, e.g. "vmknic vswif0".
	What string `json:"what"`
}

// ConfirmRequest confirms a NetworkChange.
type ConfirmRequest struct {
	ID string `json:"id"`
}
