package hostd

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/datastore"
)

// filesDS is a Datastores whose ds1 is mounted at a temporary directory
// and whose "off" is unmounted.
type filesDS struct {
	fakeDS
	root string
}

func (f *filesDS) Get(name string) (api.Datastore, error) {
	switch name {
	case "ds1":
		return api.Datastore{Name: name, MountPoint: f.root, Path: "/vmfs/volumes/ds1", Status: api.DatastoreMounted}, nil
	case "off":
		return api.Datastore{Name: name, Status: api.DatastoreUnmounted}, nil
	}
	return api.Datastore{}, fmt.Errorf("%w: %s", datastore.ErrNotFound, name)
}

// startFiles serves a host whose ds1 lives in a temporary directory; it
// returns that directory.
func startFiles(t *testing.T) (*env, string, func(method, path string, body io.Reader) (*http.Response, []byte)) {
	t.Helper()
	// The datastore's parent holds a file that traversal must not reach.
	parent := t.TempDir()
	root := filepath.Join(parent, "ds1")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(parent, "secret"), "outside the datastore\n")
	e := newEnv(t)
	e.opts.OpenDatastores = func(string) Datastores { return &filesDS{root: root} }
	_, ts := e.start(t)
	// No redirects followed: the mux's own answers are part of what is
	// tested.
	hc := ts.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	send := func(method, path string, body io.Reader) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	return e, root, send
}

func TestDatastoreFiles(t *testing.T) {
	_, root, send := startFiles(t)
	const p = "/api/v1/datastores/ds1/files/"

	// An upload far over MaxBodyBytes is streamed, not refused.
	big := make([]byte, 4*MaxBodyBytes+123)
	rand.Read(big)
	resp, b := send("PUT", p+"iso/debian-12.iso", bytes.NewReader(big))
	var ent api.DatastoreEntry
	if resp.StatusCode != 201 || json.Unmarshal(b, &ent) != nil || ent.Name != "debian-12.iso" || ent.Size != int64(len(big)) || ent.Dir {
		t.Fatalf("PUT %d bytes = %d %s, want 201 with the entry", len(big), resp.StatusCode, b)
	}
	if got, err := os.ReadFile(filepath.Join(root, "iso/debian-12.iso")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("uploaded file on disk: %d bytes, %v, want the %d uploaded", len(got), err, len(big))
	}
	// Replace whole; no temporary file is left behind.
	resp, b = send("PUT", p+"iso/debian-12.iso", strings.NewReader("small"))
	if resp.StatusCode != 201 {
		t.Errorf("PUT replace = %d %s, want 201", resp.StatusCode, b)
	}
	resp, b = send("PUT", p+"iso/debian-12.iso", bytes.NewReader(big))
	if resp.StatusCode != 201 {
		t.Errorf("PUT replace = %d %s, want 201", resp.StatusCode, b)
	}
	resp, b = send("PUT", p+"kernels/vmlinuz", strings.NewReader("kernel"))
	if resp.StatusCode != 201 {
		t.Errorf("PUT kernels/vmlinuz = %d %s, want 201", resp.StatusCode, b)
	}
	writeFile(t, filepath.Join(root, "iso/.hidden"), "descriptor")

	// Download.
	resp, b = send("GET", p+"iso/debian-12.iso", nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, big) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("GET the file = %d, %d bytes, %q, want 200 with the %d bytes as octet-stream", resp.StatusCode, len(b), resp.Header.Get("Content-Type"), len(big))
	}
	// Directory listings: sorted, hidden entries left out.
	now := time.Now().UTC()
	recent := cmp.Comparer(func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Minute })
	for _, tc := range []struct {
		path string
		want []api.DatastoreEntry
	}{
		{p + "iso", []api.DatastoreEntry{{Name: "debian-12.iso", Size: int64(len(big)), Modified: now}}},
		{p + "iso/", []api.DatastoreEntry{{Name: "debian-12.iso", Size: int64(len(big)), Modified: now}}},
		{p, []api.DatastoreEntry{{Name: "iso", Dir: true, Modified: now}, {Name: "kernels", Dir: true, Modified: now}}},
		{p + "%2e", []api.DatastoreEntry{{Name: "iso", Dir: true, Modified: now}, {Name: "kernels", Dir: true, Modified: now}}},
	} {
		resp, b := send("GET", tc.path, nil)
		var got []api.DatastoreEntry
		if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil {
			t.Errorf("GET %s = %d %s, want 200 with a listing", tc.path, resp.StatusCode, b)
			continue
		}
		// A directory's size is the filesystem's business.
		for i := range got {
			if got[i].Dir {
				got[i].Size = 0
			}
		}
		if diff := cmp.Diff(tc.want, got, recent); diff != "" {
			t.Errorf("GET %s listing mismatch (-want +got):\n%s", tc.path, diff)
		}
	}

	// Delete: files only.
	resp, b = send("DELETE", p+"iso", nil)
	if resp.StatusCode != 409 || decodeError(t, b).Code != api.ErrState {
		t.Errorf("DELETE a directory = %d %s, want 409 %s", resp.StatusCode, b, api.ErrState)
	}
	resp, b = send("DELETE", p+"iso/debian-12.iso", nil)
	if resp.StatusCode != 204 || len(b) != 0 {
		t.Errorf("DELETE the file = %d %q, want 204", resp.StatusCode, b)
	}
	if _, err := os.Stat(filepath.Join(root, "iso/debian-12.iso")); !os.IsNotExist(err) {
		t.Errorf("deleted file: stat = %v, want not exist", err)
	}
	for _, m := range []string{"GET", "DELETE"} {
		resp, b = send(m, p+"iso/debian-12.iso", nil)
		if resp.StatusCode != 404 || decodeError(t, b).Code != api.ErrNotFound {
			t.Errorf("%s a deleted file = %d %s, want 404", m, resp.StatusCode, b)
		}
	}
	ents, err := os.ReadDir(filepath.Join(root, "iso"))
	if err != nil || len(ents) != 1 || ents[0].Name() != ".hidden" {
		t.Errorf("iso/ at the end holds %v (%v), want only .hidden: no temporary files left", ents, err)
	}
}

