package vsm_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/vsmtest"
)

// HA timers of the tests: heartbeats every 100 ms, takeover after 1 s.
const (
	peerBeat = 100 * time.Millisecond
	peerDead = time.Second
)

func haOpts(role, peer string) func(*vsm.Options) {
	return func(o *vsm.Options) {
		o.Role, o.PeerAddr = role, peer
		o.PeerHeartbeat, o.PeerDead, o.PairTimeout = peerBeat, peerDead, 5*time.Second
	}
}

// startPair starts a primary and a secondary that pairs with it (the
// secondary's peer address is via, or the primary's peer port), and waits
// until the primary is active with the secondary as its HA standby.
func startPair(t *testing.T, via func(primaryPeer string) string) (p, s *instance, dirP, dirS string) {
	t.Helper()
	dirP, dirS = t.TempDir(), t.TempDir()
	p = startOn(t, dirP, "127.0.0.1:0", haOpts(config.RolePrimary, ""))
	addr := p.peer
	if via != nil {
		addr = via(p.peer)
	}
	s = startOn(t, dirS, "127.0.0.1:0", haOpts(config.RoleSecondary, addr))
	waitFor(t, func() bool {
		rp, rs := p.s.Redundancy(), s.s.Redundancy()
		return rp.State == vsm.StateActive && rp.PeerState == "HA standby" &&
			rs.State == vsm.StateStandby && rs.PeerState == "Active"
	}, "the pair to form (primary active, secondary HA standby)")
	return p, s, dirP, dirS
}

// synced waits until the active's standby has applied its current state.
func synced(t *testing.T, active *instance) {
	t.Helper()
	waitFor(t, func() bool {
		r := active.s.Redundancy()
		return r.Revision != 0 && r.SyncedGen == r.Revision && strings.HasPrefix(r.Description, "HA synchronized")
	}, "the standby to be synchronized")
}

// cliFails runs lines through the API and returns the error shown.
func (in *instance) cliFails(t *testing.T, lines ...string) string {
	t.Helper()
	var res api.VSMCLIResponse
	if code := in.post(t, "/api/v1/cli", testToken, api.VSMCLIRequest{Commands: lines}, &res); code != http.StatusOK {
		t.Fatalf("CLI %q: status %d", lines, code)
	}
	if res.Error == "" {
		t.Fatalf("CLI %q worked, want an error:\n%s", lines, res.Output)
	}
	return res.Error
}

func (in *instance) bundle(t *testing.T, host string, uplinks ...api.VSMUplink) api.VSMJoin {
	t.Helper()
	var j api.VSMJoin
	if code := in.post(t, "/api/v1/join", testToken, api.VSMJoinRequest{HostUUID: host, Uplinks: uplinks}, &j); code != http.StatusOK {
		t.Fatalf("join %s: status %d", host, code)
	}
	return j
}

// expectRefusal says hello to addr and wants a not_active refusal.
func expectNotActive(t *testing.T, addr string, j api.VSMJoin, h api.VSMHelloBody) {
	t.Helper()
	v, err := vsmtest.Dial(addr, j)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer v.Close()
	v.Hello(h)
	m, err := v.Expect(api.VSMError, wait)
	if err != nil {
		t.Fatalf("hello to %s: %v; want a not_active refusal", addr, err)
	}
	if m.Error.Code != api.VSMErrNotActive {
		t.Errorf("hello to %s refused with %q, want %q", addr, m.Error.Code, api.VSMErrNotActive)
	}
}

func hasWeb(in *instance) bool {
	c := in.s.Config()
	return c.Profile("web") != nil
}

