package hostd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/datastore"
	"github.com/flashvisor/flashvisor/datastore/datastoretest"
)

const gib = 1 << 30

// dsHost is a fake host's storage: sda holds the state partition (sda1,
// mounted), sdb is blank, sdc has a partition table.
type dsHost struct {
	disks *datastoretest.Disks
	mnt   *datastoretest.Mounter
	root  string
}

func newDSHost(t *testing.T) *dsHost {
	t.Helper()
	h := &dsHost{disks: datastoretest.NewDisks(t), mnt: datastoretest.NewMounter(t), root: t.TempDir()}
	h.disks.AddDisk(t, "sda", 8*gib, datastoretest.DiskOpts{Model: "QEMU HARDDISK", Serial: "QM00001"})
	sda1 := h.disks.AddPartition(t, "sda", "sda1", 1*gib)
	if err := datastoretest.WriteExt4(sda1, datastore.StateLabel, "11111111-2222-4333-8444-555555555555"); err != nil {
		t.Fatal(err)
	}
	if err := h.mnt.AddForeign(sda1, "/var/lib/flashvisor"); err != nil {
		t.Fatal(err)
	}
	h.disks.AddDisk(t, "sdb", 1*gib, datastoretest.DiskOpts{Model: "QEMU HARDDISK"})
	h.disks.AddDisk(t, "sdc", 1*gib, datastoretest.DiskOpts{})
	h.disks.WriteGPT(t, "sdc")
	for _, d := range []string{"vmfs/volumes", "run"} {
		if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *dsHost) open(t *testing.T, stateDir string) Datastores {
	t.Helper()
	n := 0
	m, err := datastore.New(datastore.Config{
		SysBlock:   h.disks.SysBlock,
		DevDir:     h.disks.DevDir,
		Mountinfo:  h.mnt.Mountinfo,
		VolumesDir: filepath.Join(h.root, "vmfs/volumes"),
		StateFile:  filepath.Join(stateDir, "datastores.json"),
		ProbeDir:   filepath.Join(h.root, "run/dsprobe"),
		Formatter:  &datastoretest.Formatter{},
		Mounter:    h.mnt,
		Statfs:     datastoretest.Statfs(100*gib, 60*gib),
		NewUUID: func() string {
			n++
			return fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// apiErr checks that err is an API error with status and code, and that
// its message contains each of msgs.
func apiErr(t *testing.T, what string, err error, status int, code string, msgs ...string) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Errorf("%s = %v, want an API error %d %s", what, err, status, code)
		return
	}
	if ae.Status != status || ae.Code != code {
		t.Errorf("%s = %d %s (%s), want %d %s", what, ae.Status, ae.Code, ae.Message, status, code)
	}
	for _, m := range msgs {
		if !strings.Contains(ae.Message, m) {
			t.Errorf("%s message %q lacks %q", what, ae.Message, m)
		}
	}
}

// taskErr checks that a finished task failed with code.
func taskErr(t *testing.T, what string, tk api.Task, code string, msgs ...string) {
	t.Helper()
	if tk.State != api.TaskError || tk.Error == nil || tk.Error.Code != code {
		t.Errorf("%s = %+v (error %+v), want a failed task with code %s", what, tk, tk.Error, code)
		return
	}
	for _, m := range msgs {
		if !strings.Contains(tk.Error.Message, m) {
			t.Errorf("%s error %q lacks %q", what, tk.Error.Message, m)
		}
	}
}

func TestDatastoreLifecycle(t *testing.T) {
	h := newDSHost(t)
	e := newEnv(t)
	var gotStateDir string
	e.opts.OpenDatastores = func(dir string) Datastores { gotStateDir = dir; return h.open(t, dir) }
	s, ts := e.start(t)
	if gotStateDir != e.stateDir() {
		t.Errorf("OpenDatastores got state dir %q, want %q", gotStateDir, e.stateDir())
	}
	c := apiClient(t, s, ts, testToken)
	ctx := context.Background()
	run := func(what string, call func() (api.Task, error)) api.Task {
		t.Helper()
		tk, err := call()
		if err != nil {
			t.Fatalf("%s = %v", what, err)
		}
		if tk.ID == "" || tk.State != api.TaskRunning && tk.State != api.TaskSuccess && tk.State != api.TaskError {
			t.Fatalf("%s = %+v, want a task", what, tk)
		}
		done, err := c.WaitTask(ctx, tk.ID)
		if err != nil {
			t.Fatalf("WaitTask(%s) after %s = %v", tk.ID, what, err)
		}
		return done
	}

	disks, err := c.Disks(ctx)
	if err != nil {
		t.Fatalf("Disks() = %v", err)
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	if diff := cmp.Diff([]string{"sda", "sdb", "sdc"}, names); diff != "" || disks[0].Model != "QEMU HARDDISK" || len(disks[0].Partitions) != 1 {
		t.Errorf("Disks() = %+v, want sda (with sda1), sdb, sdc (%s)", disks, diff)
	}

	// Create on the blank disk.
	tk := run("CreateDatastore(ds1, sdb)", func() (api.Task, error) {
		return c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: "ds1", Device: "sdb"})
	})
	if tk.State != api.TaskSuccess || tk.Kind != TaskDatastoreCreate || tk.Target != "ds1" {
		t.Fatalf("create task = %+v (error %+v), want success", tk, tk.Error)
	}
	var created api.Datastore
	if err := json.Unmarshal(tk.Result, &created); err != nil || created.Status != api.DatastoreMounted || created.CapacityBytes != 100*gib {
		t.Errorf("create result = %s (%v), want a mounted datastore of 100 GiB", tk.Result, err)
	}
	list, err := c.Datastores(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "ds1" || list[0].Device != h.disks.Path("sdb") {
		t.Errorf("Datastores() = %+v, %v, want ds1 on sdb", list, err)
	}
	if d, err := c.Datastore(ctx, "ds1"); err != nil || d.UUID != created.UUID {
		t.Errorf("Datastore(ds1) = %+v, %v, want %s", d, err, created.UUID)
	}

	// Refusals: at once, or from the task.
	_, err = c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: "ds1", Device: "sdc"})
	apiErr(t, "CreateDatastore(ds1 again)", err, 409, api.ErrExists)
	tk = run("CreateDatastore(ds2, sdc)", func() (api.Task, error) {
		return c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: "ds2", Device: "sdc"})
	})
	taskErr(t, "create on a GPT disk", tk, api.ErrForceRequired, "gpt", "force to override")
	tk = run("CreateDatastore(ds3, sda1, force)", func() (api.Task, error) {
		return c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: "ds3", Device: h.disks.Path("sda1"), Force: true})
	})
	taskErr(t, "create on the state partition", tk, api.ErrInUse, "state partition", "force cannot override")
	tk = run("CreateDatastore(ds4, sdz)", func() (api.Task, error) {
		return c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: "ds4", Device: "sdz"})
	})
	taskErr(t, "create on a missing disk", tk, api.ErrNotFound, "no such disk")

	// Unmount and mount.
	d, err := c.UnmountDatastore(ctx, "ds1")
	if err != nil || d.Status != api.DatastoreUnmounted {
		t.Errorf("UnmountDatastore(ds1) = %+v, %v, want unmounted", d, err)
	}
	d, err = c.MountDatastore(ctx, "ds1")
	if err != nil || d.Status != api.DatastoreMounted {
		t.Errorf("MountDatastore(ds1) = %+v, %v, want mounted", d, err)
	}
	h.mnt.SetBusy(created.MountPoint, true)
	_, err = c.UnmountDatastore(ctx, "ds1")
	apiErr(t, "UnmountDatastore(busy ds1)", err, 409, api.ErrInUse, "files are open")
	h.mnt.SetBusy(created.MountPoint, false)
	_, err = c.MountDatastore(ctx, "nope")
	apiErr(t, "MountDatastore(nope)", err, 404, api.ErrNotFound)
	_, err = c.UnmountDatastore(ctx, "-bad")
	apiErr(t, "UnmountDatastore(-bad)", err, 400, api.ErrBadRequest)
	_, err = c.Datastore(ctx, "nope")
	apiErr(t, "Datastore(nope)", err, 404, api.ErrNotFound)

	// Remove: refused while a VM directory exists, unless forced.
	if err := os.Mkdir(filepath.Join(h.mnt.Content(created.UUID), "web01"), 0o755); err != nil {
		t.Fatal(err)
	}
	tk = run("RemoveDatastore(ds1)", func() (api.Task, error) { return c.RemoveDatastore(ctx, "ds1", false) })
	taskErr(t, "remove with a VM directory", tk, api.ErrForceRequired, "web01", "force to override")
	tk = run("RemoveDatastore(ds1, force)", func() (api.Task, error) { return c.RemoveDatastore(ctx, "ds1", true) })
	if tk.State != api.TaskSuccess || tk.Kind != TaskDatastoreRemove {
		t.Errorf("forced remove = %+v (error %+v), want success", tk, tk.Error)
	}
	if list, err := c.Datastores(ctx); err != nil || len(list) != 0 {
		t.Errorf("Datastores() after remove = %+v, %v, want none", list, err)
	}
	_, err = c.RemoveDatastore(ctx, "ds1", false)
	apiErr(t, "RemoveDatastore(removed ds1)", err, 404, api.ErrNotFound)

	// Rescan answers with the disks.
	if disks, err := c.Rescan(ctx); err != nil || len(disks) != 3 {
		t.Errorf("Rescan() = %d disks, %v, want 3", len(disks), err)
	}

	// Every task's end is an event, in order.
	tasks, err := c.Tasks(ctx)
	if err != nil || len(tasks) != 6 {
		t.Fatalf("Tasks() = %d tasks, %v, want 6", len(tasks), err)
	}
	// Done runs just after waiters are woken.
	waitFor(t, func() bool { return len(s.o.Events.Since(0)) == 6 })
	ev, err := c.Events(ctx, 0)
	if err != nil || len(ev) != 6 {
		t.Fatalf("Events(0) = %+v, %v, want 6", ev, err)
	}
	for i, x := range ev {
		if x.Seq != uint64(i+1) || x.Kind != EventTaskDone {
			t.Errorf("event %d = %+v, want seq %d, kind %s", i, x, i+1, EventTaskDone)
		}
	}
	if want := "datastore.remove ds1: success"; ev[5].Message != want || ev[5].Target != tasks[0].ID {
		t.Errorf("last event = %+v, want message %q for task %s", ev[5], want, tasks[0].ID)
	}
	if ev, err := c.Events(ctx, 6); err != nil || len(ev) != 0 {
		t.Errorf("Events(6) = %+v, %v, want none", ev, err)
	}
}

