// Package netseam is hostd's networking seam: how a VM's vNICs get onto port
// groups. hostd's VM manager consumes the Ports interface; the standalone
// switch (hostd/vswitch) implements it on top of the VEM, whose vEth ports
// the vNICs become (HOSTD-6, VEM-2). The interface predates the VEM (an
// interim bridge per port group implemented it first) and did not change
// when the VEM took over.
//
// The lifecycle follows HOSTD-6 and VEM-2: a vEth port exists from the
// vNIC's creation until the VM is deleted, but QEMU only holds its tap
// while it runs. So there are three calls, not two:
//
//   - Attach: make sure the vNIC's vEth exists on the port group and return
//     its tap's name for QEMU ("-netdev tap,ifname=NAME,script=no").
//     Idempotent: hostd calls it when a vNIC is created and again at each
//     power-on and after a restart.
//   - Detach at power-off: nothing of the port goes away (the tap stays,
//     without carrier, and keeps its vEth number, counters and settings).
//   - Release when the VM is deleted (or unregistered): free its vEth
//     ports.
//
// The arguments are the VM name, vNIC index, port group name and guest MAC:
// everything a vEth port needs. The tap name is returned rather than
// computed by hostd because it is the switch's to choose.
package netseam

import (
	"context"
	"errors"

	"github.com/flashvisor/flashvisor/api"
)

// Ports connects vNICs to port groups.
type Ports interface {
	// Attach creates (or finds) the vEth of vNIC nic of VM vm on port
	// group portGroup, for guest MAC mac, and returns its tap's name,
	// which QEMU opens by name. ErrNoPortGroup if the port group does not
	// exist.
	Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (tap string, err error)
	// Detach is called when the VM powers off. Detaching what is not
	// attached is not an error.
	Detach(ctx context.Context, vm string, nic int) error
	// Release frees everything kept for the VM (the VM was deleted).
	Release(ctx context.Context, vm string) error
	// PortGroups lists the port groups, sorted by name.
	PortGroups() []api.PortGroup
}

// Errors callers map to API codes.
var (
	ErrInvalid     = errors.New("invalid")
	ErrNoPortGroup = errors.New("no such port group")
	ErrExists      = errors.New("already exists")
	ErrInUse       = errors.New("in use")
	ErrNotFound    = errors.New("not found")
	ErrCorrupt     = errors.New("switch configuration file is corrupt")
)
