package vsm

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/igmp"
)

// IGMP snooping timers: a membership lasts the group membership interval
// of RFC 2236/3376 with default settings (2 x 125 s + 10 s) after its last
// report; a router port as long after its last query.
const (
	igmpMembership = 260 * time.Second
	igmpRouterPort = 260 * time.Second
	// igmpMaxPerModule bounds the entries one module's frames can make.
	igmpMaxPerModule = 4096
)

// igmpKey is a group of a VLAN; an invalid group is the VLAN's router
// ports (heard queries).
type igmpKey struct {
	vlan  int
	group netip.Addr
}

type igmpMember struct {
	module  int
	version int
	expires time.Time
}

// igmpTable is the IGMP snooping table the VEMs' relayed frames fill
// (packet channel, VEM-9): per VLAN, the groups with the ports that
// reported them, and the router ports. Like the CDP table it is not
// replicated to the standby: after a switchover it fills again within a
// query interval. The zero value is empty and ready.
type igmpTable struct {
	mu sync.Mutex
	m  map[igmpKey]map[string]igmpMember // by port
}

var errIGMPFull = fmt.Errorf("IGMP snooping table of the module full (%d entries)", igmpMaxPerModule)

// learn applies one message heard on module's port, in vlan, at now.
func (t *igmpTable) learn(module int, port string, vlan int, m igmp.Message, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[igmpKey]map[string]igmpMember{}
	}
	t.expireLocked(now)
	switch m.Kind {
	case igmp.Query:
		return t.setLocked(igmpKey{vlan: vlan}, port, igmpMember{module, m.Version, now.Add(igmpRouterPort)})
	case igmp.Report, igmp.Leave:
		for _, r := range m.Records {
			if igmp.LinkLocal(r.Group) {
				continue // flooded, never snooped
			}
			k := igmpKey{vlan, r.Group}
			if !r.Join {
				// A leave takes the port out at once: the VSM sends no
				// group-specific queries (as with fast leave).
				delete(t.m[k], port)
				if len(t.m[k]) == 0 {
					delete(t.m, k)
				}
				continue
			}
			if err := t.setLocked(k, port, igmpMember{module, m.Version, now.Add(igmpMembership)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *igmpTable) setLocked(k igmpKey, port string, e igmpMember) error {
	ports := t.m[k]
	if _, ok := ports[port]; !ok {
		n := 0
		for _, ps := range t.m {
			for _, o := range ps {
				if o.module == e.module {
					n++
				}
			}
		}
		if n >= igmpMaxPerModule {
			return errIGMPFull
		}
		if ports == nil {
			ports = map[string]igmpMember{}
			t.m[k] = ports
		}
	}
	ports[port] = e
	return nil
}

func (t *igmpTable) expireLocked(now time.Time) {
	for k, ports := range t.m {
		maps.DeleteFunc(ports, func(_ string, e igmpMember) bool { return !now.Before(e.expires) })
		if len(ports) == 0 {
			delete(t.m, k)
		}
	}
}

// forgetModule drops what a module's ports reported (it left the chassis).
func (t *igmpTable) forgetModule(module int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, ports := range t.m {
		maps.DeleteFunc(ports, func(_ string, e igmpMember) bool { return e.module == module })
		if len(ports) == 0 {
			delete(t.m, k)
		}
	}
}

// groups returns the table at now: per VLAN the router ports first, then
// the groups in address order.
func (t *igmpTable) groups(now time.Time) []cli.IGMPGroup {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	out := make([]cli.IGMPGroup, 0, len(t.m))
	for k, ports := range t.m {
		g := cli.IGMPGroup{VLAN: k.vlan, Group: k.group, Router: !k.group.IsValid()}
		for p, e := range ports {
			g.Ports = append(g.Ports, p)
			g.Version = max(g.Version, e.version)
		}
		slices.SortFunc(g.Ports, cli.CompareIfNames)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b cli.IGMPGroup) int {
		return cmp.Or(cmp.Compare(a.VLAN, b.VLAN), a.Group.Compare(b.Group))
	})
	return out
}

// IGMPGroups implements cli.Switch: the IGMP snooping table.
func (s *Server) IGMPGroups() []cli.IGMPGroup { return s.igmp.groups(s.o.Now()) }

// learnIGMP takes in an IGMP message a VEM relayed from port. The port
// must be the module's: one of its uplinks, or a vEth bound to a VM it
// runs. The VLAN is the frame's tag, or the port's access (or native) VLAN
// when untagged; a tag the port does not carry is refused.
func (s *Server) learnIGMP(slot int, port string, m igmp.Message) error {
	var profile string
	switch {
	case strings.HasPrefix(port, "Eth"):
		for _, u := range s.ports.Uplinks(slot) {
			if u.Port == port {
				profile = u.Profile
			}
		}
		if profile == "" {
			return fmt.Errorf("port %s is not an uplink of module %d", port, slot)
		}
	default:
		b, ok := s.ports.ByPort(port)
		if !ok || !b.Active || b.Module != slot {
			return fmt.Errorf("port %s is not a vEth of module %d", port, slot)
		}
		profile = b.Profile
	}
	s.mu.Lock()
	p := s.cfg.Profile(profile)
	var pp config.Profile
	if p != nil {
		pp = *p
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("port %s: profile %q is not configured", port, profile)
	}
	v := pp.VEM()
	vlan := m.VLAN
	switch {
	case vlan == 0 && v.Mode == api.ModeTrunk:
		vlan = max(v.NativeVLAN, 1)
	case vlan == 0:
		vlan = max(v.AccessVLAN, 1)
	case v.Mode != api.ModeTrunk || !pp.Carried().Has(vlan):
		return fmt.Errorf("port %s does not carry VLAN %d", port, vlan)
	}
	return s.igmp.learn(slot, port, vlan, m, s.o.Now())
}
