// Package vsmlink is the VEM's side of the VSM control channel (SPEC VEM-8,
// VEM-9, VSM-2/3/6/7/8; the wire protocol is api/vsm.go), L3 mode: one
// mutually authenticated TLS 1.3 connection from the VEM to the active VSM
// carrying newline-delimited JSON api.VSMMessages.
//
// The switch's programming is two parts merged (Merge, pure):
//
//	local part (hostd, PUT /v1/config: the standalone switch, VEM-7)
//	  ∪ VSM part (the VSM's snapshots and deltas: profiles, uplink Eths, vEths)
//	  = what the agent applies (vem.Agent.SetConfig), DomainID and Module set
//
// Only the VSM part changes on VSM messages, and the agent's reconcile is
// diff-based, so an identical snapshot after a reconnect changes nothing in
// the kernel (VSM-8). The VSM part, its generation, the highest epoch seen
// and the module are persisted (State) before a config is acked; the merged
// programming is also kept by the agent's vem.Store, so a host rebooting
// while headless restores every port before the link is even up (VEM-8).
//
// Epoch fencing (VSM-7): config from an epoch lower than the highest seen
// is refused and counted; a higher one raises it. Messages of another
// domain are dropped and counted, never acted upon (VEM-9).
//
// Packet channel (VEM-9): while connected, the link captures the CDP
// frames received on the programming's Eth ports and the IGMP frames
// received on its Eth and vEth ports through a FrameSource
// (vem/ctlframe.Capture in vemd) and relays each to the VSM as a frame
// message named by its EthM/P or VethN (CDP at most one per port per
// FrameInterval, IGMP in a bounded burst). A capture that fails is logged
// once per uplink and retried; it never affects the link. In svs mode L2,
// with a vmknic on the packet VLAN and a VSM that named its packet vNIC in
// the welcome, the frames go there instead, as raw frames tagged with a key
// of this session's TLS connection (internal/pktchan, PacketOpener); one
// that does not fit the MTU, or fails, takes the control connection.
//
// Files: the join data (JoinFile, 0600: it holds the client key, which is
// never logged nor returned) and the link state (StateFile).
package vsmlink
