// Package vem is the Virtual Ethernet Module's agent: it programs one
// host's switch into the kernel (SPEC VEM-1..10). Forwarding is the
// kernel's (a VLAN-filtering Linux bridge, taps, bonds, tc); the agent only
// programs it, so traffic never depends on the agent being alive.
//
// Desired state -> applied state:
//
//	api.SwitchConfig --Validate--> *Config --Desired--> KernelState
//	Kernel.Observe() -> KernelState --Plan(desired, observed)--> []Change --Kernel.Apply
//
// Validate and Desired and Plan are pure. Kernel is the thin apply layer
// (NetlinkKernel; vemtest.Kernel in tests). Plan is diff-based: an
// unchanged config yields an empty plan, so a restarted agent converges
// without touching a single port, and a change to one port touches only
// that port. The Agent ties them together; its config comes through
// SetConfig whatever the source (standalone switch now, VSM later) and the
// last applied config is kept by a Store (VEM-8). See docs/design.md, "VEM
// design".
package vem
