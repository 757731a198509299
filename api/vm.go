package api

import "time"

// VMSpec is a VM's configuration: what its parameter file (<vm>.fvx in the
// VM's directory) holds and what the API accepts and returns. Rules (limits,
// allowed values, cross-checks) live in hostd/vmconfig.Validate; the wire
// type only names things.
//
// File references (disks, CD-ROM, kernel, initrd) are either relative to the
// VM's directory ("web01.qcow2") or datastore paths ("[iso] debian.iso"),
// never host paths, so the same VM directory can be registered on any host
// that sees its datastore (HOSTD-2).
type VMSpec struct {
	// Name is the VM's name and the name of its directory.
	Name string `json:"name"`
	// UUID is the SMBIOS system UUID the guest sees (8-4-4-4-12 hex); empty
	// lets QEMU pick one at every power-on.
	UUID string `json:"uuid,omitempty"`
	// GuestOS is a hint for people and tools, e.g. "ubuntu-64", "other-64".
	GuestOS   string `json:"guest_os,omitempty"`
	VCPUs     int    `json:"vcpus"`
	MemoryMiB int    `json:"memory_mib"`
	// MemoryHotAdd lets memory be added while the VM runs (ESXi's
	// mem.hotadd), up to MaxMemoryMiB, which it requires. Added memory is
	// recorded in MemoryMiB, so the next power-on starts with all of it.
	MemoryHotAdd bool `json:"memory_hot_add,omitempty"`
	MaxMemoryMiB int  `json:"max_memory_mib,omitempty"`
	// Firmware is FirmwareBIOS or FirmwareUEFI.
	Firmware string `json:"firmware"`
	// KernelBoot, when set, boots a kernel directly instead of the firmware
	// looking for a boot disk.
	KernelBoot *KernelBoot `json:"kernel_boot,omitempty"`
	// SCSIControllers[i] is controller scsi<i>; at most 4.
	SCSIControllers []SCSIController `json:"scsi_controllers,omitempty"`
	Disks           []VirtualDisk    `json:"disks,omitempty"`
	CDROM           *CDROM           `json:"cdrom,omitempty"`
	// NICs[i] is vNIC ethernet<i>; at most 10, in the order the guest sees
	// them.
	NICs []NIC `json:"nics,omitempty"`
	// SerialConsole gives the VM a serial port that the console API attaches to.
	SerialConsole bool `json:"serial_console"`
	// VNCConsole makes the VM's screen reachable over VNC through the API.
	VNCConsole bool      `json:"vnc_console"`
	Autostart  Autostart `json:"autostart"`
	// Extra holds user keys ("x-..." and "guestinfo....") kept verbatim for
	// tools and guests; hostd gives them no meaning.
	Extra map[string]string `json:"extra,omitempty"`
}

// Firmware kinds.
const (
	FirmwareBIOS = "bios" // SeaBIOS
	FirmwareUEFI = "uefi" // OVMF with a per-VM NVRAM file
)

// KernelBoot is direct kernel boot: QEMU loads the kernel and initrd itself.
type KernelBoot struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// SCSIController is one virtual SCSI HBA.
type SCSIController struct {
	// Model is SCSIVirtio or SCSILSILogic.
	Model string `json:"model"`
}

// SCSI controller models.
const (
	SCSIVirtio = "virtio-scsi"
	// SCSILSILogic is the LSI-compatible HBA for guests without virtio
	// drivers. QEMU device: megasas (LSI MegaRAID SAS 1078), which Linux
	// (megaraid_sas) and Windows drive with in-box drivers.
	SCSILSILogic = "lsilogic"
)

// VirtualDisk is one virtual disk of a VM (api.Disk is a host disk).
type VirtualDisk struct {
	// Bus is DiskBusSCSI, DiskBusNVMe or DiskBusVirtio.
	Bus string `json:"bus"`
	// Controller is N in scsiN:M and nvmeN:M, or in virtioblkN.
	Controller int `json:"controller"`
	// Unit is M in scsiN:M (the SCSI target) and nvmeN:M (namespace M+1);
	// always 0 for virtio-blk.
	Unit int `json:"unit"`
	// File is the image, relative to the VM directory or "[datastore] path".
	File string `json:"file"`
	// Provisioning is ProvisionThin, ProvisionThick or ProvisionExisting.
	Provisioning string `json:"provisioning"`
	// Format is DiskQcow2 or DiskRaw. Required for existing images; implied
	// by thin (qcow2) and thick (raw) provisioning.
	Format string `json:"format,omitempty"`
	// SizeMiB is the size of a disk hostd creates (thin or thick).
	SizeMiB int64 `json:"size_mib,omitempty"`
}

