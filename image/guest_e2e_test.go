//go:build e2e

package image

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// TestGuestBuild builds the test guest twice (cheap: one .deb, one Go
// program) and wants the same bytes, the host's kernel, and an initramfs
// that stays small: the guest's PID 1, its drivers, nothing from QEMU.
func TestGuestBuild(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("FV_IMAGE_CACHE")
	if cache == "" {
		cache = filepath.Join(repo, "out", "cache")
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	o := Options{Profile: GuestProfile(), Repo: repo, Cache: Cache{Dir: cache, Log: log}, Version: "e2e", Log: log}
	outs := []string{t.TempDir(), t.TempDir()}
	for _, out := range outs {
		if _, err := Build(context.Background(), o, out); err != nil {
			t.Fatalf("Build(%s) = %v", out, err)
		}
	}
	for _, name := range []string{"vmlinuz", "initrd.img", "manifest.json"} {
		a, errA := os.ReadFile(filepath.Join(outs[0], name))
		b, errB := os.ReadFile(filepath.Join(outs[1], name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same inputs (%v, %v)", name, errA, errB)
		}
	}
	initrd := filepath.Join(outs[0], "initrd.img")
	fi, err := os.Stat(initrd)
	if err != nil {
		t.Fatal(err)
	}
	const maxInitrd = 8 << 20
	if fi.Size() > maxInitrd {
		t.Errorf("guest initramfs is %d bytes, want at most %d", fi.Size(), maxInitrd)
	}
	f, err := os.Open(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	err = cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(raw)), func(r cpio.Record) error {
		files[strings.TrimPrefix(r.Name, "/")] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"init", "etc/flashvisor/modules.load", "dev/console", "usr/sbin/modprobe"} {
		if !files[p] {
			t.Errorf("guest initramfs lacks %s", p)
		}
	}
	var mods []string
	for p := range files {
		if strings.Contains(p, "qemu") || strings.HasPrefix(p, "usr/bin/") {
			t.Errorf("guest initramfs has %s", p)
		}
		if strings.HasSuffix(p, ".ko") {
			mods = append(mods, filepath.Base(p))
		}
	}
	for _, m := range []string{"virtio_pci.ko", "virtio_net.ko", "virtio_blk.ko", "e1000.ko", "button.ko", "evdev.ko"} {
		if !strings.Contains(" "+strings.Join(mods, " ")+" ", " "+m+" ") {
			t.Errorf("guest initramfs lacks %s (has %q)", m, mods)
		}
	}
}
