package datastore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/flashvisor/flashvisor/api"
)

// Signature is what the first and last bytes of a block device say it holds.
type Signature struct {
	Content string // api.ContentX
	Detail  string // e.g. "ext3", "swap", "LUKS"
	Label   string
	UUID    string
}

// headSize and tailSize are how much of each end of a device is read: enough
// for every signature below (the deepest, btrfs, sits at 64 KiB) and for
// GPT's backup header at the end.
const (
	headSize = 128 << 10
	tailSize = 64 << 10
)

// ext4 superblock (at byte 1024).
const (
	extSBOffset      = 1024
	extMagicOff      = 0x38
	extMagic         = 0xEF53
	extCompatOff     = 0x5C
	extIncompatOff   = 0x60
	extUUIDOff       = 0x68
	extLabelOff      = 0x78
	extCompatJournal = 0x4
	// Incompat features only ext4 sets: extents, 64bit, flex_bg.
	extIncompatExt4 = 0x40 | 0x80 | 0x200
)

// probe reads signatures from a device's head (its first bytes) and tail
// (its last bytes). It never fails: unknown non-zero bytes are ContentData.
func probe(head, tail []byte) Signature {
	at := func(off int, sig string) bool {
		return off >= 0 && off+len(sig) <= len(head) && string(head[off:off+len(sig)]) == sig
	}
	if len(head) >= extSBOffset+extLabelOff+16 {
		sb := head[extSBOffset:]
		if binary.LittleEndian.Uint16(sb[extMagicOff:]) == extMagic {
			s := Signature{Content: api.ContentExt4, Detail: "ext2"}
			switch {
			case binary.LittleEndian.Uint32(sb[extIncompatOff:])&extIncompatExt4 != 0:
				s.Detail = "ext4"
			case binary.LittleEndian.Uint32(sb[extCompatOff:])&extCompatJournal != 0:
				s.Detail = "ext3"
			}
			s.UUID = formatUUID(sb[extUUIDOff : extUUIDOff+16])
			s.Label = cString(sb[extLabelOff : extLabelOff+16])
			return s
		}
	}
	if at(0, "XFSB") && len(head) >= 120 {
		return Signature{Content: api.ContentXFS, Detail: "xfs", UUID: formatUUID(head[32:48]), Label: cString(head[108:120])}
	}
	for _, o := range []struct {
		off  int
		sig  string
		name string
	}{
		{0, "LUKS\xba\xbe", "LUKS"},
		{0, "hsqs", "squashfs"},
		{3, "NTFS    ", "ntfs"},
		{54, "FAT1", "vfat"},
		{82, "FAT32   ", "vfat"},
		{0x10040, "_BHRfS_M", "btrfs"},
		{32769, "CD001", "iso9660"},
		{4086, "SWAPSPACE2", "swap"},
		{4086, "SWAP-SPACE", "swap"},
		{0, "LABELONE", "LVM2"}, // an LVM label sits in one of sectors 0-3
		{512, "LABELONE", "LVM2"},
		{1024, "LABELONE", "LVM2"},
		{1536, "LABELONE", "LVM2"},
	} {
		if at(o.off, o.sig) {
			return Signature{Content: api.ContentOther, Detail: o.name}
		}
	}
	// GPT header in LBA 1 (512- or 4096-byte sectors), or its backup in
	// the last sector.
	if at(512, "EFI PART") || at(4096, "EFI PART") ||
		len(tail) >= 512 && string(tail[len(tail)-512:len(tail)-504]) == "EFI PART" {
		return Signature{Content: api.ContentGPT, Detail: "gpt"}
	}
	if len(head) >= 512 && head[510] == 0x55 && head[511] == 0xAA {
		return Signature{Content: api.ContentMBR, Detail: "dos"}
	}
	if !allZero(head) || !allZero(tail) {
		return Signature{Content: api.ContentData, Detail: "unrecognised data"}
	}
	return Signature{}
}

// ProbeDevice reads the signature of the device (or image file) at path.
func ProbeDevice(path string) (Signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return Signature{}, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Signature{}, fmt.Errorf("probe %s: %w", path, err)
	}
	head := make([]byte, min(size, headSize))
	if _, err := f.ReadAt(head, 0); err != nil {
		return Signature{}, fmt.Errorf("probe %s: %w", path, err)
	}
	tail := make([]byte, min(size, tailSize))
	if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil {
		return Signature{}, fmt.Errorf("probe %s: %w", path, err)
	}
	return probe(head, tail), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
