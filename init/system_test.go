package boot

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func TestHasPowerKey(t *testing.T) {
	for _, tc := range []struct {
		cap  string
		want bool
	}{
		{"10000000000000 0", true}, // the ACPI power button: bit 116 in the second word
		{"4 0 0 0 0", false},
		{"", false},
		{"zz 0", false},
		{"100000 0 0 0 0 0 0 0", false},
	} {
		if got := hasPowerKey(tc.cap); got != tc.want {
			t.Errorf("hasPowerKey(%q) = %v, want %v", tc.cap, got, tc.want)
		}
	}
}

func TestIsPowerPress(t *testing.T) {
	ev := func(typ, code uint16, val int32) []byte {
		b := make([]byte, eventSize)
		binary.LittleEndian.PutUint16(b[16:], typ)
		binary.LittleEndian.PutUint16(b[18:], code)
		binary.LittleEndian.PutUint32(b[20:], uint32(val))
		return b
	}
	if !isPowerPress(ev(evKey, keyPower, 1)) {
		t.Error("isPowerPress(press) = false")
	}
	for _, b := range [][]byte{ev(evKey, keyPower, 0), ev(evKey, 115, 1), ev(0, keyPower, 1), {1, 2}} {
		if isPowerPress(b) {
			t.Errorf("isPowerPress(%v) = true, want false", b)
		}
	}
}

func TestApplySysctls(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "kernel"), 0o755)
	if err := ApplySysctls(dir, map[string]string{"kernel/panic": "10"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kernel/panic")); string(b) != "10" {
		t.Errorf("kernel/panic = %q, want 10", b)
	}
	if err := ApplySysctls(dir, map[string]string{"nope/x": "1"}); err == nil {
		t.Error("ApplySysctls(missing dir) = nil, want error")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/vmfs/volumes/my\040ds`); got != "/vmfs/volumes/my ds" {
		t.Errorf("unescapeMount = %q", got)
	}
}
