package vem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/flashvisor/flashvisor/api"
)

// maxConfigBody bounds a PUT /v1/config body: 4,096 vEths with their MACs
// fit in well under 4 MiB.
const maxConfigBody = 4 << 20

// Server is the agent's local control API, served on a unix socket that only
// root can reach (hostd today, the VSM channel's side later). It carries no
// authentication of its own: the socket's permissions are the boundary.
//
//	GET /v1/card     api.VEMCard
//	GET /v1/config   api.SwitchConfig (404 before the first one)
//	PUT /v1/config   api.SwitchConfig -> []api.PortStatus once applied
//	                 (?dry_run=1: validated only, 204)
//	GET /v1/ports    []api.PortStatus
//	GET /v1/macs     []api.MACEntry
type Server struct {
	Agent *Agent
	// Identity reported by /v1/card.
	HostUUID, Hostname, Version string
	Log                         *slog.Logger
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/card", s.card)
	mux.HandleFunc("GET /v1/config", s.getConfig)
	mux.HandleFunc("PUT /v1/config", s.putConfig)
	mux.HandleFunc("GET /v1/ports", s.ports)
	mux.HandleFunc("GET /v1/macs", s.macs)
	return mux
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) card(w http.ResponseWriter, r *http.Request) {
	c := s.Agent.Card()
	c.HostUUID, c.Hostname, c.Version = s.HostUUID, s.Hostname, s.Version
	reply(w, http.StatusOK, c)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Agent.Config()
	if !ok {
		replyErr(w, http.StatusNotFound, api.ErrNotFound, "the switch has no configuration yet")
		return
	}
	reply(w, http.StatusOK, c)
}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxConfigBody))
	if err != nil {
		replyErr(w, http.StatusRequestEntityTooLarge, api.ErrBodyTooLarge, fmt.Sprintf("config larger than %d bytes", maxConfigBody))
		return
	}
	var sc api.SwitchConfig
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		replyErr(w, http.StatusBadRequest, api.ErrBadRequest, "decode switch config: "+err.Error())
		return
	}
	if dec.More() {
		replyErr(w, http.StatusBadRequest, api.ErrBadRequest, "decode switch config: trailing data")
		return
	}
	if r.URL.Query().Get("dry_run") == "1" {
		// Validation only: whether the agent would take it.
		if _, err := Validate(sc); err != nil {
			replyErr(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := s.Agent.SetConfig(r.Context(), sc); err != nil {
		if errors.Is(err, ErrInvalid) {
			replyErr(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		s.log().Error("switch config not fully applied", "err", err)
		replyErr(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
		return
	}
	s.ports(w, r)
}

func (s *Server) ports(w http.ResponseWriter, r *http.Request) {
	ps, err := s.Agent.Status(r.Context())
	if err != nil {
		replyErr(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
		return
	}
	if ps == nil {
		ps = []api.PortStatus{}
	}
	reply(w, http.StatusOK, ps)
}

func (s *Server) macs(w http.ResponseWriter, r *http.Request) {
	m, err := s.Agent.MACTable(r.Context())
	if err != nil {
		replyErr(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
		return
	}
	reply(w, http.StatusOK, m)
}

func reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal","message":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func replyErr(w http.ResponseWriter, status int, code, msg string) {
	reply(w, status, api.Error{Code: code, Message: msg})
}
