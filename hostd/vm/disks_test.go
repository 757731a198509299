package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

// TestQEMUImgArgs checks the qemu-img command lines of the disk
// operations.
func TestQEMUImgArgs(t *testing.T) {
	var got [][]string
	q := QEMUImg{Exec: func(ctx context.Context, args []string) ([]byte, error) {
		got = append(got, args)
		if args[0] == "info" {
			return []byte(`[{"filename":"/ds/a.qcow2","format":"qcow2","virtual-size":1048576,"actual-size":4096,"snapshots":[{"name":"s1"},{"name":"s2"}]},` +
				`{"filename":"/ds/base.qcow2","format":"qcow2","virtual-size":1048576}]`), nil
		}
		return nil, nil
	}}
	ctx := t.Context()
	for _, err := range []error{
		q.Convert(ctx, "/ds/in.vmdk", "vmdk", "/ds/.out.tmp-1", "qcow2"),
		q.Convert(ctx, "/ds/in.vhdx", "vhdx", "/ds/.out.tmp-2", "raw"),
		q.Resize(ctx, "/ds/a.qcow2", "qcow2", 2048),
		q.Resize(ctx, "/ds/b.img", "raw", 4096),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	chain, err := q.Info(ctx, "/ds/a.qcow2")
	if err != nil {
		t.Fatalf("Info() = %v", err)
	}
	want := [][]string{
		{"convert", "-q", "-f", "vmdk", "-O", "qcow2", "/ds/in.vmdk", "/ds/.out.tmp-1"},
		{"convert", "-q", "-f", "vhdx", "-O", "raw", "-o", "preallocation=falloc", "/ds/in.vhdx", "/ds/.out.tmp-2"},
		{"resize", "-q", "-f", "qcow2", "/ds/a.qcow2", "2048M"},
		{"resize", "-q", "-f", "raw", "--preallocation=falloc", "/ds/b.img", "4096M"},
		{"info", "--output=json", "--backing-chain", "-U", "/ds/a.qcow2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("qemu-img command lines (-want +got):\n%s", diff)
	}
	if len(chain) != 2 || chain[0].Format != "qcow2" || chain[0].VirtualSize != 1<<20 || len(chain[0].Snapshots) != 2 || chain[1].Filename != "/ds/base.qcow2" {
		t.Errorf("Info() = %+v, want the 2-image chain", chain)
	}

	q.Exec = func(context.Context, []string) ([]byte, error) { return []byte("not json"), nil }
	if _, err := q.Info(ctx, "/ds/a.qcow2"); err == nil {
		t.Error("Info(garbage) = nil error")
	}
	q.Exec = func(context.Context, []string) ([]byte, error) { return []byte("[]"), nil }
	if _, err := q.Info(ctx, "/ds/a.qcow2"); err == nil {
		t.Error("Info(empty chain) = nil error")
	}
}

// fakeImg is an ImageTool over a map of images; Convert writes a file.
type fakeImg struct {
	mu      sync.Mutex
	images  map[string]ImageInfo // by host path
	calls   []string
	failOn  string           // "Convert" or "Resize"
	convert func(tmp string) // runs inside Convert (checks)
}

func (f *fakeImg) Convert(ctx context.Context, src, srcFormat, dst, dstFormat string) error {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("Convert %s %s -> %s %s", filepath.Base(src), srcFormat, filepath.Base(filepath.Dir(dst)), dstFormat))
	f.mu.Unlock()
	if f.convert != nil {
		f.convert(dst)
	}
	if err := os.WriteFile(dst, []byte("converted"), 0o644); err != nil {
		return err
	}
	if f.failOn == "Convert" {
		return errors.New("qemu-img: Could not open source: Invalid footer")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.images[src]
	f.images[dst] = ImageInfo{Filename: dst, Format: dstFormat, VirtualSize: in.VirtualSize, ActualSize: 4096}
	return nil
}

func (f *fakeImg) Resize(ctx context.Context, path, format string, sizeMiB int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("Resize %s %s %d", filepath.Base(path), format, sizeMiB))
	if f.failOn == "Resize" {
		return errors.New("qemu-img: resize failed")
	}
	img := f.images[path]
	img.VirtualSize = sizeMiB << 20
	f.images[path] = img
	return nil
}

func (f *fakeImg) Info(ctx context.Context, path string) ([]ImageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.images[path]
	if !ok { // a renamed temporary file keeps its image
		for p, tmp := range f.images {
			if filepath.Dir(p) == filepath.Dir(path) && strings.HasPrefix(filepath.Base(p), "."+filepath.Base(path)+".tmp-") {
				img, ok = tmp, true
				img.Filename = path
				delete(f.images, p)
				f.images[path] = img
				break
			}
		}
	}
	if !ok {
		return nil, fmt.Errorf("qemu-img info %s: no such image in the fake", path)
	}
	chain := []ImageInfo{img}
	if b := img.FullBackingFilename; b != "" {
		chain = append(chain, f.images[b])
	}
	return chain, nil
}

func (f *fakeImg) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// diskEnv is DiskOps on a fake tool, with "[ds1]" a temporary directory.
type diskEnv struct {
	root string
	img  *fakeImg
	busy map[string]string // host path -> VM
	ops  *DiskOps
}

func newDiskEnv(t *testing.T) *diskEnv {
	t.Helper()
	e := &diskEnv{root: t.TempDir(), img: &fakeImg{images: map[string]ImageInfo{}}, busy: map[string]string{}}
	e.ops = &DiskOps{
		Tool: e.img,
		Datastore: func(name string) (string, error) {
			if name != "ds1" {
				return "", fmt.Errorf("no such datastore: %s", name)
			}
			return e.root, nil
		},
		InUse: func(p string) (string, bool) { vm, ok := e.busy[p]; return vm, ok },
	}
	return e
}

// image creates a file on ds1 that the fake describes as format.
func (e *diskEnv) image(t *testing.T, rel, format string, sizeMiB int64) string {
	t.Helper()
	p := filepath.Join(e.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(format), 0o644); err != nil {
		t.Fatal(err)
	}
	e.img.images[p] = ImageInfo{Filename: p, Format: format, VirtualSize: sizeMiB << 20, ActualSize: 8192}
	return p
}

// entries lists every file and directory under the datastore.
func (e *diskEnv) entries(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(e.root, func(p string, d os.DirEntry, err error) error {
		if p != e.root {
			rel, _ := filepath.Rel(e.root, p)
			out = append(out, rel)
		}
		return err
	})
	return out
}

func TestDiskImportWritesTempThenRenames(t *testing.T) {
	e := newDiskEnv(t)
	e.image(t, "import/app.vmdk", "vmdk", 64)
	dst := filepath.Join(e.root, "web01", "web01.qcow2")
	e.img.convert = func(tmp string) {
		if filepath.Dir(tmp) != filepath.Dir(dst) || !strings.HasPrefix(filepath.Base(tmp), ".web01.qcow2.tmp-") {
			t.Errorf("Convert wrote %s, want a hidden temporary file beside %s", tmp, dst)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Errorf("%s exists while qemu-img still writes", dst)
		}
	}
	got, err := e.ops.Import(t.Context(), "[ds1] import/app.vmdk", "[ds1] web01/web01.qcow2", api.ProvisionThin)
	if err != nil {
		t.Fatalf("Import() = %v", err)
	}
	want := api.DiskInfo{Path: "[ds1] web01/web01.qcow2", Format: "qcow2", VirtualSizeBytes: 64 << 20, ActualSizeBytes: 4096}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Import() result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"import", "import/app.vmdk", "web01", "web01/web01.qcow2"}, e.entries(t)); diff != "" {
		t.Errorf("datastore after import (-want +got):\n%s", diff)
	}
	// Thick is raw.
	e.img.convert = nil
	if _, err := e.ops.Import(t.Context(), "[ds1] import/app.vmdk", "[ds1] web01/web01-flat.img", api.ProvisionThick); err != nil {
		t.Fatalf("Import(thick) = %v", err)
	}
	wantCalls := []string{"Convert app.vmdk vmdk -> web01 qcow2", "Convert app.vmdk vmdk -> web01 raw"}
	if diff := cmp.Diff(wantCalls, e.img.callList()); diff != "" {
		t.Errorf("tool calls (-want +got):\n%s", diff)
	}
}

