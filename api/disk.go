package api

// Disk operations on datastore files (DS-5), outside any VM: import other
// formats, clone, grow, inspect. Files are "[datastore] path".

// DiskCopyRequest is the body of POST /api/v1/disks/import and
// /api/v1/disks/clone.
type DiskCopyRequest struct {
	// Source is the image to copy, e.g. "[ds1] import/appliance.vmdk".
	Source string `json:"source"`
	// Destination is the new disk; it must not exist.
	Destination string `json:"destination"`
	// Provisioning is ProvisionThin (qcow2, the default) or ProvisionThick
	// (fully allocated raw).
	Provisioning string `json:"provisioning,omitempty"`
}

// DiskGrowRequest is the body of POST /api/v1/disks/grow.
type DiskGrowRequest struct {
	Disk    string `json:"disk"`
	SizeMiB int64  `json:"size_mib"`
}

// DiskInfo describes a disk image (qemu-img info).
type DiskInfo struct {
	Path string `json:"path"` // "[datastore] path"
	// Format is qcow2, raw, vmdk, vhdx, vdi, vpc...
	Format           string `json:"format"`
	VirtualSizeBytes int64  `json:"virtual_size_bytes"`
	// ActualSizeBytes is the space the file takes on the datastore.
	ActualSizeBytes int64 `json:"actual_size_bytes"`
	// BackingFile is the image this one is an overlay of ("[datastore]
	// path" when on the same datastore).
	BackingFile string `json:"backing_file,omitempty"`
	// Snapshots counts the internal snapshots.
	Snapshots int `json:"snapshots"`
}
