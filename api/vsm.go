package api

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// VSM <-> VEM control channel (VEM-9, VSM-2, VSM-3, VSM-6, VSM-7).
//
// Transport (L3 mode): one mutually authenticated TLS connection from the
// VEM to the active VSM, carrying newline-delimited JSON VSMMessages, at
// most VSMMaxMessageBytes each. Either side closes the connection on a
// message that does not decode or validate at the transport level (wrong
// version, too big); a message with another domain ID is dropped and counted
// by the receiver, never acted upon.
const (
	VSMProtocolVersion = 1
	// VSMMaxMessageBytes bounds one encoded message (a full snapshot for 256
	// vEths with profiles fits in well under 1 MiB).
	VSMMaxMessageBytes = 4 << 20
	// VSMDefaultPort is the VSM's control port (L3 mode).
	VSMDefaultPort = 2001
	// VSMHeartbeatSeconds and VSMDeadSeconds: heartbeats every 2 s both
	// ways; a peer silent for 8 s is gone (VSM-3).
	VSMHeartbeatSeconds = 2
	VSMDeadSeconds      = 8
	// Chassis layout (VSM-2).
	VSMSlots         = 66
	VSMActiveSlot    = 1
	VSMStandbySlot   = 2
	VSMFirstVEMSlot  = 3
	VSMDomainIDMax   = 4095
	VSMMaxVethPerVEM = 1024
)

// Message types.
const (
	VSMHello        = "hello"         // VEM -> VSM, first message
	VSMWelcome      = "welcome"       // VSM -> VEM: slot, epoch
	VSMHeartbeat    = "heartbeat"     // both ways, every 2 s
	VSMConfigMsg    = "config"        // VSM -> VEM: snapshot or delta
	VSMAck          = "ack"           // VEM -> VSM: config generation applied (or why not)
	VSMResync       = "resync"        // VEM -> VSM: a gap was detected; send a snapshot
	VSMAttach       = "attach"        // VEM -> VSM: a vNIC/vmknic wants a vEth
	VSMAttachResult = "attach-result" // VSM -> VEM
	VSMDetach       = "detach"        // VEM -> VSM: vEth no longer needed (VM destroyed)
	VSMPortReport   = "ports"         // VEM -> VSM: port status, counters, MAC table
	VSMFrame        = "frame"         // VEM -> VSM: a relayed CDP/IGMP frame (packet channel)
	VSMError        = "error"         // either way: a refusal; the sender then closes
)

// VSMMessage is the envelope of every control message. Exactly the body
// field that matches Type is set (heartbeat and resync have none).
type VSMMessage struct {
	Version int    `json:"v"`
	Domain  int    `json:"domain"`
	Type    string `json:"type"`
	// Seq numbers the sender's messages on this connection from 1 without
	// gaps; a receiver that sees a gap in config messages asks for resync.
	Seq uint64 `json:"seq"`
	// Epoch is the sending VSM's activation epoch (VSM -> VEM only): VEMs
	// accept programming only from the highest epoch they have seen (VSM-7).
	Epoch uint64 `json:"epoch,omitempty"`

	Hello        *VSMHelloBody        `json:"hello,omitempty"`
	Welcome      *VSMWelcomeBody      `json:"welcome,omitempty"`
	Config       *VSMConfigBody       `json:"config,omitempty"`
	Ack          *VSMAckBody          `json:"ack,omitempty"`
	Attach       *VSMAttachBody       `json:"attach,omitempty"`
	AttachResult *VSMAttachResultBody `json:"attach_result,omitempty"`
	Detach       *VSMDetachBody       `json:"detach,omitempty"`
	Ports        *VSMPortReportBody   `json:"ports,omitempty"`
	Frame        *VSMFrameBody        `json:"frame,omitempty"`
	Error        *VSMErrorBody        `json:"error,omitempty"`
}

