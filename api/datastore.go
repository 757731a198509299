package api

import "time"

// Datastore kinds.
const (
	DatastoreLocal = "local"
)

// Datastore states.
const (
	// DatastoreMounted: mounted at /vmfs/volumes/<uuid>, the name links to it.
	DatastoreMounted = "mounted"
	// DatastoreUnmounted: the disk is present but the operator unmounted it;
	// it stays unmounted across reboots until mounted again.
	DatastoreUnmounted = "unmounted"
	// DatastoreMissing: a known datastore whose disk is gone (DS-2).
	DatastoreMissing = "missing"
	// DatastoreConflict: found on a disk but not mounted because its name or
	// UUID collides with another datastore; Message says with which.
	DatastoreConflict = "conflict"
	// DatastoreError: mounting failed; Message says why.
	DatastoreError = "error"
)

// Datastore is one entry of GET /api/v1/datastores.
type Datastore struct {
	Name string `json:"name"`
	// UUID is the datastore's identity, also the ext4 filesystem UUID, in the
	// standard 8-4-4-4-12 form.
	UUID string `json:"uuid"`
	Kind string `json:"kind"` // DatastoreLocal
	// Device is the block device holding it now ("" when missing).
	Device string `json:"device,omitempty"`
	// MountPoint is /vmfs/volumes/<uuid>; Path is the /vmfs/volumes/<name>
	// link VM files are addressed by.
	MountPoint    string    `json:"mount_point"`
	Path          string    `json:"path"`
	CapacityBytes uint64    `json:"capacity_bytes"`
	FreeBytes     uint64    `json:"free_bytes"`
	Status        string    `json:"status"`
	Message       string    `json:"message,omitempty"`
	Created       time.Time `json:"created"`
}

// DatastoreCreateRequest is the body of POST /api/v1/datastores.
type DatastoreCreateRequest struct {
	Name string `json:"name"`
	// Device is a disk or partition name ("sdb", "nvme0n1p3") or its /dev path.
	Device string `json:"device"`
	// Force formats a device that holds data, a partition table or another
	// datastore. It never allows a mounted device or the state partition.
	Force bool `json:"force,omitempty"`
}

// Disk is one whole disk in GET /api/v1/storage/disks.
type Disk struct {
	BlockDevice
	Model      string        `json:"model,omitempty"`
	Serial     string        `json:"serial,omitempty"`
	Rotational bool          `json:"rotational"`
	Removable  bool          `json:"removable"`
	Partitions []BlockDevice `json:"partitions,omitempty"`
}

// Content values of BlockDevice.Content: what the first bytes hold.
const (
	ContentEmpty = ""      // all zero where signatures live
	ContentExt4  = "ext4"  // also "ext3", "ext2"
	ContentXFS   = "xfs"   //
	ContentGPT   = "gpt"   // partition table
	ContentMBR   = "mbr"   // partition table (or a boot sector)
	ContentOther = "other" // a known signature we do not handle (swap, LVM, LUKS, ...)
	ContentData  = "data"  // non-zero bytes without a known signature
)

// BlockDevice is a disk or a partition.
type BlockDevice struct {
	Name      string `json:"name"` // "sdb", "sdb1"
	Path      string `json:"path"` // "/dev/sdb"
	SizeBytes uint64 `json:"size_bytes"`
	ReadOnly  bool   `json:"read_only,omitempty"`
	// Content is what it holds: a ContentX value; ContentOther comes with
	// the signature name in ContentDetail.
	Content       string `json:"content,omitempty"`
	ContentDetail string `json:"content_detail,omitempty"`
	Label         string `json:"label,omitempty"`   // filesystem label
	FSUUID        string `json:"fs_uuid,omitempty"` // filesystem UUID
	// MountPoints lists where it is mounted (empty: not mounted).
	MountPoints []string `json:"mount_points,omitempty"`
	// Datastore is the name of the datastore it holds, if any.
	Datastore string `json:"datastore,omitempty"`
}

// DatastoreEntry is one entry of a datastore directory listing
// (GET /api/v1/datastores/{name}/files/{dir}) or an uploaded file.
type DatastoreEntry struct {
	Name     string    `json:"name"`
	Dir      bool      `json:"dir,omitempty"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}
