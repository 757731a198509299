package image

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestInitramfsDeterministic(t *testing.T) {
	// The same content on disk twice, with different modes and times, as two
	// builds on machines with different umasks and clocks would see it.
	srcs := make([]string, 2)
	for i, perm := range []os.FileMode{0o600, 0o644} {
		srcs[i] = filepath.Join(t.TempDir(), "qemu")
		if err := os.WriteFile(srcs[i], []byte("ELF..."), perm); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(srcs[1], time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	build := func(src string, reverse bool) []byte {
		entries := []struct {
			p string
			e *entry
		}{
			{"/usr/bin/qemu", &entry{kind: kindFile, perm: 0o755, src: src}},
			{"/etc/flashvisor/services.json", &entry{kind: kindFile, perm: 0o644, data: []byte("[]\n")}},
			{"/lib64", &entry{kind: kindLink, link: "usr/lib64"}},
			{"/dev/console", &entry{kind: kindCharDev, perm: 0o600, dev: [2]uint32{5, 1}}},
		}
		tr := &tree{files: map[string]*entry{}}
		for i := range entries {
			if reverse {
				i = len(entries) - 1 - i
			}
			tr.files[entries[i].p] = entries[i].e
		}
		tr.complete()
		var b bytes.Buffer
		if _, err := writeInitramfs(&b, tr.files); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b := build(srcs[0], false), build(srcs[1], true)
	if !bytes.Equal(a, b) {
		t.Fatal("writeInitramfs: same tree gave different bytes")
	}

	zr, err := zstd.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, r := range recs {
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 || r.Ino != uint64(i+1) {
			t.Errorf("record %s: mtime %d uid %d gid %d ino %d, want 0 0 0 %d", r.Name, r.MTime, r.UID, r.GID, r.Ino, i+1)
		}
		if d := filepath.Dir(r.Name); d != "." && !seen[d] {
			t.Errorf("record %s comes before its parent %s", r.Name, d)
		}
		seen[r.Name] = true
	}
	for _, want := range []string{"bin", "lib64", "usr/bin/qemu", "dev/console", "etc/flashvisor/services.json"} {
		if !seen[want] {
			t.Errorf("initramfs lacks %s; has %s", want, strings.Join(keys(seen), " "))
		}
	}
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}
