// Package datastoretest has fakes for package datastore's OS seams, working
// on meaning rather than syscalls: a fake sysfs + /dev tree whose "disks"
// are sparse files, a formatter that writes a real ext4 superblock, a
// mounter that keeps a mount table (rendered as a mountinfo file) and makes
// each filesystem's content a directory, and a fixed statfs.
package datastoretest

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/datastore"
	"golang.org/x/sys/unix"
)

// Disks is a fake /sys/block and /dev. Device nodes are sparse files.
type Disks struct {
	SysBlock string
	DevDir   string
	minor    int
}

// DiskOpts are a fake disk's sysfs attributes.
type DiskOpts struct {
	Model, Serial         string
	Rotational, Removable bool
	ReadOnly              bool
}

// NewDisks creates an empty fake sysfs and /dev under a test directory.
func NewDisks(t testing.TB) *Disks {
	root := t.TempDir()
	d := &Disks{SysBlock: filepath.Join(root, "sys", "block"), DevDir: filepath.Join(root, "dev")}
	for _, p := range []string{d.SysBlock, d.DevDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func writeAttrs(t testing.TB, dir string, attrs map[string]string) {
	t.Helper()
	for k, v := range attrs {
		p := filepath.Join(dir, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (d *Disks) node(t testing.TB, name string, size int64) string {
	t.Helper()
	p := filepath.Join(d.DevDir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// AddDisk adds a whole disk of size bytes and returns its device path.
func (d *Disks) AddDisk(t testing.TB, name string, size int64, o DiskOpts) string {
	t.Helper()
	d.minor += 16
	attrs := map[string]string{
		"size":             fmt.Sprint(size / 512),
		"ro":               b01(o.ReadOnly),
		"removable":        b01(o.Removable),
		"queue/rotational": b01(o.Rotational),
		"dev":              fmt.Sprintf("8:%d", d.minor),
	}
	if o.Model != "" {
		attrs["device/model"] = o.Model
	}
	if o.Serial != "" {
		attrs["device/serial"] = o.Serial
	}
	writeAttrs(t, filepath.Join(d.SysBlock, name), attrs)
	return d.node(t, name, size)
}

// AddPartition adds partition part of disk and returns its device path.
// (The fake does not write a partition table; call WriteGPT for that.)
func (d *Disks) AddPartition(t testing.TB, disk, part string, size int64) string {
	t.Helper()
	d.minor++
	writeAttrs(t, filepath.Join(d.SysBlock, disk, part), map[string]string{
		"size":      fmt.Sprint(size / 512),
		"partition": "1",
		"dev":       fmt.Sprintf("8:%d", d.minor),
	})
	return d.node(t, part, size)
}

// Unplug removes a disk (or partition): its sysfs entry and device node.
func (d *Disks) Unplug(t testing.TB, name string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(d.SysBlock, "*", name))
	for _, p := range append(matches, filepath.Join(d.SysBlock, name), filepath.Join(d.DevDir, name)) {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
}

// Path is the device node of name.
func (d *Disks) Path(name string) string { return filepath.Join(d.DevDir, name) }

// Write writes b at off into the device name.
func (d *Disks) Write(t testing.TB, name string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(d.Path(name), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// WriteGPT puts a protective MBR and a GPT header signature on name.
func (d *Disks) WriteGPT(t testing.TB, name string) {
	d.Write(t, name, 510, []byte{0x55, 0xAA})
	d.Write(t, name, 512, []byte("EFI PART"))
}

// WriteExt4 writes an ext4 superblock (magic, extents feature, UUID, label)
// into the device or file at path, as mke2fs would.
func WriteExt4(path, label, uuid string) error {
	raw, err := hex.DecodeString(strings.ReplaceAll(uuid, "-", ""))
	if err != nil || len(raw) != 16 {
		return fmt.Errorf("bad uuid %q", uuid)
	}
	if len(label) > 16 {
		return fmt.Errorf("label %q longer than 16 bytes", label)
	}
	sb := make([]byte, 1024)
	binary.LittleEndian.PutUint16(sb[0x38:], 0xEF53)
	binary.LittleEndian.PutUint32(sb[0x5C:], 0x4)      // has_journal
	binary.LittleEndian.PutUint32(sb[0x60:], 0x40|0x2) // extents, filetype
	copy(sb[0x68:], raw)
	copy(sb[0x78:], label)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 1024), 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(sb, 1024); err != nil {
		return err
	}
	return nil
}

// FormatCall records one MakeExt4.
type FormatCall struct{ Device, Label, UUID string }

// Formatter is a fake datastore.Formatter writing a superblock only.
type Formatter struct {
	Err error // returned by MakeExt4 when set

	mu    sync.Mutex
	calls []FormatCall
}

// MakeExt4 implements datastore.Formatter.
func (f *Formatter) MakeExt4(ctx context.Context, device, label, uuid string) error {
	f.mu.Lock()
	f.calls = append(f.calls, FormatCall{Device: device, Label: label, UUID: uuid})
	f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	return WriteExt4(device, label, uuid)
}

// Calls returns the MakeExt4 calls so far.
func (f *Formatter) Calls() []FormatCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FormatCall(nil), f.calls...)
}

// Mount is one entry of the fake mount table.
type Mount struct {
	Device, Target string
	ReadOnly       bool
	foreign        bool
}

// Mounter is a fake datastore.Mounter. Each ext4 filesystem's content is a
// directory FSRoot/<fs uuid>; mounting replaces the (empty) target directory
// by a symlink to it, unmounting puts an empty directory back. The mount
// table is written to Mountinfo in the kernel's format after each change.
type Mounter struct {
	FSRoot    string
	Mountinfo string

	mu     sync.Mutex
	mounts []Mount
	busy   map[string]bool
}

// NewMounter returns a Mounter with a fresh FSRoot and an empty Mountinfo.
func NewMounter(t testing.TB) *Mounter {
	dir := t.TempDir()
	m := &Mounter{FSRoot: filepath.Join(dir, "fs"), Mountinfo: filepath.Join(dir, "mountinfo"), busy: map[string]bool{}}
	if err := os.MkdirAll(m.FSRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.render(); err != nil {
		t.Fatal(err)
	}
	return m
}

// Content is the directory holding the files of the filesystem with uuid.
func (m *Mounter) Content(uuid string) string { return filepath.Join(m.FSRoot, uuid) }

// Mount implements datastore.Mounter.
func (m *Mounter) Mount(device, target string, readOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sig, err := datastore.ProbeDevice(device)
	if err != nil {
		return fmt.Errorf("fake mount %s: %w", device, err)
	}
	if sig.Content != api.ContentExt4 {
		return fmt.Errorf("fake mount %s: %w (no ext4 superblock)", device, unix.EINVAL)
	}
	for _, mt := range m.mounts {
		if mt.Target == target {
			return fmt.Errorf("fake mount %s: %w", target, unix.EBUSY)
		}
		if mt.Device == device && !mt.ReadOnly && !readOnly {
			return fmt.Errorf("fake mount %s: already mounted read-write: %w", device, unix.EBUSY)
		}
	}
	ents, err := os.ReadDir(target)
	if err != nil {
		return fmt.Errorf("fake mount: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("fake mount: target %s is not empty (the fake cannot hide files)", target)
	}
	content := m.Content(sig.UUID)
	if err := os.MkdirAll(content, 0o755); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil {
		return err
	}
	if err := os.Symlink(content, target); err != nil {
		return err
	}
	m.mounts = append(m.mounts, Mount{Device: device, Target: target, ReadOnly: readOnly})
	return m.render()
}

// Unmount implements datastore.Mounter.
func (m *Mounter) Unmount(target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy[target] {
		return fmt.Errorf("fake unmount %s: %w", target, unix.EBUSY)
	}
	for i, mt := range m.mounts {
		if mt.Target != target {
			continue
		}
		if !mt.foreign {
			if err := os.Remove(target); err != nil {
				return err
			}
			if err := os.Mkdir(target, 0o755); err != nil {
				return err
			}
		}
		m.mounts = append(m.mounts[:i:i], m.mounts[i+1:]...)
		return m.render()
	}
	return fmt.Errorf("fake unmount %s: %w", target, unix.EINVAL)
}

// AddForeign records a mount made by someone else (e.g. the state
// partition): it appears in Mountinfo, nothing else changes.
func (m *Mounter) AddForeign(device, target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounts = append(m.mounts, Mount{Device: device, Target: target, foreign: true})
	return m.render()
}

// SetBusy makes Unmount(target) fail with EBUSY (a VM has files open).
func (m *Mounter) SetBusy(target string, busy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy[target] = busy
}

// Mounts returns the mount table.
func (m *Mounter) Mounts() []Mount {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mount(nil), m.mounts...)
}

// Reboot forgets every mount, as a power cycle does: targets become empty
// directories again. Filesystem contents stay.
func (m *Mounter) Reboot() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mt := range m.mounts {
		if mt.foreign {
			continue
		}
		os.Remove(mt.Target)
		os.Mkdir(mt.Target, 0o755)
	}
	m.mounts = nil
	return m.render()
}

func (m *Mounter) render() error {
	var b strings.Builder
	fmt.Fprintf(&b, "21 1 0:20 / / rw,relatime shared:1 - rootfs rootfs rw\n")
	for i, mt := range m.mounts {
		opts := "rw,noatime"
		if mt.ReadOnly {
			opts = "ro,noatime"
		}
		fmt.Fprintf(&b, "%d 21 0:0 / %s %s shared:%d - ext4 %s %s\n", 100+i, escape(mt.Target), opts, i+2, escape(mt.Device), opts)
	}
	return os.WriteFile(m.Mountinfo, []byte(b.String()), 0o644)
}

func escape(s string) string {
	return strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`).Replace(s)
}

// Statfs returns a datastore.StatfsFunc that reports total and free bytes
// for every path.
func Statfs(total, free uint64) datastore.StatfsFunc {
	return func(string) (uint64, uint64, error) { return total, free, nil }
}
