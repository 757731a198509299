// Package initclienttest is a fake init control server for tests: it
// listens on a unix socket in a temporary directory, answers
// api.InitRequest from a table of services, and records every request.
package initclienttest

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/flashvisor/flashvisor/api"
)

// Signals init accepts, as in the real one.
var signals = []string{"TERM", "KILL", "HUP", "INT", "USR1", "USR2"}

// Server is the fake init.
type Server struct {
	// Path is the socket to give the client.
	Path string

	// Before, if set, runs before each request is answered; a test can
	// block in it to check what happens while init is busy.
	Before func(api.InitRequest)

	ln       net.Listener
	mu       sync.Mutex
	services []api.Service
	logs     map[string][]string
	requests []api.InitRequest
	wg       sync.WaitGroup
}

// Start starts a fake init that supervises services, and stops it when the
// test ends.
func Start(t testing.TB, services ...api.Service) *Server {
	t.Helper()
	// Socket paths are limited to 108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "fvinit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Path: filepath.Join(dir, "init.sock"), services: slices.Clone(services), logs: map[string][]string{}}
	s.ln, err = net.Listen("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

// SetLog sets the log lines of a service.
func (s *Server) SetLog(name string, lines ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs[name] = lines
}

// Requests returns the requests received so far.
func (s *Server) Requests() []api.InitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Services returns the current service table (restarts counted).
func (s *Server) Services() []api.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.services)
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			var req api.InitRequest
			if err := json.NewDecoder(c).Decode(&req); err != nil {
				json.NewEncoder(c).Encode(api.InitResponse{Error: "malformed request: " + err.Error(), ErrorCode: api.ErrBadRequest})
				return
			}
			if s.Before != nil {
				s.Before(req)
			}
			json.NewEncoder(c).Encode(s.answer(req))
		}()
	}
}

func (s *Server) answer(req api.InitRequest) api.InitResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	find := func() (int, api.InitResponse, bool) {
		i := slices.IndexFunc(s.services, func(sv api.Service) bool { return sv.Name == req.Service })
		if i < 0 {
			return -1, api.InitResponse{Error: "no such service: " + req.Service, ErrorCode: api.ErrNotFound}, false
		}
		return i, api.InitResponse{}, true
	}
	switch req.Op {
	case api.InitOpServices:
		return api.InitResponse{Services: slices.Clone(s.services)}
	case api.InitOpLog:
		if _, r, ok := find(); !ok {
			return r
		}
		return api.InitResponse{Log: slices.Clone(s.logs[req.Service])}
	case api.InitOpRestart:
		i, r, ok := find()
		if !ok {
			return r
		}
		s.services[i].Restarts++
		s.services[i].State = api.ServiceRunning
		return api.InitResponse{}
	case api.InitOpSignal:
		if _, r, ok := find(); !ok {
			return r
		}
		if !slices.Contains(signals, req.Signal) {
			return api.InitResponse{Error: "signal not allowed: " + req.Signal, ErrorCode: api.ErrBadRequest}
		}
		return api.InitResponse{}
	case api.InitOpShutdown, api.InitOpReboot:
		return api.InitResponse{}
	default:
		return api.InitResponse{Error: "unknown op " + req.Op, ErrorCode: api.ErrBadRequest}
	}
}
