package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

var (
	t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	t1 = t0.Add(1500 * time.Millisecond)

	fakeDS = api.Datastore{
		Name: "ds1", UUID: "0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d", Kind: api.DatastoreLocal,
		Device: "/dev/sdb", MountPoint: "/vmfs/volumes/0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d",
		Path: "/vmfs/volumes/ds1", CapacityBytes: 100 << 30, FreeBytes: 99 << 30, Status: api.DatastoreMounted, Created: t0,
	}
	fakeTasks = map[string]api.Task{
		"task-run": {ID: "task-run", Kind: "datastore.create", Target: "ds1", State: api.TaskRunning, Started: t0},
		"task-ok":  {ID: "task-ok", Kind: "datastore.create", Target: "ds1", State: api.TaskSuccess, Started: t0, Finished: &t1, Result: mustJSON(fakeDS)},
		"task-rm":  {ID: "task-rm", Kind: "datastore.remove", Target: "ds1", State: api.TaskSuccess, Started: t0, Finished: &t1},
		"task-bad": {ID: "task-bad", Kind: "datastore.create", Target: "ds2", State: api.TaskError, Started: t0, Finished: &t1,
			Error: &api.Error{Code: api.ErrForceRequired, Message: "device is not blank: /dev/sdc holds gpt"}},
	}
)

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// newStorageHost is a fake host with the storage, datastore and task
// endpoints. A create of ds1 answers task-run, which ends as task-ok at
// the second wait; a create of ds2 answers task-bad.
func newStorageHost(t *testing.T) (addr, fp string, requests func() []string) {
	t.Helper()
	var mu sync.Mutex
	var reqs []string
	waits := 0
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	disks := []api.Disk{
		{BlockDevice: api.BlockDevice{Name: "sda", Path: "/dev/sda", SizeBytes: 8 << 30, Content: api.ContentGPT}, Model: "QEMU HARDDISK", Serial: "QM00001",
			Partitions: []api.BlockDevice{{Name: "sda1", Path: "/dev/sda1", SizeBytes: 1 << 30, Content: api.ContentExt4, Label: "FVSTATE", MountPoints: []string{"/var/lib/flashvisor"}}}},
		{BlockDevice: api.BlockDevice{Name: "sdb", Path: "/dev/sdb", SizeBytes: 100 << 30, Content: api.ContentExt4, Label: "ds1", Datastore: "ds1", MountPoints: []string{fakeDS.MountPoint}}, Model: "QEMU HARDDISK"},
		{BlockDevice: api.BlockDevice{Name: "sdc", Path: "/dev/sdc", SizeBytes: 512 << 20}},
	}
	mux.HandleFunc("GET /api/v1/storage/disks", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, disks) })
	mux.HandleFunc("POST /api/v1/storage/rescan", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, disks[2:]) })
	mux.HandleFunc("GET /api/v1/datastores", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Datastore{fakeDS, {Name: "old", UUID: "11111111-2222-4333-8444-555555555555", Kind: api.DatastoreLocal,
			Status: api.DatastoreMissing, Message: "disk not found (last seen as /dev/sdd)"}})
	})
	mux.HandleFunc("POST /api/v1/datastores", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatastoreCreateRequest
		json.NewDecoder(r.Body).Decode(&req)
		switch req.Name {
		case "ds1":
			reply(w, 202, fakeTasks["task-run"])
		case "ds2":
			reply(w, 202, fakeTasks["task-bad"])
		default:
			reply(w, 409, api.Error{Code: api.ErrExists, Message: "create datastore " + req.Name + ": datastore name already in use"})
		}
	})
	mux.HandleFunc("DELETE /api/v1/datastores/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "ds1" {
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "remove datastore nope: no such datastore"})
			return
		}
		reply(w, 202, fakeTasks["task-rm"])
	})
	mux.HandleFunc("POST /api/v1/datastores/{name}/mount", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, fakeDS) })
	mux.HandleFunc("POST /api/v1/datastores/{name}/unmount", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "busy" {
			reply(w, 409, api.Error{Code: api.ErrInUse, Message: "unmount datastore busy: device or resource busy"})
			return
		}
		d := fakeDS
		d.Status, d.CapacityBytes, d.FreeBytes = api.DatastoreUnmounted, 0, 0
		reply(w, 200, d)
	})
	mux.HandleFunc("GET /api/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Task{fakeTasks["task-run"], fakeTasks["task-bad"]})
	})
	mux.HandleFunc("GET /api/v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := fakeTasks[r.PathValue("id")]
		if !ok {
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no such task"})
			return
		}
		reply(w, 200, t)
	})
	mux.HandleFunc("GET /api/v1/tasks/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		t, ok := fakeTasks[r.PathValue("id")]
		if !ok {
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no such task"})
			return
		}
		if t.ID == "task-run" {
			mu.Lock()
			waits++
			if waits%2 == 0 {
				t = fakeTasks["task-ok"]
				t.ID = "task-run"
			}
			mu.Unlock()
		}
		reply(w, 200, t)
	})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		mu.Lock()
		reqs = append(reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(bytes.TrimSpace(b))))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			reply(w, 401, api.Error{Code: api.ErrUnauthorized, Message: "missing or invalid bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String(), client.Fingerprint(ts.Certificate().Raw), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reqs...)
	}
}

