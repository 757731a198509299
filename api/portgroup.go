package api

// PortGroup is a named group of VM ports with common settings, what a
// vSphere standard switch port group has at minimum: a name that vNICs refer
// to (NIC.PortGroup) and a VLAN. Security and traffic-shaping policy come
// with the VEM's port profiles (VEM-5); validation rules live with the
// implementation (hostd/netseam today, vem/ later).
type PortGroup struct {
	// Name is what vNICs name, e.g. "VM Network".
	Name string `json:"name"`
	// VLAN is the access VLAN: 0 for none (untagged), 1-4094 otherwise.
	VLAN int `json:"vlan"`
	// HostAddress optionally gives the host itself an address on the port
	// group, as a CIDR ("10.0.0.1/24"), so the host can reach the VMs on
	// it. Interim: vmknics on port groups (VMK-2) replace it.
	HostAddress string `json:"host_address,omitempty"`
}
