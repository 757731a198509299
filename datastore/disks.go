package datastore

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// skippedPrefixes are block devices that are never datastore candidates:
// RAM disks, loop devices (image mounts), floppies, optical drives.
var skippedPrefixes = []string{"loop", "ram", "zram", "fd", "sr"}

// ListDisks lists whole disks from sysBlock (/sys/block) with their
// partitions, reading signatures from the device nodes in devDir (/dev) and
// mounts from mountinfo (/proc/self/mountinfo). It only reads files.
func ListDisks(sysBlock, devDir, mountinfo string) ([]api.Disk, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	mounts, err := readMountinfo(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	var disks []api.Disk
	for _, e := range ents {
		name := e.Name()
		if hasAnyPrefix(name, skippedPrefixes) {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		d := api.Disk{BlockDevice: blockDevice(dir, devDir, name, mounts)}
		if d.SizeBytes == 0 {
			continue // empty card reader, ejected media
		}
		d.Model = firstAttr(dir, "device/model", "device/name")
		d.Serial = firstAttr(dir, "device/serial", "serial", "device/wwid")
		d.Rotational = attr(dir, "queue/rotational") == "1"
		d.Removable = attr(dir, "removable") == "1"
		parts, _ := os.ReadDir(dir)
		for _, p := range parts {
			if _, err := os.Stat(filepath.Join(dir, p.Name(), "partition")); err != nil {
				continue
			}
			d.Partitions = append(d.Partitions, blockDevice(filepath.Join(dir, p.Name()), devDir, p.Name(), mounts))
		}
		sort.Slice(d.Partitions, func(i, j int) bool { return partLess(d.Partitions[i].Name, d.Partitions[j].Name) })
		disks = append(disks, d)
	}
	return disks, nil
}

func blockDevice(sysDir, devDir, name string, mounts []mountEntry) api.BlockDevice {
	b := api.BlockDevice{Name: name, Path: filepath.Join(devDir, name)}
	if n, err := strconv.ParseUint(attr(sysDir, "size"), 10, 64); err == nil {
		b.SizeBytes = n * 512 // sysfs counts 512-byte sectors whatever the disk's
	}
	b.ReadOnly = attr(sysDir, "ro") == "1"
	sig, err := ProbeDevice(b.Path)
	if err != nil {
		// Unknown is not blank: never let an unreadable device look empty.
		sig = Signature{Content: api.ContentOther, Detail: "unreadable: " + err.Error()}
	}
	b.Content, b.ContentDetail, b.Label, b.FSUUID = sig.Content, sig.Detail, sig.Label, sig.UUID
	devno := attr(sysDir, "dev")
	for _, m := range mounts {
		if m.source == b.Path || devno != "" && devno != "0:0" && m.devno == devno {
			b.MountPoints = append(b.MountPoints, m.target)
		}
	}
	return b
}

func attr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func firstAttr(dir string, names ...string) string {
	for _, n := range names {
		if v := attr(dir, n); v != "" {
			return v
		}
	}
	return ""
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// partLess orders sdb2 before sdb10.
func partLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	devno  string // "8:16"
	target string
	fstype string
	source string
}

// readMountinfo parses a mountinfo file; a missing file means no mounts.
func readMountinfo(path string) ([]mountEntry, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseMountinfo(b), nil
}

// parseMountinfo skips lines it cannot read.
//
//	36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{
			devno:  f[2],
			target: unescapeOctal(f[4]),
			fstype: f[sep+1],
			source: unescapeOctal(f[sep+2]),
		})
	}
	return out
}

// unescapeOctal undoes the kernel's \040-style escaping of spaces, tabs,
// newlines and backslashes in mountinfo.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountedAt reports whether target is among the mount points.
func mountedAt(b api.BlockDevice, target string) bool {
	for _, m := range b.MountPoints {
		if m == target {
			return true
		}
	}
	return false
}