// VSMHelloBody introduces a VEM: who it is (persistent host UUID), which
// slot it had, what programming it runs, and what the host offers.
type VSMHelloBody struct {
	HostUUID string `json:"host_uuid"`
	Hostname string `json:"hostname,omitempty"`
	// Module is the slot this VEM had last (0: never had one).
	Module int `json:"module,omitempty"`
	// Generation is the config generation the VEM applied last; Epoch the
	// highest VSM epoch it has seen.
	Generation uint64 `json:"generation,omitempty"`
	Epoch      uint64 `json:"epoch,omitempty"`
	// Uplinks are the host NICs the server admin handed to the switch,
	// each with the uplink (ethernet, capability uplink) profile to use.
	Uplinks []VSMUplink `json:"uplinks,omitempty"`
	// LocalVeths are VethN numbers the host's own (standalone) switch
	// uses; the VSM never assigns them on this module.
	LocalVeths []int `json:"local_veths,omitempty"`
	// LocalPortChannels are the PoN numbers of the host's own switch; the
	// VSM numbers this module's port-channels around them.
	LocalPortChannels []int  `json:"local_port_channels,omitempty"`
	Version           string `json:"version,omitempty"`
}

// VSMUplink is one host NIC given to the switch.
type VSMUplink struct {
	// Interface is the kernel NIC, e.g. "eth1"; Port its EthM/P name is
	// derived by the VSM from the module and the NIC's position.
	Interface string `json:"interface"`
	Profile   string `json:"profile"`
}

// VSMWelcomeBody admits a VEM to the chassis.
type VSMWelcomeBody struct {
	Module     int    `json:"module"`
	SwitchName string `json:"switch_name"`
	// HeartbeatSeconds and DeadSeconds restate the timers (VSM-3).
	HeartbeatSeconds int `json:"heartbeat_seconds"`
	DeadSeconds      int `json:"dead_seconds"`
	// PacketMAC is the VSM's packet vNIC, where in svs mode L2 the VEM
	// sends relayed frames as raw frames on the packet VLAN
	// (internal/pktchan); empty: the VSM has no packet channel.
	PacketMAC string `json:"packet_mac,omitempty"`
}

// VSMConfigBody is the VEM's programming: a full snapshot (Full, Base 0)
// sent on every (re)connect, or a delta from Base to Generation. A VEM
// applies a delta only when Base is the generation it runs; otherwise it
// asks for a resync. Generations grow by one per change and per module.
type VSMConfigBody struct {
	Generation uint64 `json:"generation"`
	Base       uint64 `json:"base,omitempty"`
	Full       bool   `json:"full,omitempty"`
	// Profiles and Ports are set (added or replaced by name); Remove*
	// lists names to delete (deltas only).
	Profiles       []PortProfile `json:"profiles,omitempty"`
	Ports          []Port        `json:"ports,omitempty"`
	RemoveProfiles []string      `json:"remove_profiles,omitempty"`
	RemovePorts    []string      `json:"remove_ports,omitempty"`
	// Opaque is the domain's joining data as the VSM knows it now (full
	// snapshots only); the VEM stores it so system ports come up at boot.
	Opaque *VSMOpaque `json:"opaque,omitempty"`
}

// VSMAckBody reports the generation a VEM applied, or Error when it
// refused the config (its previous programming stays).
type VSMAckBody struct {
	Generation uint64 `json:"generation"`
	Error      string `json:"error,omitempty"`
}

// VSMAttachBody asks for a vEth for a vNIC or vmknic on a port profile.
// Owner is stable across power cycles and hosts ("vm:<uuid>/nic<N>" or
// "vmk:<host-uuid>/<name>"), so the same owner gets the same VethN back.
type VSMAttachBody struct {
	RequestID uint64 `json:"request_id"`
	Owner     string `json:"owner"`
	Profile   string `json:"profile"`
	MAC       string `json:"mac,omitempty"`
	// Description names the VM and adapter for `show interface`.
	Description string `json:"description,omitempty"`
	// LocalVeths are the VethN numbers the host's own switch uses now
	// (as in the hello: they change when the host adds a vmknic or a VM
	// on its own port groups); absent: as last told.
	LocalVeths []int `json:"local_veths,omitempty"`
}

// VSMAttachResultBody answers an attach: the VethN, or why not.
type VSMAttachResultBody struct {
	RequestID uint64 `json:"request_id"`
	Port      string `json:"port,omitempty"`
	Error     string `json:"error,omitempty"`
}