func TestDatastoreBodies(t *testing.T) {
	e := newEnv(t)
	e.opts.OpenDatastores = func(string) Datastores { return &fakeDS{} }
	_, ts := e.start(t)
	const p = "/api/v1/datastores"
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"ok", `{"name":"ds1","device":"sdb"}`, 202, ""},
		{"ok forced", `{"name":"ds1","device":"/dev/sdb","force":true}`, 202, ""},
		{"exists", `{"name":"taken","device":"sdb"}`, 409, api.ErrExists},
		{"oversized", `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, api.ErrBodyTooLarge},
		{"malformed", `{"name":`, 400, api.ErrBadRequest},
		{"empty", ``, 400, api.ErrBadRequest},
		{"null", `null`, 400, api.ErrBadRequest},
		{"unknown field", `{"name":"ds1","device":"sdb","fs":"xfs"}`, 400, api.ErrBadRequest},
		{"trailing data", `{"name":"ds1","device":"sdb"}{}`, 400, api.ErrBadRequest},
		{"wrong type", `{"name":"ds1","device":"sdb","force":"yes"}`, 400, api.ErrBadRequest},
		{"no name", `{"device":"sdb"}`, 400, api.ErrBadRequest},
		{"bad name", `{"name":"../etc","device":"sdb"}`, 400, api.ErrBadRequest},
		{"uuid name", `{"name":"0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d","device":"sdb"}`, 400, api.ErrBadRequest},
		{"no device", `{"name":"ds1"}`, 400, api.ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, ts, ts.URL, "POST", p, testToken, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("POST %s %s: status = %d, want %d (body %s)", p, tc.name, resp.StatusCode, tc.status, b)
			}
			if tc.code != "" {
				if got := decodeError(t, b).Code; got != tc.code {
					t.Errorf("code = %q, want %q", got, tc.code)
				}
			}
		})
	}
	for _, q := range []string{"?force=maybe", "?force="} {
		resp, b := do(t, ts, ts.URL, "DELETE", p+"/ds1"+q, testToken, "")
		want := 400
		if q == "?force=" {
			want = 202 // empty means false
		}
		if resp.StatusCode != want {
			t.Errorf("DELETE %s/ds1%s = %d %s, want %d", p, q, resp.StatusCode, b, want)
		}
	}
}

func FuzzParseDatastoreCreate(f *testing.F) {
	for _, s := range []string{`{"name":"ds1","device":"sdb"}`, `{"name":"ds1","device":"/dev/sdb","force":true}`, `{}`, `null`, `{"name":"a","device":"b","x":1}`, `{"name":"-a","device":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseDatastoreCreate(b)
		if err != nil {
			if req != (api.DatastoreCreateRequest{}) {
				t.Errorf("parseDatastoreCreate(%q) = %+v with error %v", b, req, err)
			}
			return
		}
		if datastore.ValidName(req.Name) != nil || req.Device == "" {
			t.Errorf("parseDatastoreCreate(%q) accepted %+v", b, req)
		}
	})
}

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("create datastore x on sdb: %w", err) }
	for _, tc := range []struct {
		err    error
		status int
		code   string
		suffix string
	}{
		{wrap(datastore.ErrNotFound), 404, api.ErrNotFound, ""},
		{wrap(datastore.ErrNoDevice), 404, api.ErrNotFound, ""},
		{wrap(datastore.ErrInvalidName), 400, api.ErrBadRequest, ""},
		{wrap(datastore.ErrExists), 409, api.ErrExists, ""},
		{wrap(datastore.ErrConflict), 409, api.ErrConflict, ""},
		{wrap(datastore.ErrMissing), 409, api.ErrConflict, ""},
		{wrap(datastore.ErrNotBlank), 409, api.ErrForceRequired, "repeat with force to override; the data on it is lost)"},
		{wrap(datastore.ErrHasDatastore), 409, api.ErrForceRequired, "repeat with force to override; the data on it is lost)"},
		{wrap(datastore.ErrNotEmpty), 409, api.ErrForceRequired, "repeat with force to override; the data on it is lost)"},
		{wrap(datastore.ErrStatePartition), 409, api.ErrInUse, "(force cannot override this)"},
		{wrap(datastore.ErrMounted), 409, api.ErrInUse, "(force cannot override this)"},
		{wrap(fmt.Errorf("unmount /vmfs/volumes/x: %w", unix.EBUSY)), 409, api.ErrInUse, "e.g. a running VM)"},
		{errors.New("mke2fs failed"), 500, api.ErrInternal, "mke2fs failed"},
	} {
		got := classify(tc.err)
		if got.status != tc.status || got.code != tc.code || !strings.HasSuffix(got.msg, tc.suffix) || !strings.HasPrefix(got.msg, tc.err.Error()) {
			t.Errorf("classify(%v) = %d %s %q, want %d %s ending in %q", tc.err, got.status, got.code, got.msg, tc.status, tc.code, tc.suffix)
		}
		if !errors.Is(got, tc.err) || classify(got) != got {
			t.Errorf("classify(%v) loses the error or is not idempotent", tc.err)
		}
	}
}