func TestHAPairSyncTakeoverRejoin(t *testing.T) {
	a, b, dirA, dirB := startPair(t, nil)
	// Pairing handed the secondary the primary's domain CA.
	caA, _ := os.ReadFile(filepath.Join(dirA, vsm.CACertFile))
	caB, _ := os.ReadFile(filepath.Join(dirB, vsm.CACertFile))
	if len(caA) == 0 || string(caA) != string(caB) {
		t.Fatal("the secondary does not have the primary's domain CA")
	}
	if st, err := os.Stat(filepath.Join(dirB, vsm.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secondary's CA key: %v, %v; want mode 0600", st, err)
	}
	if out := a.cli(t, "show module"); !strings.Contains(out, "ha-standby") {
		t.Errorf("active's show module lacks the standby in slot 2:\n%s", out)
	}

	// Configuration made on the active appears on the standby; the
	// standby refuses changes.
	a.cli(t, uplinkProfile...)
	a.cli(t, webProfile...)
	a.cli(t, "copy running-config startup-config")
	waitFor(t, func() bool { return hasWeb(b) }, "profile web on the standby")
	if got := b.s.Config().Redundancy; got != config.RoleSecondary {
		t.Errorf("standby's configured role = %q, want its own %q", got, config.RoleSecondary)
	}
	if msg := b.cliFails(t, "configure terminal", "hostname other"); !strings.Contains(msg, "standby") {
		t.Errorf("a change on the standby: %q, want a standby refusal", msg)
	}
	out := b.cli(t, "show system redundancy status")
	for _, want := range []string{"operational:   secondary", "Redundancy state:   Standby", "Other supervisor (sup-1)", "Supervisor state:   Active"} {
		if !strings.Contains(out, want) {
			t.Errorf("standby's show system redundancy status lacks %q:\n%s", want, out)
		}
	}

	// A VEM joins the active, gets a vEth; its last snapshot lists both
	// VSMs, the active first.
	eth1 := api.VSMUplink{Interface: "eth1", Profile: "uplink"}
	j := a.bundle(t, hostA, eth1)
	v, _ := a.join(t, hostA, 3, eth1)
	owner := "vm:aaaaaaaa-0000-0000-0000-000000000001/nic0"
	v.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 1, Owner: owner, Profile: "web", MAC: "02:00:00:00:00:01"}})
	if res, err := v.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Port != "Veth1" {
		t.Fatalf("attach: %+v, %v; want Veth1", res.AttachResult, err)
	}
	nextConfig(t, v)
	v.Send(api.VSMMessage{Type: api.VSMResync})
	last := nextConfig(t, v)
	if !last.Full || last.Opaque == nil || !cmp.Equal(last.Opaque.VSMs, []string{a.control, b.control}) {
		t.Fatalf("snapshot's VSMs = %v, want [%s %s]", last.Opaque, a.control, b.control)
	}
	if _, ok := port(last, "Veth1"); !ok {
		t.Fatalf("snapshot lacks Veth1: %+v", last.Ports)
	}
	synced(t, a)
	out = a.cli(t, "show system redundancy status")
	for _, want := range []string{"Internal state:   Active with HA standby", "Supervisor state:   HA standby", "HA synchronized"} {
		if !strings.Contains(out, want) {
			t.Errorf("active's show system redundancy status lacks %q:\n%s", want, out)
		}
	}
	hello := api.VSMHelloBody{HostUUID: hostA, Module: 3, Generation: last.Generation, Epoch: a.s.Epoch(), Uplinks: []api.VSMUplink{eth1}}
	// The standby does not program VEMs.
	expectNotActive(t, b.control, j, hello)

	// The active dies: the standby takes over within the dead interval.
	oldEpoch := a.s.Epoch()
	killed := time.Now()
	a.stop()
	select {
	case <-v.Done():
	case <-time.After(wait):
		t.Fatal("the dead active's VEM connection stays open")
	}
	waitFor(t, func() bool { return b.s.Redundancy().State == vsm.StateActive }, "the standby to take over")
	if took := time.Since(killed); took > peerDead+time.Second {
		t.Errorf("takeover took %s, want about the dead interval %s", took, peerDead)
	}
	if b.s.Epoch() <= oldEpoch {
		t.Fatalf("new active's epoch %d, want more than the old active's %d", b.s.Epoch(), oldEpoch)
	}

	// The VEM cycles through its VSM list (the dead one first) and the new
	// active gives it the same slot and the same programming: nothing to
	// change in its kernel. Only the generation moves on.
	v2, w, err := vsmtest.Connect(last.Opaque.VSMs, j, hello, wait)
	if err != nil {
		t.Fatalf("VEM reconnect: %v", err)
	}
	defer v2.Close()
	if w.Welcome.Module != 3 || w.Epoch != b.s.Epoch() {
		t.Errorf("welcome: module %d epoch %d, want 3 and %d", w.Welcome.Module, w.Epoch, b.s.Epoch())
	}
	first := nextConfig(t, v2)
	if !first.Full || first.Generation <= last.Generation {
		t.Errorf("first config after takeover: full %v generation %d, want a full snapshot after %d", first.Full, first.Generation, last.Generation)
	}
	if diff := cmp.Diff(last.Profiles, first.Profiles); diff != "" {
		t.Errorf("profiles after takeover differ (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(last.Ports, first.Ports); diff != "" {
		t.Errorf("ports after takeover differ (-before +after):\n%s", diff)
	}
	if first.Opaque == nil || len(first.Opaque.VSMs) != 2 || first.Opaque.VSMs[0] != b.control {
		t.Errorf("opaque VSMs after takeover = %v, want the new active %s first", first.Opaque, b.control)
	}
	// The owner keeps its vEth on the new active.
	v2.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 2, Owner: owner, Profile: "web", MAC: "02:00:00:00:00:01"}})
	if res, err := v2.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Port != "Veth1" {
		t.Errorf("re-attach on the new active: %+v, %v; want Veth1", res.AttachResult, err)
	}

	// The old active comes back with its old state: it finds the new
	// active and stays standby, with its (lower) epoch not raised.
	a2 := startOn(t, dirA, a.peer, haOpts(config.RolePrimary, ""))
	waitFor(t, func() bool {
		r := a2.s.Redundancy()
		return r.State == vsm.StateStandby && r.PeerState == "Active"
	}, "the old active to come back as standby")
	waitFor(t, func() bool { return b.s.Redundancy().PeerState == "HA standby" }, "the new active to see its standby")
	// Watch it for a few dead intervals: it never activates.
	for deadline := time.Now().Add(2 * peerDead); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st := a2.s.Redundancy().State; st != vsm.StateStandby {
			t.Fatalf("the restarted old active became %s", st)
		}
	}
	if a2.s.Epoch() != oldEpoch || a2.s.Epoch() >= b.s.Epoch() {
		t.Errorf("restarted old active's epoch %d, want its old %d, below the active's %d", a2.s.Epoch(), oldEpoch, b.s.Epoch())
	}
	// It programs nobody, and it gets the new active's state.
	expectNotActive(t, a2.control, j, hello)
	synced(t, b)
	if !hasWeb(a2) {
		t.Error("the restarted old active lacks the configuration")
	}
	if got := a2.s.Config().Redundancy; got != config.RolePrimary {
		t.Errorf("restarted primary's configured role = %q, want primary", got)
	}
}

