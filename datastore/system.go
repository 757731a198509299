package datastore

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// Mke2fs formats with e2fsprogs' mke2fs, which the image ships.
type Mke2fs struct {
	Path string // default /sbin/mke2fs
}

// MakeExt4 runs mke2fs -t ext4 -q -F -m 0 -L label -U uuid device. -F makes
// it format a whole disk without asking; the safety checks are Create's.
// No blocks are reserved for root (-m 0): a datastore holds VM files only.
func (f Mke2fs) MakeExt4(ctx context.Context, device, label, uuid string) error {
	path := f.Path
	if path == "" {
		path = "/sbin/mke2fs"
	}
	cmd := exec.CommandContext(ctx, path, "-t", "ext4", "-q", "-F", "-m", "0", "-L", label, "-U", uuid, device)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// SysMounter mounts with mount(2).
type SysMounter struct{}

// Mount mounts an ext4 filesystem with noatime, nosuid and nodev. A
// read-only mount also skips journal replay (noload), so probing a disk
// never writes to it.
func (SysMounter) Mount(device, target string, readOnly bool) error {
	flags := uintptr(unix.MS_NOATIME | unix.MS_NOSUID | unix.MS_NODEV)
	data := ""
	if readOnly {
		flags |= unix.MS_RDONLY
		data = "noload"
	}
	if err := unix.Mount(device, target, "ext4", flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", device, target, err)
	}
	return nil
}

// Unmount unmounts target.
func (SysMounter) Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// Statfs is the real StatfsFunc: capacity and bytes available to users.
func Statfs(path string) (total, free uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// SystemConfig is the Config of a running host: the kernel's paths, mke2fs,
// mount(2) and statfs(2). stateFile is e.g. /var/lib/flashvisor/datastores.json.
func SystemConfig(stateFile string, log *slog.Logger) Config {
	return Config{
		SysBlock:    "/sys/block",
		DevDir:      "/dev",
		Mountinfo:   "/proc/self/mountinfo",
		VolumesDir:  "/vmfs/volumes",
		StateFile:   stateFile,
		ProbeDir:    "/run/flashvisor/dsprobe",
		SCSIHostDir: "/sys/class/scsi_host",
		Formatter:   Mke2fs{},
		Mounter:     SysMounter{},
		Statfs:      Statfs,
		Log:         log,
	}
}
