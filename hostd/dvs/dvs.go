// Package dvs gives hostd's VMs the distributed switch's port groups next
// to the standalone switch's (VSM-5, HOSTD-6). Once the host has joined a
// VSM, every enabled vethernet port profile of the VSM is a port group
// here; a vNIC on one becomes a VethN the VSM assigns (through the VEM,
// which relays the request), with the profile's settings. Port groups of
// the host's own switch (vSwitch0's "Management Network" and "VM Network",
// anything the operator added) keep working beside them, on the same VEM:
// the two coexist; a name used by both is the host's own.
//
// Owners: the VSM keys a vEth by "vm:<VM name>/nic<N>", so a VM keeps its
// VethN while it is off and when it moves to another host of the switch
// (VM names are unique within a switch, as within a vCenter folder).
package dvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
)

// VEM is what dvs needs from the VEM agent (vemclient implements it).
type VEM interface {
	VSMStatus(ctx context.Context) (api.VSMLinkStatus, error)
	AttachVSM(ctx context.Context, a api.VSMAttachBody) (port string, err error)
	DetachVSM(ctx context.Context, d api.VSMDetachBody) error
	Ports(ctx context.Context) ([]api.PortStatus, error)
	JoinVSM(ctx context.Context, j api.VSMJoin) (api.VSMLinkStatus, error)
	// AppliedConfig is what the VEM programs (both switches' parts).
	AppliedConfig(ctx context.Context) (api.SwitchConfig, error)
	LeaveVSM(ctx context.Context) error
}

// Local is the host's standalone switch.
type Local interface {
	netseam.Ports
}

// ErrHeadless is returned when a vNIC needs a new vEth from the VSM and the
// VSM cannot be reached: like the original, no new port without it.
var ErrHeadless = errors.New("the VSM is not reachable: no new distributed switch port can be made")

// Ports implements netseam.Ports over both switches.
type Ports struct {
	Local Local
	VEM   VEM
	Log   *slog.Logger
	// TapWait bounds how long Attach waits for the VSM's programming of a
	// new vEth to reach the VEM (default 15 s).
	TapWait time.Duration
	// IsInvalid tells the VEM's refusals of bad input (a bad join bundle)
	// from its failures; they are wrapped with netseam.ErrInvalid.
	IsInvalid func(error) bool

	mu     sync.Mutex
	status api.VSMLinkStatus // last known, for PortGroups (no context)
	// vsmNICs remembers which vNICs sit on the distributed switch, for
	// Release (the VEM's ports carry the owner too: see release).
	vsmNICs map[string]map[int]bool
}

// Owner is the VSM's key of a VM's vNIC.
func Owner(vm string, nic int) string { return fmt.Sprintf("vm:%s/nic%d", ownerSafe(vm), nic) }