// proxy forwards TCP connections to target until cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// setCut cuts (closing every forwarded connection) or heals the path.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func TestHASplitBrainHeals(t *testing.T) {
	var px *proxy
	a, b, _, _ := startPair(t, func(peer string) string { px = newProxy(t, peer); return px.ln.Addr().String() })
	a.cli(t, webProfile...)
	ja := a.bundle(t, hostA)
	jb := a.bundle(t, hostB)
	v1, _ := a.join(t, hostA, 3)
	synced(t, a)
	epochA := a.s.Epoch()

	// The peer link breaks but both VSMs live: the standby takes over
	// with a higher epoch while the old active still serves its VEM.
	px.setCut(true)
	waitFor(t, func() bool { return b.s.Redundancy().State == vsm.StateActive }, "the secondary to take over")
	if a.s.Redundancy().State != vsm.StateActive {
		t.Fatal("the partitioned primary stepped down without hearing a newer epoch")
	}
	if b.s.Epoch() <= epochA {
		t.Fatalf("takeover epoch %d, want more than %d", b.s.Epoch(), epochA)
	}
	// A VEM that reaches the new active follows its epoch; one that has
	// seen it is not served by the old active (and the old one learns it
	// is stale).
	v2, w, err := vsmtest.Connect([]string{b.control}, jb, api.VSMHelloBody{HostUUID: hostB}, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	nextConfig(t, v2)
	// Everything the old active still sends is stamped with its older
	// epoch: a VEM that has seen the new one refuses it (vsmlink keeps
	// the highest epoch it saw and refuses programming below it).
	v1.Send(api.VSMMessage{Type: api.VSMResync})
	if m, err := v1.Expect(api.VSMConfigMsg, wait); err != nil || m.Epoch != epochA || m.Epoch >= w.Epoch {
		t.Fatalf("old active's config: epoch %d (%v), want its epoch %d below the new active's %d", m.Epoch, err, epochA, w.Epoch)
	}

	// The partition heals: the older active hears the newer one and steps
	// down, dropping its VEM, which then finds the new active.
	px.setCut(false)
	waitFor(t, func() bool {
		r := a.s.Redundancy()
		return r.State == vsm.StateStandby && r.PeerState == "Active"
	}, "the old active to step down")
	select {
	case <-v1.Done():
	case <-time.After(wait):
		t.Fatal("the stepped-down VSM keeps its VEM connection")
	}
	waitFor(t, func() bool {
		r := b.s.Redundancy()
		return r.State == vsm.StateActive && r.PeerState == "HA standby"
	}, "the new active to see the old one as its standby")
	synced(t, b)
	hello := api.VSMHelloBody{HostUUID: hostA, Module: 3, Epoch: w.Epoch}
	expectNotActive(t, a.control, ja, hello)
	v3, _, err := vsmtest.Connect([]string{a.control, b.control}, ja, hello, wait)
	if err != nil {
		t.Fatalf("VEM after healing: %v", err)
	}
	v3.Close()
}

