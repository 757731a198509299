//go:build e2e

package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// TestReproducibleBuild builds the host image twice into fresh directories
// with the shared package cache and wants identical bytes; it fails (does not
// skip) when the pinned packages cannot be fetched.
func TestReproducibleBuild(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("FV_IMAGE_CACHE")
	if cache == "" {
		cache = filepath.Join(repo, "out", "cache")
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	o := Options{Profile: HostProfile(), Repo: repo, Cache: Cache{Dir: cache, Log: log}, Version: "e2e", Log: log}
	outs := []string{t.TempDir(), t.TempDir()}
	for _, out := range outs {
		res, err := Build(context.Background(), o, out)
		if err != nil {
			t.Fatalf("Build(%s) = %v", out, err)
		}
		t.Logf("kernel %s, %d modules, initramfs %d bytes uncompressed", res.Manifest.Kernel, res.Modules, res.InitrdBytes)
	}
	for _, name := range []string{"vmlinuz", "initrd.img", "manifest.json"} {
		a, errA := os.ReadFile(filepath.Join(outs[0], name))
		b, errB := os.ReadFile(filepath.Join(outs[1], name))
		if err := errors.Join(errA, errB); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same inputs", name)
		}
	}
	t.Run("closure", func(t *testing.T) { checkClosure(t, filepath.Join(outs[0], "initrd.img")) })
}

// checkClosure unpacks the initramfs and runs its QEMU, qemu-img and mke2fs
// with the image's own loader and libraries only.
func checkClosure(t *testing.T, initrd string) {
	root := t.TempDir()
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
	err = cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(raw)), func(r cpio.Record) error {
		if r.Mode&cpio.S_IFMT == cpio.S_IFCHR {
			return nil // /dev/console: mknod is not the point here
		}
		return cpio.CreateFileInRoot(r, root, false)
	})
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	for _, p := range []string{"init", "usr/lib/flashvisor/hostd", "usr/bin/fvctl", "etc/flashvisor/manifest.json",
		"etc/flashvisor/services.json", "etc/flashvisor/modules.load", "usr/share/qemu/firmware", "usr/share/OVMF/OVMF_CODE_4M.fd"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("initramfs lacks %s: %v", p, err)
		}
	}
	libs := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	for _, argv := range [][]string{
		{"usr/bin/qemu-system-x86_64", "--version"},
		{"usr/bin/qemu-img", "--version"},
		{"sbin/mke2fs", "-V"},
		{"sbin/e2fsck", "-V"},
	} {
		args := append([]string{"--library-path", libs, filepath.Join(root, argv[0])}, argv[1:]...)
		out, err := exec.Command(filepath.Join(root, "lib64/ld-linux-x86-64.so.2"), args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