func TestDiskImportFailureLeavesNothing(t *testing.T) {
	e := newDiskEnv(t)
	e.image(t, "import/app.vhdx", "vhdx", 64)
	e.img.failOn = "Convert"
	before := e.entries(t)
	_, err := e.ops.Import(t.Context(), "[ds1] import/app.vhdx", "[ds1] new/dir/disk.qcow2", api.ProvisionThin)
	if err == nil || !strings.Contains(err.Error(), "Invalid footer") {
		t.Fatalf("Import(failing) = %v, want qemu-img's error", err)
	}
	if diff := cmp.Diff(before, e.entries(t)); diff != "" {
		t.Errorf("a failed import left files or directories (-before +after):\n%s", diff)
	}
	// Into an existing directory: the directory stays, the temp goes.
	_, err = e.ops.Import(t.Context(), "[ds1] import/app.vhdx", "[ds1] import/disk.qcow2", api.ProvisionThin)
	if err == nil {
		t.Fatal("Import(failing) = nil error")
	}
	if diff := cmp.Diff(before, e.entries(t)); diff != "" {
		t.Errorf("a failed import left files (-before +after):\n%s", diff)
	}
}

// TestDiskDestinationAppearsDuringCopy: a file that appears at the
// destination while qemu-img runs is not replaced.
func TestDiskDestinationAppearsDuringCopy(t *testing.T) {
	e := newDiskEnv(t)
	e.image(t, "a.qcow2", "qcow2", 16)
	dst := filepath.Join(e.root, "b.qcow2")
	e.img.convert = func(string) { os.WriteFile(dst, []byte("theirs"), 0o644) }
	_, err := e.ops.Clone(t.Context(), "[ds1] a.qcow2", "[ds1] b.qcow2", api.ProvisionThin)
	if !errors.Is(err, ErrFileExists) {
		t.Fatalf("Clone() = %v, want ErrFileExists", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "theirs" {
		t.Errorf("destination = %q, want the other writer's file kept", b)
	}
	if diff := cmp.Diff([]string{"a.qcow2", "b.qcow2"}, e.entries(t)); diff != "" {
		t.Errorf("datastore (-want +got):\n%s", diff)
	}
}

func TestDiskOpsRefusals(t *testing.T) {
	e := newDiskEnv(t)
	e.image(t, "a.qcow2", "qcow2", 16)
	e.image(t, "b.img", "raw", 32)
	e.image(t, "c.vmdk", "vmdk", 16)
	e.image(t, "web01/web01.qcow2", "qcow2", 16)
	e.busy[filepath.Join(e.root, "web01/web01.qcow2")] = "web01"
	outside := e.image(t, "evil.vmdk", "vmdk", 16)
	img := e.img.images[outside]
	img.FormatSpecific = []byte(`{"type":"vmdk","data":{"extents":[{"filename":"/dev/sda","format":"FLAT"}]}}`)
	e.img.images[outside] = img
	overlay := e.image(t, "overlay.qcow2", "qcow2", 16)
	img = e.img.images[overlay]
	img.FullBackingFilename = "/etc/shadow"
	e.img.images[overlay] = img
	e.img.images["/etc/shadow"] = ImageInfo{Filename: "/etc/shadow", Format: "raw"}
	if err := os.Mkdir(filepath.Join(e.root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		do   func() error
		want error
		msg  string
	}{
		{"import missing source", func() error { _, err := e.ops.Import(ctx, "[ds1] nope.vmdk", "[ds1] x.qcow2", "thin"); return err }, ErrNoFile, "nope.vmdk"},
		{"import to existing", func() error { _, err := e.ops.Import(ctx, "[ds1] c.vmdk", "[ds1] a.qcow2", "thin"); return err }, ErrFileExists, "a.qcow2"},
		{"import bad provisioning", func() error { _, err := e.ops.Import(ctx, "[ds1] c.vmdk", "[ds1] x.qcow2", "lazy"); return err }, ErrInvalid, "thin or thick"},
		{"import relative ref", func() error { _, err := e.ops.Import(ctx, "c.vmdk", "[ds1] x.qcow2", "thin"); return err }, ErrInvalid, "[datastore] path"},
		{"import escaping ref", func() error { _, err := e.ops.Import(ctx, "[ds1] ../c.vmdk", "[ds1] x.qcow2", "thin"); return err }, ErrInvalid, "clean"},
		{"import a directory", func() error { _, err := e.ops.Import(ctx, "[ds1] dir", "[ds1] x.qcow2", "thin"); return err }, ErrInvalid, "directory"},
		{"import to the datastore root", func() error { _, err := e.ops.Import(ctx, "[ds1] c.vmdk", "[ds1] .", "thin"); return err }, ErrInvalid, ""},
		{"import extent outside", func() error { _, err := e.ops.Import(ctx, "[ds1] evil.vmdk", "[ds1] x.qcow2", "thin"); return err }, ErrInvalid, "/dev/sda"},
		{"clone backing outside", func() error { _, err := e.ops.Clone(ctx, "[ds1] overlay.qcow2", "[ds1] x.qcow2", "thin"); return err }, ErrInvalid, "/etc/shadow"},
		{"clone a vmdk", func() error { _, err := e.ops.Clone(ctx, "[ds1] c.vmdk", "[ds1] x.qcow2", "thin"); return err }, ErrInvalid, "clone takes qcow2, raw"},
		{"clone a running VM's disk", func() error {
			_, err := e.ops.Clone(ctx, "[ds1] web01/web01.qcow2", "[ds1] x.qcow2", "thin")
			return err
		}, ErrState, "web01"},
		{"grow a running VM's disk", func() error { _, err := e.ops.Grow(ctx, "[ds1] web01/web01.qcow2", 1024); return err }, ErrState, "power it off first"},
		{"grow shrinks", func() error { _, err := e.ops.Grow(ctx, "[ds1] b.img", 16); return err }, ErrShrink, "32 MiB"},
		{"grow a vmdk", func() error { _, err := e.ops.Grow(ctx, "[ds1] c.vmdk", 1024); return err }, ErrInvalid, "vmdk"},
		{"grow to 0", func() error { _, err := e.ops.Grow(ctx, "[ds1] a.qcow2", 0); return err }, ErrInvalid, "size"},
		{"grow missing", func() error { _, err := e.ops.Grow(ctx, "[ds1] nope.qcow2", 1024); return err }, ErrNoFile, ""},
		{"info missing", func() error { _, err := e.ops.Info(ctx, "[ds1] nope.qcow2"); return err }, ErrNoFile, ""},
		{"info a directory", func() error { _, err := e.ops.Info(ctx, "[ds1] dir"); return err }, ErrInvalid, ""},
	} {
		err := tc.do()
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("%s = %v, want %v mentioning %q", tc.name, err, tc.want, tc.msg)
		}
	}
	if calls := e.img.callList(); len(calls) != 0 {
		t.Errorf("refused operations reached qemu-img: %q", calls)
	}
	if _, err := e.ops.Info(ctx, "[ds2] a.qcow2"); err == nil || !strings.Contains(err.Error(), "no such datastore") {
		t.Errorf("Info(unknown datastore) = %v, want the resolver's error", err)
	}
}

func TestDiskGrow(t *testing.T) {
	e := newDiskEnv(t)
	e.image(t, "a.qcow2", "qcow2", 16)
	e.image(t, "b.img", "raw", 32)
	ctx := t.Context()
	got, err := e.ops.Grow(ctx, "[ds1] a.qcow2", 64)
	if err != nil || got.VirtualSizeBytes != 64<<20 || got.Format != "qcow2" {
		t.Errorf("Grow(a.qcow2, 64) = %+v, %v, want 64 MiB", got, err)
	}
	if _, err := e.ops.Grow(ctx, "[ds1] b.img", 32); err != nil {
		t.Errorf("Grow(b.img, same size) = %v, want a no-op", err)
	}
	if _, err := e.ops.Grow(ctx, "[ds1] b.img", 48); err != nil {
		t.Errorf("Grow(b.img, 48) = %v", err)
	}
	want := []string{"Resize a.qcow2 qcow2 64", "Resize b.img raw 48"}
	if diff := cmp.Diff(want, e.img.callList()); diff != "" {
		t.Errorf("tool calls (-want +got):\n%s", diff)
	}
}

func TestUsingVM(t *testing.T) {
	roots := map[string]string{"ds1": "/vmfs/ds1", "ds2": "/vmfs/ds2"}
	resolve := func(n string) (string, error) {
		if r, ok := roots[n]; ok {
			return r, nil
		}
		return "", errors.New("no such datastore")
	}
	web := api.VM{Spec: api.VMSpec{Name: "web01", Disks: []api.VirtualDisk{{File: "web01.qcow2"}, {File: "[ds2] shared/data.img"}}},
		Datastore: "ds1", Path: "web01/web01.fvx", Status: api.VMStatus{State: api.VMPoweredOn}}
	off := api.VM{Spec: api.VMSpec{Name: "db01", Disks: []api.VirtualDisk{{File: "[ds2] db/db.qcow2"}}},
		Datastore: "ds1", Path: "db01/db01.fvx", Status: api.VMStatus{State: api.VMPoweredOff}}
	lost := api.VM{Spec: api.VMSpec{Name: "lost"}, Datastore: "gone", Path: "lost/lost.fvx", Status: api.VMStatus{State: api.VMSuspended}}
	vms := []api.VM{off, lost, web}
	for _, tc := range []struct {
		path string
		vm   string
	}{
		{"/vmfs/ds1/web01/web01.qcow2", "web01"},
		{"/vmfs/ds1/web01/other.vmdk", "web01"},
		{"/vmfs/ds1/web01", "web01"},
		{"/vmfs/ds2/shared/data.img", "web01"},
		{"/vmfs/ds2/shared/other.img", ""},
		{"/vmfs/ds1/web011/x.qcow2", ""},
		{"/vmfs/ds1/db01/db01.qcow2", ""},
		{"/vmfs/ds2/db/db.qcow2", ""},
	} {
		vm, busy := UsingVM(vms, resolve, tc.path)
		if vm != tc.vm || busy != (tc.vm != "") {
			t.Errorf("UsingVM(%s) = %q, %v, want %q", tc.path, vm, busy, tc.vm)
		}
	}
}

// TestDiskOpsRealQEMUImg runs every operation with the real qemu-img: a
// vmdk imported thin and thick, cloned, grown and inspected.
func TestDiskOpsRealQEMUImg(t *testing.T) {
	const bin = "/usr/bin/qemu-img"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("qemu-img not installed (%v): install qemu-utils to run this test", err)
	}
	root := t.TempDir()
	ops := &DiskOps{
		Tool: QEMUImg{Binary: bin},
		Datastore: func(name string) (string, error) {
			if name != "ds1" {
				return "", fmt.Errorf("no such datastore: %s", name)
			}
			return root, nil
		},
	}
	ctx := t.Context()
	if err := os.Mkdir(filepath.Join(root, "import"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, bin, "create", "-q", "-f", "vmdk", filepath.Join(root, "import", "app.vmdk"), "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	src, err := ops.Info(ctx, "[ds1] import/app.vmdk")
	if err != nil || src.Format != "vmdk" || src.VirtualSizeBytes != 64<<20 {
		t.Fatalf("Info(app.vmdk) = %+v, %v, want a 64 MiB vmdk", src, err)
	}

	thin, err := ops.Import(ctx, "[ds1] import/app.vmdk", "[ds1] web01/web01.qcow2", api.ProvisionThin)
	if err != nil || thin.Format != "qcow2" || thin.VirtualSizeBytes != 64<<20 {
		t.Fatalf("Import(thin) = %+v, %v, want a 64 MiB qcow2", thin, err)
	}
	if thin.ActualSizeBytes >= 16<<20 {
		t.Errorf("thin import uses %d bytes, want far less than 64 MiB", thin.ActualSizeBytes)
	}
	thick, err := ops.Import(ctx, "[ds1] import/app.vmdk", "[ds1] web01/web01-thick.img", api.ProvisionThick)
	if err != nil || thick.Format != "raw" || thick.VirtualSizeBytes != 64<<20 {
		t.Fatalf("Import(thick) = %+v, %v, want a 64 MiB raw", thick, err)
	}
	if thick.ActualSizeBytes < 64<<20 {
		t.Errorf("thick import uses %d bytes, want all 64 MiB allocated", thick.ActualSizeBytes)
	}
	if _, err := ops.Import(ctx, "[ds1] import/app.vmdk", "[ds1] web01/web01.qcow2", api.ProvisionThin); !errors.Is(err, ErrFileExists) {
		t.Errorf("Import(over an existing disk) = %v, want ErrFileExists", err)
	}

	// A snapshot stays with the source; the clone is independent.
	if out, err := exec.CommandContext(ctx, bin, "snapshot", "-c", "s1", filepath.Join(root, "web01", "web01.qcow2")).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img snapshot: %v: %s", err, out)
	}
	clone, err := ops.Clone(ctx, "[ds1] web01/web01.qcow2", "[ds1] web02/web02.img", api.ProvisionThick)
	if err != nil || clone.Format != "raw" || clone.VirtualSizeBytes != 64<<20 || clone.ActualSizeBytes < 64<<20 {
		t.Fatalf("Clone(thick) = %+v, %v, want a fully allocated 64 MiB raw", clone, err)
	}
	clone, err = ops.Clone(ctx, "[ds1] web01/web01.qcow2", "[ds1] web03/web03.qcow2", api.ProvisionThin)
	if err != nil || clone.Format != "qcow2" || clone.Snapshots != 0 || clone.BackingFile != "" {
		t.Fatalf("Clone(thin) = %+v, %v, want an independent qcow2 without snapshots", clone, err)
	}
	if _, err := ops.Clone(ctx, "[ds1] import/app.vmdk", "[ds1] x.qcow2", api.ProvisionThin); !errors.Is(err, ErrInvalid) {
		t.Errorf("Clone(vmdk) = %v, want ErrInvalid (import it)", err)
	}

	// Grow: qcow2 with a snapshot, raw stays allocated; shrinking is refused.
	grown, err := ops.Grow(ctx, "[ds1] web01/web01.qcow2", 128)
	if err != nil || grown.VirtualSizeBytes != 128<<20 || grown.Snapshots != 1 {
		t.Errorf("Grow(qcow2, 128) = %+v, %v, want 128 MiB with its snapshot", grown, err)
	}
	grown, err = ops.Grow(ctx, "[ds1] web02/web02.img", 96)
	if err != nil || grown.VirtualSizeBytes != 96<<20 || grown.ActualSizeBytes < 96<<20 {
		t.Errorf("Grow(raw, 96) = %+v, %v, want 96 MiB fully allocated", grown, err)
	}
	if _, err := ops.Grow(ctx, "[ds1] web02/web02.img", 32); !errors.Is(err, ErrShrink) {
		t.Errorf("Grow(raw, 32) = %v, want ErrShrink", err)
	}

	// A linked clone on the same datastore is flattened; its backing file
	// shows as a datastore path.
	overlay := filepath.Join(root, "web03", "overlay.qcow2")
	if out, err := exec.CommandContext(ctx, bin, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(root, "web03", "web03.qcow2"), overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create overlay: %v: %s", err, out)
	}
	info, err := ops.Info(ctx, "[ds1] web03/overlay.qcow2")
	if err != nil || info.BackingFile != "[ds1] web03/web03.qcow2" {
		t.Errorf("Info(overlay) = %+v, %v, want backing file [ds1] web03/web03.qcow2", info, err)
	}
	flat, err := ops.Clone(ctx, "[ds1] web03/overlay.qcow2", "[ds1] web04/web04.qcow2", api.ProvisionThin)
	if err != nil || flat.BackingFile != "" || flat.VirtualSizeBytes != 64<<20 {
		t.Errorf("Clone(overlay) = %+v, %v, want a flat 64 MiB qcow2", flat, err)
	}

	// A corrupt source fails in qemu-img and leaves nothing behind.
	if err := os.WriteFile(filepath.Join(root, "import", "bad.vhdx"), []byte("vhdxfile"+strings.Repeat("\x00", 1<<16)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Import(ctx, "[ds1] import/bad.vhdx", "[ds1] bad/bad.qcow2", api.ProvisionThin); err == nil {
		t.Error("Import(corrupt vhdx) = nil error")
	}
	if _, err := os.Stat(filepath.Join(root, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed import left its directory: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "web01"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
