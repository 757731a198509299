package hostd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/datastore"
	"github.com/flashvisor/flashvisor/hostd/vm"
)

// fakeDiskOps is a Disks that records calls; fail[method] makes that
// method return the error (wrapped).
type fakeDiskOps struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func (f *fakeDiskOps) enter(call, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if err := f.fail[method]; err != nil {
		return fmt.Errorf("%s: %w", strings.ToLower(method), err)
	}
	return nil
}

func (f *fakeDiskOps) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *fakeDiskOps) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeDiskOps) Import(ctx context.Context, src, dst, prov string) (api.DiskInfo, error) {
	if err := f.enter("Import "+src+" -> "+dst+" "+prov, "Import"); err != nil {
		return api.DiskInfo{}, err
	}
	return api.DiskInfo{Path: dst, Format: map[string]string{"thin": "qcow2", "thick": "raw"}[prov], VirtualSizeBytes: 1 << 30, ActualSizeBytes: 1 << 20}, nil
}

func (f *fakeDiskOps) Clone(ctx context.Context, src, dst, prov string) (api.DiskInfo, error) {
	if err := f.enter("Clone "+src+" -> "+dst+" "+prov, "Clone"); err != nil {
		return api.DiskInfo{}, err
	}
	return api.DiskInfo{Path: dst, Format: "qcow2", VirtualSizeBytes: 1 << 30}, nil
}

func (f *fakeDiskOps) Grow(ctx context.Context, disk string, sizeMiB int64) (api.DiskInfo, error) {
	if err := f.enter(fmt.Sprintf("Grow %s %d", disk, sizeMiB), "Grow"); err != nil {
		return api.DiskInfo{}, err
	}
	return api.DiskInfo{Path: disk, Format: "qcow2", VirtualSizeBytes: sizeMiB << 20}, nil
}

func (f *fakeDiskOps) Info(ctx context.Context, disk string) (api.DiskInfo, error) {
	if err := f.enter("Info "+disk, "Info"); err != nil {
		return api.DiskInfo{}, err
	}
	return api.DiskInfo{Path: disk, Format: "qcow2", VirtualSizeBytes: 1 << 30, ActualSizeBytes: 1 << 20, Snapshots: 2}, nil
}

// mountedDS has ds1 mounted at /vmfs/ds1 and ds2 unmounted.
type mountedDS struct{ fakeDS }

func (m *mountedDS) Get(name string) (api.Datastore, error) {
	switch name {
	case "ds1":
		return api.Datastore{Name: name, Status: api.DatastoreMounted, MountPoint: "/vmfs/ds1"}, nil
	case "ds2":
		return api.Datastore{Name: name, Status: api.DatastoreUnmounted}, nil
	}
	return api.Datastore{}, fmt.Errorf("%w: %s", datastore.ErrNotFound, name)
}

// diskHost is a served host with the fake disk operations, and the
// resolver and in-use funcs hostd handed to OpenDisks.
type diskHost struct {
	c       *client.Client
	ts      *httptest.Server
	resolve func(string) (string, error)
	inUse   func(string) (string, bool)
}

func startDisks(t *testing.T, f *fakeDiskOps, vms VMs) *diskHost {
	t.Helper()
	e := newEnv(t)
	e.opts.OpenDatastores = func(string) Datastores { return &mountedDS{} }
	h := &diskHost{}
	e.opts.OpenDisks = func(r func(string) (string, error), u func(string) (string, bool)) Disks {
		h.resolve, h.inUse = r, u
		return f
	}
	_, h.ts, h.c = e.startVMs(t, vms, &fakePortGroups{})
	return h
}

