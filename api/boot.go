package api

import "time"

// BootInfo is what init found and decided at boot; it writes it to
// layout.BootInfoFile for the services. It holds no secrets.
type BootInfo struct {
	Hostname        string    `json:"hostname"`
	HostUUID        string    `json:"host_uuid"`
	PersistentState bool      `json:"persistent_state"`
	StateDir        string    `json:"state_dir"`
	BootTime        time.Time `json:"boot_time"`
	Management      MgmtInfo  `json:"management"`
	// FailedSteps names the boot steps that failed (the host still comes up).
	FailedSteps []string `json:"failed_steps,omitempty"`
}

// MgmtInfo describes the management interface as configured at boot.
type MgmtInfo struct {
	NIC     string   `json:"nic"`
	MAC     string   `json:"mac"`
	Mode    string   `json:"mode"`    // "dhcp" or "static"
	Address string   `json:"address"` // CIDR, e.g. "10.0.2.15/24"
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// Uplink is the physical NIC (NIC is its VLAN sub-interface when VLAN
	// is set), and VLAN the management VLAN (flashvisor.vlan).
	Uplink string `json:"uplink,omitempty"`
	VLAN   int    `json:"vlan,omitempty"`
}

// MgmtVswif is MgmtInfo.Mode when the management address is on vswif0,
// configured by hostd on the switch (init only brought the NIC up).
const MgmtVswif = "vswif0"
