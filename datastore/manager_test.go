package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/datastore"
	"github.com/flashvisor/flashvisor/datastore/datastoretest"
)

const (
	GiB = 1 << 30
	MiB = 1 << 20
)

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// env is one fake host: disks, mount table and directories.
type env struct {
	disks *datastoretest.Disks
	mnt   *datastoretest.Mounter
	fmt   *datastoretest.Formatter
	root  string
	seq   int
}

func newEnv(t *testing.T) *env {
	e := &env{
		disks: datastoretest.NewDisks(t),
		mnt:   datastoretest.NewMounter(t),
		fmt:   &datastoretest.Formatter{},
		root:  t.TempDir(),
	}
	for _, d := range []string{"vmfs/volumes", "state", "run"} {
		if err := os.MkdirAll(filepath.Join(e.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) volumes() string   { return filepath.Join(e.root, "vmfs/volumes") }
func (e *env) stateFile() string { return filepath.Join(e.root, "state/datastores.json") }

func (e *env) config(t *testing.T) datastore.Config {
	return datastore.Config{
		SysBlock:   e.disks.SysBlock,
		DevDir:     e.disks.DevDir,
		Mountinfo:  e.mnt.Mountinfo,
		VolumesDir: e.volumes(),
		StateFile:  e.stateFile(),
		ProbeDir:   filepath.Join(e.root, "run/dsprobe"),
		Formatter:  e.fmt,
		Mounter:    e.mnt,
		Statfs:     datastoretest.Statfs(100*GiB, 60*GiB),
		Now:        func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
		NewUUID: func() string {
			e.seq++
			return fmt.Sprintf("%08x-0000-4000-8000-%012x", e.seq, e.seq)
		},
		Log: slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (e *env) manager(t *testing.T) *datastore.Manager {
	t.Helper()
	m, err := datastore.New(e.config(t))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return m
}

// reboot drops every mount and returns a manager as a fresh hostd would.
func (e *env) reboot(t *testing.T) *datastore.Manager {
	t.Helper()
	if err := e.mnt.Reboot(); err != nil {
		t.Fatal(err)
	}
	return e.manager(t)
}

func uuidN(n int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n) }

func create(t *testing.T, m *datastore.Manager, name, dev string) api.Datastore {
	t.Helper()
	d, err := m.Create(context.Background(), api.DatastoreCreateRequest{Name: name, Device: dev})
	if err != nil {
		t.Fatalf("Create(%s, %s) = %v", name, dev, err)
	}
	return d
}

func listByName(t *testing.T, m *datastore.Manager) map[string]api.Datastore {
	t.Helper()
	l, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Datastore{}
	for _, d := range l {
		out[d.Name+"|"+d.Device] = d
	}
	return out
}

func TestListDisks(t *testing.T) {
	e := newEnv(t)
	d := e.disks
	d.AddDisk(t, "sda", 8*GiB, datastoretest.DiskOpts{Model: "Flash Stick", Serial: "S1", Removable: true})
	d.WriteGPT(t, "sda")
	d.AddPartition(t, "sda", "sda1", 1*GiB)
	d.AddPartition(t, "sda", "sda10", 1*GiB)
	d.AddPartition(t, "sda", "sda2", 2*GiB)
	if err := datastoretest.WriteExt4(d.Path("sda2"), "FVSTATE", "11111111-2222-4333-8444-555555555555"); err != nil {
		t.Fatal(err)
	}
	e.mnt.AddForeign(d.Path("sda2"), "/var/lib/flashvisor")
	d.AddDisk(t, "sdb", 100*GiB, datastoretest.DiskOpts{Model: "HDD", Serial: "WD-1", Rotational: true})
	d.AddDisk(t, "vdc", 10*GiB, datastoretest.DiskOpts{})
	xfs := make([]byte, 120)
	copy(xfs, "XFSB")
	copy(xfs[108:], "scratch")
	d.Write(t, "vdc", 0, xfs)
	d.AddDisk(t, "nvme0n1", 4*GiB, datastoretest.DiskOpts{ReadOnly: true})
	d.Write(t, "nvme0n1", 4*GiB-100, []byte("junk at the end"))
	d.AddDisk(t, "loop0", GiB, datastoretest.DiskOpts{})
	d.AddDisk(t, "sr0", GiB, datastoretest.DiskOpts{})
	d.AddDisk(t, "sdz", 0, datastoretest.DiskOpts{}) // card reader, no card

	got, err := datastore.ListDisks(d.SysBlock, d.DevDir, e.mnt.Mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	dev := func(n string) string { return d.Path(n) }
	want := []api.Disk{
		{BlockDevice: api.BlockDevice{Name: "nvme0n1", Path: dev("nvme0n1"), SizeBytes: 4 * GiB, ReadOnly: true, Content: api.ContentData, ContentDetail: "unrecognised data"}},
		{
			BlockDevice: api.BlockDevice{Name: "sda", Path: dev("sda"), SizeBytes: 8 * GiB, Content: api.ContentGPT, ContentDetail: "gpt"},
			Model:       "Flash Stick", Serial: "S1", Removable: true,
			Partitions: []api.BlockDevice{
				{Name: "sda1", Path: dev("sda1"), SizeBytes: GiB},
				{Name: "sda2", Path: dev("sda2"), SizeBytes: 2 * GiB, Content: api.ContentExt4, ContentDetail: "ext4", Label: "FVSTATE", FSUUID: "11111111-2222-4333-8444-555555555555", MountPoints: []string{"/var/lib/flashvisor"}},
				{Name: "sda10", Path: dev("sda10"), SizeBytes: GiB},
			},
		},
		{BlockDevice: api.BlockDevice{Name: "sdb", Path: dev("sdb"), SizeBytes: 100 * GiB}, Model: "HDD", Serial: "WD-1", Rotational: true},
		{BlockDevice: api.BlockDevice{Name: "vdc", Path: dev("vdc"), SizeBytes: 10 * GiB, Content: api.ContentXFS, ContentDetail: "xfs", Label: "scratch", FSUUID: "00000000-0000-0000-0000-000000000000"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListDisks() mismatch (-want +got):\n%s", diff)
	}
}

func TestCreateListRemove(t *testing.T) {
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", 100*GiB, datastoretest.DiskOpts{})
	m := e.manager(t)

	d := create(t, m, "datastore1", "sdb")
	u := uuidN(1)
	want := api.Datastore{
		Name: "datastore1", UUID: u, Kind: api.DatastoreLocal, Device: e.disks.Path("sdb"),
		MountPoint: filepath.Join(e.volumes(), u), Path: filepath.Join(e.volumes(), "datastore1"),
		CapacityBytes: 100 * GiB, FreeBytes: 60 * GiB, Status: api.DatastoreMounted,
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("Create() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]datastoretest.FormatCall{{Device: e.disks.Path("sdb"), Label: "datastore1", UUID: u}}, e.fmt.Calls()); diff != "" {
		t.Errorf("format calls (-want +got):\n%s", diff)
	}
	if link, err := os.Readlink(want.Path); err != nil || link != u {
		t.Errorf("Readlink(%s) = %q, %v, want %q (relative link to the uuid)", want.Path, link, err, u)
	}
	b, err := os.ReadFile(filepath.Join(want.Path, datastore.DescriptorFile))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := datastore.ParseDescriptor(b)
	if err != nil || desc.Name != "datastore1" || desc.UUID != u || desc.Version != 1 {
		t.Errorf("descriptor = %+v, %v", desc, err)
	}
	if list, _ := m.List(); len(list) != 1 || !cmp.Equal(list[0], want) {
		t.Errorf("List() = %+v, want [%+v]", list, want)
	}
	disks, _ := m.Disks()
	if disks[0].Datastore != "datastore1" || disks[0].FSUUID != u {
		t.Errorf("Disks()[0] = %+v, want it to hold datastore1", disks[0])
	}
	if _, err := m.Get("datastore1"); err != nil {
		t.Errorf("Get(datastore1) = %v", err)
	}
	if _, err := m.Get("nope"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}

	// A VM directory blocks removal unless forced.
	if err := os.MkdirAll(filepath.Join(want.Path, "web01"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(context.Background(), "datastore1", false); !errors.Is(err, datastore.ErrNotEmpty) {
		t.Fatalf("Remove(with VM dir) = %v, want ErrNotEmpty", err)
	}
	if err := m.Remove(context.Background(), "datastore1", true); err != nil {
		t.Fatalf("Remove(force) = %v", err)
	}
	if sig, err := datastore.ProbeDevice(e.disks.Path("sdb")); err != nil || sig.Content != api.ContentEmpty {
		t.Errorf("after Remove the disk holds %+v, %v; want blank", sig, err)
	}
	for _, p := range []string{want.Path, want.MountPoint} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Lstat(%s) = %v after Remove, want not exist", p, err)
		}
	}
	if len(e.mnt.Mounts()) != 0 {
		t.Errorf("mounts after Remove = %+v", e.mnt.Mounts())
	}
	if list, _ := m.List(); len(list) != 0 {
		t.Errorf("List() after Remove = %+v", list)
	}
	// The blank disk can be used again without force.
	create(t, m, "datastore1", e.disks.Path("sdb"))
}

func TestCreateRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, e *env, m *datastore.Manager)
		req     api.DatastoreCreateRequest
		wantErr error // nil: must succeed
	}{
		{name: "bad name", req: api.DatastoreCreateRequest{Name: "my ds", Device: "sdb"}, wantErr: datastore.ErrInvalidName},
		{name: "uuid-shaped name", req: api.DatastoreCreateRequest{Name: uuidN(7), Device: "sdb"}, wantErr: datastore.ErrInvalidName},
		{name: "no such device", req: api.DatastoreCreateRequest{Name: "ds", Device: "sdq"}, wantErr: datastore.ErrNoDevice},
		{
			name: "name in use",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddDisk(t, "sdc", GiB, datastoretest.DiskOpts{})
				create(t, m, "ds", "sdc")
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}, wantErr: datastore.ErrExists,
		},
		{
			name: "state partition, even forced",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				datastoretest.WriteExt4(e.disks.Path("sdb"), "FVSTATE", uuidN(99))
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb", Force: true}, wantErr: datastore.ErrStatePartition,
		},
		{
			name: "disk holding the state partition, even forced",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddPartition(t, "sdb", "sdb1", GiB)
				datastoretest.WriteExt4(e.disks.Path("sdb1"), "FVSTATE", uuidN(99))
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb", Force: true}, wantErr: datastore.ErrStatePartition,
		},
		{
			name: "mounted, even forced",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				datastoretest.WriteExt4(e.disks.Path("sdb"), "data", uuidN(98))
				e.mnt.AddForeign(e.disks.Path("sdb"), "/mnt/data")
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb", Force: true}, wantErr: datastore.ErrMounted,
		},
		{
			name: "partition of the disk mounted, even forced",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddPartition(t, "sdb", "sdb1", GiB)
				e.mnt.AddForeign(e.disks.Path("sdb1"), "/mnt/x")
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb", Force: true}, wantErr: datastore.ErrMounted,
		},
		{
			name:  "partition table",
			setup: func(t *testing.T, e *env, m *datastore.Manager) { e.disks.WriteGPT(t, "sdb") },
			req:   api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}, wantErr: datastore.ErrNotBlank,
		},
		{
			name:  "partition table, forced",
			setup: func(t *testing.T, e *env, m *datastore.Manager) { e.disks.WriteGPT(t, "sdb") },
			req:   api.DatastoreCreateRequest{Name: "ds", Device: "sdb", Force: true},
		},
		{
			name: "partitions listed by the kernel",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddPartition(t, "sdb", "sdb1", GiB)
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}, wantErr: datastore.ErrNotBlank,
		},
		{
			name: "blank partition",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddPartition(t, "sdb", "sdb1", GiB)
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb1"},
		},
		{
			name: "foreign filesystem",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				datastoretest.WriteExt4(e.disks.Path("sdb"), "home", uuidN(97))
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}, wantErr: datastore.ErrNotBlank,
		},
		{
			name:  "unknown data",
			setup: func(t *testing.T, e *env, m *datastore.Manager) { e.disks.Write(t, "sdb", 70000, []byte{1}) },
			req:   api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}, wantErr: datastore.ErrNotBlank,
		},
		{
			name: "holds a datastore",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				create(t, m, "old", "sdb")
				if err := m.Unmount("old"); err != nil {
					t.Fatal(err)
				}
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}, wantErr: datastore.ErrHasDatastore,
		},
		{
			name: "holds a datastore, forced",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				create(t, m, "old", "sdb")
				if err := m.Unmount("old"); err != nil {
					t.Fatal(err)
				}
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdb", Force: true},
		},
		{
			name: "too small",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddDisk(t, "sdt", 8*MiB, datastoretest.DiskOpts{})
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdt"}, wantErr: errAny,
		},
		{
			name: "read-only",
			setup: func(t *testing.T, e *env, m *datastore.Manager) {
				e.disks.AddDisk(t, "sdr", GiB, datastoretest.DiskOpts{ReadOnly: true})
			},
			req: api.DatastoreCreateRequest{Name: "ds", Device: "sdr"}, wantErr: errAny,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.disks.AddDisk(t, "sdb", 10*GiB, datastoretest.DiskOpts{})
			m := e.manager(t)
			if tc.setup != nil {
				tc.setup(t, e, m)
			}
			before := len(e.fmt.Calls())
			d, err := m.Create(context.Background(), tc.req)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Create(%+v) = %v, want success", tc.req, err)
			case tc.wantErr == nil:
				if d.Status != api.DatastoreMounted {
					t.Errorf("Create(%+v) status = %q", tc.req, d.Status)
				}
				list, _ := m.List()
				for _, x := range list {
					if x.Name == "old" {
						t.Errorf("List() still shows the overwritten datastore: %+v", x)
					}
				}
			case err == nil:
				t.Fatalf("Create(%+v) = nil, want %v", tc.req, tc.wantErr)
			case tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Create(%+v) = %v, want %v", tc.req, err, tc.wantErr)
			default:
				t.Logf("Create(%+v) = %v", tc.req, err)
				if n := len(e.fmt.Calls()); n != before {
					t.Errorf("a refused Create formatted something: %+v", e.fmt.Calls())
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func TestMountAllAfterReboot(t *testing.T) {
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", 10*GiB, datastoretest.DiskOpts{})
	e.disks.AddDisk(t, "sdc", 10*GiB, datastoretest.DiskOpts{})
	m := e.manager(t)
	create(t, m, "ds1", "sdb")
	create(t, m, "ds2", "sdc")
	os.WriteFile(filepath.Join(e.volumes(), "ds1", "marker"), []byte("x"), 0o644)

	m = e.reboot(t)
	if l := listByName(t, m); l["ds1|"+e.disks.Path("sdb")].Status != api.DatastoreUnmounted {
		t.Errorf("before MountAll: %+v, want unmounted", l)
	}
	if err := m.MountAll(context.Background()); err != nil {
		t.Fatalf("MountAll() = %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.volumes(), "ds1", "marker")); err != nil || string(b) != "x" {
		t.Errorf("ds1/marker = %q, %v after reboot", b, err)
	}
	mounts := e.mnt.Mounts()
	// Idempotent: a hostd restart changes nothing.
	if err := e.manager(t).MountAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mounts, e.mnt.Mounts(), cmpopts.IgnoreUnexported(datastoretest.Mount{})); diff != "" {
		t.Errorf("second MountAll changed mounts (-before +after):\n%s", diff)
	}
	if len(mounts) != 2 {
		t.Errorf("mounts = %+v, want 2", mounts)
	}

	// sdc is gone at the next boot: ds2 is missing, its name leads nowhere.
	e.disks.Unplug(t, "sdc")
	m = e.reboot(t)
	if err := m.MountAll(context.Background()); err != nil {
		t.Fatalf("MountAll() = %v", err)
	}
	l := listByName(t, m)
	ds2 := l["ds2|"]
	if ds2.Status != api.DatastoreMissing || ds2.Message == "" {
		t.Errorf("ds2 = %+v, want missing with a message", ds2)
	}
	if _, err := os.Lstat(filepath.Join(e.volumes(), "ds2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link ds2 exists for a missing datastore: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(e.volumes(), uuidN(2))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point of a missing datastore exists: %v", err)
	}
	if l["ds1|"+e.disks.Path("sdb")].Status != api.DatastoreMounted {
		t.Errorf("ds1 = %+v", l)
	}
	// Forgetting a missing datastore needs no disk.
	if err := m.Remove(context.Background(), "ds2", false); err != nil {
		t.Errorf("Remove(missing) = %v", err)
	}
	if _, ok := listByName(t, m)["ds2|"]; ok {
		t.Error("ds2 still listed after Remove")
	}
}

func TestMountAllAdoptsAndReportsConflicts(t *testing.T) {
	// Two other hosts each made a datastore called "shared".
	e := newEnv(t)
	for _, n := range []string{"sdb", "sdc", "sdd"} {
		e.disks.AddDisk(t, n, 10*GiB, datastoretest.DiskOpts{})
	}
	other := *e
	other.root = t.TempDir()
	for _, d := range []string{"vmfs/volumes", "state", "run"} {
		os.MkdirAll(filepath.Join(other.root, d), 0o755)
	}
	m1 := other.manager(t)
	create(t, m1, "shared", "sdb")
	create(t, m1, "solo", "sdd")
	for _, n := range []string{"shared", "solo"} {
		if err := m1.Unmount(n); err != nil {
			t.Fatal(err)
		}
	}
	other.stateFileRemove(t)
	m2 := other.manager(t)
	create(t, m2, "shared", "sdc")

	m := e.reboot(t) // this host: empty state, three disks plugged in
	err := m.MountAll(context.Background())
	if !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("MountAll() = %v, want ErrConflict", err)
	}
	t.Logf("MountAll() = %v", err)
	l := listByName(t, m)
	if d := l["solo|"+e.disks.Path("sdd")]; d.Status != api.DatastoreMounted {
		t.Errorf("solo = %+v, want adopted and mounted", d)
	}
	for _, dev := range []string{"sdb", "sdc"} {
		if d := l["shared|"+e.disks.Path(dev)]; d.Status != api.DatastoreConflict || d.Message == "" {
			t.Errorf("shared on %s = %+v, want conflict", dev, d)
		}
	}
	if _, err := os.Lstat(filepath.Join(e.volumes(), "shared")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the name of a conflicting datastore was linked: %v", err)
	}
	if n := len(e.mnt.Mounts()); n != 1 {
		t.Errorf("mounts = %+v, want only solo", e.mnt.Mounts())
	}
	// The adopted datastore is known from now on.
	if b, err := os.ReadFile(e.stateFile()); err != nil || !strings.Contains(string(b), `"solo"`) || strings.Contains(string(b), `"shared"`) {
		t.Errorf("state file = %s, %v", b, err)
	}
}

func (e *env) stateFileRemove(t *testing.T) {
	if err := os.Remove(e.stateFile()); err != nil {
		t.Fatal(err)
	}
}

func TestClonedDiskIsAConflict(t *testing.T) {
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", GiB, datastoretest.DiskOpts{})
	e.disks.AddDisk(t, "sdc", GiB, datastoretest.DiskOpts{})
	m := e.manager(t)
	create(t, m, "ds1", "sdb")
	m = e.reboot(t)
	// dd if=/dev/sdb of=/dev/sdc: same superblock, same descriptor.
	// The fake's content lives by filesystem UUID, so the superblock is
	// all that needs copying.
	head := make([]byte, 64<<10)
	f, _ := os.Open(e.disks.Path("sdb"))
	f.ReadAt(head, 0)
	f.Close()
	e.disks.Write(t, "sdc", 0, head)
	if err := m.MountAll(context.Background()); !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("MountAll() = %v, want ErrConflict", err)
	}
	if n := len(e.mnt.Mounts()); n != 0 {
		t.Errorf("mounts = %+v, want none", e.mnt.Mounts())
	}
	if err := m.Mount("ds1"); !errors.Is(err, datastore.ErrConflict) {
		t.Errorf("Mount(ds1) = %v, want ErrConflict", err)
	}
	l, _ := m.List()
	for _, d := range l {
		if d.Status != api.DatastoreConflict {
			t.Errorf("List() entry %+v, want conflict", d)
		}
	}
}

func TestUnmountStaysUnmounted(t *testing.T) {
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", GiB, datastoretest.DiskOpts{})
	m := e.manager(t)
	d := create(t, m, "ds1", "sdb")

	e.mnt.SetBusy(d.MountPoint, true)
	if err := m.Unmount("ds1"); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Unmount(busy) = %v, want EBUSY", err)
	}
	e.mnt.SetBusy(d.MountPoint, false)
	if err := m.Unmount("ds1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(d.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link after Unmount: %v", err)
	}
	m = e.reboot(t)
	if err := m.MountAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get("ds1"); got.Status != api.DatastoreUnmounted {
		t.Errorf("after reboot ds1 = %+v, want unmounted", got)
	}
	if err := m.Mount("ds1"); err != nil {
		t.Fatalf("Mount(ds1) = %v", err)
	}
	if got, _ := m.Get("ds1"); got.Status != api.DatastoreMounted {
		t.Errorf("after Mount ds1 = %+v", got)
	}
	// Remove of an unmounted datastore with a VM refuses and leaves it
	// unmounted.
	os.Mkdir(filepath.Join(d.Path, "vm1"), 0o755)
	m.Unmount("ds1")
	if err := m.Remove(context.Background(), "ds1", false); !errors.Is(err, datastore.ErrNotEmpty) {
		t.Errorf("Remove() = %v, want ErrNotEmpty", err)
	}
	if got, _ := m.Get("ds1"); got.Status != api.DatastoreUnmounted {
		t.Errorf("after refused Remove ds1 = %+v, want unmounted", got)
	}
}