func TestStorageCommands(t *testing.T) {
	addr, fp, requests := newStorageHost(t)
	base := []string{"--host", addr, "--token", token, "--fingerprint", fp}
	for _, tc := range []struct {
		name     string
		args     []string
		want     string // stdout
		wantReqs []string
	}{
		{"storage disks", []string{"storage", "disks"}, `DEVICE       SIZE       MODEL          SERIAL   IN-USE/CONTENT
/dev/sda     8.0 GiB    QEMU HARDDISK  QM00001  gpt
  /dev/sda1  1.0 GiB                            ext4 "FVSTATE", mounted at /var/lib/flashvisor
/dev/sdb     100.0 GiB  QEMU HARDDISK  -        datastore ds1, ext4 "ds1", mounted at /vmfs/volumes/0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d
/dev/sdc     512.0 MiB  -              -        empty
`, []string{"GET /api/v1/storage/disks"}},
		{"storage rescan", []string{"storage", "rescan"}, `DEVICE    SIZE       MODEL  SERIAL  IN-USE/CONTENT
/dev/sdc  512.0 MiB  -      -       empty
`, []string{"POST /api/v1/storage/rescan"}},
		{"datastore list", []string{"datastore", "list"}, `NAME  UUID                                  DEVICE    CAPACITY   FREE      STATUS
ds1   0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d  /dev/sdb  100.0 GiB  99.0 GiB  mounted
old   11111111-2222-4333-8444-555555555555  -         -          -         missing: disk not found (last seen as /dev/sdd)
`, []string{"GET /api/v1/datastores"}},
		{"datastore alone lists", []string{"datastore"}, "", []string{"GET /api/v1/datastores"}},
		{"create waits", []string{"datastore", "create", "ds1", "--device", "/dev/sdb"},
			"Datastore ds1 created on /dev/sdb: UUID 0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d, 100.0 GiB, mounted at /vmfs/volumes/ds1.\n",
			[]string{`POST /api/v1/datastores {"name":"ds1","device":"/dev/sdb"}`, "GET /api/v1/tasks/task-run/wait?timeout=30s", "GET /api/v1/tasks/task-run/wait?timeout=30s"}},
		{"create positional device, forced", []string{"datastore", "create", "--force", "ds1", "sdb", "--no-wait"},
			"Task task-run started (datastore.create ds1). Follow it with: fvctl task wait task-run\n",
			[]string{`POST /api/v1/datastores {"name":"ds1","device":"sdb","force":true}`}},
		{"remove", []string{"datastore", "remove", "ds1"}, "Datastore ds1 removed.\n",
			[]string{"DELETE /api/v1/datastores/ds1?force=false", "GET /api/v1/tasks/task-rm/wait?timeout=30s"}},
		{"remove forced", []string{"datastore", "remove", "ds1", "--force", "--no-wait"},
			"Task task-rm started (datastore.remove ds1). Follow it with: fvctl task wait task-rm\n",
			[]string{"DELETE /api/v1/datastores/ds1?force=true"}},
		{"mount", []string{"datastore", "mount", "ds1"}, "Datastore ds1 mounted (status mounted).\n", []string{"POST /api/v1/datastores/ds1/mount"}},
		{"unmount", []string{"datastore", "unmount", "ds1"}, "Datastore ds1 unmounted (status unmounted).\n", []string{"POST /api/v1/datastores/ds1/unmount"}},
		{"task list", []string{"task", "list"}, `ID        KIND              TARGET  STATE    STARTED               DURATION
task-run  datastore.create  ds1     running  2025-03-04T05:06:07Z  -
task-bad  datastore.create  ds2     error    2025-03-04T05:06:07Z  1.5s
`, []string{"GET /api/v1/tasks"}},
		{"task show", []string{"task", "show", "task-ok"}, `ID:        task-ok
Kind:      datastore.create
Target:    ds1
State:     success
Started:   2025-03-04T05:06:07Z
Finished:  2025-03-04T05:06:08Z (1.5s)
Result:    ` + string(mustJSON(fakeDS)) + "\n", []string{"GET /api/v1/tasks/task-ok"}},
		{"task wait", []string{"task", "wait", "task-rm"}, `ID:        task-rm
Kind:      datastore.remove
Target:    ds1
State:     success
Started:   2025-03-04T05:06:07Z
Finished:  2025-03-04T05:06:08Z (1.5s)
`, []string{"GET /api/v1/tasks/task-rm/wait?timeout=30s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(requests())
			out, errOut, err := fvctl(t, nil, append(base, tc.args...)...)
			if err != nil {
				t.Fatalf("fvctl %q = %v (stderr %s)", tc.args, err, errOut)
			}
			if tc.want != "" {
				if diff := cmp.Diff(tc.want, out); diff != "" {
					t.Errorf("fvctl %q output (-want +got):\n%s", tc.args, diff)
				}
			}
			if diff := cmp.Diff(tc.wantReqs, requests()[n:]); diff != "" {
				t.Errorf("fvctl %q requests (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestStorageJSON(t *testing.T) {
	addr, fp, _ := newStorageHost(t)
	base := []string{"--host", addr, "--token", token, "--fingerprint", fp}
	out, _, err := fvctl(t, nil, append(base, "datastore", "list", "--json")...)
	var list []api.Datastore
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].CapacityBytes != 100<<30 {
		t.Errorf("datastore list --json = %q, %v, want the two api.Datastores", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "datastore", "create", "ds1", "--device", "sdb", "--json")...)
	var tk api.Task
	if err != nil || json.Unmarshal([]byte(out), &tk) != nil || tk.State != api.TaskSuccess || len(tk.Result) == 0 {
		t.Errorf("datastore create --json = %q, %v, want the finished api.Task", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "storage", "disks", "--json")...)
	var disks []api.Disk
	if err != nil || json.Unmarshal([]byte(out), &disks) != nil || len(disks) != 3 || disks[0].Partitions[0].Label != "FVSTATE" {
		t.Errorf("storage disks --json = %q, %v, want the three api.Disks", out, err)
	}
}

func TestStorageFailures(t *testing.T) {
	addr, fp, _ := newStorageHost(t)
	base := []string{"--host", addr, "--token", token, "--fingerprint", fp}
	for _, tc := range []struct {
		name string
		args []string
		want []string // in the error
		out  string   // in stdout
	}{
		{"create fails in the task", []string{"datastore", "create", "ds2", "--device", "sdc"},
			[]string{"datastore.create ds2", api.ErrForceRequired, "not blank", "--force"}, ""},
		{"create refused at once", []string{"datastore", "create", "ds3", "--device", "sdc"},
			[]string{"409", api.ErrExists, "already in use"}, ""},
		{"remove unknown", []string{"datastore", "remove", "nope"}, []string{"not found", "no such datastore"}, ""},
		{"unmount busy", []string{"datastore", "unmount", "busy"}, []string{api.ErrInUse, "--force does not override"}, ""},
		{"task wait failed", []string{"task", "wait", "task-bad"}, []string{errTaskFailed.Error(), "not blank"}, "Error:     force_required: device is not blank"},
		{"task show unknown", []string{"task", "show", "task-zzz"}, []string{"not found"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := fvctl(t, nil, append(base, tc.args...)...)
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("fvctl %q = %v (exit %d), want exit 1", tc.args, err, exitCode(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("fvctl %q error %q lacks %q", tc.args, err, w)
				}
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("fvctl %q stdout %q lacks %q", tc.args, out, tc.out)
			}
		})
	}
	// task wait exits 1 on a failed task even with --json, after printing it.
	out, _, err := fvctl(t, nil, append(base, "task", "wait", "task-bad", "--json")...)
	var tk api.Task
	if !errors.Is(err, errTaskFailed) || json.Unmarshal([]byte(out), &tk) != nil || tk.Error == nil {
		t.Errorf("task wait --json on a failed task = %q, %v, want the task and errTaskFailed", out, err)
	}
}

func TestStorageUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"storage", "explode"},
		{"datastore", "create"},
		{"datastore", "create", "ds1"}, // no device
		{"datastore", "create", "ds1", "sdb", "extra"},
		{"datastore", "create", "ds1", "sdb", "--device", "sdc"},
		{"datastore", "remove"},
		{"datastore", "mount"},
		{"datastore", "unmount", "a", "b"},
		{"datastore", "list", "extra"},
		{"task", "wait"},
		{"task", "show", "a", "b"},
		{"task", "frob"},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"--config", t.TempDir(), "--host", "h"}, args...), &out, &errb)
		if exitCode(err) != 2 {
			t.Errorf("fvctl %q = %v, exit %d, want exit 2", args, err, exitCode(err))
		}
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {64 << 20, "64.0 MiB"}, {1000 << 30, "1000.0 GiB"}, {3 << 40, "3.0 TiB"}, {1<<64 - 1, "16.0 EiB"}} {
		if got := humanSize(tc.in); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