// ownerSafe maps a VM name into the owner alphabet (api's ownerRE).
func ownerSafe(vm string) string {
	var b strings.Builder
	for _, r := range vm {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "_%x", r)
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func (p *Ports) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

// Refresh reads the VEM's link status (profiles offered as port groups).
func (p *Ports) Refresh(ctx context.Context) (api.VSMLinkStatus, error) {
	st, err := p.VEM.VSMStatus(ctx)
	if err != nil {
		return st, err
	}
	p.mu.Lock()
	p.status = st
	p.mu.Unlock()
	return st, nil
}

func (p *Ports) local(name string) bool {
	return slices.ContainsFunc(p.Local.PortGroups(), func(pg api.PortGroup) bool { return pg.Name == name })
}

// vsmProfile finds an enabled vethernet profile of the VSM.
func (p *Ports) vsmProfile(ctx context.Context, name string) (api.PortProfile, bool) {
	st, err := p.Refresh(ctx)
	if err != nil {
		p.mu.Lock()
		st = p.status
		p.mu.Unlock()
	}
	if !st.Joined {
		return api.PortProfile{}, false
	}
	i := slices.IndexFunc(st.Profiles, func(pp api.PortProfile) bool { return pp.Name == name })
	if i < 0 {
		return api.PortProfile{}, false
	}
	return st.Profiles[i], true
}

// Attach implements netseam.Ports.
func (p *Ports) Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (string, error) {
	if p.local(portGroup) {
		return p.Local.Attach(ctx, vm, nic, portGroup, mac)
	}
	if _, ok := p.vsmProfile(ctx, portGroup); !ok {
		return p.Local.Attach(ctx, vm, nic, portGroup, mac) // its error names the port group
	}
	owner := Owner(vm, nic)
	// A vNIC whose vEth the VEM already has, on this profile with this
	// MAC, needs nothing from the VSM: this is what lets a VM power on
	// while the host is headless (the VSM down, or after a reboot without
	// it), on the port restored from the state partition (VEM-8).
	if sts, err := p.VEM.Ports(ctx); err == nil {
		for _, s := range sts {
			if s.Owner == owner && s.Profile == portGroup && s.Interface != "" && p.macOf(ctx, s.Name) == strings.ToLower(mac) {
				p.remember(vm, nic)
				return s.Interface, nil
			}
		}
	}
	port, err := p.VEM.AttachVSM(ctx, api.VSMAttachBody{Owner: owner, Profile: portGroup, MAC: strings.ToLower(mac),
		Description: fmt.Sprintf("%s nic %d", vm, nic)})
	if err != nil {
		return "", fmt.Errorf("attach VM %q vNIC %d to %q on the distributed switch: %w", vm, nic, portGroup, err)
	}
	p.remember(vm, nic)
	// The VSM answers with the number first and programs the port in the
	// following config delta: wait for the VEM to have its tap.
	wait := p.TapWait
	if wait == 0 {
		wait = 15 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		sts, err := p.VEM.Ports(ctx)
		if err == nil {
			for _, s := range sts {
				if s.Name == port && s.Interface != "" {
					return s.Interface, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("attach VM %q vNIC %d: the VSM assigned %s but its programming did not reach the VEM in %s", vm, nic, port, wait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Detach implements netseam.Ports: nothing goes away at power-off; the
// vEth keeps its number, settings and counters (VEM-2).
func (p *Ports) Detach(ctx context.Context, vm string, nic int) error {
	return p.Local.Detach(ctx, vm, nic)
}

// Release implements netseam.Ports: the VM's vEths on both switches are
// freed. Distributed ones are found by owner among the VEM's ports, so a
// restarted hostd still frees them.
func (p *Ports) Release(ctx context.Context, vm string) error {
	err := p.Local.Release(ctx, vm)
	prefix := "vm:" + ownerSafe(vm) + "/"
	owners := map[string]bool{}
	p.mu.Lock()
	for nic := range p.vsmNICs[vm] {
		owners[Owner(vm, nic)] = true
	}
	delete(p.vsmNICs, vm)
	p.mu.Unlock()
	if sts, perr := p.VEM.Ports(ctx); perr == nil {
		for _, s := range sts {
			if strings.HasPrefix(s.Owner, prefix) {
				owners[s.Owner] = true
			}
		}
	}
	for o := range owners {
		if derr := p.VEM.DetachVSM(ctx, api.VSMDetachBody{Owner: o, Release: true}); derr != nil {
			p.log().Warn("release of a distributed switch port failed; the VSM keeps it", "owner", o, "err", derr)
			err = errors.Join(err, derr)
		}
	}
	return err
}

// PortGroups implements netseam.Ports: the host's own port groups, then
// the distributed switch's (marked with its name), sorted by name.
func (p *Ports) PortGroups() []api.PortGroup {
	out := p.Local.PortGroups()
	p.mu.Lock()
	st := p.status
	p.mu.Unlock()
	if st.Joined {
		for _, pp := range st.Profiles {
			if slices.ContainsFunc(out, func(pg api.PortGroup) bool { return pg.Name == pp.Name }) {
				continue
			}
			out = append(out, FromProfile(pp, st.SwitchName))
		}
	}
	slices.SortFunc(out, func(a, b api.PortGroup) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// FromProfile shows a VSM port profile as a port group.
func FromProfile(pp api.PortProfile, sw string) api.PortGroup {
	pg := api.PortGroup{Name: pp.Name, Shutdown: pp.Shutdown, System: pp.SystemVLANs != "",
		Ingress: pp.Ingress, Egress: pp.Egress, Switch: sw}
	if sw == "" {
		pg.Switch = "vsm"
	}
	if pp.Mode == api.ModeTrunk {
		pg.Trunk, pg.AllowedVLANs, pg.NativeVLAN = true, pp.AllowedVLANs, pp.NativeVLAN
	} else {
		pg.VLAN = pp.AccessVLAN
	}
	if ps := pp.PortSecurity; ps != nil {
		pg.MaxMACs, pg.Violation = ps.MaxMACs, ps.Violation
	}
	return pg
}

// Status is the host's link to its VSM.
func (p *Ports) Status(ctx context.Context) (api.VSMLinkStatus, error) { return p.Refresh(ctx) }

// Join hands the host to a VSM: the VEM stores the bundle and connects.
func (p *Ports) Join(ctx context.Context, j api.VSMJoin) error {
	if _, err := p.VEM.JoinVSM(ctx, j); err != nil {
		if p.IsInvalid != nil && p.IsInvalid(err) {
			return fmt.Errorf("%w: %w", netseam.ErrInvalid, err)
		}
		return err
	}
	_, err := p.Refresh(ctx)
	return err
}

// Leave takes the host off its VSM; the VMs on its port groups lose their
// ports' programming (refused while any VM uses one? the VEM decides).
func (p *Ports) Leave(ctx context.Context) error {
	if err := p.VEM.LeaveVSM(ctx); err != nil {
		return err
	}
	_, err := p.Refresh(ctx)
	return err
}

func (p *Ports) remember(vm string, nic int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vsmNICs == nil {
		p.vsmNICs = map[string]map[int]bool{}
	}
	if p.vsmNICs[vm] == nil {
		p.vsmNICs[vm] = map[int]bool{}
	}
	p.vsmNICs[vm][nic] = true
}

// macOf is the static MAC the VEM programs on port (its first), lower
// case; "" when unknown.
func (p *Ports) macOf(ctx context.Context, port string) string {
	sc, err := p.VEM.AppliedConfig(ctx)
	if err != nil {
		return ""
	}
	for _, pt := range sc.Ports {
		if pt.Name == port && len(pt.MACs) > 0 {
			return strings.ToLower(pt.MACs[0])
		}
	}
	return ""
}