func TestDiskOperations(t *testing.T) {
	f := &fakeDiskOps{fail: map[string]error{}}
	c := startDisks(t, f, newFakeVMs()).c
	ctx := t.Context()

	done := waitDone(t, c, "ImportDisk", func() (api.Task, error) {
		return c.ImportDisk(ctx, api.DiskCopyRequest{Source: "[ds1] import/app.vmdk", Destination: "[ds1] web01/web01.qcow2"})
	})
	if done.State != api.TaskSuccess || done.Kind != TaskDiskImport || done.Target != "[ds1] web01/web01.qcow2" {
		t.Errorf("import task = %+v (error %+v), want a successful disk.import of [ds1] web01/web01.qcow2", done, done.Error)
	}
	var got api.DiskInfo
	if err := json.Unmarshal(done.Result, &got); err != nil || got.Format != "qcow2" || got.Path != "[ds1] web01/web01.qcow2" {
		t.Errorf("import result %s = %+v, %v, want the qcow2 disk", done.Result, got, err)
	}
	done = waitDone(t, c, "ImportDisk(thick)", func() (api.Task, error) {
		return c.ImportDisk(ctx, api.DiskCopyRequest{Source: "[ds1] import/app.vhdx", Destination: "[ds1] web01/web01.img", Provisioning: api.ProvisionThick})
	})
	if done.State != api.TaskSuccess {
		t.Errorf("thick import task = %+v (error %+v), want success", done, done.Error)
	}
	done = waitDone(t, c, "CloneDisk", func() (api.Task, error) {
		return c.CloneDisk(ctx, api.DiskCopyRequest{Source: "[ds1] web01/web01.qcow2", Destination: "[ds2] web02/web02.qcow2"})
	})
	if done.State != api.TaskSuccess || done.Kind != TaskDiskClone {
		t.Errorf("clone task = %+v (error %+v), want a successful disk.clone", done, done.Error)
	}
	done = waitDone(t, c, "GrowDisk", func() (api.Task, error) { return c.GrowDisk(ctx, "[ds1] web01/web01.qcow2", 20480) })
	if done.State != api.TaskSuccess || done.Kind != TaskDiskGrow || done.Target != "[ds1] web01/web01.qcow2" {
		t.Errorf("grow task = %+v (error %+v), want a successful disk.grow", done, done.Error)
	}
	info, err := c.DiskInfo(ctx, "[ds1] web01/web 01 & more.qcow2")
	want := api.DiskInfo{Path: "[ds1] web01/web 01 & more.qcow2", Format: "qcow2", VirtualSizeBytes: 1 << 30, ActualSizeBytes: 1 << 20, Snapshots: 2}
	if err != nil || !cmp.Equal(info, want) {
		t.Errorf("DiskInfo() = %+v, %v, want %+v", info, err, want)
	}
	wantCalls := []string{
		"Import [ds1] import/app.vmdk -> [ds1] web01/web01.qcow2 thin",
		"Import [ds1] import/app.vhdx -> [ds1] web01/web01.img thick",
		"Clone [ds1] web01/web01.qcow2 -> [ds2] web02/web02.qcow2 thin",
		"Grow [ds1] web01/web01.qcow2 20480",
		"Info [ds1] web01/web 01 & more.qcow2",
	}
	if diff := cmp.Diff(wantCalls, f.callList()); diff != "" {
		t.Errorf("disk operation calls (-want +got):\n%s", diff)
	}
}

