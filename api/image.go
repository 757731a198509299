package api

// Manifest is /etc/flashvisor/manifest.json inside an image and
// out/<profile>/manifest.json beside it: what went into the image.
type Manifest struct {
	Profile string          `json:"profile"` // "host", later "vsm"
	Version string          `json:"version"` // Flashvisor version (git describe)
	Kernel  string          `json:"kernel"`  // kernel release, e.g. "6.1.0-37-amd64"
	Inputs  []ManifestInput `json:"inputs"`
	// Outputs are filled in the copy beside the image (not the embedded one,
	// which cannot contain its own hash).
	Outputs []ManifestOutput `json:"outputs,omitempty"`
}

// ManifestInput is one input: a Debian package or a Go program.
type ManifestInput struct {
	Kind    string `json:"kind"` // "deb" or "go"
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"`
}

// ManifestOutput is one output file with its size and hash.
type ManifestOutput struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ServiceSpec is one entry of /etc/flashvisor/services.json, written by the
// image builder per profile and read by init: init starts services by path in
// list order and never imports them.
type ServiceSpec struct {
	Name string   `json:"name"`
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	// StopTimeoutSeconds is how long the service gets between SIGTERM and
	// SIGKILL (default 10). hostd needs minutes at host shutdown: it shuts
	// its VMs down first.
	StopTimeoutSeconds int `json:"stop_timeout_seconds,omitempty"`
	// Console runs the service on the system console as its controlling
	// terminal instead of capturing its output (the emergency shell).
	Console bool `json:"console,omitempty"`
}
