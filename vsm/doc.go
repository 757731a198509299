// Package vsm is the Virtual Supervisor Module daemon: the control plane
// of Flashvisor's distributed switch (SPEC section 5). It drives every
// host's VEM as a line card of a 66-slot chassis and never carries data
// traffic itself (VSM-8).
//
// One Server (New, then Run or Serve) holds the switch model and serves
// three front ends (four in an HA pair, see below):
//
//   - The control channel (VEM-9, VSM-2, VSM-3): TLS 1.3 on port 2001 with
//     client certificates from the domain CA, whose CN must equal the
//     hello's host UUID. Newline-delimited api.VSMMessage JSON: hello ->
//     chassis join -> welcome -> full snapshot -> a delta at the module's
//     next generation on every change of its programming (package render);
//     resync -> full snapshot; attach/detach -> package ports; port reports
//     kept for the show commands. Messages of another domain are dropped
//     and counted, sequence gaps counted, heartbeats sent every 2 s, and a
//     sweep takes VEMs silent for 8 s offline (they return to their slot).
//   - The management API: HTTPS with the same server certificate and a
//     bearer token: POST /api/v1/cli, POST /api/v1/join, GET
//     /api/v1/modules, GET /api/v1/health.
//   - SSH (VSM-4): user admin, the API token as password, an interactive
//     NX-OS shell (package cli) with ? help and Tab completion, and exec
//     requests.
//
// Trust (VSM-6): the first start creates a domain CA (ECDSA P-256, 10
// years) and the VSM's server certificate (DNS "vsm" plus the advertised
// IPs); JoinBundle issues a host's client certificate with the domain's
// opaque data.
//
// High availability (VSM-7, ha.go, peer.go, pair.go): two VSMs with the
// roles primary (slot 1) and secondary (slot 2) and the same token form
// an active/standby pair over a fourth front end, the peer port (2002):
//
//   - Pairing: a secondary without trust material gets the domain CA from
//     the primary's peer port on its first start; both sides prove the
//     token to each other with an HMAC bound to the TLS session, so the
//     token never travels and a man in the middle learns nothing.
//   - The peer link: the secondary dials the primary; TLS 1.3, both sides
//     present their VSM certificate (CN "vsm") from the domain CA.
//     Heartbeats every 1 s carry each side's state and epoch; the active
//     sends its whole replicated state (running and startup configuration,
//     slot bindings and pins, vEth and uplink bindings, per-module
//     generations) whenever it changes, numbered by a revision the standby
//     acks after storing it.
//   - The standby refuses VEM hellos (not_active) and configuration
//     changes. It becomes active when it has not heard an active peer for
//     6 s; a fresh primary becomes active when nobody answers within 3 s,
//     or at once when its peer is standby too.
//   - Activation stores a new epoch above every epoch seen, odd on the
//     primary and even on the secondary (never shared), before anything is
//     sent with it. An active VSM that hears a newer active peer, or a VEM
//     whose hello carries a newer epoch, steps down and drops its VEMs,
//     which move to the next VSM of their opaque list (both VSMs' control
//     addresses, the active's first).
//
// Persistence, all in the state directory: the running configuration
// after every change (NX-OS keeps it in memory only; we write it so that
// a VSM restart loses nothing, see RunningConfigFile), the startup
// configuration on `copy running-config startup-config`, chassis slot
// bindings, vEth and uplink bindings, keys, the token hash, the
// activation epoch (raised at every activation and sent on every message,
// so VEMs can fence an older active) and the peer record (PeerFile). A
// standby stores what it receives the same way, so it can take over after
// a restart of its own.
package vsm