func TestDiskBodies(t *testing.T) {
	f := &fakeDiskOps{fail: map[string]error{}}
	ts := startDisks(t, f, newFakeVMs()).ts
	ok := `{"source":"[ds1] a.vmdk","destination":"[ds1] b.qcow2"}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      []string
	}{
		{"import ok", "POST", "/api/v1/disks/import", ok, 202, nil},
		{"clone ok thick", "POST", "/api/v1/disks/clone", `{"source":"[ds1] a.qcow2","destination":"[ds1] b.img","provisioning":"thick"}`, 202, nil},
		{"grow ok", "POST", "/api/v1/disks/grow", `{"disk":"[ds1] a.qcow2","size_mib":1024}`, 202, nil},
		{"import unknown field", "POST", "/api/v1/disks/import", `{"source":"[ds1] a.vmdk","destination":"[ds1] b.qcow2","force":true}`, 400, []string{`unknown field "force"`}},
		{"import malformed", "POST", "/api/v1/disks/import", `{"source":`, 400, []string{"malformed JSON"}},
		{"import empty", "POST", "/api/v1/disks/import", ``, 400, []string{"empty"}},
		{"import trailing", "POST", "/api/v1/disks/import", ok + `{}`, 400, []string{"after the object"}},
		{"import no source", "POST", "/api/v1/disks/import", `{"destination":"[ds1] b.qcow2"}`, 400, []string{"source is required"}},
		{"import both missing", "POST", "/api/v1/disks/import", `{}`, 400, []string{"source is required", "destination is required"}},
		{"import relative", "POST", "/api/v1/disks/import", `{"source":"a.vmdk","destination":"[ds1] b.qcow2"}`, 400, []string{"[datastore] path"}},
		{"import host path", "POST", "/api/v1/disks/import", `{"source":"[ds1] /etc/shadow","destination":"[ds1] b.qcow2"}`, 400, []string{"host paths"}},
		{"import escaping", "POST", "/api/v1/disks/import", `{"source":"[ds1] ../ds2/a.vmdk","destination":"[ds1] b.qcow2"}`, 400, []string{"clean relative path"}},
		{"import bad datastore", "POST", "/api/v1/disks/import", `{"source":"[d/s] a.vmdk","destination":"[ds1] b.qcow2"}`, 400, []string{"source"}},
		{"import control character", "POST", "/api/v1/disks/import", `{"source":"[ds1] a\u0000.vmdk","destination":"[ds1] b.qcow2"}`, 400, []string{"control characters"}},
		{"import bad provisioning", "POST", "/api/v1/disks/import", `{"source":"[ds1] a.vmdk","destination":"[ds1] b.qcow2","provisioning":"existing"}`, 400, []string{"thin or thick"}},
		{"clone onto itself", "POST", "/api/v1/disks/clone", `{"source":"[ds1] a.qcow2","destination":"[ds1] a.qcow2"}`, 400, []string{"same file"}},
		{"grow no size", "POST", "/api/v1/disks/grow", `{"disk":"[ds1] a.qcow2"}`, 400, []string{"size_mib 0"}},
		{"grow negative", "POST", "/api/v1/disks/grow", `{"disk":"[ds1] a.qcow2","size_mib":-5}`, 400, []string{"size_mib"}},
		{"grow too big", "POST", "/api/v1/disks/grow", `{"disk":"[ds1] a.qcow2","size_mib":68719476737}`, 400, []string{"want 1-67108864"}},
		{"grow string size", "POST", "/api/v1/disks/grow", `{"disk":"[ds1] a.qcow2","size_mib":"20G"}`, 400, nil},
		{"grow no disk", "POST", "/api/v1/disks/grow", `{"size_mib":1024}`, 400, []string{"disk is required"}},
		{"grow unknown field", "POST", "/api/v1/disks/grow", `{"disk":"[ds1] a.qcow2","size_mib":1024,"shrink":true}`, 400, []string{"unknown field"}},
		{"info no path", "GET", "/api/v1/disks/info", "", 400, []string{"query path is required"}},
		{"info relative", "GET", "/api/v1/disks/info?path=a.qcow2", "", 400, []string{"[datastore] path"}},
		{"info escaping", "GET", "/api/v1/disks/info?path=" + url.QueryEscape("[ds1] a/../../b"), "", 400, []string{"clean"}},
		{"import GET", "GET", "/api/v1/disks/import", "", 405, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, ts, ts.URL, tc.method, tc.path, testToken, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s %s: status = %d, want %d (body %s)", tc.method, tc.path, tc.body, resp.StatusCode, tc.status, b)
			}
			if tc.status/100 == 2 {
				return
			}
			e := decodeError(t, b)
			if tc.status == 400 && e.Code != api.ErrBadRequest {
				t.Errorf("code = %q, want %q", e.Code, api.ErrBadRequest)
			}
			for _, m := range tc.msg {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q lacks %q", e.Message, m)
				}
			}
		})
	}
	// Refused bodies never reach the disk operations.
	for _, call := range f.callList() {
		if strings.Contains(call, "b.qcow2") && !strings.HasPrefix(call, "Import [ds1] a.vmdk") {
			t.Errorf("a refused request reached the disk operations: %q", call)
		}
	}
}

// TestDiskErrorCodes checks each failure's status and code, answered at
// once (info) and from a task (import, grow).
func TestDiskErrorCodes(t *testing.T) {
	f := &fakeDiskOps{fail: map[string]error{}}
	c := startDisks(t, f, newFakeVMs()).c
	ctx := t.Context()
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{vm.ErrNoFile, 404, api.ErrNotFound},
		{datastore.ErrNotFound, 404, api.ErrNotFound},
		{vm.ErrFileExists, 409, api.ErrExists},
		{vm.ErrShrink, 400, api.ErrBadRequest},
		{vm.ErrInvalid, 400, api.ErrBadRequest},
		{vm.ErrState, 409, api.ErrState},
		{errors.New("qemu-img: Could not open: Invalid footer"), 500, api.ErrInternal},
	} {
		for _, m := range []string{"Info", "Import", "Grow"} {
			f.setFail(m, tc.err)
		}
		_, err := c.DiskInfo(ctx, "[ds1] a.qcow2")
		apiErr(t, fmt.Sprintf("DiskInfo failing with %v", tc.err), err, tc.status, tc.code, tc.err.Error())
		done := waitDone(t, c, "ImportDisk", func() (api.Task, error) {
			return c.ImportDisk(ctx, api.DiskCopyRequest{Source: "[ds1] a.vmdk", Destination: "[ds1] b.qcow2"})
		})
		taskErr(t, fmt.Sprintf("import failing with %v", tc.err), done, tc.code, "import", tc.err.Error())
		done = waitDone(t, c, "GrowDisk", func() (api.Task, error) { return c.GrowDisk(ctx, "[ds1] a.qcow2", 2048) })
		taskErr(t, fmt.Sprintf("grow failing with %v", tc.err), done, tc.code, "grow", tc.err.Error())
	}
}

// TestDiskResolverAndInUse checks what hostd hands to OpenDisks: the
// mount points of mounted datastores and the VMs that are not powered off.
func TestDiskResolverAndInUse(t *testing.T) {
	web := testVM("web01", api.VMPoweredOn)
	web.Spec.Disks = []api.VirtualDisk{{File: "[ds1] shared/data.qcow2"}}
	h := startDisks(t, &fakeDiskOps{}, newFakeVMs(web, testVM("db01", api.VMPoweredOff)))
	resolve, inUse := h.resolve, h.inUse
	if root, err := resolve("ds1"); err != nil || root != "/vmfs/ds1" {
		t.Errorf("resolve(ds1) = %q, %v, want /vmfs/ds1", root, err)
	}
	if _, err := resolve("ds2"); !errors.Is(err, vm.ErrState) || !strings.Contains(err.Error(), "unmounted") {
		t.Errorf("resolve(unmounted ds2) = %v, want vm.ErrState saying unmounted", err)
	}
	if _, err := resolve("nope"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("resolve(nope) = %v, want datastore.ErrNotFound", err)
	}
	for _, tc := range []struct{ path, vm string }{
		{"/vmfs/ds1/web01/web01.qcow2", "web01"},
		{"/vmfs/ds1/shared/data.qcow2", "web01"},
		{"/vmfs/ds1/db01/db01.qcow2", ""},
		{"/vmfs/ds1/shared/other.qcow2", ""},
	} {
		if got, busy := inUse(tc.path); got != tc.vm || busy != (tc.vm != "") {
			t.Errorf("inUse(%s) = %q, %v, want %q", tc.path, got, busy, tc.vm)
		}
	}
}

func TestDisksUnavailable(t *testing.T) {
	// No OpenDisks, and OpenDisks without datastores: 503.
	for _, withOpen := range []bool{false, true} {
		e := newEnv(t)
		if withOpen {
			e.opts.OpenDisks = func(func(string) (string, error), func(string) (string, bool)) Disks {
				t.Error("OpenDisks called without datastores")
				return nil
			}
		}
		_, ts := e.start(t)
		for _, p := range []string{"/api/v1/disks/info?path=" + url.QueryEscape("[ds1] a.qcow2")} {
			resp, b := do(t, ts, ts.URL, "GET", p, testToken, "")
			if resp.StatusCode != 503 || decodeError(t, b).Code != api.ErrUnavailable {
				t.Errorf("GET %s without disk operations = %d %s, want 503 unavailable", p, resp.StatusCode, b)
			}
		}
		resp, b := do(t, ts, ts.URL, "POST", "/api/v1/disks/grow", testToken, `{"disk":"[ds1] a.qcow2","size_mib":1}`)
		if resp.StatusCode != 503 {
			t.Errorf("POST grow without disk operations = %d %s, want 503", resp.StatusCode, b)
		}
	}
}
