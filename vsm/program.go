package vsm

import (
	"fmt"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/ports"
	"github.com/flashvisor/flashvisor/vsm/render"
)

// vemProfiles returns the configuration's profiles as VEMs see them.
func vemProfiles(c *config.Config) []api.PortProfile {
	out := make([]api.PortProfile, 0, len(c.Profiles))
	for _, p := range c.Profiles {
		out = append(out, p.VEM())
	}
	return out
}

// lookupLocked is the profile lookup the port registry checks against.
func (s *Server) lookupLocked() ports.ProfileLookup {
	return ports.LookupIn(vemProfiles(&s.cfg))
}

// opaqueLocked is the domain's joining data as it is now (VSM-6).
func (s *Server) opaqueLocked() *api.VSMOpaque {
	o := &api.VSMOpaque{
		DomainID:    s.cfg.SVSDomain.ID,
		SwitchName:  s.cfg.SwitchName,
		VSMs:        s.vsmAddressesLocked(),
		Mode:        s.cfg.SVSDomain.Mode,
		ControlVLAN: s.cfg.SVSDomain.ControlVLAN,
		PacketVLAN:  s.cfg.SVSDomain.PacketVLAN,
	}
	for _, p := range s.cfg.Profiles {
		if p.IsSystem() {
			o.SystemProfiles = append(o.SystemProfiles, p.VEM())
		}
	}
	return o
}

// desiredLocked is module slot's programming now (package render).
func (s *Server) desiredLocked(slot int) render.Desired {
	d := render.Snapshot(slot, vemProfiles(&s.cfg), s.ports.Ports(slot))
	// `interface vethernet N` / `shutdown`: on top of the profile's.
	for name, p := range d.Ports {
		if n, ok := api.VethNumber(name); ok && s.cfg.Veths[n].Shutdown {
			p.Shutdown = true
			d.Ports[name] = p
		}
	}
	return d
}

// attachLocked binds a's owner to vc's module.
func (s *Server) attachLocked(vc *vemConn, a *api.VSMAttachBody) (string, error) {
	return s.ports.Attach(ports.AttachRequest{
		Owner: a.Owner, Module: vc.slot, Profile: a.Profile, MAC: a.MAC,
		Description: a.Description, LocalVeths: vc.local,
	}, s.lookupLocked())
}

// detachLocked releases the owner's vEth or unbinds it from vc's module.
func (s *Server) detachLocked(vc *vemConn, d *api.VSMDetachBody) error {
	if d.Release {
		return s.ports.Release(d.Owner)
	}
	return s.ports.Detach(d.Owner, vc.slot)
}

// setUplinksLocked records vc's uplinks (its hello's).
func (s *Server) setUplinksLocked(vc *vemConn) error {
	s.ports.SetLocalChannels(vc.slot, vc.localPo)
	if _, err := s.ports.SetUplinks(vc.slot, vc.uplinks, s.lookupLocked()); err != nil {
		return fmt.Errorf("module %d: %w", vc.slot, err)
	}
	return nil
}
