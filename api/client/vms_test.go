package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

func TestVMCalls(t *testing.T) {
	spec := api.VMSpec{Name: "web 01", VCPUs: 2, MemoryMiB: 512, Firmware: api.FirmwareBIOS}
	vm := api.VM{Spec: spec, Datastore: "ds1", Path: "web 01/web 01.fvx", Status: api.VMStatus{State: api.VMPoweredOff}}
	task := api.Task{ID: "task-1", Kind: "vm.create", Target: "web 01", State: api.TaskRunning}
	snaps := []api.Snapshot{{Name: "s1", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Memory: true}}
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"GET /api/v1/vms":                              fixed(200, []api.VM{vm}),
		"POST /api/v1/vms":                             fixed(202, task),
		"POST /api/v1/vms/register":                    fixed(200, vm),
		"GET /api/v1/vms/web 01":                       fixed(200, vm),
		"PUT /api/v1/vms/web 01":                       fixed(200, vm),
		"DELETE /api/v1/vms/web 01":                    fixed(202, task),
		"POST /api/v1/vms/web 01/unregister":           fixed(200, api.Accepted{Message: "web 01 unregistered"}),
		"POST /api/v1/vms/web 01/power/on":             fixed(202, task),
		"POST /api/v1/vms/web 01/power/shutdown":       fixed(202, task),
		"GET /api/v1/vms/web 01/snapshots":             fixed(200, snaps),
		"POST /api/v1/vms/web 01/snapshots":            fixed(202, task),
		"POST /api/v1/vms/web 01/snapshots/s 1/revert": fixed(202, task),
		"DELETE /api/v1/vms/web 01/snapshots/s 1":      fixed(202, task),
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
	l, err := c.VMs(ctx)
	check("VMs()", l, []api.VM{vm}, err)
	tk, err := c.CreateVM(ctx, api.VMCreateRequest{Datastore: "ds1", Spec: spec})
	check("CreateVM()", tk, task, err)
	v, err := c.RegisterVM(ctx, "ds1", "web 01/web 01.fvx")
	check("RegisterVM()", v, vm, err)
	v, err = c.VM(ctx, "web 01")
	check("VM(web 01)", v, vm, err)
	v, err = c.ReconfigureVM(ctx, "web 01", spec)
	check("ReconfigureVM(web 01)", v, vm, err)
	tk, err = c.DestroyVM(ctx, "web 01")
	check("DestroyVM(web 01)", tk, task, err)
	check("UnregisterVM(web 01)", nil, nil, c.UnregisterVM(ctx, "web 01"))
	tk, err = c.PowerVM(ctx, "web 01", "on", "")
	check("PowerVM(on)", tk, task, err)
	tk, err = c.PowerVM(ctx, "web 01", "shutdown", "2m")
	check("PowerVM(shutdown, 2m)", tk, task, err)
	s, err := c.Snapshots(ctx, "web 01")
	check("Snapshots(web 01)", s, snaps, err)
	tk, err = c.CreateSnapshot(ctx, "web 01", api.SnapshotRequest{Name: "s 1", Description: "before"})
	check("CreateSnapshot()", tk, task, err)
	tk, err = c.RevertSnapshot(ctx, "web 01", "s 1")
	check("RevertSnapshot()", tk, task, err)
	tk, err = c.DeleteSnapshot(ctx, "web 01", "s 1")
	check("DeleteSnapshot()", tk, task, err)

	specJSON := `{"name":"web 01","vcpus":2,"memory_mib":512,"firmware":"bios","serial_console":false,"vnc_console":false,"autostart":{"enabled":false}}`
	want := []string{
		"GET /api/v1/vms",
		`POST /api/v1/vms {"datastore":"ds1","spec":` + specJSON + `}`,
		`POST /api/v1/vms/register {"datastore":"ds1","path":"web 01/web 01.fvx"}`,
		"GET /api/v1/vms/web%2001",
		"PUT /api/v1/vms/web%2001 " + specJSON,
		"DELETE /api/v1/vms/web%2001",
		"POST /api/v1/vms/web%2001/unregister",
		"POST /api/v1/vms/web%2001/power/on",
		"POST /api/v1/vms/web%2001/power/shutdown?timeout=2m",
		"GET /api/v1/vms/web%2001/snapshots",
		`POST /api/v1/vms/web%2001/snapshots {"name":"s 1","description":"before"}`,
		"POST /api/v1/vms/web%2001/snapshots/s%201/revert",
		"DELETE /api/v1/vms/web%2001/snapshots/s%201",
	}
	if diff := cmp.Diff(want, rec.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// Names and operations are escaped into one path segment each.
	n := len(rec.requests())
	c.VM(ctx, "a/b")
	c.PowerVM(ctx, "web01", "on/../../x", "1h?x=y")
	c.RevertSnapshot(ctx, "web01", "../s")
	if diff := cmp.Diff([]string{
		"GET /api/v1/vms/a%2Fb",
		"POST /api/v1/vms/web01/power/on%2F..%2F..%2Fx?timeout=1h%3Fx%3Dy",
		"POST /api/v1/vms/web01/snapshots/..%2Fs/revert",
	}, rec.requests()[n:]); diff != "" {
		t.Errorf("escaped requests (-want +got):\n%s", diff)
	}

	var ae *APIError
	if _, err := c.VM(ctx, "nope"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != api.ErrNotFound {
		t.Errorf("VM(nope) = %v, want APIError 404 not_found", err)
	}
}

func TestVMErrors(t *testing.T) {
	c, _ := newRecorder(t, map[string]func(*http.Request) (int, any){
		"POST /api/v1/vms/web01/power/on":  fixed(409, api.Error{Code: api.ErrAdmission, Message: "power on web01: 4096 MiB over the limit"}),
		"GET /api/v1/vms/web01/screenshot": fixed(409, api.Error{Code: api.ErrState, Message: "web01 is poweredOff"}),
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"PowerVM", func() error { _, err := c.PowerVM(ctx, "web01", "on", ""); return err }(), api.ErrAdmission},
		{"Screenshot", func() error { _, err := c.Screenshot(ctx, "web01"); return err }(), api.ErrState},
	} {
		var ae *APIError
		if !errors.As(tc.err, &ae) || ae.Status != 409 || ae.Code != tc.code {
			t.Errorf("%s = %v, want APIError 409 %s", tc.name, tc.err, tc.code)
		}
	}
}

func TestDatastoreFileCalls(t *testing.T) {
	var uploadCT string
	var uploadLen int64
	entries := []api.DatastoreEntry{{Name: "iso", Dir: true, Size: 4096, Modified: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"PUT /api/v1/datastores/ds1/files/iso/deb 12.iso": func(r *http.Request) (int, any) {
			uploadCT, uploadLen = r.Header.Get("Content-Type"), r.ContentLength
			return 201, api.DatastoreEntry{Name: "deb 12.iso", Size: 5}
		},
		"PUT /api/v1/datastores/off/files/x":   fixed(409, api.Error{Code: api.ErrState, Message: "datastore off is unmounted"}),
		"GET /api/v1/datastores/ds1/files/":    fixed(200, entries),
		"GET /api/v1/datastores/ds1/files/iso": fixed(200, []api.DatastoreEntry{}),
	})
	ctx := context.Background()
	if err := c.Upload(ctx, "ds1", "/iso/deb 12.iso", strings.NewReader("hello"), 5); err != nil {
		t.Errorf("Upload() = %v", err)
	}
	if uploadCT != "application/octet-stream" || uploadLen != 5 {
		t.Errorf("upload sent Content-Type %q, Content-Length %d, want application/octet-stream, 5", uploadCT, uploadLen)
	}
	var ae *APIError
	if err := c.Upload(ctx, "off", "x", strings.NewReader("x"), 1); !errors.As(err, &ae) || ae.Code != api.ErrState {
		t.Errorf("Upload(off) = %v, want APIError %s", err, api.ErrState)
	}
	for _, dir := range []string{"", "/"} {
		got, err := c.Browse(ctx, "ds1", dir)
		if diff := cmp.Diff(entries, got); err != nil || diff != "" {
			t.Errorf("Browse(ds1, %q) = %v (-want +got):\n%s", dir, err, diff)
		}
	}
	if got, err := c.Browse(ctx, "ds1", "iso"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("Browse(ds1, iso) = %#v, %v, want an empty list", got, err)
	}
	want := []string{
		"PUT /api/v1/datastores/ds1/files/iso/deb%2012.iso hello",
		"PUT /api/v1/datastores/off/files/x x",
		"GET /api/v1/datastores/ds1/files/",
		"GET /api/v1/datastores/ds1/files/",
		"GET /api/v1/datastores/ds1/files/iso",
	}
	if diff := cmp.Diff(want, rec.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// Paths the host would only redirect or refuse are refused here.
	n := len(rec.requests())
	for _, p := range []string{"", "/", "..", "../etc/passwd", "a/../../b", "a//b", "./a", "a/."} {
		if err := c.Upload(ctx, "ds1", p, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Upload(ds1, %q) = nil, want an error", p)
		}
		if _, err := c.Download(ctx, "ds1", p); err == nil {
			t.Errorf("Download(ds1, %q) = nil, want an error", p)
		}
		if p == "" || p == "/" {
			continue // the root: listable
		}
		if _, err := c.Browse(ctx, "ds1", p); err == nil {
			t.Errorf("Browse(ds1, %q) = nil, want an error", p)
		}
	}
	if got := rec.requests()[n:]; len(got) != 0 {
		t.Errorf("refused paths reached the host: %q", got)
	}
}

// TestDownload: files stream whole, however large (no maxBody cap, no
// per-call timeout), and a directory is an error, not its listing.
func TestDownload(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (maxBody+4096)/16)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/datastores/ds1/files/big.img":
			w.Header().Set("Content-Type", "application/octet-stream")
			for b := big; len(b) > 0; b = b[min(len(b), 1<<20):] {
				w.Write(b[:min(len(b), 1<<20)])
				time.Sleep(time.Millisecond)
			}
		case "/api/v1/datastores/ds1/files/iso":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("[]\n"))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			w.Write([]byte(`{"code":"not_found","message":"open x: no such file or directory"}`))
		}
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	// A per-call timeout shorter than the transfer.
	c, err := New(Options{Addr: ts.Listener.Addr().String(), Token: "sekrit", Fingerprint: Fingerprint(ts.Certificate().Raw), Timeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var buf bytes.Buffer
	n, err := c.DownloadTo(ctx, "ds1", "big.img", &buf)
	if err != nil || n != int64(len(big)) || !bytes.Equal(buf.Bytes(), big) {
		t.Errorf("DownloadTo(big.img) = %d, %v, want %d bytes, over maxBody", n, err, len(big))
	}
	b, err := c.Download(ctx, "ds1", "big.img")
	if err != nil || !bytes.Equal(b, big) {
		t.Errorf("Download(big.img) = %d bytes, %v, want %d", len(b), err, len(big))
	}
	if _, err := c.Download(ctx, "ds1", "iso"); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Download(a directory) = %v, want an is-a-directory error", err)
	}
	var ae *APIError
	if _, err := c.Download(ctx, "ds1", "nope"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != api.ErrNotFound {
		t.Errorf("Download(nope) = %v, want APIError 404 not_found", err)
	}
}
