package image

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeIndex builds an index from a table: "->target" makes a symlink, "/"
// suffix a directory, anything else a file whose src is the path itself.
func fakeIndex(pkg string, table []string) *index {
	ix := &index{entries: map[string]*entry{"/": {kind: kindDir}}, children: map[string][]string{}}
	for _, row := range table {
		p, link, isLink := strings.Cut(row, " -> ")
		e := &entry{kind: kindFile, src: p, pkg: pkg, perm: 0o644}
		switch {
		case isLink:
			e = &entry{kind: kindLink, link: link, pkg: pkg}
		case strings.HasSuffix(p, "/"):
			p = strings.TrimSuffix(p, "/")
			e = &entry{kind: kindDir, pkg: pkg}
		}
		ix.add(mergedUsr(p), e)
	}
	return ix
}

func TestTreeClosure(t *testing.T) {
	ix := fakeIndex("pkg", []string{
		"/usr/", "/usr/bin/", "/usr/lib/", "/usr/lib/x86_64-linux-gnu/", "/usr/lib64/",
		"/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/bin/qemu",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1 -> libfoo.so.1.2.3",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libunused.so.1",
		"/usr/share/", "/usr/share/qemu/", "/usr/share/qemu/bios.bin -> ../seabios/bios.bin",
		"/usr/share/qemu/openbios-ppc", "/usr/share/qemu/kvmvapic.bin",
		"/usr/share/seabios/", "/usr/share/seabios/bios.bin",
		"/usr/bin/broken",
	})
	elfs := map[string]elfInfo{
		"/usr/bin/qemu": {interp: "/lib64/ld-linux-x86-64.so.2", needed: []string{"libfoo.so.1", "libc.so.6"}},
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3": {needed: []string{"libc.so.6"}},
		"/lib/x86_64-linux-gnu/libc.so.6":           {},
		"/usr/bin/broken":                           {needed: []string{"libnosuch.so.9"}},
	}
	newT := func() *tree {
		tr := newTree(ix, []string{"openbios-*"})
		tr.readELF = func(src string) (elfInfo, bool, error) {
			info, ok := elfs[src]
			return info, ok, nil
		}
		return tr
	}

	tr := newT()
	for _, g := range []string{"/usr/bin/qemu", "/usr/share/qemu"} {
		if err := tr.addGlob(g); err != nil {
			t.Fatalf("addGlob(%s) = %v", g, err)
		}
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for p := range tr.files {
			if !yield(p) {
				return
			}
		}
	})
	want := []string{
		"/usr/bin/qemu",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
		"/usr/lib64/ld-linux-x86-64.so.2",
		"/usr/share/qemu",
		"/usr/share/qemu/bios.bin",
		"/usr/share/qemu/kvmvapic.bin",
		"/usr/share/seabios/bios.bin",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tree mismatch (-want +got):\n%s", diff)
	}
	if e := tr.files["/usr/lib/x86_64-linux-gnu/libfoo.so.1"]; e.kind != kindLink {
		t.Errorf("libfoo.so.1 kind = %v, want a symlink kept as a symlink", e.kind)
	}

	for _, tc := range []struct{ glob, err string }{
		{"/usr/bin/broken", "needs libnosuch.so.9"},
		{"/usr/bin/nosuch", "not in the packages"},
		{"/usr/lib/x86_64-linux-gnu/qemu/ui-*.so", "not in the packages"},
		{"/usr/bin/[", "syntax error"},
	} {
		err := newT().addGlob(tc.glob)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("addGlob(%s) = %v, want error containing %q", tc.glob, err, tc.err)
		}
	}
}

func TestResolveLoop(t *testing.T) {
	ix := fakeIndex("p", []string{"/a -> b", "/b -> a"})
	if _, _, err := ix.resolve("/a"); err == nil || !strings.Contains(err.Error(), "too many symlinks") {
		t.Errorf("resolve(/a) = %v, want too many symlinks", err)
	}
	if _, _, err := ix.resolve("/nosuch"); !errors.Is(err, errNotInPackages) {
		t.Errorf("resolve(/nosuch) = %v, want errNotInPackages", err)
	}
}

func TestNewIndex(t *testing.T) {
	dir := t.TempDir()
	write := func(p, content string, perm os.FileMode) {
		t.Helper()
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), perm); err != nil {
			t.Fatal(err)
		}
	}
	write("a/sbin/mke2fs", "x", 0o700)
	write("a/usr/share/x", "from a", 0o600)
	write("b/usr/share/x", "from b", 0o644)
	if err := os.Symlink("mke2fs", filepath.Join(dir, "a/sbin/mkfs.ext4")); err != nil {
		t.Fatal(err)
	}
	ix, err := newIndex(map[string]string{"b": filepath.Join(dir, "b"), "a": filepath.Join(dir, "a")})
	if err != nil {
		t.Fatal(err)
	}
	if e := ix.entries["/usr/sbin/mke2fs"]; e == nil || e.perm != 0o755 || e.pkg != "a" {
		t.Errorf("entry /usr/sbin/mke2fs = %+v, want 0755 from a", e)
	}
	if e := ix.entries["/usr/share/x"]; e == nil || e.pkg != "a" || e.perm != 0o644 {
		t.Errorf("entry /usr/share/x = %+v, want 0644 from a (first by name)", e)
	}
	if final, links, err := ix.resolve("/sbin/mkfs.ext4"); err != nil || final != "/usr/sbin/mke2fs" || len(links) != 1 {
		t.Errorf("resolve(/sbin/mkfs.ext4) = %s, %v, %v", final, links, err)
	}
}

func TestReadELF(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, ok, err := readELF(exe)
	if err != nil {
		t.Fatalf("readELF(test binary) = %v", err)
	}
	if wantOK := runtime.GOOS == "linux" && runtime.GOARCH == "amd64"; ok != wantOK {
		t.Errorf("readELF(test binary) ok = %v, want %v", ok, wantOK)
	}
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := readELF(text); ok || err != nil {
		t.Errorf("readELF(script) = %v, %v, want not ELF", ok, err)
	}
}