func TestCorruptStateFile(t *testing.T) {
	for _, content := range []string{
		`not json`,
		`{"version": 2, "datastores": []}`,
		`{"version": 1, "datastores": [{"name": "a", "uuid": "x", "kind": "local"}]}`,
		`{"version": 1, "datastores": [{"name": "a", "uuid": "` + uuidN(1) + `", "kind": "local"}, {"name": "a", "uuid": "` + uuidN(2) + `", "kind": "local"}]}`,
		`{"version": 1, "datastores": [{"name": "a b", "uuid": "` + uuidN(1) + `", "kind": "local"}]}`,
		`{"version": 1, "datastores": []} {}`,
	} {
		e := newEnv(t)
		os.WriteFile(e.stateFile(), []byte(content), 0o644)
		_, err := datastore.New(e.config(t))
		if !errors.Is(err, datastore.ErrCorruptState) {
			t.Errorf("New() with state %s = %v, want ErrCorruptState", content, err)
		}
		if b, _ := os.ReadFile(e.stateFile()); string(b) != content {
			t.Errorf("state file changed to %q", b)
		}
	}
}

func TestCreateFormatterFailure(t *testing.T) {
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", GiB, datastoretest.DiskOpts{})
	e.fmt.Err = errors.New("mke2fs exploded")
	m := e.manager(t)
	if _, err := m.Create(context.Background(), api.DatastoreCreateRequest{Name: "ds", Device: "sdb"}); err == nil {
		t.Fatal("Create() = nil with a failing formatter")
	}
	if l, _ := m.List(); len(l) != 0 {
		t.Errorf("List() = %+v after a failed Create", l)
	}
	if _, err := os.Stat(e.stateFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file written after a failed Create: %v", err)
	}
}

