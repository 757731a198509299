// Package vm is hostd's VM manager (HOSTD-1..7): the inventory of VMs
// registered on this host, each a directory on a datastore holding its
// parameter file, disks and logs; their QEMU processes, controlled over QMP;
// and their state, reported as events.
//
// A VM's QEMU runs in its own session and cgroup, so it survives a hostd
// restart: at start the manager adopts every VM whose QEMU still answers on
// its QMP socket. Only a host shutdown (init's shutdown marker) makes hostd
// shut its VMs down.
//
// The OS is reached through small seams (Launcher for processes, Ports for
// vNIC taps, DiskTool for qemu-img, a QMP dial func), so the state machine
// is tested with fakes and the real parts are tested end to end.
package vm
