package boot

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// ext4 superblock facts (at byte 1024 of the device).
const (
	sbOffset   = 1024
	sbMagicOff = 0x38
	sbLabelOff = 0x78
	ext4Magic  = 0xEF53
)

// ReadExt4Label returns the volume label of an ext2/3/4 filesystem, and
// false if r holds none.
func ReadExt4Label(r io.ReaderAt) (string, bool) {
	sb := make([]byte, 0x88)
	if _, err := r.ReadAt(sb, sbOffset); err != nil {
		return "", false
	}
	if binary.LittleEndian.Uint16(sb[sbMagicOff:]) != ext4Magic {
		return "", false
	}
	return string(bytes.TrimRight(sb[sbLabelOff:sbLabelOff+16], "\x00")), true
}

// FindByLabel scans block devices (sysBlock is /sys/class/block, devDir
// /dev) for an ext4 filesystem with the given label.
func FindByLabel(sysBlock, devDir, label string) (string, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "sr") {
			continue
		}
		dev := filepath.Join(devDir, n)
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		l, ok := ReadExt4Label(f)
		f.Close()
		if ok && l == label {
			found = append(found, dev)
		}
	}
	switch len(found) {
	case 0:
		return "", os.ErrNotExist
	case 1:
		return found[0], nil
	default:
		// Two state partitions (a second Flashvisor stick plugged in):
		// picking one silently could give the host another identity.
		return "", fmt.Errorf("several filesystems labelled %s: %s", label, strings.Join(found, ", "))
	}
}

// ErrNotBlank means a device holds data and will not be formatted.
var ErrNotBlank = errors.New("device is not blank")

// blankCheck is how much of each end of a device must be zero before we
// format it: partition tables, filesystem superblocks and GPT backups all
// live there.
const blankCheck = 1 << 20

// CheckBlank refuses any device whose first or last MiB holds a non-zero
// byte: `flashvisor.initstate=` never formats a disk that holds data.
func CheckBlank(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size < 16<<20 {
		return fmt.Errorf("%s is %d bytes; a state partition needs at least 16 MiB", dev, size)
	}
	buf := make([]byte, blankCheck)
	for _, off := range []int64{0, size - blankCheck} {
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("reading %s: %w", dev, err)
		}
		for _, b := range buf {
			if b != 0 {
				return fmt.Errorf("%w: %s has data at offset %d", ErrNotBlank, dev, off)
			}
		}
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// HostUUID returns the persistent host UUID stored in dir, creating it on
// first boot. It is ours, never the SMBIOS one (cloned VMs and some boards
// share those). A corrupt file is kept aside, not silently overwritten.
func HostUUID(dir, file string) (id string, created bool, err error) {
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		id = strings.TrimSpace(string(b))
		if uuidRE.MatchString(id) {
			return id, false, nil
		}
		if err := os.Rename(p, p+".corrupt"); err != nil {
			return "", false, fmt.Errorf("host uuid %s is corrupt (%q) and could not be moved aside: %w", p, b, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("host uuid: %w", err)
	}
	id = NewUUID()
	if err := atomicfile.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		return "", false, err
	}
	return id, true, nil
}
