package datastore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/datastore"
	"github.com/flashvisor/flashvisor/datastore/datastoretest"
)

// TestRealMke2fs runs the real formatter on a sparse file standing in for a
// disk: mke2fs formats regular files, so this needs e2fsprogs but not root
// or a loop device. The superblock it writes must be recognised by the
// probe (label, UUID), and the whole Create / reboot / MountAll / Remove
// path runs on it with the fake mounter (mounting needs root; the fake keeps
// the descriptor logic honest).
func TestRealMke2fs(t *testing.T) {
	mke2fs := "/sbin/mke2fs"
	if _, err := os.Stat(mke2fs); err != nil {
		p, lerr := exec.LookPath("mke2fs")
		if lerr != nil {
			t.Skipf("skipping: mke2fs not found (%v); install e2fsprogs to run this test", err)
		}
		mke2fs = p
	}
	e := newEnv(t)
	e.disks.AddDisk(t, "sdb", 256<<20, datastoretest.DiskOpts{})
	cfg := e.config(t)
	cfg.Formatter = datastore.Mke2fs{Path: mke2fs}
	m, err := datastore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := m.Create(ctx, api.DatastoreCreateRequest{Name: "a-rather-long-datastore-name", Device: "sdb"})
	if err != nil {
		t.Fatalf("Create with real mke2fs: %v", err)
	}
	sig, err := datastore.ProbeDevice(e.disks.Path("sdb"))
	if err != nil {
		t.Fatal(err)
	}
	want := datastore.Signature{Content: api.ContentExt4, Detail: "ext4", Label: "a-rather-long-da", UUID: d.UUID}
	if sig != want {
		t.Errorf("ProbeDevice after mke2fs = %+v, want %+v", sig, want)
	}
	if st, err := os.Stat(e.disks.Path("sdb")); err != nil || st.Size() != 256<<20 {
		t.Errorf("image size changed: %v, %v", st, err)
	}

	m = e.reboot(t)
	if err := m.MountAll(ctx); err != nil {
		t.Fatalf("MountAll: %v", err)
	}
	got, err := m.Get("a-rather-long-datastore-name")
	if err != nil || got.Status != api.DatastoreMounted || got.UUID != d.UUID {
		t.Fatalf("Get after MountAll = %+v, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(got.Path, datastore.DescriptorFile)); err != nil {
		t.Errorf("descriptor: %v", err)
	}
	// A real ext4 must refuse a second, unforced Create.
	m.Unmount(got.Name)
	if _, err := m.Create(ctx, api.DatastoreCreateRequest{Name: "other", Device: "sdb"}); err == nil {
		t.Error("Create over a datastore succeeded without force")
	}
	if err := m.Remove(ctx, got.Name, false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if sig, _ := datastore.ProbeDevice(e.disks.Path("sdb")); sig.Content != api.ContentEmpty {
		t.Errorf("after Remove the image holds %+v; want blank", sig)
	}
}