// redirect stands for any 3xx status in the tables.
const redirect = 399

func TestDatastoreFilesRefused(t *testing.T) {
	e, root, send := startFiles(t)
	writeFile(t, filepath.Join(root, "a/file"), "x")
	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		// Encoded traversal reaches the handler, which refuses it.
		{"encoded dot-dot", "GET", "/api/v1/datastores/ds1/files/%2e%2e/secret", 400, api.ErrBadRequest},
		{"encoded dot-dot put", "PUT", "/api/v1/datastores/ds1/files/%2E%2E/secret", 400, api.ErrBadRequest},
		{"encoded slashes", "GET", "/api/v1/datastores/ds1/files/a%2F..%2F..%2Fsecret", 400, api.ErrBadRequest},
		{"encoded slashes delete", "DELETE", "/api/v1/datastores/ds1/files/a%2F..%2F..%2Fsecret", 400, api.ErrBadRequest},
		{"encoded inner dot-dot", "PUT", "/api/v1/datastores/ds1/files/a/%2e%2e/b", 400, api.ErrBadRequest},
		{"encoded double slash", "PUT", "/api/v1/datastores/ds1/files/a%2F%2Fb", 400, api.ErrBadRequest},
		{"encoded NUL", "PUT", "/api/v1/datastores/ds1/files/a%00b", 400, api.ErrBadRequest},
		{"encoded absolute", "GET", "/api/v1/datastores/ds1/files/%2Fetc%2Fpasswd", 400, api.ErrBadRequest},
		// Plain dot-dot is cleaned by the mux: a redirect to the cleaned
		// path, which is no longer under files/.
		{"dot-dot", "GET", "/api/v1/datastores/ds1/files/../../secret", redirect, ""},
		{"inner dot-dot", "PUT", "/api/v1/datastores/ds1/files/a/../../../secret", redirect, ""},
		{"dot-dot delete", "DELETE", "/api/v1/datastores/ds1/files/..", redirect, ""},
		// Not writable: the root, directories.
		{"put the root", "PUT", "/api/v1/datastores/ds1/files/", 400, api.ErrBadRequest},
		{"put the root as a dot", "PUT", "/api/v1/datastores/ds1/files/%2e", 400, api.ErrBadRequest},
		{"put the root by dot-dot", "PUT", "/api/v1/datastores/ds1/files/a%2F..", 400, api.ErrBadRequest},
		{"delete the root", "DELETE", "/api/v1/datastores/ds1/files/", 400, api.ErrBadRequest},
		{"put a directory path", "PUT", "/api/v1/datastores/ds1/files/b/", 400, api.ErrBadRequest},
		{"delete a directory path", "DELETE", "/api/v1/datastores/ds1/files/a/", 400, api.ErrBadRequest},
		{"put over a directory", "PUT", "/api/v1/datastores/ds1/files/a", 500, api.ErrInternal},
		// Datastores that are not there.
		{"not mounted get", "GET", "/api/v1/datastores/off/files/a", 409, api.ErrState},
		{"not mounted put", "PUT", "/api/v1/datastores/off/files/a", 409, api.ErrState},
		{"not mounted delete", "DELETE", "/api/v1/datastores/off/files/a", 409, api.ErrState},
		{"unknown datastore", "GET", "/api/v1/datastores/nope/files/a", 404, api.ErrNotFound},
		{"bad datastore name", "PUT", "/api/v1/datastores/-x/files/a", 400, api.ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == "PUT" {
				body = strings.NewReader("overwritten\n")
			}
			resp, b := send(tc.method, tc.path, body)
			if tc.status == redirect && resp.StatusCode/100 == 3 {
				resp.StatusCode = redirect // 301 before Go 1.26, 307 since
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %s (Location %q), want %d", tc.method, tc.path, resp.StatusCode, b, resp.Header.Get("Location"), tc.status)
			}
			if tc.code != "" && decodeError(t, b).Code != tc.code {
				t.Errorf("%s %s code = %q, want %q", tc.method, tc.path, decodeError(t, b).Code, tc.code)
			}
			if tc.status == redirect && strings.Contains(resp.Header.Get("Location"), "/files/") {
				t.Errorf("%s %s redirects to %q, inside files/", tc.method, tc.path, resp.Header.Get("Location"))
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(root), "secret")); err != nil || string(b) != "outside the datastore\n" {
		t.Errorf("file outside the datastore = %q, %v, want it untouched", b, err)
	}
	if strings.Contains(e.logBuf.String(), "datastore file uploaded") {
		t.Errorf("a refused upload was stored:\n%s", e.logBuf)
	}
}

