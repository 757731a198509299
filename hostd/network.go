package hostd

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/flashvisor/flashvisor/hostd/vswitch"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// PortGroups is what the API needs from the standalone switch
// (*vswitch.Switch): port groups, uplinks, port-channels (VEM-7).
type PortGroups interface {
	PortGroups() []api.PortGroup
	AddPortGroup(ctx context.Context, pg api.PortGroup) error
	RemovePortGroup(ctx context.Context, name string) error
	AddUplink(ctx context.Context, nic string) (api.Uplink, error)
	View(ctx context.Context) (api.SwitchView, error)
	// Changes that may cut the management network return the pending
	// change (nil when not guarded); Confirm keeps it (VMK-3).
	UpdatePortGroup(ctx context.Context, pg api.PortGroup) (*api.NetworkChange, error)
	RemoveUplink(ctx context.Context, nic string) (*api.NetworkChange, error)
	AddPortChannel(ctx context.Context, pc api.PortChannel) (*api.NetworkChange, error)
	RemovePortChannel(ctx context.Context, name string) (*api.NetworkChange, error)
	SetVMKNIC(ctx context.Context, k api.VMKNIC, create bool) (*api.NetworkChange, error)
	RemoveVMKNIC(ctx context.Context, name string) (*api.NetworkChange, error)
	VMKNICStatus(ctx context.Context) ([]api.VMKNICStatus, error)
	Confirm(id string) error
}

// Event kinds of the management network guard (VMK-3).
const (
	EventNetworkChange   = "network.change"   // a guarded change waits, or was confirmed
	EventNetworkRollback = "network.rollback" // a guarded change was rolled back
)

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
		{"GET", v + "/network/vmknics", s.withPortGroups(s.listVMKNICs)},
		{"POST", v + "/network/vmknics", s.withPortGroups(s.addVMKNIC)},
		{"PUT", v + "/network/vmknics/{name}", s.withPortGroups(s.updateVMKNIC)},
		{"DELETE", v + "/network/vmknics/{name}", s.withPortGroups(s.removeVMKNIC)},
		{"POST", v + "/network/confirm", s.withPortGroups(s.confirmNetwork)},
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
	case errors.Is(err, netseam.ErrInvalid), errors.Is(err, vmknic.ErrInvalid):
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
	case errors.Is(err, vswitch.ErrChangePending):
		writeError(w, http.StatusConflict, api.ErrConflict, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
	}
}

func (s *Server) listPortGroups(w http.ResponseWriter, r *http.Request) {
	list := s.pgs.PortGroups()
	if s.o.VSM != nil {
		list = s.o.VSM.PortGroups()
	}
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
	ch, err := s.pgs.UpdatePortGroup(r.Context(), pg)
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("port group changed", "name", pg.Name, "vlan", pg.VLAN, "trunk", pg.Trunk)
	s.guardedReply(w, ch, http.StatusOK, pg)
}

// guardedReply answers a change: 202 with the pending change when it is
// guarded (the client must confirm it), else status with v.
func (s *Server) guardedReply(w http.ResponseWriter, ch *api.NetworkChange, status int, v any) {
	if ch != nil {
		s.o.Events.Publish(EventNetworkChange, "network", "management network change "+ch.ID+" ("+ch.What+") waits for confirmation until "+ch.RollbackAt.Format(time.RFC3339))
		writeJSON(w, http.StatusAccepted, ch)
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, v)
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
	ch, err := s.pgs.RemoveUplink(r.Context(), r.PathValue("nic"))
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.guardedReply(w, ch, http.StatusNoContent, nil)
}

func (s *Server) addPortChannel(w http.ResponseWriter, r *http.Request) {
	var pc api.PortChannel
	if !decodeBody(w, r, &pc) {
		return
	}
	ch, err := s.pgs.AddPortChannel(r.Context(), pc)
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("port-channel added", "name", pc.Name, "members", pc.Members, "mode", pc.Mode)
	s.guardedReply(w, ch, http.StatusCreated, pc)
}

func (s *Server) removePortChannel(w http.ResponseWriter, r *http.Request) {
	ch, err := s.pgs.RemovePortChannel(r.Context(), r.PathValue("name"))
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.guardedReply(w, ch, http.StatusNoContent, nil)
}

func (s *Server) listVMKNICs(w http.ResponseWriter, r *http.Request) {
	st, err := s.pgs.VMKNICStatus(r.Context())
	if err != nil {
		portGroupError(w, err)
		return
	}
	if st == nil {
		st = []api.VMKNICStatus{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) addVMKNIC(w http.ResponseWriter, r *http.Request) {
	var k api.VMKNIC
	if !decodeBody(w, r, &k) {
		return
	}
	ch, err := s.pgs.SetVMKNIC(r.Context(), k, true)
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("vmknic added", "name", k.Name, "port_group", k.PortGroup, "mode", k.IPv4.Mode)
	s.guardedReply(w, ch, http.StatusCreated, k)
}

func (s *Server) updateVMKNIC(w http.ResponseWriter, r *http.Request) {
	var k api.VMKNIC
	if !decodeBody(w, r, &k) {
		return
	}
	if k.Name == "" {
		k.Name = r.PathValue("name")
	}
	if k.Name != r.PathValue("name") {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, "a vmknic cannot be renamed: the body's name must be the path's")
		return
	}
	ch, err := s.pgs.SetVMKNIC(r.Context(), k, false)
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.log.Info("vmknic changed", "name", k.Name, "port_group", k.PortGroup, "mode", k.IPv4.Mode)
	s.guardedReply(w, ch, http.StatusOK, k)
}

func (s *Server) removeVMKNIC(w http.ResponseWriter, r *http.Request) {
	ch, err := s.pgs.RemoveVMKNIC(r.Context(), r.PathValue("name"))
	if err != nil {
		portGroupError(w, err)
		return
	}
	s.guardedReply(w, ch, http.StatusNoContent, nil)
}

func (s *Server) confirmNetwork(w http.ResponseWriter, r *http.Request) {
	var req api.ConfirmRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := s.pgs.Confirm(req.ID); err != nil {
		portGroupError(w, err)
		return
	}
	s.o.Events.Publish(EventNetworkChange, "network", "management network change "+req.ID+" confirmed")
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
