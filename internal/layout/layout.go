// Package layout names the well-known paths of a running Flashvisor system, so
// that init, hostd and the image builder agree on them without importing each
// other. Code takes paths as parameters; only mains and defaults use these.
package layout

const (
	// Init is PID 1 inside the initramfs.
	Init = "/init"
	// LibexecDir holds the services' binaries.
	LibexecDir = "/usr/lib/flashvisor"
	// Hostd is the host daemon.
	Hostd = LibexecDir + "/hostd"
	// VEMD is the VEM agent.
	VEMD = LibexecDir + "/vemd"
	// Fvctl is the operator CLI, also shipped in the image.
	Fvctl = "/usr/bin/fvctl"

	// EtcDir holds read-only image data.
	EtcDir = "/etc/flashvisor"
	// ManifestFile lists what went into the image.
	ManifestFile = EtcDir + "/manifest.json"
	// ServicesFile lists the services init supervises (api.ServiceSpec).
	ServicesFile = EtcDir + "/services.json"

	// RunDir holds runtime state (tmpfs).
	RunDir = "/run/flashvisor"
	// InitSocket is init's control socket (api.InitRequest).
	InitSocket = RunDir + "/init.sock"
	// VEMSocket is the VEM agent's local API (root only).
	VEMSocket = RunDir + "/vem.sock"
	// BootInfoFile is written by init after boot (api.BootInfo).
	BootInfoFile = RunDir + "/boot.json"
	// ShutdownMarker exists once init's shutdown funnel has started: a
	// service that gets SIGTERM and sees it knows the host is going down
	// (hostd then shuts its VMs down; on a mere restart it leaves them
	// running).
	ShutdownMarker = RunDir + "/shutting-down"
	// ModulesLoadFile lists modules init loads whatever the hardware.
	ModulesLoadFile = EtcDir + "/modules.load"

	// StateDir is where the state partition is mounted; without one it is a
	// tmpfs directory and BootInfo.PersistentState is false.
	StateDir = "/var/lib/flashvisor"
	// StateLabel is the ext4 label of the state partition.
	StateLabel = "FVSTATE"

	// Files inside StateDir.
	HostUUIDFile   = "host-uuid"
	HostConfigFile = "host-config.json"
	TLSKeyFile     = "tls/host.key"
	TLSCertFile    = "tls/host.crt"
	TokenHashFile  = "api-token.sha256"
	// DatastoresFile lists the datastores the host knows (package datastore).
	DatastoresFile = "datastores.json"
	// VEMStateFile is the VEM's last applied programming (VEM-8).
	VEMStateFile = "vem/programming.json"
	// VEMJoinFile is the VSM join data hostd handed the VEM (opaque data,
	// CA, client certificate and key: 0600; VSM-6).
	VEMJoinFile = "vem/vsm-join.json"
	// VEMLinkStateFile is the VSM's part of the programming with its
	// generation, epoch and module (VEM-8, VSM-7).
	VEMLinkStateFile = "vem/vsm-state.json"
	// SwitchFile is the standalone switch's configuration (VEM-7), kept
	// by hostd.
	SwitchFile = "network/switch.json"
	// VswifMarker (in the state dir) says the management network is
	// vswif0 on the switch: init then configures no address on the
	// management NIC at boot, hostd brings vswif0 up.
	VswifMarker = "network/management-on-vswif0"

	// APIPort is the management API's HTTPS port.
	APIPort = 443
)
