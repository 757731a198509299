package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The disk record: what "write" puts at offset 0 of the first disk, raw,
// without a filesystem, so that a test can check persistence, snapshots and
// disk attachment with nothing but the guest.
//
//	magic   8 bytes "FVGUEST1"
//	length  4 bytes big-endian, bytes of text
//	crc     4 bytes big-endian, CRC-32C of text
//	text    length bytes
//
// The checksum tells a record apart from leftovers: a blank disk, or a
// record half overwritten, reads as no record or a corrupt one, never as
// other text.
const (
	recordMagic  = "FVGUEST1"
	recordHeader = len(recordMagic) + 8
	// RecordMax is the most a record occupies: Read reads this much.
	RecordMax = recordHeader + MaxText
)

// Errors of DecodeRecord.
var (
	ErrNoRecord      = errors.New("no record")
	ErrCorruptRecord = errors.New("corrupt record")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeRecord returns the bytes "write TEXT" puts on the disk.
func EncodeRecord(text string) ([]byte, error) {
	if err := CheckText(text); err != nil {
		return nil, err
	}
	b := make([]byte, 0, recordHeader+len(text))
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(text)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(text), castagnoli))
	return append(b, text...), nil
}

// DecodeRecord reads a record from the start of b (the first RecordMax
// bytes of the disk, or fewer if the disk is smaller).
func DecodeRecord(b []byte) (string, error) {
	if len(b) < recordHeader || !bytes.Equal(b[:len(recordMagic)], []byte(recordMagic)) {
		return "", ErrNoRecord
	}
	n := binary.BigEndian.Uint32(b[len(recordMagic):])
	sum := binary.BigEndian.Uint32(b[len(recordMagic)+4:])
	if n > MaxText || int(n) > len(b)-recordHeader {
		return "", fmt.Errorf("%w: length %d", ErrCorruptRecord, n)
	}
	text := b[recordHeader : recordHeader+int(n)]
	if crc32.Checksum(text, castagnoli) != sum {
		return "", fmt.Errorf("%w: checksum mismatch", ErrCorruptRecord)
	}
	if err := CheckText(string(text)); err != nil {
		return "", fmt.Errorf("%w: %v", ErrCorruptRecord, err)
	}
	return string(text), nil
}
