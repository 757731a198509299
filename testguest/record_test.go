package guest

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRecordFormat(t *testing.T) {
	b, err := EncodeRecord("hello")
	if err != nil {
		t.Fatal(err)
	}
	// Fixed bytes: the format is read by tests on the host side too (a disk
	// image inspected after the VM is gone), so it must not drift.
	want := []byte("FVGUEST1\x00\x00\x00\x05\x9a\x71\xbb\x4chello")
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("EncodeRecord(hello) (-want +got):\n%s", diff)
	}
	if _, err := EncodeRecord("a\nb"); !errors.Is(err, ErrText) {
		t.Errorf("EncodeRecord(a\\nb) = %v, want ErrText", err)
	}
}

func TestDecodeRecord(t *testing.T) {
	good, _ := EncodeRecord("hello world")
	long, _ := EncodeRecord(strings.Repeat("é", MaxText/2))
	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		return c
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{"record", good, "hello world", nil},
		{"record then old bytes", append(append([]byte(nil), good...), "FVGUEST1 stale"...), "hello world", nil},
		{"record in a sector", append(append([]byte(nil), good...), make([]byte, 512-len(good))...), "hello world", nil},
		{"longest", long, strings.Repeat("é", MaxText/2), nil},
		{"blank disk", make([]byte, RecordMax), "", ErrNoRecord},
		{"empty", nil, "", ErrNoRecord},
		{"short header", []byte("FVGUEST1\x00\x00"), "", ErrNoRecord},
		{"other data", []byte("\xebc\x90MSDOS5.0 some boot sector"), "", ErrNoRecord},
		{"truncated", good[:len(good)-1], "", ErrCorruptRecord},
		{"text changed", flip(good, len(good)-1), "", ErrCorruptRecord},
		{"checksum changed", flip(good, 13), "", ErrCorruptRecord},
		{"huge length", append([]byte("FVGUEST1\xff\xff\xff\xff\x00\x00\x00\x00"), make([]byte, 64)...), "", ErrCorruptRecord},
		{"control character with a valid checksum", rawRecord("\x1b"), "", ErrCorruptRecord},
	} {
		got, err := DecodeRecord(tc.in)
		if !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("%s: DecodeRecord() = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// rawRecord frames text without EncodeRecord's checks.
func rawRecord(text string) []byte {
	b := binary.BigEndian.AppendUint32([]byte(recordMagic), uint32(len(text)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(text), crc32.MakeTable(crc32.Castagnoli)))
	return append(b, text...)
}

func FuzzDecodeRecord(f *testing.F) {
	good, _ := EncodeRecord("hello")
	f.Add(good)
	f.Add([]byte("FVGUEST1\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		text, err := DecodeRecord(b)
		if err != nil {
			return
		}
		// Whatever decodes must be text a write could have put there, and
		// must encode back to the bytes it came from.
		again, err := EncodeRecord(text)
		if err != nil {
			t.Fatalf("DecodeRecord(%q) = %q, which EncodeRecord refuses: %v", b, text, err)
		}
		if string(again) != string(b[:len(again)]) {
			t.Errorf("DecodeRecord(%q) = %q, which encodes to %q", b, text, again)
		}
	})
}

// TestRecordOnDevice uses a file as the disk: write, read back, overwrite
// with a shorter text.
func TestRecordOnDevice(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(dev, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadRecord(dev); !errors.Is(err, ErrNoRecord) {
		t.Errorf("ReadRecord(blank) = %q, %v; want ErrNoRecord", got, err)
	}
	for _, text := range []string{"a longer first text", "short"} {
		n, err := WriteRecord(dev, text)
		if err != nil || n != len(text) {
			t.Fatalf("WriteRecord(%q) = %d, %v; want %d", text, n, err, len(text))
		}
		if got, err := ReadRecord(dev); err != nil || got != text {
			t.Errorf("ReadRecord() = %q, %v; want %q", got, err, text)
		}
	}
	if fi, err := os.Stat(dev); err != nil || fi.Size() != 1<<20 {
		t.Errorf("disk size after writes = %v, %v; want unchanged", fi.Size(), err)
	}
	small := filepath.Join(t.TempDir(), "small.img")
	if err := os.WriteFile(small, []byte("FVG"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRecord(small); !errors.Is(err, ErrNoRecord) {
		t.Errorf("ReadRecord(3-byte disk) = %v, want ErrNoRecord", err)
	}
	if _, err := WriteRecord(filepath.Join(t.TempDir(), "missing"), "x"); err == nil {
		t.Error("WriteRecord(missing device) = nil error")
	}
}
