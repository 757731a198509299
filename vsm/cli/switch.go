package cli

import (
	"net/netip"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/cdp"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// Switch is what the CLI needs from the VSM: its configuration, a way to
// change it, and read-only views for the show commands. The VSM server
// implements it; clitest.Fake is an in-memory one.
type Switch interface {
	// Config returns a copy of the running configuration.
	Config() config.Config
	// Update applies one change: it calls f on a copy of the running
	// configuration and, when f succeeds and the result validates
	// (config.Validate and whatever the server knows more, such as ports
	// in use), makes it the running configuration and pushes it to the
	// VEMs. Its error is shown to the operator after "ERROR: ".
	Update(f func(*config.Config) error) error
	// SaveStartup copies the running configuration to the startup one.
	SaveStartup() error
	Modules() []api.VSMModule
	Interfaces() []Interface
	MACs() []MAC
	// CDPNeighbors are the CDP neighbors the VEMs' uplinks heard, not
	// yet expired.
	CDPNeighbors() []CDPNeighbor
	// IGMPGroups is the IGMP snooping table the VEMs' relayed frames
	// built, not yet expired.
	IGMPGroups() []IGMPGroup
	Redundancy() api.VSMRedundancy
	// Switchover hands the active role to the synchronized HA standby
	// (`system switchover`); its error says why not.
	Switchover() error
	// ProfileUsage maps each profile name to the interfaces (short names,
	// "Veth1", "Eth3/2", "Po1") that use it.
	ProfileUsage() map[string][]string
}

// Interface is one switch port as `show interface` reports it.
type Interface struct {
	// Name is the short name: VethN, EthM/P or PoN.
	Name string
	// Module is the VEM slot the port is on (0: none, a powered-off VM).
	Module  int
	Profile string
	// Status is api.PortUp, PortDown, PortShutdown, PortErrDisabled or
	// PortAbsent; Reason says why when it is not up.
	Status string
	Reason string
	// Mode is api.ModeAccess or api.ModeTrunk; VLAN the access VLAN or the
	// trunk's allowed list ("1-4094"); NativeVLAN a trunk's (0: 1).
	Mode       string
	VLAN       string
	NativeVLAN int
	// Owner is who uses the port: `VM "web01", adapter is Network Adapter
	// 1` style text for vEths ("web01 nic 0"), the host for uplinks.
	Owner string
	// Description is the port's own description (vEths: the VM and NIC).
	Description string
	MAC         string
	// PortChannel is the PoN an Eth port is a member of.
	PortChannel string
	// Speed in Mb/s (0: auto), MTU in bytes (0: 1500).
	Speed    int
	MTU      int
	Counters api.PortCounters
}

// MAC is one MAC address table entry of one VEM.
type MAC struct {
	VLAN int
	MAC  string
	// Type is "static" (a local vEth's MAC) or "dynamic" (learned).
	Type   string
	Age    int // seconds
	Port   string
	Module int
}

// CDPNeighbor is one entry of `show cdp neighbors`: a device heard on a
// VEM's uplink.
type CDPNeighbor struct {
	// Module and Port are where it was heard (Port: EthM/P).
	Module int
	Port   string
	// Holdtime is the seconds left before the entry expires.
	Holdtime int
	// Neighbor is what its last CDP frame said.
	Neighbor cdp.Neighbor
}

// IGMPGroup is one entry of `show ip igmp snooping groups`: a group of a
// VLAN and the ports that reported it, or (Router) the VLAN's router
// ports, where queries were heard.
type IGMPGroup struct {
	VLAN int
	// Group is invalid for the router ports' entry.
	Group netip.Addr
	// Version is the highest IGMP version heard for it.
	Version int
	Router  bool
	// Ports are short names (EthM/P, VethN), in interface order.
	Ports []string
}