// VSMDetachBody frees the owner's vEth (Release) or only marks it unused
// on this host (the VM moved or is off: VethN keeps its number).
type VSMDetachBody struct {
	Owner   string `json:"owner"`
	Release bool   `json:"release,omitempty"`
}

// VSMPortReportBody is the VEM's periodic view of its ports and MACs.
type VSMPortReportBody struct {
	Ports []PortStatus `json:"ports,omitempty"`
	MACs  []MACEntry   `json:"macs,omitempty"`
	// ForeignDomain counts messages dropped for another domain ID;
	// StaleEpoch programming refused from a lower VSM epoch.
	ForeignDomain uint64 `json:"foreign_domain,omitempty"`
	StaleEpoch    uint64 `json:"stale_epoch,omitempty"`
}

// VSMFrameBody carries a CDP or IGMP frame seen on a host port.
type VSMFrameBody struct {
	Port string `json:"port"`
	Data []byte `json:"data"`
}

// VSMErrorBody is a refusal with a stable code.
type VSMErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// VSM error codes.
const (
	VSMErrChassisFull = "chassis_full"
	VSMErrBadMessage  = "bad_message"
	VSMErrNotActive   = "not_active" // a standby VSM does not program VEMs
	VSMErrSlotTaken   = "slot_taken"
)

// VSMOpaque is the joining data a host stores (VSM-6, VEM-6): enough to
// bring the system ports up at boot and to find and trust the VSM.
type VSMOpaque struct {
	DomainID    int      `json:"domain_id"`
	SwitchName  string   `json:"switch_name"`
	VSMs        []string `json:"vsms"` // host:port of each VSM (active, standby)
	Mode        string   `json:"mode"` // SVSModeL3 or SVSModeL2
	ControlVLAN int      `json:"control_vlan,omitempty"`
	PacketVLAN  int      `json:"packet_vlan,omitempty"`
	// SystemProfiles are the profiles with system VLANs.
	SystemProfiles []PortProfile `json:"system_profiles,omitempty"`
}

// VSMJoin is what a host receives to join a switch: the opaque data and
// its trust material (the domain CA and this host's client certificate).
// Key is a secret: never logged, stored 0600.
type VSMJoin struct {
	Opaque VSMOpaque `json:"opaque"`
	CACert string    `json:"ca_cert"`
	Cert   string    `json:"cert"`
	Key    string    `json:"key"`
	// Uplinks are chosen by the host's admin at join time.
	Uplinks []VSMUplink `json:"uplinks,omitempty"`
	// Module is the chassis slot the VSM reserved for the host (0 from a
	// VSM that reserves none): with it the host names its system uplinks
	// and brings them up before its first contact (VEM-6).
	Module int `json:"module,omitempty"`
}

// VSM modes.
const (
	SVSModeL3 = "L3"
	SVSModeL2 = "L2"
)

