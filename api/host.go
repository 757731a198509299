package api

import "time"

// Version is the API version in every path: /api/v1/...
const Version = "v1"

// Host is the body of GET /api/v1/host.
type Host struct {
	Hostname        string  `json:"hostname"`
	UUID            string  `json:"uuid"`
	Version         string  `json:"version"`
	UptimeSeconds   float64 `json:"uptime_seconds"`
	CPUModel        string  `json:"cpu_model"`
	CPUs            int     `json:"cpus"`
	MemoryBytes     uint64  `json:"memory_bytes"`
	KVM             bool    `json:"kvm"`
	Kernel          string  `json:"kernel"`
	PersistentState bool    `json:"persistent_state"`
	// Management is the address the API listens on, e.g. "10.0.2.15".
	ManagementAddress string `json:"management_address"`
	// Fingerprint is the SHA-256 of the host certificate (colon-separated hex).
	Fingerprint string `json:"fingerprint"`
}

// Service states reported by init and the API.
const (
	ServiceStarting = "starting"
	ServiceRunning  = "running"
	ServiceBackoff  = "backoff" // exited unexpectedly, waiting to restart
	ServiceExited   = "exited"  // exited with DoNotRestart: stays down
	ServiceStopped  = "stopped" // stopped by the shutdown funnel
)

// DoNotRestart is the exit code with which a supervised service tells init not
// to restart it (gokrazy uses the same convention).
const DoNotRestart = 125

// Service is one supervised service as listed by GET /api/v1/services.
type Service struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	PID      int       `json:"pid"`
	Restarts int       `json:"restarts"`
	Started  time.Time `json:"started"`
	LastExit string    `json:"last_exit,omitempty"` // e.g. "signal: killed", "exit status 1"
}

// ServiceLog is the body of GET /api/v1/services/{name}/log.
type ServiceLog struct {
	Name  string   `json:"name"`
	Lines []string `json:"lines"`
}

// SignalRequest is the body of POST /api/v1/services/{name}/signal.
type SignalRequest struct {
	Signal string `json:"signal"` // "TERM", "KILL", "HUP", "INT", "USR1", "USR2"
}

// Accepted is the body of 202 answers (shutdown, reboot, restart).
type Accepted struct {
	Message string `json:"message"`
}

// Error is the body of every non-2xx answer. Code is stable and meant for
// programs; Message is for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Stable error codes.
const (
	ErrUnauthorized     = "unauthorized"
	ErrNotFound         = "not_found"
	ErrBadRequest       = "bad_request"
	ErrBodyTooLarge     = "body_too_large"
	ErrMethodNotAllowed = "method_not_allowed"
	ErrUnavailable      = "unavailable"
	ErrInternal         = "internal"

	// 409 answers: the request is well-formed but the current state
	// forbids it.
	ErrExists   = "exists"   // the name is already taken
	ErrConflict = "conflict" // e.g. a datastore missing or on several disks
	// ErrForceRequired: the operation would destroy data; the same request
	// with force set overrides it.
	ErrForceRequired = "force_required"
	// ErrInUse: the device or datastore is in use (the state partition, a
	// mounted device, open files); force never overrides it.
	ErrInUse = "in_use"
)