// slowReader hands out its data in chunks with a pause before each.
type slowReader struct {
	data  []byte
	chunk int
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// pausingWriter waits once before its first write.
type pausingWriter struct {
	bytes.Buffer
	pause time.Duration
	once  sync.Once
}

func (w *pausingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { time.Sleep(w.pause) })
	return w.Buffer.Write(p)
}

// TestDatastoreFileTransfersOutlastTimeouts: a file transfer may take
// longer than the server's read and write timeouts and the client's
// per-call timeout, which suit API calls.
func TestDatastoreFileTransfersOutlastTimeouts(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t)
	e.opts.OpenDatastores = func(string) Datastores { return &filesDS{root: root} }
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 150 * time.Millisecond
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = s.TLSConfig()
	ts.Config.ReadTimeout, ts.Config.WriteTimeout = timeout, timeout
	ts.StartTLS()
	t.Cleanup(ts.Close)
	c, err := client.New(client.Options{Addr: ts.Listener.Addr().String(), Token: testToken, Fingerprint: s.Fingerprint(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}

	up := make([]byte, 256<<10)
	rand.Read(up)
	if err := c.Upload(t.Context(), "ds1", "slow/up.bin", &slowReader{data: up, chunk: 32 << 10, pause: timeout / 4}, int64(len(up))); err != nil {
		t.Errorf("Upload() taking 2 timeouts = %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "slow/up.bin")); err != nil || !bytes.Equal(got, up) {
		t.Errorf("uploaded file: %d bytes, %v, want %d", len(got), err, len(up))
	}

	// Large enough not to fit in the socket buffers while the reader pauses.
	down := make([]byte, 32<<20)
	rand.Read(down[:4096])
	if err := os.WriteFile(filepath.Join(root, "down.bin"), down, 0o644); err != nil {
		t.Fatal(err)
	}
	w := &pausingWriter{pause: 3 * timeout}
	n, err := c.DownloadTo(t.Context(), "ds1", "down.bin", w)
	if err != nil || n != int64(len(down)) || !bytes.Equal(w.Bytes(), down) {
		t.Errorf("DownloadTo() pausing 3 timeouts = %d bytes, %v, want %d", n, err, len(down))
	}
}

// FuzzDatastoreFilePath: whatever {path} holds, a resolved file stays
// inside the datastore, and only GET may resolve to its root.
func FuzzDatastoreFilePath(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a", "a/", "a/b", "a/../b", "a/../..", "../x", "/etc/passwd", "a//b", "a\x00b", "./a", "a/.", "...", ".hidden"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	const root = "/vmfs/volumes/0a1b2c3d"
	s := &Server{ds: &filesDS{root: root}, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, p string, put bool) {
		method := "GET"
		if put {
			method = "PUT"
		}
		r := httptest.NewRequest(method, "/api/v1/datastores/ds1/files/x", nil)
		r.SetPathValue("name", "ds1")
		r.SetPathValue("path", p)
		w := httptest.NewRecorder()
		gotRoot, full, ok := s.datastoreFile(w, r)
		if !ok {
			if w.Code != 400 {
				t.Errorf("%s %q refused with %d, want 400", method, p, w.Code)
			}
			return
		}
		rel, err := filepath.Rel(root, full)
		if gotRoot != root || err != nil || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(full, "\x00") {
			t.Errorf("%s %q resolved to %q, outside %s", method, p, full, root)
		}
		if put && full == root {
			t.Errorf("PUT %q resolved to the datastore's root", p)
		}
	})
}