func TestRescanFindsNewDisk(t *testing.T) {
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", GiB, datastoretest.DiskOpts{})
	m := e.manager(t)
	create(t, m, "ds1", "sdb")
	if err := m.Unmount("ds1"); err != nil {
		t.Fatal(err)
	}
	// Pretend the disk belongs to another host, then hot-plug it here.
	os.Remove(e.stateFile())
	e.disks.Unplug(t, "sdb")
	scsi := filepath.Join(e.root, "scsi_host")
	os.MkdirAll(filepath.Join(scsi, "host0"), 0o755)
	os.WriteFile(filepath.Join(scsi, "host0", "scan"), nil, 0o644)
	cfg := e.config(t)
	cfg.SCSIHostDir = scsi
	m, err := datastore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.List(); len(l) != 0 {
		t.Fatalf("List() = %+v before the disk appears", l)
	}
	e.disks.AddDisk(t, "sdc", GiB, datastoretest.DiskOpts{})
	// Same content under a new device name: copy the superblock.
	datastoretest.WriteExt4(e.disks.Path("sdc"), "ds1", uuidN(1))
	if err := m.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(scsi, "host0", "scan")); string(b) != "- - -" {
		t.Errorf("scan file = %q, want %q", b, "- - -")
	}
	got, err := m.Get("ds1")
	if err != nil || got.Status != api.DatastoreMounted || got.Device != e.disks.Path("sdc") {
		t.Errorf("Get(ds1) after rescan = %+v, %v; want mounted from sdc", got, err)
	}
}