// fakeDS is a Datastores for what the real manager cannot be made to do:
// fail listing, fail MountAll. Names "taken" exist.
type fakeDS struct {
	mountAllErr error
	listErr     error
	mountAlls   int
}

func (f *fakeDS) Disks() ([]api.Disk, error) { return nil, f.listErr }
func (f *fakeDS) List() ([]api.Datastore, error) {
	return []api.Datastore{{Name: "taken", Status: api.DatastoreMounted}, {Name: "ds1", Status: api.DatastoreMissing}}, f.listErr
}

func (f *fakeDS) Get(name string) (api.Datastore, error) {
	if name == "taken" {
		return api.Datastore{Name: name}, nil
	}
	return api.Datastore{}, fmt.Errorf("%w: %s", datastore.ErrNotFound, name)
}

func (f *fakeDS) Create(context.Context, api.DatastoreCreateRequest) (api.Datastore, error) {
	return api.Datastore{}, nil
}
func (f *fakeDS) Remove(context.Context, string, bool) error { return nil }
func (f *fakeDS) Mount(string) error                         { return nil }
func (f *fakeDS) Unmount(string) error                       { return nil }
func (f *fakeDS) MountAll(context.Context) error             { f.mountAlls++; return f.mountAllErr }
func (f *fakeDS) Rescan(context.Context) error               { return f.mountAllErr }

