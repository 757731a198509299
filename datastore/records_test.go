package datastore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

const goodUUID = "0a1b2c3d-0000-4000-8000-00000000abcd"

func TestParseDescriptor(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{`{"version":1,"name":"datastore1","uuid":"` + goodUUID + `","kind":"local","created":"2025-01-02T03:04:05Z"}`, false},
		{`{"version":1,"name":"datastore1","uuid":"` + goodUUID + `","kind":"local","created":"2025-01-02T03:04:05Z","future":1}`, false},
		{`{"version":2,"name":"datastore1","uuid":"` + goodUUID + `","kind":"local"}`, true},
		{`{"version":0,"name":"datastore1","uuid":"` + goodUUID + `","kind":"local"}`, true},
		{`{"version":1,"name":"","uuid":"` + goodUUID + `","kind":"local"}`, true},
		{`{"version":1,"name":"../etc","uuid":"` + goodUUID + `","kind":"local"}`, true},
		{`{"version":1,"name":"ds","uuid":"0A1B2C3D-0000-4000-8000-00000000ABCD","kind":"local"}`, true},
		{`{"version":1,"name":"ds","uuid":"` + goodUUID + `","kind":"nfs"}`, true},
		{`{"version":1,"name":"ds","uuid":"` + goodUUID + `","kind":"local"}x`, true},
		{``, true},
		{`[]`, true},
	}
	for _, tc := range tests {
		_, err := ParseDescriptor([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseDescriptor(%s) = %v, want error %v", tc.in, err, tc.wantErr)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"datastore1": true, "ds-01_a.b": true, "A": true, strings.Repeat("a", 64): true,
		"": false, ".hidden": false, "-x": false, "a b": false, "a/b": false, "..": false,
		strings.Repeat("a", 65): false, goodUUID: false, "é": false,
	} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func ext4Head(label, features string) []byte {
	h := make([]byte, headSize)
	sb := h[extSBOffset:]
	binary.LittleEndian.PutUint16(sb[extMagicOff:], extMagic)
	switch features {
	case "ext4":
		binary.LittleEndian.PutUint32(sb[extIncompatOff:], 0x40)
	case "ext3":
		binary.LittleEndian.PutUint32(sb[extCompatOff:], extCompatJournal)
	}
	copy(sb[extUUIDOff:], []byte{0x0a, 0x1b, 0x2c, 0x3d, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0xab, 0xcd})
	copy(sb[extLabelOff:], label)
	return h
}

func TestProbe(t *testing.T) {
	at := func(off int, b string) []byte {
		h := make([]byte, headSize)
		copy(h[off:], b)
		return h
	}
	zeroTail := make([]byte, tailSize)
	gptTail := make([]byte, tailSize)
	copy(gptTail[tailSize-512:], "EFI PART")
	tests := []struct {
		name       string
		head, tail []byte
		want       Signature
	}{
		{"blank", make([]byte, headSize), zeroTail, Signature{}},
		{"ext4", ext4Head("datastore1", "ext4"), zeroTail, Signature{Content: api.ContentExt4, Detail: "ext4", Label: "datastore1", UUID: goodUUID}},
		{"ext3", ext4Head("FVSTATE", "ext3"), zeroTail, Signature{Content: api.ContentExt4, Detail: "ext3", Label: "FVSTATE", UUID: goodUUID}},
		{"ext2", ext4Head("", ""), zeroTail, Signature{Content: api.ContentExt4, Detail: "ext2", UUID: goodUUID}},
		{"xfs", at(0, "XFSB"), zeroTail, Signature{Content: api.ContentXFS, Detail: "xfs", UUID: "00000000-0000-0000-0000-000000000000"}},
		{"gpt", at(512, "EFI PART"), zeroTail, Signature{Content: api.ContentGPT, Detail: "gpt"}},
		{"gpt 4k", at(4096, "EFI PART"), zeroTail, Signature{Content: api.ContentGPT, Detail: "gpt"}},
		{"gpt backup only", make([]byte, headSize), gptTail, Signature{Content: api.ContentGPT, Detail: "gpt"}},
		{"mbr", at(510, "\x55\xaa"), zeroTail, Signature{Content: api.ContentMBR, Detail: "dos"}},
		{"fat32", func() []byte { h := at(82, "FAT32   "); copy(h[510:], "\x55\xaa"); return h }(), zeroTail, Signature{Content: api.ContentOther, Detail: "vfat"}},
		{"swap", at(4086, "SWAPSPACE2"), zeroTail, Signature{Content: api.ContentOther, Detail: "swap"}},
		{"luks", at(0, "LUKS\xba\xbe"), zeroTail, Signature{Content: api.ContentOther, Detail: "LUKS"}},
		{"lvm", at(512, "LABELONE"), zeroTail, Signature{Content: api.ContentOther, Detail: "LVM2"}},
		{"btrfs", at(0x10040, "_BHRfS_M"), zeroTail, Signature{Content: api.ContentOther, Detail: "btrfs"}},
		{"iso", at(32769, "CD001"), zeroTail, Signature{Content: api.ContentOther, Detail: "iso9660"}},
		{"data", at(9000, "x"), zeroTail, Signature{Content: api.ContentData, Detail: "unrecognised data"}},
		{"short device", []byte{1, 2}, []byte{1, 2}, Signature{Content: api.ContentData, Detail: "unrecognised data"}},
		{"empty device", nil, nil, Signature{}},
	}
	for _, tc := range tests {
		if got := probe(tc.head, tc.tail); got != tc.want {
			t.Errorf("probe(%s) = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `21 1 0:20 / / rw,relatime shared:1 - rootfs rootfs rw
36 35 8:17 / /vmfs/volumes/a\040b rw,noatime shared:7 master:1 - ext4 /dev/sdb1 rw
37 35 8:18 / /x rw - ext4 /dev/sdb2 rw
garbage
38 35 8:19 / /y rw shared:1 -
`
	want := []mountEntry{
		{devno: "0:20", target: "/", fstype: "rootfs", source: "rootfs"},
		{devno: "8:17", target: "/vmfs/volumes/a b", fstype: "ext4", source: "/dev/sdb1"},
		{devno: "8:18", target: "/x", fstype: "ext4", source: "/dev/sdb2"},
	}
	got := parseMountinfo([]byte(in))
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mountEntry{})); diff != "" {
		t.Errorf("parseMountinfo mismatch (-want +got):\n%s", diff)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\134b`: `a\b`, `a\`: `a\`, `a\04`: `a\04`, `\999`: `\999`} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	p := t.TempDir() + "/datastores.json"
	entries := []stateEntry{
		{Name: "a", UUID: goodUUID, Kind: api.DatastoreLocal, Device: "/dev/sdb", Created: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Name: "b", UUID: "0a1b2c3d-0000-4000-8000-00000000abce", Kind: api.DatastoreLocal, Unmounted: true},
	}
	if err := saveState(p, entries); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, entries) {
		t.Errorf("loadState(saveState(x)) = %+v, want %+v", got, entries)
	}
	if got, err := loadState(p + ".none"); err != nil || got != nil {
		t.Errorf("loadState(missing) = %v, %v, want empty", got, err)
	}
}

func FuzzParseDescriptor(f *testing.F) {
	f.Add([]byte(`{"version":1,"name":"datastore1","uuid":"` + goodUUID + `","kind":"local","created":"2025-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"version":1,"name":"x","uuid":"` + goodUUID + `","kind":"local","created":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":99}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDescriptor(b)
		if err != nil {
			return
		}
		// Whatever parses must round-trip and be safe as a path element.
		if strings.ContainsAny(d.Name, "/\x00") || d.Name == "." || d.Name == ".." {
			t.Fatalf("ParseDescriptor accepted name %q", d.Name)
		}
		d2, err := ParseDescriptor(d.Marshal())
		if err != nil {
			t.Fatalf("re-parse of %s: %v", d.Marshal(), err)
		}
		if d2.Name != d.Name || d2.UUID != d.UUID || !d2.Created.Equal(d.Created) {
			t.Fatalf("round trip %+v != %+v", d2, d)
		}
	})
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"datastores":[{"name":"a","uuid":"` + goodUUID + `","kind":"local","created":"2025-01-02T03:04:05Z","unmounted":true}]}`))
	f.Add([]byte(`{"version":1,"datastores":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseState(b)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, e := range entries {
			if ValidName(e.Name) != nil || validUUID(e.UUID) != nil || names[e.Name] {
				t.Fatalf("parseState accepted %+v", e)
			}
			names[e.Name] = true
		}
	})
}

func FuzzProbe(f *testing.F) {
	f.Add(ext4Head("ds", "ext4")[:2048], []byte{})
	f.Add([]byte("XFSB"), []byte("EFI PART"))
	f.Fuzz(func(t *testing.T, head, tail []byte) {
		s := probe(head, tail)
		if s.Content == api.ContentEmpty && (!bytes.Equal(head, make([]byte, len(head))) || !bytes.Equal(tail, make([]byte, len(tail)))) {
			t.Fatalf("probe called non-zero bytes blank")
		}
	})
}

func TestLoadStateUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadState(dir); err == nil || errors.Is(err, ErrCorruptState) {
		t.Errorf("loadState(a directory) = %v, want a read error", err)
	}
}
