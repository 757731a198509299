package hostd

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// The datastore browser: upload, download, list and delete files on a
// datastore (ISOs, kernels, disk images to import), like ESXi's.

// filesPathRE marks the upload route, whose bodies are not capped at
// MaxBodyBytes (a datastore file can be gigabytes).
var filesPathRE = regexp.MustCompile(`^/api/v1/datastores/[^/]+/files/`)

func (s *Server) datastoreFileRoutes(v string) []route {
	p := v + "/datastores/{name}/files/{path...}"
	return []route{
		{"GET", p, s.withDatastores(s.getDatastoreFile)},
		{"PUT", p, s.withDatastores(s.putDatastoreFile)},
		{"DELETE", p, s.withDatastores(s.deleteDatastoreFile)},
	}
}

// datastoreFile resolves {name} and {path} to a host path inside the
// datastore, refusing anything that would leave it.
func (s *Server) datastoreFile(w http.ResponseWriter, r *http.Request) (root, full string, ok bool) {
	name, ok := datastoreName(w, r)
	if !ok {
		return "", "", false
	}
	d, err := s.ds.Get(name)
	if err != nil {
		s.datastoreError(w, r, err)
		return "", "", false
	}
	if d.MountPoint == "" || d.Status != api.DatastoreMounted {
		writeError(w, http.StatusConflict, api.ErrState, fmt.Sprintf("datastore %s is %s", name, d.Status))
		return "", "", false
	}
	rel := r.PathValue("path")
	if rel == "" && r.Method == http.MethodGet {
		return d.MountPoint, d.MountPoint, true // the datastore's root
	}
	clean := filepath.Clean("/" + rel)
	if rel == "" || strings.Contains(rel, "\x00") || clean != "/"+strings.TrimSuffix(rel, "/") && clean != "/" {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, fmt.Sprintf("path %q must be a clean relative path", rel))
		return "", "", false
	}
	// Only GET may name the root ("." or "a/.." too) or end in a slash: an
	// upload to the root would put its temporary file beside the mount
	// point, outside the datastore.
	if r.Method != http.MethodGet && (clean == "/" || strings.HasSuffix(rel, "/")) {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, fmt.Sprintf("path %q must name a file", rel))
		return "", "", false
	}
	return d.MountPoint, filepath.Join(d.MountPoint, clean), true
}

func (s *Server) getDatastoreFile(w http.ResponseWriter, r *http.Request) {
	_, full, ok := s.datastoreFile(w, r)
	if !ok {
		return
	}
	f, err := os.Open(full)
	if err != nil {
		s.fileError(w, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.fileError(w, err)
		return
	}
	if st.IsDir() {
		ents, err := f.ReadDir(-1)
		if err != nil {
			s.fileError(w, err)
			return
		}
		out := []api.DatastoreEntry{}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue // descriptors and temp files
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			out = append(out, api.DatastoreEntry{Name: e.Name(), Dir: e.IsDir(), Size: info.Size(), Modified: info.ModTime().UTC()})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeJSON(w, http.StatusOK, out)
		return
	}
	s.extendDeadlines(w, false)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}

// putDatastoreFile stores the body atomically: a temp file beside the
// target, fsync, rename. An interrupted upload leaves no partial file.
func (s *Server) putDatastoreFile(w http.ResponseWriter, r *http.Request) {
	_, full, ok := s.datastoreFile(w, r)
	if !ok {
		return
	}
	// Over HTTP/2 the write timeout runs from the request's start, so the
	// answer after a long upload needs it extended too.
	s.extendDeadlines(w, true)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		s.fileError(w, err)
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(full), ".upload-*")
	if err != nil {
		s.fileError(w, err)
		return
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r.Body)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), full)
	}
	if err != nil {
		s.fileError(w, err)
		return
	}
	s.log.Info("datastore file uploaded", "path", full, "bytes", n, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, api.DatastoreEntry{Name: filepath.Base(full), Size: n, Modified: time.Now().UTC()})
}

func (s *Server) deleteDatastoreFile(w http.ResponseWriter, r *http.Request) {
	_, full, ok := s.datastoreFile(w, r)
	if !ok {
		return
	}
	st, err := os.Lstat(full)
	if err != nil {
		s.fileError(w, err)
		return
	}
	if st.IsDir() {
		writeError(w, http.StatusConflict, api.ErrState, "is a directory: delete VM folders through the VM API")
		return
	}
	if err := os.Remove(full); err != nil {
		s.fileError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// transferTime bounds one file transfer: the server's read and write
// timeouts suit API calls, not a large file.
const transferTime = 6 * time.Hour

// extendDeadlines gives a file transfer transferTime to write its answer
// and, for uploads, to read the body.
func (s *Server) extendDeadlines(w http.ResponseWriter, read bool) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(transferTime)
	if read {
		if err := rc.SetReadDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Warn("extend read deadline", "err", err)
		}
	}
	if err := rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn("extend write deadline", "err", err)
	}
}

func (s *Server) fileError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusNotFound, api.ErrNotFound, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
	}
}