// A VSM of a pair that meets a VEM which has seen a newer epoch is stale:
// it refuses and steps down; with no active peer it takes over again
// after the dead interval above that epoch (a VSM whose state was lost).
func TestHAStaleEpochFromVEM(t *testing.T) {
	a := startOn(t, t.TempDir(), "127.0.0.1:0", haOpts(config.RolePrimary, ""))
	waitFor(t, func() bool { return a.s.Redundancy().State == vsm.StateActive }, "a lone primary to become active")
	if e := a.s.Epoch(); e != 1 {
		t.Errorf("first primary epoch = %d, want 1 (odd)", e)
	}
	j := a.bundle(t, hostA)
	hello := api.VSMHelloBody{HostUUID: hostA, Epoch: 6}
	expectNotActive(t, a.control, j, hello)
	if st := a.s.Redundancy().State; st != vsm.StateStandby {
		t.Fatalf("after a hello with a newer epoch the VSM is %s, want standby", st)
	}
	waitFor(t, func() bool { return a.s.Redundancy().State == vsm.StateActive }, "the lone VSM to take over again")
	if e := a.s.Epoch(); e != 7 {
		t.Errorf("epoch after retaking = %d, want 7 (odd, above 6)", e)
	}
	v, w, err := vsmtest.Connect([]string{a.control}, j, hello, wait)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if w.Epoch != 7 {
		t.Errorf("welcome epoch %d, want 7", w.Epoch)
	}
}

func TestHAPairingNeedsTheToken(t *testing.T) {
	a := startOn(t, t.TempDir(), "127.0.0.1:0", haOpts(config.RolePrimary, ""))
	o := vsm.Options{StateDir: t.TempDir(), Token: "another-token-0123456789", CmdlineFile: "/nonexistent", Console: io.Discard}
	haOpts(config.RoleSecondary, a.peer)(&o)
	if _, err := vsm.New(o); err == nil {
		t.Fatal("a secondary with another token paired")
	}
	if _, err := os.Stat(filepath.Join(o.StateDir, vsm.CAKeyFile)); err == nil {
		t.Error("a refused secondary stored a CA key")
	}
	o.PeerAddr = ""
	if _, err := vsm.New(o); err == nil {
		t.Error("a secondary without trust material and without a peer started")
	}
}

// `system switchover` hands the active role to the synchronized standby:
// it activates with a higher epoch, the old active steps down and drops
// its VEMs, which reconnect to the new active with their slot and their
// programming unchanged. Refused on the standby and without a standby.
func TestHASwitchover(t *testing.T) {
	a, b, _, _ := startPair(t, nil)
	a.cli(t, uplinkProfile...)
	a.cli(t, webProfile...)
	eth1 := api.VSMUplink{Interface: "eth1", Profile: "uplink"}
	j := a.bundle(t, hostA, eth1)
	v, _ := a.join(t, hostA, 3, eth1)
	v.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 1, Owner: "vm:web01/nic0", Profile: "web", MAC: "02:00:00:00:00:01"}})
	if res, err := v.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Port != "Veth1" {
		t.Fatalf("attach: %+v, %v", res.AttachResult, err)
	}
	nextConfig(t, v)
	v.Send(api.VSMMessage{Type: api.VSMResync})
	last := nextConfig(t, v)
	synced(t, a)

	if msg := b.cliFails(t, "system switchover"); !strings.Contains(msg, "standby") {
		t.Errorf("switchover on the standby: %q", msg)
	}
	oldEpoch := a.s.Epoch()
	if out := a.cli(t, "system switchover"); !strings.Contains(out, "Switchover started") {
		t.Errorf("system switchover said:\n%s", out)
	}
	waitFor(t, func() bool {
		return b.s.Redundancy().State == vsm.StateActive && a.s.Redundancy().State == vsm.StateStandby
	}, "the standby active and the old active standby")
	if b.s.Epoch() <= oldEpoch {
		t.Errorf("new active's epoch %d, want more than %d", b.s.Epoch(), oldEpoch)
	}
	select {
	case <-v.Done():
	case <-time.After(wait):
		t.Fatal("the old active kept its VEM connection")
	}
	hello := api.VSMHelloBody{HostUUID: hostA, Module: 3, Generation: last.Generation, Epoch: oldEpoch, Uplinks: []api.VSMUplink{eth1}}
	v2, w, err := vsmtest.Connect(last.Opaque.VSMs, j, hello, wait)
	if err != nil {
		t.Fatalf("VEM reconnect: %v", err)
	}
	defer v2.Close()
	if w.Welcome.Module != 3 || w.Epoch != b.s.Epoch() {
		t.Errorf("welcome: module %d epoch %d, want 3 and %d", w.Welcome.Module, w.Epoch, b.s.Epoch())
	}
	first := nextConfig(t, v2)
	if diff := cmp.Diff(last.Ports, first.Ports); diff != "" {
		t.Errorf("ports after the switchover differ (-before +after):\n%s", diff)
	}
	// And back: the new active's standby (the old active) is synchronized.
	synced(t, b)
	b.cli(t, "system switchover")
	waitFor(t, func() bool {
		return a.s.Redundancy().State == vsm.StateActive && b.s.Redundancy().State == vsm.StateStandby
	}, "the switchover back")

	solo := start(t, t.TempDir(), nil)
	if msg := solo.cliFails(t, "system switchover"); !strings.Contains(msg, "no standby") {
		t.Errorf("switchover without a standby: %q", msg)
	}
}

