package vem

import (
	"bytes"
	"context"
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

// maxJoinBody bounds a PUT /v1/vsm/join body (PEMs and the opaque data).
const maxJoinBody = 1 << 20

// Server is the agent's local control API, served on a unix socket that only
// root can reach (hostd, fvctl vem). It carries no authentication of its
// own: the socket's permissions are the boundary.
//
//	GET    /v1/card        api.VEMCard
//	GET    /v1/config      api.SwitchConfig: the local (standalone) part
//	                       hostd gave (404 before the first one);
//	                       ?merged=1: what the agent applies (local + VSM)
//	PUT    /v1/config      api.SwitchConfig -> []api.PortStatus once applied
//	                       (?dry_run=1: validated only, 204)
//	GET    /v1/ports       []api.PortStatus
//	GET    /v1/macs        []api.MACEntry
//	GET    /v1/vsm         api.VSMLinkStatus
//	PUT    /v1/vsm/join    api.VSMJoin -> api.VSMLinkStatus (joins the switch)
//	DELETE /v1/vsm/join    leaves the switch (204)
//	POST   /v1/vsm/attach  api.VSMAttachBody (no request_id) -> api.VEMAttachResult
//	POST   /v1/vsm/detach  api.VSMDetachBody (204)
//
// The /v1/vsm routes answer 404 when the server has no VSM link.
type Server struct {
	Agent *Agent
	// Local, if set, owns the local part of the programming: PUT and GET
	// /v1/config go through it (vsmlink.Link merges it with the VSM's
	// part). nil: straight to the Agent.
	Local LocalConfig
	// VSM, if set, is the control channel to the VSM (vsmlink.Link).
	VSM VSMLink
	// Identity reported by /v1/card.
	HostUUID, Hostname, Version string
	Log                         *slog.Logger
}

// LocalConfig owns the local (standalone, hostd-configured) part of the
// switch's programming.
type LocalConfig interface {
	// Local returns the local part; false before the first one.
	Local() (api.SwitchConfig, bool)
	// SetLocal replaces the local part and applies the switch's whole
	// programming; an unacceptable result wraps ErrInvalid.
	SetLocal(ctx context.Context, sc api.SwitchConfig) error
	// CheckLocal reports whether SetLocal would take sc (ErrInvalid).
	CheckLocal(sc api.SwitchConfig) error
}

// VSMLink is the VEM's control channel to its VSM (VEM-9). Its errors
// wrap the sentinels below, which the server maps to stable codes.
type VSMLink interface {
	Status() api.VSMLinkStatus
	// Join stores the join data and starts the link; Leave stops it and
	// removes the VSM's part of the programming.
	Join(ctx context.Context, j api.VSMJoin) error
	Leave(ctx context.Context) error
	// Attach asks the VSM for a vEth and returns its name (VethN); Detach
	// tells it the owner's vEth is no longer needed here.
	Attach(ctx context.Context, a api.VSMAttachBody) (string, error)
	Detach(ctx context.Context, d api.VSMDetachBody) error
}

// Errors of a VSMLink.
var (
	// ErrBadRequest: the join, attach or detach data is invalid (400).
	ErrBadRequest = errors.New("invalid request")
	// ErrNotJoined: the host has no join data (409).
	ErrNotJoined = errors.New("not joined to a VSM")
	// ErrJoinedElsewhere: the host is joined to another domain; leave
	// first (409).
	ErrJoinedElsewhere = errors.New("joined to another domain: leave it first")
	// ErrHeadless: no connection to the VSM right now (503, code
	// api.ErrHeadless).
	ErrHeadless = errors.New("no connection to the VSM (headless)")
	// ErrRefused: the VSM said no (409).
	ErrRefused = errors.New("refused by the VSM")
	// ErrNoAnswer: the VSM did not answer in time (504).
	ErrNoAnswer = errors.New("no answer from the VSM")
)

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/card", s.card)
	mux.HandleFunc("GET /v1/config", s.getConfig)
	mux.HandleFunc("PUT /v1/config", s.putConfig)
	mux.HandleFunc("GET /v1/ports", s.ports)
	mux.HandleFunc("GET /v1/macs", s.macs)
	mux.HandleFunc("GET /v1/vsm", s.vsmStatus)
	mux.HandleFunc("PUT /v1/vsm/join", s.vsmJoin)
	mux.HandleFunc("DELETE /v1/vsm/join", s.vsmLeave)
	mux.HandleFunc("POST /v1/vsm/attach", s.vsmAttach)
	mux.HandleFunc("POST /v1/vsm/detach", s.vsmDetach)
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
	if s.VSM != nil {
		if st := s.VSM.Status(); st.Joined {
			c.Mode, c.DomainID, c.VSM = api.SwitchVSM, st.DomainID, st.VSM
			if st.Module != 0 {
				c.Module = st.Module
			}
			c.Connected, c.Headless = st.Connected, !st.Connected
			c.ControlMode, c.ControlVLAN = st.ControlMode, st.ControlVLAN
		} else {
			c.Mode, c.Connected, c.Headless = api.SwitchStandalone, false, false
		}
	}
	reply(w, http.StatusOK, c)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Agent.Config()
	if s.Local != nil && r.URL.Query().Get("merged") != "1" {
		c, ok = s.Local.Local()
	}
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
		check := func(sc api.SwitchConfig) error { _, err := Validate(sc); return err }
		if s.Local != nil {
			check = s.Local.CheckLocal
		}
		if err := check(sc); err != nil {
			replyErr(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	set := s.Agent.SetConfig
	if s.Local != nil {
		set = s.Local.SetLocal
	}
	if err := set(r.Context(), sc); err != nil {
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

func (s *Server) vsm(w http.ResponseWriter) bool {
	if s.VSM == nil {
		replyErr(w, http.StatusNotFound, api.ErrNotFound, "this agent has no VSM link")
		return false
	}
	return true
}

func (s *Server) vsmStatus(w http.ResponseWriter, r *http.Request) {
	if s.vsm(w) {
		reply(w, http.StatusOK, s.VSM.Status())
	}
}

func (s *Server) vsmJoin(w http.ResponseWriter, r *http.Request) {
	if !s.vsm(w) {
		return
	}
	var j api.VSMJoin
	if !decodeStrict(w, r, maxJoinBody, "vsm join", &j) {
		return
	}
	if err := s.VSM.Join(r.Context(), j); err != nil {
		s.vsmErr(w, err)
		return
	}
	reply(w, http.StatusOK, s.VSM.Status())
}

func (s *Server) vsmLeave(w http.ResponseWriter, r *http.Request) {
	if !s.vsm(w) {
		return
	}
	if err := s.VSM.Leave(r.Context()); err != nil {
		s.vsmErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) vsmAttach(w http.ResponseWriter, r *http.Request) {
	if !s.vsm(w) {
		return
	}
	var a api.VSMAttachBody
	if !decodeStrict(w, r, 64<<10, "vsm attach", &a) {
		return
	}
	port, err := s.VSM.Attach(r.Context(), a)
	if err != nil {
		s.vsmErr(w, err)
		return
	}
	reply(w, http.StatusOK, api.VEMAttachResult{Port: port})
}

func (s *Server) vsmDetach(w http.ResponseWriter, r *http.Request) {
	if !s.vsm(w) {
		return
	}
	var d api.VSMDetachBody
	if !decodeStrict(w, r, 64<<10, "vsm detach", &d) {
		return
	}
	if err := s.VSM.Detach(r.Context(), d); err != nil {
		s.vsmErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// vsmErr answers a VSMLink error with its stable code.
func (s *Server) vsmErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrInvalid):
		replyErr(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
	case errors.Is(err, ErrHeadless):
		replyErr(w, http.StatusServiceUnavailable, api.ErrHeadless, err.Error())
	case errors.Is(err, ErrNotJoined), errors.Is(err, ErrJoinedElsewhere), errors.Is(err, ErrRefused):
		replyErr(w, http.StatusConflict, api.ErrConflict, err.Error())
	case errors.Is(err, ErrNoAnswer):
		replyErr(w, http.StatusGatewayTimeout, api.ErrUnavailable, err.Error())
	default:
		s.log().Error("vsm link", "err", err)
		replyErr(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
	}
}

// decodeStrict reads one JSON value into v (unknown fields and trailing
// data refused) or answers 400/413 and returns false.
func decodeStrict(w http.ResponseWriter, r *http.Request, limit int64, what string, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		replyErr(w, http.StatusRequestEntityTooLarge, api.ErrBodyTooLarge, fmt.Sprintf("%s larger than %d bytes", what, limit))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		replyErr(w, http.StatusBadRequest, api.ErrBadRequest, "decode "+what+": "+err.Error())
		return false
	}
	if dec.More() {
		replyErr(w, http.StatusBadRequest, api.ErrBadRequest, "decode "+what+": trailing data")
		return false
	}
	return true
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
