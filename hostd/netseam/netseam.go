// Package netseam is hostd's networking seam: how a VM's vNICs get onto port
// groups. hostd consumes the Ports interface; Bridges implements it with a
// plain Linux bridge per port group until the VEM (vem/, issue 4) implements
// the same interface with its VLAN-filtering switch.
//
// # The interface
//
// The lifecycle follows HOSTD-6 and VEM-2: a vEth port exists from the vNIC's
// creation until the VM is deleted, but a tap only exists while QEMU runs.
// So there are three calls, not two:
//
//   - Attach at power-on: make sure the vNIC's tap exists on the port group
//     and return its name for QEMU ("-netdev tap,ifname=NAME,script=no").
//     Idempotent, so hostd can call it again after a restart or a failed
//     power-on.
//   - Detach at power-off: remove the tap. Nothing of a powered-off VM stays
//     in the kernel; its port identity is what hostd records (port group and
//     MAC in the VM's parameter file), from which the next Attach rebuilds
//     it.
//   - Release when the VM is deleted (or unregistered): free whatever the
//     implementation keeps per VM. Bridges keep nothing beyond the taps, so
//     this is Detach for every vNIC; the VEM frees the VM's vEth ports
//     (VethN names, their static MAC entries) here and not at power-off.
//
// The arguments are the VM name, vNIC index, port group name and guest MAC:
// everything a vEth port needs, nothing about bridges, so the VEM can take
// over without hostd changing. The tap name is returned rather than computed
// by hostd because the VEM may name its vEth taps differently.
//
// # Bridges
//
// Desired state -> applied state: Desired computes, purely, the links that
// must exist from the port groups, the optional uplink and the attached
// ports; Plan compares them with what a Kernel observes and lists the
// changes; the Kernel (NetlinkKernel) applies them one by one. An existing
// link is corrected, never re-created, so reconcile is idempotent and a
// restarted hostd finds its bridges and taps and keeps them. Interface names
// are derived from hashes of the port group and VM names (see names.go), and
// each link's alias (IFLA_IFALIAS) records what it is for: a bridge's alias
// is its port group's name, a tap's records its VM, vNIC, port group and MAC,
// so the taps of VMs that outlived a hostd restart are adopted, not deleted.
//
// VLANs: with an uplink configured, a port group with VLAN N has the 802.1Q
// sub-interface fvvlanN of the uplink on its bridge (VLAN 0: the uplink
// itself), so port groups on different VLANs never share a bridge. Without an
// uplink each bridge is an isolated segment (tests, and the first e2e, which
// reaches its guest through the port group's HostAddress). The bridge per
// port group is why two port groups cannot share a VLAN on the uplink: the
// VEM's single VLAN-filtering bridge lifts that.
package netseam

import (
	"context"

	"github.com/flashvisor/flashvisor/api"
)

// Ports connects vNICs to port groups.
type Ports interface {
	// Attach creates (or finds) the tap of vNIC nic of VM vm on port group
	// portGroup, for guest MAC mac, and returns its name, which QEMU opens
	// by name. ErrNoPortGroup if the port group does not exist.
	Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (tap string, err error)
	// Detach removes the vNIC's tap (the VM powered off). Detaching what is
	// not attached is not an error.
	Detach(ctx context.Context, vm string, nic int) error
	// Release frees everything kept for the VM (the VM was deleted).
	Release(ctx context.Context, vm string) error
	// PortGroups lists the port groups, sorted by name.
	PortGroups() []api.PortGroup
}
