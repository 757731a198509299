package api

// The VEM's wire types (SPEC VEM-2..10). A SwitchConfig is the whole
// programming of one host's switch: the port profiles it uses and its ports.
// It is what the standalone switch (VEM-7, configured through hostd) hands to
// the VEM today, what the VSM will push as a snapshot later (VEM-9), and what
// the VEM keeps on the state partition (VEM-8). Validation rules live in
// vem/ (vem.Validate); these types only carry data.

// Port profile types (Nexus "port-profile type ...").
const (
	ProfileVethernet = "vethernet" // for vEth ports (VM vNICs, vmknics)
	ProfileEthernet  = "ethernet"  // for uplinks (Eth, Po)
)

// Switchport modes.
const (
	ModeAccess = "access"
	ModeTrunk  = "trunk"
)

// Port kinds (VEM-2).
const (
	PortVeth        = "veth" // VethN
	PortEth         = "eth"  // EthM/P
	PortPortChannel = "po"   // PoN
)

// Port-channel modes.
const (
	ChannelActiveBackup = "active-backup"
	ChannelLACP         = "802.3ad"
	ChannelMACPinning   = "mac-pinning"
)

// Port-security violation actions.
const (
	ViolationShutdown = "shutdown" // the port is err-disabled
	ViolationProtect  = "protect"  // offending frames are dropped (and counted)
)

