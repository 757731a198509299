package client

import (
	"context"
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
)

// recorder is a fake host that records "METHOD PATH?QUERY BODY" and answers
// from a table keyed by "METHOD PATH".
type recorder struct {
	mu      sync.Mutex
	reqs    []string
	answers map[string]func(r *http.Request) (int, any)
}

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.reqs...)
}

func newRecorder(t *testing.T, answers map[string]func(r *http.Request) (int, any)) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{answers: answers}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		line := r.Method + " " + r.URL.RequestURI()
		if len(b) > 0 {
			line += " " + strings.TrimSpace(string(b))
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, line)
		rec.mu.Unlock()
		status, v := 404, any(api.Error{Code: api.ErrNotFound, Message: "no such endpoint"})
		if f, ok := rec.answers[r.Method+" "+r.URL.Path]; ok {
			status, v = f(r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	c, err := New(Options{Addr: ts.Listener.Addr().String(), Token: "sekrit", Fingerprint: Fingerprint(ts.Certificate().Raw), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func fixed(status int, v any) func(*http.Request) (int, any) {
	return func(*http.Request) (int, any) { return status, v }
}

func TestDatastoreCalls(t *testing.T) {
	ds := api.Datastore{Name: "ds1", UUID: "0a1b2c3d-5e6f-4a0b-8c1d-2e3f4a5b6c7d", Kind: api.DatastoreLocal, Status: api.DatastoreMounted}
	disks := []api.Disk{{BlockDevice: api.BlockDevice{Name: "sdb", Path: "/dev/sdb", SizeBytes: 1 << 30}, Model: "QEMU"}}
	task := api.Task{ID: "task-1", Kind: "datastore.create", Target: "ds1", State: api.TaskRunning}
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"GET /api/v1/storage/disks":           fixed(200, disks),
		"POST /api/v1/storage/rescan":         fixed(200, disks),
		"GET /api/v1/datastores":              fixed(200, []api.Datastore{ds}),
		"GET /api/v1/datastores/ds1":          fixed(200, ds),
		"POST /api/v1/datastores":             fixed(202, task),
		"DELETE /api/v1/datastores/ds1":       fixed(202, task),
		"POST /api/v1/datastores/ds1/mount":   fixed(200, ds),
		"POST /api/v1/datastores/ds1/unmount": fixed(200, ds),
		"GET /api/v1/tasks":                   fixed(200, []api.Task{task}),
		"GET /api/v1/tasks/task-1":            fixed(200, task),
		"GET /api/v1/events":                  fixed(200, []api.Event{{Seq: 8, Kind: "task.done", Target: "task-1"}}),
	})
	ctx := context.Background()
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s = %v", name, err)
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	d, err := c.Disks(ctx)
	check("Disks()", d, disks, err)
	d, err = c.Rescan(ctx)
	check("Rescan()", d, disks, err)
	l, err := c.Datastores(ctx)
	check("Datastores()", l, []api.Datastore{ds}, err)
	g, err := c.Datastore(ctx, "ds1")
	check("Datastore(ds1)", g, ds, err)
	tk, err := c.CreateDatastore(ctx, api.DatastoreCreateRequest{Name: "ds1", Device: "sdb"})
	check("CreateDatastore()", tk, task, err)
	tk, err = c.RemoveDatastore(ctx, "ds1", true)
	check("RemoveDatastore(ds1, true)", tk, task, err)
	_, err = c.RemoveDatastore(ctx, "ds1", false)
	check("RemoveDatastore(ds1, false)", nil, nil, err)
	g, err = c.MountDatastore(ctx, "ds1")
	check("MountDatastore(ds1)", g, ds, err)
	g, err = c.UnmountDatastore(ctx, "ds1")
	check("UnmountDatastore(ds1)", g, ds, err)
	ts, err := c.Tasks(ctx)
	check("Tasks()", ts, []api.Task{task}, err)
	tk, err = c.Task(ctx, "task-1")
	check("Task(task-1)", tk, task, err)
	ev, err := c.Events(ctx, 7)
	check("Events(7)", ev, []api.Event{{Seq: 8, Kind: "task.done", Target: "task-1"}}, err)

	want := []string{
		"GET /api/v1/storage/disks",
		"POST /api/v1/storage/rescan",
		"GET /api/v1/datastores",
		"GET /api/v1/datastores/ds1",
		`POST /api/v1/datastores {"name":"ds1","device":"sdb"}`,
		"DELETE /api/v1/datastores/ds1?force=true",
		"DELETE /api/v1/datastores/ds1?force=false",
		"POST /api/v1/datastores/ds1/mount",
		"POST /api/v1/datastores/ds1/unmount",
		"GET /api/v1/tasks",
		"GET /api/v1/tasks/task-1",
		"GET /api/v1/events?since=7",
	}
	if diff := cmp.Diff(want, rec.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	var ae *APIError
	if _, err := c.Datastore(ctx, "nope"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != api.ErrNotFound {
		t.Errorf("Datastore(nope) = %v, want APIError 404 not_found", err)
	}
	// Names are escaped into one path segment.
	c.Datastore(ctx, "a/b")
	if got := rec.requests(); got[len(got)-1] != "GET /api/v1/datastores/a%2Fb" {
		t.Errorf("Datastore(a/b) sent %q, want the name escaped", got[len(got)-1])
	}
}

func TestWaitTask(t *testing.T) {
	var mu sync.Mutex
	polls := 0
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"GET /api/v1/tasks/task-1/wait": func(r *http.Request) (int, any) {
			mu.Lock()
			defer mu.Unlock()
			polls++
			tk := api.Task{ID: "task-1", State: api.TaskRunning}
			if polls == 3 {
				tk.State = api.TaskError
				tk.Error = &api.Error{Code: api.ErrForceRequired, Message: "not blank"}
			}
			return 200, tk
		},
		"GET /api/v1/tasks/task-2/wait": func(r *http.Request) (int, any) {
			time.Sleep(20 * time.Millisecond) // a host answers at the timeout
			return 200, api.Task{ID: "task-2", State: api.TaskRunning}
		},
	})
	got, err := c.WaitTask(context.Background(), "task-1")
	if err != nil || got.State != api.TaskError || got.Error == nil || got.Error.Code != api.ErrForceRequired {
		t.Fatalf("WaitTask(task-1) = %+v, %v, want the failed task and no error", got, err)
	}
	// The client's 10s timeout makes each poll ask for 5s.
	if diff := cmp.Diff([]string{
		"GET /api/v1/tasks/task-1/wait?timeout=5s",
		"GET /api/v1/tasks/task-1/wait?timeout=5s",
		"GET /api/v1/tasks/task-1/wait?timeout=5s",
	}, rec.requests()); diff != "" {
		t.Errorf("polls (-want +got):\n%s", diff)
	}

	// A task that never ends: the context's deadline ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	got, err = c.WaitTask(ctx, "task-2")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitTask(task-2) with a deadline = %+v, %v, want context.DeadlineExceeded", got, err)
	}
	for _, r := range rec.requests()[3:] {
		if !strings.HasPrefix(r, "GET /api/v1/tasks/task-2/wait?timeout=") || strings.HasSuffix(r, "=5s") {
			t.Errorf("poll %q: want a timeout within the context's deadline", r)
		}
	}

	var ae *APIError
	if _, err := c.WaitTask(context.Background(), "task-3"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("WaitTask(unknown) = %v, want APIError 404", err)
	}
}
