package qemutest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Host image file names inside an image folder (out/host).
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
)

// RepoRoot walks up from dir to the folder holding go.mod.
func RepoRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or above", dir)
		}
		d = parent
	}
}

// ImageDir is where the host image is: $FV_IMAGE_DIR, else out/host in the
// repository that holds the working directory.
func ImageDir() (string, error) {
	if d := os.Getenv("FV_IMAGE_DIR"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := RepoRoot(wd)
	if err != nil {
		return "", fmt.Errorf("find the host image: %w", err)
	}
	return filepath.Join(root, "out", "host"), nil
}

// HostImageIn returns the kernel and initramfs of the host image in dir, or
// an error naming what is missing.
func HostImageIn(dir string) (kernel, initrd string, err error) {
	kernel = filepath.Join(dir, KernelFile)
	initrd = filepath.Join(dir, InitrdFile)
	var errs []error
	for _, p := range []string{kernel, initrd} {
		if fi, err := os.Stat(p); err != nil {
			errs = append(errs, err)
		} else if !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("%s is not a regular file", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", "", err
	}
	return kernel, initrd, nil
}

// HostImage returns the built host image's kernel and initramfs (ImageDir).
// A missing image fails the test: an e2e check that skips would be reported
// as passing.
func HostImage(t testing.TB) (kernel, initrd string) {
	t.Helper()
	dir, err := ImageDir()
	if err != nil {
		t.Fatalf("host image not built: run make image (%v)", err)
		return "", ""
	}
	kernel, initrd, err = HostImageIn(dir)
	if err != nil {
		t.Fatalf("host image not built in %s: run make image (%v)", dir, err)
		return "", ""
	}
	return kernel, initrd
}

// GuestImageDir is where the test guest image is: $FV_GUEST_IMAGE_DIR, else
// the guest folder beside the host image.
func GuestImageDir() (string, error) {
	if d := os.Getenv("FV_GUEST_IMAGE_DIR"); d != "" {
		return d, nil
	}
	host, err := ImageDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(host), "guest"), nil
}

// GuestImage returns the test guest's kernel and initramfs; like HostImage,
// a missing image fails the test.
func GuestImage(t testing.TB) (kernel, initrd string) {
	t.Helper()
	dir, err := GuestImageDir()
	if err != nil {
		t.Fatalf("guest image not built: run make image (%v)", err)
		return "", ""
	}
	kernel, initrd, err = HostImageIn(dir)
	if err != nil {
		t.Fatalf("guest image not built in %s: run make image (%v)", dir, err)
		return "", ""
	}
	return kernel, initrd
}

// tokenAlphabet is what API tokens are made of here: safe on a kernel command
// line and in a shell without quoting.
const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// TokenLength is the length of tokens from NewToken and RandomToken.
const TokenLength = 40

// NewToken returns a random API token of TokenLength characters from
// [A-Za-z0-9].
func NewToken() (string, error) {
	b := make([]byte, TokenLength)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	// 256 is not a multiple of 62: bytes from 248 (4*62) up are dropped so
	// every character is equally likely.
	out := make([]byte, 0, TokenLength)
	for len(out) < TokenLength {
		for _, c := range b {
			if c < 248 && len(out) < TokenLength {
				out = append(out, tokenAlphabet[int(c)%len(tokenAlphabet)])
			}
		}
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
	}
	return string(out), nil
}

// RandomToken returns a fresh API token for a test.
func RandomToken(t testing.TB) string {
	t.Helper()
	tok, err := NewToken()
	if err != nil {
		t.Fatalf("random token: %v", err)
	}
	return tok
}