// PortProfile is a named set of port settings (a Nexus 1000V port profile,
// seen as a port group by the host and VM admins).
type PortProfile struct {
	Name string `json:"name"`
	// Type is ProfileVethernet or ProfileEthernet.
	Type string `json:"type"`
	// Mode is ModeAccess or ModeTrunk.
	Mode string `json:"mode"`
	// AccessVLAN is the VLAN of an access port, 1-4094 (0: 1, the default).
	AccessVLAN int `json:"access_vlan,omitempty"`
	// AllowedVLANs is a trunk's allowed list: "10-20,30", "all" or "none"
	// ("" means "all", as "switchport trunk allowed vlan" defaults to).
	AllowedVLANs string `json:"allowed_vlans,omitempty"`
	// NativeVLAN is the VLAN of a trunk's untagged frames (0: 1, the
	// default). Untagged frames are dropped if it is not allowed.
	NativeVLAN int `json:"native_vlan,omitempty"`
	// SystemVLANs ("system vlan 260,261") marks the profile as a system
	// profile: its ports come up at boot without the VSM (VEM-6). They must
	// be VLANs the profile carries.
	SystemVLANs string `json:"system_vlans,omitempty"`
	// CapabilityUplink marks an ethernet profile for uplinks (Eth, Po).
	CapabilityUplink bool `json:"capability_uplink,omitempty"`
	// Enabled is "state enabled": only enabled profiles can be used by ports
	// (and are published as port groups).
	Enabled bool `json:"enabled"`
	// Shutdown is the profile's "shutdown": its ports are administratively
	// down.
	Shutdown bool `json:"shutdown,omitempty"`
	// MaxPorts limits how many ports may use the profile (0: no limit).
	MaxPorts int `json:"max_ports,omitempty"`
	// Ingress limits traffic from the port into the switch, Egress traffic
	// from the switch out of the port (nil: unlimited).
	Ingress *RateLimit `json:"ingress,omitempty"`
	Egress  *RateLimit `json:"egress,omitempty"`
	// PortSecurity limits the source MACs a vEth may use (vethernet only).
	PortSecurity *PortSecurity `json:"port_security,omitempty"`
	Description  string        `json:"description,omitempty"`
	// ChannelGroup is an uplink profile's `channel-group auto` mode
	// (ChannelActiveBackup, ChannelLACP, ChannelMACPinning; "" none): the
	// VSM bundles each host's uplinks on the profile into one PoN. The
	// VEM reads a port-channel's mode from Port.ChannelMode, not here.
	ChannelGroup string `json:"channel_group,omitempty"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	BitsPerSecond uint64 `json:"bits_per_second"`
	// BurstBytes is the bucket size (0: a default from the rate: 10 ms
	// of traffic and at least 64 KiB for the egress shaper, 50 ms and at
	// least 256 KiB for the ingress policer, which drops instead of
	// queueing).
	BurstBytes uint32 `json:"burst_bytes,omitempty"`
}

// PortSecurity is "switchport port-security".
type PortSecurity struct {
	// MaxMACs is "switchport port-security maximum N" (>= 1).
	MaxMACs int `json:"max_macs"`
	// Violation is ViolationShutdown (default) or ViolationProtect.
	Violation string `json:"violation,omitempty"`
}

// Port is one port of the switch.
type Port struct {
	// Name is VethN, EthM/P (M = the host's module number) or PoN.
	Name string `json:"name"`
	// Kind is PortVeth, PortEth or PortPortChannel; it must agree with Name.
	Kind string `json:"kind"`
	// Profile is the port profile (inherit port-profile). Eth members of a
	// port-channel leave it empty or name the port-channel's profile.
	Profile string `json:"profile,omitempty"`
	// Interface is the kernel interface behind the port: for Eth the
	// physical NIC (required); for a vEth an existing interface to enslave
	// (a vmknic's veth end), or empty for a tap the VEM creates for QEMU.
	Interface string `json:"interface,omitempty"`
	// MACs are a vEth's MACs (the VM's vNIC MAC, a vmknic's): static
	// entries in the MAC table (VEM-3). Only for vEth.
	MACs []string `json:"macs,omitempty"`
	// Members are the Eth ports of a port-channel (Po only).
	Members []string `json:"members,omitempty"`
	// ChannelMode is a port-channel's mode (Po only; default active-backup).
	ChannelMode string `json:"channel_mode,omitempty"`
	// Shutdown is the interface's own "shutdown", on top of the profile's.
	Shutdown bool `json:"shutdown,omitempty"`
	// Owner says whose port it is, for show commands ("web01 nic 0",
	// "vmk1").
	Owner string `json:"owner,omitempty"`
}

// SwitchConfig is the full programming of one host's switch.
type SwitchConfig struct {
	// DomainID is the switch's domain (1-4095); 0 in standalone mode.
	DomainID int `json:"domain_id,omitempty"`
	// Module is the host's slot (3-66) on the VSM; EthM/P names use it. In
	// standalone mode it is 3.
	Module   int           `json:"module"`
	Profiles []PortProfile `json:"profiles,omitempty"`
	// Ports are all ports: vEths, Eths (the uplinks, with their NICs) and
	// port-channels.
	Ports []Port `json:"ports,omitempty"`
}

// Port states.
const (
	PortUp          = "up"
	PortDown        = "down"         // no carrier (a powered-off VM's tap, a cable)
	PortShutdown    = "shutdown"     // administratively down
	PortErrDisabled = "err-disabled" // shut by the VEM (port-security violation)
	PortAbsent      = "absent"       // its kernel interface is missing
)

// PortStatus is the observed state of one port.
type PortStatus struct {
	Name      string       `json:"name"`
	Kind      string       `json:"kind"`
	Profile   string       `json:"profile,omitempty"`
	Interface string       `json:"interface"`
	State     string       `json:"state"`
	Reason    string       `json:"reason,omitempty"`
	Mode      string       `json:"mode,omitempty"`
	VLANs     string       `json:"vlans,omitempty"` // access VLAN or allowed list
	Owner     string       `json:"owner,omitempty"`
	Counters  PortCounters `json:"counters"`
}

// PortCounters are a port's counters, as the kernel counts them.
type PortCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
	// BPDUDrops counts BPDUs received and dropped (VEM-4).
	BPDUDrops uint64 `json:"bpdu_drops"`
	// SecurityViolations counts frames from a source MAC the port may not
	// use (port security).
	SecurityViolations uint64 `json:"security_violations"`
	// IngressPoliced counts frames dropped by the ingress rate limit.
	IngressPoliced uint64 `json:"ingress_policed"`
}

// MACEntry is one entry of a VEM's MAC table (VEM-3, VEM-10).
type MACEntry struct {
	VLAN int    `json:"vlan"`
	MAC  string `json:"mac"`
	// Type is "static" (local vEth MACs, never aged) or "dynamic" (learned
	// on an uplink).
	Type       string `json:"type"`
	Port       string `json:"port"`
	AgeSeconds int    `json:"age_seconds"`
}

// Switch modes of a VEM (VEM-7, VEM-9).
const (
	SwitchStandalone = "standalone" // configured locally through hostd
	SwitchVSM        = "vsm"        // a line card of a VSM
)

// VEMCard is what "show card" prints for one VEM (VEM-10): who it is, where
// its programming comes from and whether it is applied.
type VEMCard struct {
	// HostUUID identifies the host (and so the line card) persistently.
	HostUUID string `json:"host_uuid,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Mode is SwitchStandalone or SwitchVSM.
	Mode     string `json:"mode"`
	DomainID int    `json:"domain_id"`
	Module   int    `json:"module"`
	// VSM is the VSM's address, empty in standalone mode.
	VSM string `json:"vsm,omitempty"`
	// Connected reports a live VSM connection; Headless a VEM in VSM mode
	// forwarding on its last programming without one (VEM-8).
	Connected bool `json:"connected"`
	Headless  bool `json:"headless"`
	// Programmed is false until a configuration was applied (restored at
	// boot or received).
	Programmed bool `json:"programmed"`
	// Restored is true when the programming came from the state partition
	// at boot.
	Restored bool `json:"restored"`
	// Ports counts configured ports by kind (veth, eth, po).
	Ports map[string]int `json:"ports"`
	// LastReconcile is when the agent last compared the kernel with its
	// configuration (RFC 3339), LastError what went wrong then, if anything.
	LastReconcile string `json:"last_reconcile,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	// Changes counts kernel changes applied since the agent started.
	Changes uint64 `json:"changes"`
	Bridge  string `json:"bridge"`
	Version string `json:"version,omitempty"`
	// ControlMode is the VSM channel's mode (L3 or L2; VSM mode only) and
	// ControlVLAN the control VLAN in L2 mode.
	ControlMode string `json:"control_mode,omitempty"`
	ControlVLAN int    `json:"control_vlan,omitempty"`
}
