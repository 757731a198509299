package api

// The init control protocol: hostd (or any root process) connects to init's
// unix socket (layout.InitSocket), writes one InitRequest as JSON and reads one
// InitResponse. One request per connection keeps both ends trivial.

// Init control operations.
const (
	InitOpServices = "services" // list services
	InitOpLog      = "log"      // one service's log ring buffer
	InitOpRestart  = "restart"  // stop (TERM, then KILL) and start again
	InitOpSignal   = "signal"   // send a signal to the service's process group
	InitOpShutdown = "shutdown" // power off through the shutdown funnel
	InitOpReboot   = "reboot"   // reboot through the shutdown funnel
	// InitOpReleaseNetwork hands the management NIC over to the switch:
	// init stops renewing its DHCP lease and removes the addresses, routes
	// and VLAN sub-interface it configured, so the NIC can become an uplink
	// and vswif0 can take the management address (VMK-1).
	InitOpReleaseNetwork = "release-network"
)

// InitRequest is one control request to init.
type InitRequest struct {
	Op      string `json:"op"`
	Service string `json:"service,omitempty"`
	Signal  string `json:"signal,omitempty"`
}

// InitResponse is init's answer. Error is empty on success; ErrorCode is one
// of the API error codes (ErrNotFound, ErrBadRequest, ...).
type InitResponse struct {
	Error     string    `json:"error,omitempty"`
	ErrorCode string    `json:"error_code,omitempty"`
	Services  []Service `json:"services,omitempty"`
	Log       []string  `json:"log,omitempty"`
}
