// Package vsm is the Virtual Supervisor Module daemon: the control plane
// of Flashvisor's distributed switch (SPEC section 5). It drives every
// host's VEM as a line card of a 66-slot chassis and never carries data
// traffic itself (VSM-8).
//
// One Server (New, then Run or Serve) holds the switch model and serves
// three front ends:
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
// Persistence, all in the state directory: the running configuration
// after every change (NX-OS keeps it in memory only; we write it so that
// a VSM restart loses nothing, see RunningConfigFile), the startup
// configuration on `copy running-config startup-config`, chassis slot
// bindings, vEth and uplink bindings, keys, the token hash and the
// activation epoch (VSM-7 groundwork: raised at every activation and sent
// on every message, so VEMs can fence an older active).
package vsm
