package api

import "time"

// The vmkernel NICs' wire types (SPEC VMK-1..3). A vmknic is a host
// interface on the host's virtual switch: vswif0 (management) and vmkN.
// Validation rules live in vmkernel-nics/ (vmknic.Validate); these types
// only carry data.

// IPv4 modes of a vmknic (VMKIPv4.Mode).
const (
	VMKIPv4DHCP   = "dhcp"
	VMKIPv4Static = "static"
	VMKIPv4None   = "none"
)

// Services a vmknic can be tagged for (VMKNIC.Services): what the host
// uses it for. Datastores and migration pick the vmknic tagged for them.
const (
	VMKServiceManagement = "management"  // hostd's API; at most one vmknic
	VMKServiceNFS        = "nfs"         // NFS datastores
	VMKServiceISCSI      = "iscsi"       // iSCSI datastores (port binding)
	VMKServiceMigration  = "migration"   // live migration traffic
	VMKServiceVSMControl = "vsm-control" // the VEM's link to the VSM; at most one vmknic
)

// VMKNIC is the desired configuration of one vmkernel NIC.
type VMKNIC struct {
	// Name is "vswif0" (the management interface) or "vmk1" to "vmk255".
	// It is also the name of the host's kernel interface.
	Name string `json:"name"`
	// PortGroup is the port group (port profile) the vmknic sits on; the
	// switch port carries its VLAN, so the vmknic itself is untagged.
	PortGroup string `json:"port_group"`
	// MAC is the vmknic's MAC, "00:50:56:xx:yy:zz". Empty: the host
	// generates a stable one (see vmknic.GenerateMAC).
	MAC string `json:"mac,omitempty"`
	// MTU is the interface MTU, 1280-9000; 0 means 1500.
	MTU int `json:"mtu,omitempty"`
	// IPv4 is the vmknic's IPv4 configuration.
	IPv4 VMKIPv4 `json:"ipv4"`
	// Services are the tags saying what the vmknic is used for
	// (VMKService*).
	Services []string `json:"services,omitempty"`
}

// VMKIPv4 is a vmknic's IPv4 configuration.
type VMKIPv4 struct {
	// Mode is VMKIPv4DHCP, VMKIPv4Static or VMKIPv4None.
	Mode string `json:"mode"`
	// Address is the static address as a CIDR, "10.0.0.5/24" (static
	// mode only).
	Address string `json:"address,omitempty"`
	// Gateway is the default gateway reached through this vmknic, inside
	// Address's subnet (static mode only; optional). At most one vmknic
	// of a host has one.
	Gateway string `json:"gateway,omitempty"`
}

// VMKNICStatus is the observed state of one vmknic.
type VMKNICStatus struct {
	// Name is the vmknic's (and its host interface's) name.
	Name string `json:"name"`
	// PortGroup is the port group it is configured on.
	PortGroup string `json:"port_group"`
	// MAC is the interface's MAC as the kernel reports it (the generated
	// one when the configuration left it empty).
	MAC string `json:"mac"`
	// MTU is the interface's MTU as the kernel reports it.
	MTU int `json:"mtu"`
	// Switchport is the kernel interface of the vmknic's switch end, the
	// one the VEM enslaves as the vEth port ("fvk-vmk1").
	Switchport string `json:"switchport"`
	// Address is the current IPv4 address as a CIDR ("" if none).
	Address string `json:"address,omitempty"`
	// Gateway is the default gateway currently routed through this
	// vmknic ("" if none).
	Gateway string `json:"gateway,omitempty"`
	// DNS are the name servers of the current DHCP lease.
	DNS []string `json:"dns,omitempty"`
	// Mode is the configured IPv4 mode (VMKIPv4*); "" for an interface
	// found in the kernel but not configured (about to be removed).
	Mode string `json:"mode"`
	// Services are the configured service tags.
	Services []string `json:"services,omitempty"`
	// Up says the interface is up and has carrier (its switch end is up).
	Up bool `json:"up"`
	// LeaseExpires is when the current DHCP lease ends (zero: no lease,
	// not DHCP, or an infinite lease).
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
}
