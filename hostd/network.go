package hostd

import (
	"context"
	"errors"
	"net/http"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
)

// PortGroups is what the API needs from the standalone switch
// (*vswitch.Switch): port groups, uplinks, port-channels (VEM-7).
type PortGroups interface {
	PortGroups() []api.PortGroup
	AddPortGroup(ctx context.Context, pg api.PortGroup) error
	UpdatePortGroup(ctx context.Context, pg api.PortGroup) error
	RemovePortGroup(ctx context.Context, name string) error
	AddUplink(ctx context.Context, nic string) (api.Uplink, error)
	RemoveUplink(ctx context.Context, nic string) error
	AddPortChannel(ctx context.Context, pc api.PortChannel) error
	RemovePortChannel(ctx context.Context, name string) error
	View(ctx context.Context) (api.SwitchView, error)
}

// VEM is what the API needs from the VEM agent for its debug views
// (VEM-10; vem/vemclient).
type VEM interface {
	Card(ctx context.Context) (api.VEMCard, error)
	Ports(ctx context.Context) ([]api.PortStatus, error)
	MACs(ctx context.Context) ([]api.MACEntry, error)
}

func (s *Server) portGroupRoutes(v string) []route {
	return []route{
		{"GET", v + "/portgroups", s.withPortGroups(s.listPortGroups)},
		{"POST", v + "/portgroups", s.withPortGroups(s.addPortGroup)},
		{"PUT", v + "/portgroups/{name}", s.withPortGroups(s.updatePortGroup)},
		{"DELETE", v + "/portgroups/{name}", s.withPortGroups(s.removePortGroup)},
		{"GET", v + "/network", s.withPortGroups(s.networkView)},
		{"POST", v + "/network/uplinks", s.withPortGroups(s.addUplink)},
		{"DELETE", v + "/network/uplinks/{nic}", s.withPortGroups(s.removeUplink)},
		{"POST", v + "/network/portchannels", s.withPortGroups(s.addPortChannel)},
		{"DELETE", v + "/network/portchannels/{name}", s.withPortGroups(s.removePortChannel)},
		{"GET", v + "/vem/card", s.withVEM(s.vemCard)},
		{"GET", v + "/vem/ports", s.withVEM(s.vemPorts)},
		{"GET", v + "/vem/macs", s.withVEM(s.vemMACs)},
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

func (s *Server) withVEM(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.vem == nil {
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable, "no VEM agent configured")
			return
		}
		h(w, r)
	}
}

func portGroupError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, netseam.ErrNoPortGroup), errors.Is(err, netseam.ErrNotFound):
		writeError(w, http.StatusNotFound, api.ErrNotFound, err.Error())
	case errors.Is(err, netseam.ErrExists):
		writeError(w, http.StatusConflict, api.ErrExists, err.Error())
	case errors.Is(err, netseam.ErrInUse):
		writeError(w, http.StatusConflict, api.ErrInUse, err.Error())
	case errors.Is(err, netseam.ErrInvalid):
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
	s.log.Info("port group added", "name", pg.Name, "vlan", pg.VLAN, "trunk", pg.Trunk)
	writeJSON(w, http.StatusCreated, pg)
}

func (s *Server) updatePortGroup(w http.ResponseWriter, r *http.Request) {
	var pg api.PortGroup
	if !decodeBody(w, r, &pg) {
		return
	}
	if pg.Name == "" {
		pg.Name = r.PathValue("name")
	}
	if pg.Name != r.PathValue("name") {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, "a port group cannot be renamed: the body's name must be the path's")
		return
	}
	if err := s.pgs.UpdatePortGroup(r.Context(), pg); err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("port group changed", "name", pg.Name, "vlan", pg.VLAN, "trunk", pg.Trunk)
	writeJSON(w, http.StatusOK, pg)
}

func (s *Server) removePortGroup(w http.ResponseWriter, r *http.Request) {
	if err := s.pgs.RemovePortGroup(r.Context(), r.PathValue("name")); err != nil {
		portGroupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) networkView(w http.ResponseWriter, r *http.Request) {
	v, err := s.pgs.View(r.Context())
	if err != nil {
		// The configuration is still worth showing without port states.
		s.log.Warn("VEM port states unavailable", "err", err)
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) addUplink(w http.ResponseWriter, r *http.Request) {
	var u api.Uplink
	if !decodeBody(w, r, &u) {
		return
	}
	if u.Port != "" || u.PortChannel != "" {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, "give the NIC only: the port is assigned, port-channels are created with their members")
		return
	}
	got, err := s.pgs.AddUplink(r.Context(), u.NIC)
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("uplink added", "nic", got.NIC, "port", got.Port)
	writeJSON(w, http.StatusCreated, got)
}

func (s *Server) removeUplink(w http.ResponseWriter, r *http.Request) {
	if err := s.pgs.RemoveUplink(r.Context(), r.PathValue("nic")); err != nil {
		portGroupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) addPortChannel(w http.ResponseWriter, r *http.Request) {
	var pc api.PortChannel
	if !decodeBody(w, r, &pc) {
		return
	}
	if err := s.pgs.AddPortChannel(r.Context(), pc); err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("port-channel added", "name", pc.Name, "members", pc.Members, "mode", pc.Mode)
	writeJSON(w, http.StatusCreated, pc)
}

func (s *Server) removePortChannel(w http.ResponseWriter, r *http.Request) {
	if err := s.pgs.RemovePortChannel(r.Context(), r.PathValue("name")); err != nil {
		portGroupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) vemError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusBadGateway, api.ErrUnavailable, "VEM agent: "+err.Error())
}

func (s *Server) vemCard(w http.ResponseWriter, r *http.Request) {
	c, err := s.vem.Card(r.Context())
	if err != nil {
		s.vemError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) vemPorts(w http.ResponseWriter, r *http.Request) {
	p, err := s.vem.Ports(r.Context())
	if err != nil {
		s.vemError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) vemMACs(w http.ResponseWriter, r *http.Request) {
	m, err := s.vem.MACs(r.Context())
	if err != nil {
		s.vemError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}
