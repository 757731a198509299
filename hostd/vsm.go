package hostd

import (
	"context"
	"errors"
	"net/http"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
)

// VSM is what the API needs to join the host to a distributed switch and
// to list both switches' port groups (hostd/dvs implements it).
type VSM interface {
	Status(ctx context.Context) (api.VSMLinkStatus, error)
	Join(ctx context.Context, j api.VSMJoin) error
	Leave(ctx context.Context) error
	PortGroups() []api.PortGroup
}

func (s *Server) vsmRoutes(v string) []route {
	return []route{
		{"GET", v + "/vsm", s.withVSM(s.vsmStatus)},
		{"POST", v + "/vsm/join", s.withVSM(s.vsmJoin)},
		{"DELETE", v + "/vsm/join", s.withVSM(s.vsmLeave)},
	}
}

func (s *Server) withVSM(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.o.VSM == nil {
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable, "the VEM agent is not available")
			return
		}
		h(w, r)
	}
}

func (s *Server) vsmStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.o.VSM.Status(r.Context())
	if err != nil {
		s.vemError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) vsmJoin(w http.ResponseWriter, r *http.Request) {
	var j api.VSMJoin
	if !decodeBody(w, r, &j) {
		return
	}
	if err := s.o.VSM.Join(r.Context(), j); err != nil {
		if errors.Is(err, netseam.ErrInvalid) {
			writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		s.vemError(w, err)
		return
	}
	// The key is a secret: log only what identifies the switch.
	s.log.Info("joined a distributed switch", "domain", j.Opaque.DomainID, "switch", j.Opaque.SwitchName, "vsms", j.Opaque.VSMs)
	st, err := s.o.VSM.Status(r.Context())
	if err != nil {
		s.vemError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) vsmLeave(w http.ResponseWriter, r *http.Request) {
	if err := s.o.VSM.Leave(r.Context()); err != nil {
		s.vemError(w, err)
		return
	}
	s.log.Info("left the distributed switch")
	w.WriteHeader(http.StatusNoContent)
}
