package hostd

import (
	"context"
	"errors"
	"net/http"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
)

// PortGroups is what the API needs from the networking seam
// (*netseam.Bridges today, the VEM later).
type PortGroups interface {
	PortGroups() []api.PortGroup
	AddPortGroup(ctx context.Context, pg api.PortGroup) error
	RemovePortGroup(ctx context.Context, name string) error
}

func (s *Server) portGroupRoutes(v string) []route {
	return []route{
		{"GET", v + "/portgroups", s.withPortGroups(s.listPortGroups)},
		{"POST", v + "/portgroups", s.withPortGroups(s.addPortGroup)},
		{"DELETE", v + "/portgroups/{name}", s.withPortGroups(s.removePortGroup)},
	}
}

func (s *Server) withPortGroups(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.pgs == nil {
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable, "networking is unavailable (see hostd's log)")
			return
		}
		h(w, r)
	}
}

func portGroupError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, netseam.ErrNoPortGroup):
		writeError(w, http.StatusNotFound, api.ErrNotFound, err.Error())
	case errors.Is(err, netseam.ErrExists):
		writeError(w, http.StatusConflict, api.ErrExists, err.Error())
	case errors.Is(err, netseam.ErrInUse):
		writeError(w, http.StatusConflict, api.ErrInUse, err.Error())
	case errors.Is(err, netseam.ErrInvalid), errors.Is(err, netseam.ErrNameCollision):
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
	}
}

func (s *Server) listPortGroups(w http.ResponseWriter, r *http.Request) {
	list := s.pgs.PortGroups()
	if list == nil {
		list = []api.PortGroup{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) addPortGroup(w http.ResponseWriter, r *http.Request) {
	var pg api.PortGroup
	if !decodeBody(w, r, &pg) {
		return
	}
	if err := s.pgs.AddPortGroup(r.Context(), pg); err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("port group added", "name", pg.Name, "vlan", pg.VLAN, "host_address", pg.HostAddress)
	writeJSON(w, http.StatusCreated, pg)
}

func (s *Server) removePortGroup(w http.ResponseWriter, r *http.Request) {
	if err := s.pgs.RemovePortGroup(r.Context(), r.PathValue("name")); err != nil {
		portGroupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
