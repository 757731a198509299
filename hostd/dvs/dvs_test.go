package dvs

import (
	"context"
	"errors"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/google/go-cmp/cmp"
)

type fakeLocal struct {
	pgs      []api.PortGroup
	attached []string
	released []string
}

func (f *fakeLocal) Attach(ctx context.Context, vm string, nic int, pg, mac string) (string, error) {
	for _, p := range f.pgs {
		if p.Name == pg {
			f.attached = append(f.attached, vm+"/"+pg)
			return "fvveth1", nil
		}
	}
	return "", netseam.ErrNoPortGroup
}
func (f *fakeLocal) Detach(ctx context.Context, vm string, nic int) error { return nil }
func (f *fakeLocal) Release(ctx context.Context, vm string) error {
	f.released = append(f.released, vm)
	return nil
}
func (f *fakeLocal) PortGroups() []api.PortGroup { return f.pgs }

type fakeVEM struct {
	cfg      api.SwitchConfig
	st       api.VSMLinkStatus
	ports    []api.PortStatus
	attaches []api.VSMAttachBody
	detaches []api.VSMDetachBody
	next     int
}

func (f *fakeVEM) VSMStatus(ctx context.Context) (api.VSMLinkStatus, error) { return f.st, nil }
func (f *fakeVEM) AttachVSM(ctx context.Context, a api.VSMAttachBody) (string, error) {
	if !f.st.Connected {
		return "", errors.New("headless")
	}
	f.attaches = append(f.attaches, a)
	f.next++
	port := "Veth" + string(rune('0'+f.next+2))
	// The VSM's delta arrives: the VEM now has the port with its tap.
	f.ports = append(f.ports, api.PortStatus{Name: port, Interface: "fvveth" + port[4:], Owner: a.Owner, Profile: a.Profile})
	f.cfg.Ports = append(f.cfg.Ports, api.Port{Name: port, Kind: api.PortVeth, Profile: a.Profile, MACs: []string{a.MAC}, Owner: a.Owner})
	return port, nil
}
func (f *fakeVEM) DetachVSM(ctx context.Context, d api.VSMDetachBody) error {
	f.detaches = append(f.detaches, d)
	return nil
}
func (f *fakeVEM) Ports(ctx context.Context) ([]api.PortStatus, error) { return f.ports, nil }
func (f *fakeVEM) JoinVSM(ctx context.Context, j api.VSMJoin) (api.VSMLinkStatus, error) {
	f.st = api.VSMLinkStatus{Joined: true, Connected: true, DomainID: j.Opaque.DomainID, SwitchName: j.Opaque.SwitchName,
		Profiles: []api.PortProfile{{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true},
			{Name: "VM Network", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 5, Enabled: true}}}
	return f.st, nil
}
func (f *fakeVEM) LeaveVSM(ctx context.Context) error { f.st = api.VSMLinkStatus{}; return nil }
func (f *fakeVEM) AppliedConfig(ctx context.Context) (api.SwitchConfig, error) {
	return f.cfg, nil
}

func TestPorts(t *testing.T) {
	ctx := context.Background()
	local := &fakeLocal{pgs: []api.PortGroup{{Name: "VM Network"}}}
	vem := &fakeVEM{}
	p := &Ports{Local: local, VEM: vem}

	// Not joined: only the local port groups, and a VSM name is unknown.
	if _, err := p.Attach(ctx, "web01", 0, "web", "00:50:56:00:00:01"); !errors.Is(err, netseam.ErrNoPortGroup) {
		t.Errorf("Attach before joining = %v, want ErrNoPortGroup", err)
	}
	if err := p.Join(ctx, api.VSMJoin{Opaque: api.VSMOpaque{DomainID: 18, SwitchName: "n1k"}}); err != nil {
		t.Fatal(err)
	}
	got := p.PortGroups()
	want := []api.PortGroup{{Name: "VM Network"}, {Name: "web", VLAN: 100, Switch: "n1k"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PortGroups after join (-want +got):\n%s", diff)
	}
	// A VSM port group goes through the VSM; the host's own name wins.
	tap, err := p.Attach(ctx, "web 01", 1, "web", "00:50:56:00:00:AA")
	if err != nil || tap != "fvveth3" {
		t.Fatalf("Attach(web) = %q, %v; want fvveth3", tap, err)
	}
	if a := vem.attaches[0]; a.Owner != "vm:web_2001/nic1" || a.MAC != "00:50:56:00:00:aa" || a.Profile != "web" {
		t.Errorf("attach sent %+v", a)
	}
	if _, err := p.Attach(ctx, "db01", 0, "VM Network", "00:50:56:00:00:02"); err != nil || len(local.attached) != 1 {
		t.Errorf("Attach(VM Network) = %v, local attaches %v; want the host's own port group", err, local.attached)
	}
	// Headless, a vNIC whose port the VEM has (same profile and MAC)
	// powers on without the VSM; another MAC or profile needs the VSM.
	vem.st.Connected = false
	if tap, err := p.Attach(ctx, "web 01", 1, "web", "00:50:56:00:00:aa"); err != nil || tap != "fvveth3" || len(vem.attaches) != 1 {
		t.Errorf("headless Attach of a known vNIC = %q, %v (%d attaches); want fvveth3 without asking the VSM", tap, err, len(vem.attaches))
	}
	if _, err := p.Attach(ctx, "web 01", 1, "web", "00:50:56:00:00:bb"); err == nil {
		t.Errorf("headless Attach with another MAC succeeded")
	}
	vem.st.Connected = true

	// Release frees the VSM ports of the VM, found by owner.
	if err := p.Release(ctx, "web 01"); err != nil {
		t.Fatal(err)
	}
	if len(vem.detaches) != 1 || vem.detaches[0].Owner != "vm:web_2001/nic1" || !vem.detaches[0].Release {
		t.Errorf("detaches = %+v", vem.detaches)
	}
	// Headless: no new distributed port.
	vem.st.Connected = false
	if _, err := p.Attach(ctx, "new", 0, "web", "00:50:56:00:00:03"); err == nil {
		t.Errorf("Attach while headless succeeded")
	}
}

func TestOwner(t *testing.T) {
	for vm, want := range map[string]string{"web01": "vm:web01/nic0", "a b/c": "vm:a_20b_2fc/nic0"} {
		if got := Owner(vm, 0); got != want {
			t.Errorf("Owner(%q) = %q, want %q", vm, got, want)
		}
	}
}