func TestDatastoreListFailures(t *testing.T) {
	e := newEnv(t)
	e.opts.OpenDatastores = func(string) Datastores {
		return &fakeDS{listErr: errors.New("read /sys/block: permission denied"), mountAllErr: errors.Join(errors.New("a"), errors.New("b"))}
	}
	_, ts := e.start(t)
	for _, p := range []string{"/api/v1/datastores", "/api/v1/storage/disks"} {
		resp, b := do(t, ts, ts.URL, "GET", p, testToken, "")
		if resp.StatusCode != 500 || decodeError(t, b).Code != api.ErrInternal {
			t.Errorf("GET %s with sysfs unreadable = %d %s, want 500 internal", p, resp.StatusCode, b)
		}
	}
	// MountAll's problems are logged; the disk listing decides the answer.
	resp, b := do(t, ts, ts.URL, "POST", "/api/v1/storage/rescan", testToken, "")
	if resp.StatusCode != 500 {
		t.Errorf("POST rescan = %d %s, want 500 from the disk listing", resp.StatusCode, b)
	}
	if got := strings.Count(e.logBuf.String(), "rescan: datastore not mounted"); got != 2 {
		t.Errorf("rescan logged %d problems, want 2:\n%s", got, e.logBuf)
	}
}

func TestDatastoresUnavailable(t *testing.T) {
	for _, open := range []func(string) Datastores{nil, func(string) Datastores { return nil }} {
		e := newEnv(t)
		e.opts.OpenDatastores = open
		s, ts := e.start(t)
		for _, r := range s.storageRoutes("/api/v1") {
			path := strings.ReplaceAll(r.path, "{name}", "ds1")
			resp, b := do(t, ts, ts.URL, r.method, path, testToken, "")
			if resp.StatusCode != 503 || decodeError(t, b).Code != api.ErrUnavailable {
				t.Errorf("%s %s without datastores = %d %s, want 503 unavailable", r.method, path, resp.StatusCode, b)
			}
		}
		resp, b := do(t, ts, ts.URL, "GET", "/api/v1/tasks", testToken, "")
		if resp.StatusCode != 200 {
			t.Errorf("GET /api/v1/tasks without datastores = %d %s, want 200", resp.StatusCode, b)
		}
	}
}