var (
	hostUUIDRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	ownerRE    = regexp.MustCompile(`^(vm|vmk):[A-Za-z0-9._:-]{1,64}/[A-Za-z0-9._-]{1,32}$`)
	vsmNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`)
)

// ValidHostUUID reports whether s is a UUID in its canonical text form.
func ValidHostUUID(s string) bool { return hostUUIDRE.MatchString(s) }

// DecodeVSMMessage decodes and validates one message. It does not check the
// domain: the receiver drops (and counts) another domain's messages itself.
func DecodeVSMMessage(b []byte) (VSMMessage, error) {
	var m VSMMessage
	if len(b) > VSMMaxMessageBytes {
		return m, fmt.Errorf("vsm message: %d bytes, at most %d", len(b), VSMMaxMessageBytes)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("vsm message: %w", err)
	}
	return m, m.Validate()
}

// Validate checks the envelope and its body.
func (m *VSMMessage) Validate() error {
	if m.Version != VSMProtocolVersion {
		return fmt.Errorf("vsm message: version %d, want %d", m.Version, VSMProtocolVersion)
	}
	if m.Domain < 1 || m.Domain > VSMDomainIDMax {
		return fmt.Errorf("vsm message: domain %d out of range 1-%d", m.Domain, VSMDomainIDMax)
	}
	if m.Seq == 0 {
		return fmt.Errorf("vsm message %s: seq 0 (numbering starts at 1)", m.Type)
	}
	bodies := 0
	for _, set := range []bool{m.Hello != nil, m.Welcome != nil, m.Config != nil, m.Ack != nil, m.Attach != nil,
		m.AttachResult != nil, m.Detach != nil, m.Ports != nil, m.Frame != nil, m.Error != nil} {
		if set {
			bodies++
		}
	}
	want := func(ok bool) error {
		if !ok || bodies != 1 {
			return fmt.Errorf("vsm message %s: wants exactly its own body (%d bodies set)", m.Type, bodies)
		}
		return nil
	}
	switch m.Type {
	case VSMHeartbeat, VSMResync:
		if bodies != 0 {
			return fmt.Errorf("vsm message %s: carries no body", m.Type)
		}
		return nil
	case VSMHello:
		if err := want(m.Hello != nil); err != nil {
			return err
		}
		return m.Hello.validate()
	case VSMWelcome:
		if err := want(m.Welcome != nil); err != nil {
			return err
		}
		if w := m.Welcome; w.Module < VSMFirstVEMSlot || w.Module > VSMSlots {
			return fmt.Errorf("vsm welcome: module %d out of range %d-%d", w.Module, VSMFirstVEMSlot, VSMSlots)
		}
		if p := m.Welcome.PacketMAC; p != "" {
			if hw, err := net.ParseMAC(p); err != nil || len(hw) != 6 || hw[0]&1 != 0 {
				return fmt.Errorf("vsm welcome: packet_mac %q: want a unicast Ethernet address", p)
			}
		}
		return nil
	case VSMConfigMsg:
		if err := want(m.Config != nil); err != nil {
			return err
		}
		return m.Config.validate()
	case VSMAck:
		return want(m.Ack != nil)
	case VSMAttach:
		if err := want(m.Attach != nil); err != nil {
			return err
		}
		a := m.Attach
		if !ownerRE.MatchString(a.Owner) {
			return fmt.Errorf("vsm attach: owner %q: want vm:<uuid>/nic<N> or vmk:<host>/<name>", a.Owner)
		}
		if a.Profile == "" || len(a.Profile) > 80 {
			return fmt.Errorf("vsm attach: profile %q: want 1-80 characters", a.Profile)
		}
		if len(a.LocalVeths) > VSMMaxVethPerVEM {
			return fmt.Errorf("vsm attach: %d local vEths, at most %d", len(a.LocalVeths), VSMMaxVethPerVEM)
		}
		return nil
	case VSMAttachResult:
		if err := want(m.AttachResult != nil); err != nil {
			return err
		}
		if r := m.AttachResult; (r.Port == "") == (r.Error == "") {
			return fmt.Errorf("vsm attach-result: wants a port or an error")
		} else if r.Port != "" {
			if _, ok := VethNumber(r.Port); !ok {
				return fmt.Errorf("vsm attach-result: port %q: want VethN", r.Port)
			}
		}
		return nil
	case VSMDetach:
		if err := want(m.Detach != nil); err != nil {
			return err
		}
		if !ownerRE.MatchString(m.Detach.Owner) {
			return fmt.Errorf("vsm detach: owner %q invalid", m.Detach.Owner)
		}
		return nil
	case VSMPortReport:
		return want(m.Ports != nil)
	case VSMFrame:
		if err := want(m.Frame != nil); err != nil {
			return err
		}
		if n := len(m.Frame.Data); n < 14 || n > 9216 {
			return fmt.Errorf("vsm frame: %d bytes, want 14-9216", n)
		}
		return nil
	case VSMError:
		if err := want(m.Error != nil); err != nil {
			return err
		}
		if m.Error.Code == "" {
			return fmt.Errorf("vsm error: empty code")
		}
		return nil
	}
	return fmt.Errorf("vsm message: unknown type %q", m.Type)
}

func (h *VSMHelloBody) validate() error {
	if !ValidHostUUID(h.HostUUID) {
		return fmt.Errorf("vsm hello: host uuid %q is not a UUID", h.HostUUID)
	}
	if h.Module != 0 && (h.Module < VSMFirstVEMSlot || h.Module > VSMSlots) {
		return fmt.Errorf("vsm hello: module %d out of range %d-%d", h.Module, VSMFirstVEMSlot, VSMSlots)
	}
	if len(h.Uplinks) > 32 {
		return fmt.Errorf("vsm hello: %d uplinks, at most 32", len(h.Uplinks))
	}
	for _, u := range h.Uplinks {
		if u.Interface == "" || len(u.Interface) > 15 || strings.ContainsAny(u.Interface, "/ \t\n") {
			return fmt.Errorf("vsm hello: uplink interface %q invalid", u.Interface)
		}
		if u.Profile == "" {
			return fmt.Errorf("vsm hello: uplink %s without a profile", u.Interface)
		}
	}
	if len(h.LocalVeths) > VSMMaxVethPerVEM {
		return fmt.Errorf("vsm hello: %d local vEths, at most %d", len(h.LocalVeths), VSMMaxVethPerVEM)
	}
	if len(h.LocalPortChannels) > 32 {
		return fmt.Errorf("vsm hello: %d local port-channels, at most 32", len(h.LocalPortChannels))
	}
	for _, n := range h.LocalPortChannels {
		if n < 1 || n > 4096 {
			return fmt.Errorf("vsm hello: local port-channel %d out of range 1-4096", n)
		}
	}
	return nil
}

func (c *VSMConfigBody) validate() error {
	if c.Generation == 0 {
		return fmt.Errorf("vsm config: generation 0")
	}
	if c.Full && c.Base != 0 {
		return fmt.Errorf("vsm config: a full snapshot has no base (base %d)", c.Base)
	}
	if !c.Full && c.Base+1 != c.Generation {
		return fmt.Errorf("vsm config: delta from %d to %d: want one step", c.Base, c.Generation)
	}
	if c.Full && (len(c.RemoveProfiles) > 0 || len(c.RemovePorts) > 0) {
		return fmt.Errorf("vsm config: a full snapshot removes nothing")
	}
	if len(c.Ports) > VSMMaxVethPerVEM+64 {
		return fmt.Errorf("vsm config: %d ports, at most %d", len(c.Ports), VSMMaxVethPerVEM+64)
	}
	for _, p := range c.Profiles {
		if !vsmNameRE.MatchString(p.Name) {
			return fmt.Errorf("vsm config: profile name %q invalid", p.Name)
		}
	}
	if o := c.Opaque; o != nil {
		if o.DomainID < 1 || o.DomainID > VSMDomainIDMax {
			return fmt.Errorf("vsm config: opaque domain %d out of range", o.DomainID)
		}
	}
	return nil
}

// VethNumber parses "VethN" (N >= 1).
func VethNumber(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, "Veth")
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || n > 1<<20 {
		return 0, false
	}
	return n, true
}

// VSMModule is one row of `show module` (VSM API and CLI).
type VSMModule struct {
	Slot int `json:"slot"`
	// Ports counts the module's ports (VEMs: 248 like the original; VSMs 0).
	Ports  int    `json:"ports"`
	Type   string `json:"type"`   // "Virtual Supervisor Module" or "Virtual Ethernet Module"
	Model  string `json:"model"`  // "Flashvisor-VSM" / "Flashvisor-VEM"
	Status string `json:"status"` // "active *", "ha-standby", "ok", "offline"
	// Version is the software version; HostUUID/Hostname/Address identify
	// a VEM's server ("Server-UUID" and "Server-IP" in the original).
	Version  string `json:"version,omitempty"`
	HostUUID string `json:"host_uuid,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Address  string `json:"address,omitempty"`
	// LastSeen is RFC 3339; Generation the config generation it acked.
	LastSeen   string `json:"last_seen,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
}

// VSMRedundancy is `show system redundancy status`.
type VSMRedundancy struct {
	Role      string `json:"role"`       // standalone, primary, secondary
	State     string `json:"state"`      // active, standby
	PeerState string `json:"peer_state"` // "Not present", "HA standby", "Active"
	Epoch     uint64 `json:"epoch"`      // activation epoch (fencing)
	// PeerEpoch is the other VSM's activation epoch (0: no peer link).
	PeerEpoch uint64 `json:"peer_epoch,omitempty"`
	// The active numbers each version of the state it replicates
	// (configuration, slot, vEth and uplink bindings, generations):
	// Revision is the current one, SyncedGen the one the standby has
	// applied (on the standby both are the one it applied).
	Revision    uint64 `json:"revision,omitempty"`
	SyncedGen   uint64 `json:"synced_gen"`
	Description string `json:"description"` // e.g. "HA synchronization in progress"
}

// VSMCLIRequest runs CLI lines through the VSM API as one session
// (modes carry over from line to line, like a pasted script).
type VSMCLIRequest struct {
	Commands []string `json:"commands"`
}

// VSMCLIResponse is each line's output; Error is set on the first failing
// line, after which nothing more ran.
type VSMCLIResponse struct {
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
	// FailedLine is the 0-based index of the failing line (-1: none).
	FailedLine int `json:"failed_line"`
}

// VSMJoinRequest asks the VSM for a host's join bundle (POST
// /api/v1/join on the VSM).
type VSMJoinRequest struct {
	HostUUID string      `json:"host_uuid"`
	Uplinks  []VSMUplink `json:"uplinks,omitempty"`
}

// VSMLinkStatus is a host's view of its VSM connection (hostd GET
// /api/v1/vsm, from the VEM).
type VSMLinkStatus struct {
	Joined     bool   `json:"joined"`
	DomainID   int    `json:"domain_id,omitempty"`
	SwitchName string `json:"switch_name,omitempty"`
	// VSM is the address connected to (or last tried).
	VSM        string `json:"vsm,omitempty"`
	Connected  bool   `json:"connected"`
	Headless   bool   `json:"headless"`
	Module     int    `json:"module,omitempty"`
	Epoch      uint64 `json:"epoch,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	// ForeignDomain counts dropped messages of another domain; StaleEpoch
	// refused programming from an older VSM epoch.
	ForeignDomain uint64 `json:"foreign_domain"`
	StaleEpoch    uint64 `json:"stale_epoch"`
	// Profiles are the VSM's enabled vethernet port profiles: the host
	// offers them as port groups of the distributed switch (VSM-5).
	Profiles  []PortProfile `json:"profiles,omitempty"`
	LastError string        `json:"last_error,omitempty"`
	// ControlMode is the switch's svs mode (SVSModeL3 or SVSModeL2) and
	// ControlVLAN its control VLAN in L2 mode.
	ControlMode string `json:"control_mode,omitempty"`
	ControlVLAN int    `json:"control_vlan,omitempty"`
	// PacketChannel is how relayed CDP/IGMP frames reach the VSM while
	// connected: "control connection", or in L2 mode "VLAN N via
	// vmkM" (raw frames on the packet VLAN). PacketFrames counts the
	// frames sent that way (a frame too big for the vmknic's MTU, or one
	// the socket refused, takes the control connection).
	PacketChannel string `json:"packet_channel,omitempty"`
	PacketFrames  uint64 `json:"packet_frames"`
}

// VSMHealth is the VSM's GET /api/v1/health: its state and the control
// channel's counters since it started.
type VSMHealth struct {
	Status        string `json:"status"` // active or standby
	Epoch         uint64 `json:"epoch"`
	Domain        int    `json:"domain"`
	Modules       int    `json:"modules"` // VEMs connected
	Joins         uint64 `json:"joins"`
	ForeignDomain uint64 `json:"foreign_domain"` // messages of another domain, dropped
	SeqGaps       uint64 `json:"seq_gaps"`
	BadMessages   uint64 `json:"bad_messages"`
	Nacks         uint64 `json:"nacks"`
	// Frames are the relayed frames received over control connections,
	// PacketFrames over the packet VLAN (svs mode L2), PacketDropped the
	// packet VLAN's refused ones (malformed, unknown module, bad tag,
	// replayed).
	Frames        uint64 `json:"frames"`
	PacketFrames  uint64 `json:"packet_frames"`
	PacketDropped uint64 `json:"packet_dropped"`
	Version       string `json:"version"`
}