// Disk buses.
const (
	DiskBusSCSI   = "scsi"
	DiskBusNVMe   = "nvme"
	DiskBusVirtio = "virtio"
)

// Disk provisioning.
const (
	ProvisionThin     = "thin"     // new qcow2, grows on demand
	ProvisionThick    = "thick"    // new raw file, fully allocated
	ProvisionExisting = "existing" // an image that is already there
)

// Disk image formats.
const (
	DiskQcow2 = "qcow2"
	DiskRaw   = "raw"
)

// CDROM is the VM's CD-ROM drive (on the SATA controller).
type CDROM struct {
	// File is an ISO image, normally "[datastore] path"; empty for an empty
	// drive.
	File string `json:"file,omitempty"`
	// StartConnected inserts File at power-on.
	StartConnected bool `json:"start_connected"`
}

// NIC is one vNIC.
type NIC struct {
	// Model is NICVirtio, NICE1000 or NICVmxnet3.
	Model string `json:"model"`
	// PortGroup names the port group the vNIC connects to.
	PortGroup string `json:"port_group"`
	// AddressType is MACGenerated or MACStatic.
	AddressType string `json:"address_type"`
	// MAC is "00:50:56:xx:yy:zz". A generated vNIC may leave it empty:
	// hostd fills it in and records it.
	MAC string `json:"mac,omitempty"`
}

// vNIC models.
const (
	NICVirtio  = "virtio"
	NICE1000   = "e1000"
	NICVmxnet3 = "vmxnet3"
)

// MAC address types.
const (
	MACGenerated = "generated"
	MACStatic    = "static"
)

// Autostart is the VM's entry in the host's autostart sequence.
type Autostart struct {
	Enabled bool `json:"enabled"`
	// Order: VMs with a lower order start first; 0 means no particular
	// order (after the ordered ones).
	Order int `json:"order,omitempty"`
	// DelaySeconds is the wait after this VM's power-on before the next one.
	DelaySeconds int `json:"delay_seconds,omitempty"`
}

// VM power states.
const (
	VMPoweredOff = "poweredOff"
	VMPoweredOn  = "poweredOn"
	VMSuspended  = "suspended" // state saved to a file, no process
	VMPaused     = "paused"    // process alive, vCPUs stopped
	VMCrashed    = "crashed"   // guest panic or QEMU died unexpectedly
)

// VMStatus is a VM's observed state, next to its spec.
type VMStatus struct {
	State string `json:"state"`
	// PID of the QEMU process; 0 when there is none.
	PID int `json:"pid,omitempty"`
	// Started is when the current QEMU process started.
	Started       time.Time `json:"started,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds,omitempty"`
	// Reason says why the VM is in State when that is not obvious, e.g.
	// "guest-panicked", "qemu exited: signal: killed".
	Reason string `json:"reason,omitempty"`
	// Accel is "kvm" or "tcg" while running.
	Accel string `json:"accel,omitempty"`
	// MemoryUsedBytes is the QEMU process's resident memory.
	MemoryUsedBytes uint64 `json:"memory_used_bytes,omitempty"`
	// CPUSeconds is the QEMU process's CPU time.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// HotAddedMemoryMiB is the memory in DIMMs plugged into the running
	// QEMU since it started, as QEMU reports it (query-memory-devices);
	// it is part of the spec's MemoryMiB.
	HotAddedMemoryMiB int `json:"hot_added_memory_mib,omitempty"`
}

// VM is one inventory entry as listed and inspected by the API.
type VM struct {
	Spec VMSpec `json:"spec"`
	// Datastore and Path locate the parameter file: "[Datastore] Path".
	Datastore string   `json:"datastore"`
	Path      string   `json:"path"`
	Status    VMStatus `json:"status"`
}

// Snapshot is one VM snapshot (qcow2 internal snapshots of every disk, plus
// the memory when it was taken while the VM ran).
type Snapshot struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Parent      string    `json:"parent,omitempty"`
	Memory      bool      `json:"memory"`
}

// VMCreateRequest is the body of POST /api/v1/vms.
type VMCreateRequest struct {
	Datastore string `json:"datastore"`
	Spec      VMSpec `json:"spec"`
}

// VMRegisterRequest is the body of POST /api/v1/vms/register: a parameter
// file on a datastore, e.g. {"datastore": "ds1", "path": "web01/web01.fvx"}.
type VMRegisterRequest struct {
	Datastore string `json:"datastore"`
	Path      string `json:"path"`
}

// SnapshotRequest is the body of POST /api/v1/vms/{name}/snapshots.
type SnapshotRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// More error codes for VMs.
const (
	ErrState     = "invalid_state" // e.g. power on a running VM
	ErrAdmission = "admission"     // not enough memory under the overcommit ratio
	ErrNoKVM     = "no_kvm"
)
