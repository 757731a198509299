package boot

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeExt4(t *testing.T, label string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dev")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	sb := make([]byte, 0x88)
	binary.LittleEndian.PutUint16(sb[sbMagicOff:], ext4Magic)
	copy(sb[sbLabelOff:], label)
	f.WriteAt(sb, sbOffset)
	return p
}

func TestReadExt4Label(t *testing.T) {
	f, _ := os.Open(fakeExt4(t, "FVSTATE", 1<<20))
	defer f.Close()
	if l, ok := ReadExt4Label(f); !ok || l != "FVSTATE" {
		t.Errorf("ReadExt4Label = %q, %v; want FVSTATE, true", l, ok)
	}
	blank := filepath.Join(t.TempDir(), "blank")
	os.WriteFile(blank, make([]byte, 4096), 0o644)
	g, _ := os.Open(blank)
	defer g.Close()
	if _, ok := ReadExt4Label(g); ok {
		t.Errorf("ReadExt4Label(zeros) found a filesystem")
	}
}

func TestFindByLabel(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	add := func(name, label string) {
		os.MkdirAll(filepath.Join(sys, name), 0o755)
		src := fakeExt4(t, label, 1<<20)
		os.Rename(src, filepath.Join(dev, name))
	}
	add("vda", "DATA")
	add("vdb", "FVSTATE")
	os.MkdirAll(filepath.Join(sys, "vdc"), 0o755) // no device node: skipped
	got, err := FindByLabel(sys, dev, "FVSTATE")
	if err != nil || got != filepath.Join(dev, "vdb") {
		t.Errorf("FindByLabel = %q, %v; want %s", got, err, filepath.Join(dev, "vdb"))
	}
	if _, err := FindByLabel(sys, dev, "NOPE"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("FindByLabel(NOPE) = %v, want ErrNotExist", err)
	}
	add("vdd", "FVSTATE")
	if _, err := FindByLabel(sys, dev, "FVSTATE"); err == nil || !strings.Contains(err.Error(), "several") {
		t.Errorf("FindByLabel(two matches) = %v, want an error naming both", err)
	}
}

func TestCheckBlank(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank")
	f, _ := os.Create(blank)
	f.Truncate(32 << 20)
	f.Close()
	if err := CheckBlank(blank); err != nil {
		t.Errorf("CheckBlank(blank) = %v, want nil", err)
	}
	if err := CheckBlank(fakeExt4(t, "DATA", 32<<20)); !errors.Is(err, ErrNotBlank) {
		t.Errorf("CheckBlank(ext4) = %v, want ErrNotBlank", err)
	}
	tail := filepath.Join(dir, "tail")
	f, _ = os.Create(tail)
	f.Truncate(32 << 20)
	f.WriteAt([]byte("EFI PART"), 32<<20-512)
	f.Close()
	if err := CheckBlank(tail); !errors.Is(err, ErrNotBlank) {
		t.Errorf("CheckBlank(backup GPT at the end) = %v, want ErrNotBlank", err)
	}
	small := filepath.Join(dir, "small")
	os.WriteFile(small, make([]byte, 1<<20), 0o644)
	if err := CheckBlank(small); err == nil {
		t.Errorf("CheckBlank(1 MiB) = nil, want a size error")
	}
}

func TestHostUUID(t *testing.T) {
	dir := t.TempDir()
	id, created, err := HostUUID(dir, "host-uuid")
	if err != nil || !created || !uuidRE.MatchString(id) {
		t.Fatalf("HostUUID first = %q, %v, %v; want a new uuid", id, created, err)
	}
	again, created, err := HostUUID(dir, "host-uuid")
	if err != nil || created || again != id {
		t.Errorf("HostUUID second = %q, %v, %v; want %q, false", again, created, err, id)
	}
	os.WriteFile(filepath.Join(dir, "host-uuid"), []byte("garbage"), 0o644)
	fresh, created, err := HostUUID(dir, "host-uuid")
	if err != nil || !created || fresh == id {
		t.Errorf("HostUUID(corrupt) = %q, %v, %v; want a new uuid", fresh, created, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "host-uuid.corrupt")); string(b) != "garbage" {
		t.Errorf("corrupt file not kept aside: %q", b)
	}
}