// A lost primary is replaced by a fresh one (empty state, the old one's
// peer address, the survivor's as its peer): it pairs with the surviving
// secondary, now active, never activates itself, becomes its HA standby
// with the whole configuration, and `system switchover` makes it active.
// Two primaries never pair. Until it has the survivor's state it never
// takes over, even when the peer link is slow to come.
func TestHAReplacePrimary(t *testing.T) {
	var px *proxy
	a, b, dirA, _ := startPair(t, func(peer string) string { px = newProxy(t, peer); return px.ln.Addr().String() })
	a.cli(t, uplinkProfile...)
	a.cli(t, webProfile...)
	synced(t, a)
	ca, _ := os.ReadFile(filepath.Join(dirA, vsm.CACertFile))
	a.stop()
	waitFor(t, func() bool { return b.s.Redundancy().State == vsm.StateActive }, "the secondary to take over")
	epochB := b.s.Epoch()

	// Another primary cannot pair with a primary.
	o := vsm.Options{StateDir: t.TempDir(), Token: testToken, CmdlineFile: "/nonexistent", Console: io.Discard}
	haOpts(config.RolePrimary, a.peer)(&o)
	other := startOn(t, t.TempDir(), "127.0.0.1:0", haOpts(config.RolePrimary, ""))
	o.PeerAddr = other.peer
	if _, err := vsm.New(o); err == nil || !strings.Contains(err.Error(), "both VSMs are primary") {
		t.Errorf("a primary pairing with a primary: %v, want a refusal", err)
	}

	// The replacement, at the old primary's peer address; the survivor's
	// peer link to it does not come up at first.
	px.setCut(true)
	dirN := t.TempDir()
	n := startOn(t, dirN, a.peer, haOpts(config.RolePrimary, b.peer))
	caN, _ := os.ReadFile(filepath.Join(dirN, vsm.CACertFile))
	if len(caN) == 0 || string(caN) != string(ca) {
		t.Fatal("the replacement primary does not have the domain CA")
	}
	for deadline := time.Now().Add(3 * peerDead); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st := n.s.Redundancy().State; st != vsm.StateStandby {
			t.Fatalf("the replacement primary became %s before it had the survivor's state", st)
		}
	}
	px.setCut(false)
	waitFor(t, func() bool {
		r := n.s.Redundancy()
		return r.State == vsm.StateStandby && r.PeerState == "Active" && b.s.Redundancy().PeerState == "HA standby"
	}, "the replacement to become the survivor's standby")
	synced(t, b)
	if !hasWeb(n) {
		t.Error("the replacement lacks the configuration")
	}
	for deadline := time.Now().Add(2 * peerDead); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st := n.s.Redundancy().State; st != vsm.StateStandby {
			t.Fatalf("the replacement primary became %s", st)
		}
	}
	if b.s.Epoch() != epochB {
		t.Errorf("the survivor's epoch moved from %d to %d", epochB, b.s.Epoch())
	}
	// The survivor hands the active role back.
	synced(t, b)
	b.cli(t, "system switchover")
	waitFor(t, func() bool {
		return n.s.Redundancy().State == vsm.StateActive && b.s.Redundancy().State == vsm.StateStandby
	}, "the replacement active after a switchover")
	if n.s.Epoch() <= epochB {
		t.Errorf("replacement's epoch %d, want above the survivor's %d", n.s.Epoch(), epochB)
	}
}