func TestMountAllBeforeServing(t *testing.T) {
	e := newEnv(t)
	f := &fakeDS{mountAllErr: errors.Join(errors.New("mount ds1: no descriptor"), errors.New("mount ds2: conflict"))}
	e.opts.OpenDatastores = func(string) Datastores { return f }
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	c, err := client.New(client.Options{Addr: ln.Addr().String(), Token: testToken, Fingerprint: s.Fingerprint(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.Healthz(ctx) == nil })
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Serve() = %v, want nil: datastore problems must not stop hostd", err)
	}
	if f.mountAlls != 1 {
		t.Errorf("MountAll called %d times, want 1", f.mountAlls)
	}
	log := e.logBuf.String()
	for _, want := range []string{"no descriptor", "mount ds2: conflict", "name=taken"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestRemoveUnknownIsAnsweredAtOnce(t *testing.T) {
	e := newEnv(t)
	e.opts.OpenDatastores = func(string) Datastores { return &fakeDS{} }
	s, ts := e.start(t)
	resp, b := do(t, ts, ts.URL, http.MethodDelete, "/api/v1/datastores/nope", testToken, "")
	if resp.StatusCode != 404 || decodeError(t, b).Code != api.ErrNotFound {
		t.Errorf("DELETE nope = %d %s, want 404", resp.StatusCode, b)
	}
	// A listed datastore that Get does not return (missing, conflict) is
	// still removable.
	resp, b = do(t, ts, ts.URL, http.MethodDelete, "/api/v1/datastores/ds1", testToken, "")
	if resp.StatusCode != 202 {
		t.Errorf("DELETE ds1 = %d %s, want 202", resp.StatusCode, b)
	}
	if n := len(s.tasks.List()); n != 1 {
		t.Errorf("%d tasks, want 1 (only the accepted remove)", n)
	}
}
