package vsmlink_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vemtest"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
	"github.com/flashvisor/flashvisor/vem/vsmlink/vsmlinktest"
)

const (
	hostUUID = "4c4c4544-0042-3510-8052-b4c04f4a3232"
	domain   = 7
	wait     = 5 * time.Second
)

// logBuf collects the link's log (to search it) and echoes it to t.Log.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fixture is a VEM (agent on the fake kernel, link) and a fake VSM.
type fixture struct {
	t      *testing.T
	k      *vemtest.Kernel
	agent  *vem.Agent
	store  *vem.Store
	dir    string
	vsm    *vsmlinktest.VSM
	link   *vsmlink.Link
	opts   vsmlink.Options
	log    *logBuf
	logger *slog.Logger
	stop   func()
	// packetMAC is the welcome's packet_mac ("": none).
	packetMAC string
}

// localConfig is the standalone switch hostd programs: management on a
// vmknic, uplink eth0 as Eth3/1.
func localConfig() api.SwitchConfig {
	return api.SwitchConfig{Module: 3,
		Profiles: []api.PortProfile{
			{Name: "pg-Management", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 10, SystemVLANs: "10", Enabled: true},
			{Name: "fv-uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "1,10", NativeVLAN: 1, CapabilityUplink: true, Enabled: true},
		},
		Ports: []api.Port{
			{Name: "Eth3/1", Kind: api.PortEth, Profile: "fv-uplink", Interface: "eth0"},
			{Name: "Veth1", Kind: api.PortVeth, Profile: "pg-Management", Interface: "vmk0", MACs: []string{"52:54:00:aa:00:01"}},
		}}
}

func vsmProfiles() []api.PortProfile {
	return []api.PortProfile{
		{Name: "dvs-uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "100-200", CapabilityUplink: true, Enabled: true},
		{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true},
	}
}

func veth(n int) api.Port {
	return api.Port{Name: fmt.Sprintf("Veth%d", n), Kind: api.PortVeth, Profile: "web", MACs: []string{fmt.Sprintf("52:54:00:00:00:%02x", n)}, Owner: fmt.Sprintf("vm%d nic 0", n)}
}

// snapshot is the VSM's programming of module: uplink eth1 and Veth10.
func snapshot(module int, gen uint64) *api.VSMConfigBody {
	return &api.VSMConfigBody{Generation: gen, Full: true, Profiles: vsmProfiles(),
		Ports: []api.Port{
			{Name: fmt.Sprintf("Eth%d/2", module), Kind: api.PortEth, Profile: "dvs-uplink", Interface: "eth1"},
			veth(10),
		}}
}

func newFixture(t *testing.T, change func(*vsmlink.Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, k: vemtest.New("eth0", "eth1", "vmk0"), dir: t.TempDir(), log: &logBuf{t: t}}
	f.logger = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.store = &vem.Store{Path: filepath.Join(f.dir, "vem", "programming.json")}
	f.newAgent()
	f.vsm = vsmlinktest.Start(t, vsmlinktest.NewCA(t), domain)
	f.opts = vsmlink.Options{
		JoinFile: filepath.Join(f.dir, "vem", "vsm-join.json"), StateFile: filepath.Join(f.dir, "vem", "vsm-state.json"),
		HostUUID: hostUUID, Hostname: "esx1", Version: "test", Log: f.logger,
		Heartbeat: 50 * time.Millisecond, Dead: 5 * time.Second, Welcome: 5 * time.Second,
		AttachTimeout: 5 * time.Second, Report: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	if change != nil {
		change(&f.opts)
	}
	return f
}

func (f *fixture) newAgent() {
	a, err := vem.New(vem.Options{Kernel: f.k, Store: f.store, Log: f.logger})
	if err != nil {
		f.t.Fatal(err)
	}
	f.agent = a
}

// start builds the link from its files and runs it until the test ends
// (or f.stop).
func (f *fixture) start() {
	f.t.Helper()
	o := f.opts
	o.Agent = f.agent
	l, err := vsmlink.New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	f.link = l
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	var once sync.Once
	f.stop = func() { once.Do(func() { cancel(); <-done }) }
	f.t.Cleanup(f.stop)
}

// joined programs the local switch, joins and runs the link.
func (f *fixture) joined() {
	f.t.Helper()
	if err := f.agent.SetConfig(context.Background(), localConfig()); err != nil {
		f.t.Fatal(err)
	}
	f.start()
	if err := f.link.Join(context.Background(), f.vsm.Join(f.t, api.VSMUplink{Interface: "eth1", Profile: "dvs-uplink"})); err != nil {
		f.t.Fatal(err)
	}
}

// connect accepts the VEM's connection and welcomes it as module.
func (f *fixture) connect(module int, epoch uint64) (*vsmlinktest.Conn, api.VSMHelloBody) {
	f.t.Helper()
	c := f.vsm.Accept(f.t, wait)
	c.Epoch = epoch
	m := c.Expect(f.t, api.VSMHello, wait)
	c.Send(f.t, api.VSMMessage{Type: api.VSMWelcome, Welcome: &api.VSMWelcomeBody{Module: module, SwitchName: "dvs", HeartbeatSeconds: 2, DeadSeconds: 8,
		PacketMAC: f.packetMAC}})
	return c, *m.Hello
}

func (f *fixture) config(c *vsmlinktest.Conn, body *api.VSMConfigBody) api.VSMAckBody {
	f.t.Helper()
	c.Send(f.t, api.VSMMessage{Type: api.VSMConfigMsg, Config: body})
	return *c.Expect(f.t, api.VSMAck, wait).Ack
}

func (f *fixture) hasLink(name string) bool {
	_, ok := f.k.State().Find(name)
	return ok
}

func (f *fixture) applied() api.SwitchConfig {
	f.t.Helper()
	sc, ok := f.agent.Config()
	if !ok {
		f.t.Fatal("the agent has no config")
	}
	return sc
}

func portNames(sc api.SwitchConfig) []string {
	var out []string
	for _, p := range sc.Ports {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHelloSnapshotDelta(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	if st := f.link.Status(); !st.Joined || st.Connected || st.DomainID != domain {
		t.Errorf("Status before connecting = %+v", st)
	}
	c, hello := f.connect(5, 1)
	if hello.HostUUID != hostUUID || hello.Hostname != "esx1" || hello.Module != 0 || hello.Generation != 0 ||
		!slices.Equal(hello.LocalVeths, []int{1}) || len(hello.Uplinks) != 1 || hello.Uplinks[0].Interface != "eth1" {
		t.Errorf("hello = %+v", hello)
	}
	if ack := f.config(c, snapshot(5, 1)); ack.Generation != 1 || ack.Error != "" {
		t.Fatalf("ack of the snapshot = %+v", ack)
	}
	sc := f.applied()
	if want := []string{"Eth5/1", "Eth5/2", "Veth1", "Veth10"}; sc.DomainID != domain || sc.Module != 5 || !slices.Equal(portNames(sc), want) {
		t.Errorf("applied = domain %d module %d ports %v, want domain %d module 5 ports %v", sc.DomainID, sc.Module, portNames(sc), domain, want)
	}
	if !f.hasLink("fvveth10") {
		t.Errorf("no tap fvveth10 for Veth10")
	}
	if local, ok := f.link.Local(); !ok || local.Ports[0].Name != "Eth3/1" || local.DomainID != 0 {
		t.Errorf("Local() = %+v, %v: want the local part as hostd gave it", local, ok)
	}
	st := f.link.Status()
	if !st.Connected || st.Module != 5 || st.Generation != 1 || st.Epoch != 1 || st.VSM != f.vsm.Addr {
		t.Errorf("Status = %+v", st)
	}
	// The applied config is reported.
	rep := c.Expect(t, api.VSMPortReport, wait).Ports
	if len(rep.Ports) != 4 || !slices.ContainsFunc(rep.MACs, func(m api.MACEntry) bool { return m.Port == "Veth10" }) {
		t.Errorf("report = %+v", rep)
	}

	// Deltas: add Veth11, then take it away again.
	if ack := f.config(c, &api.VSMConfigBody{Generation: 2, Base: 1, Ports: []api.Port{veth(11)}}); ack.Generation != 2 || ack.Error != "" {
		t.Fatalf("ack of delta 2 = %+v", ack)
	}
	if !f.hasLink("fvveth11") {
		t.Errorf("no tap fvveth11 after delta 2")
	}
	if ack := f.config(c, &api.VSMConfigBody{Generation: 3, Base: 2, RemovePorts: []string{"Veth11"}}); ack.Generation != 3 || ack.Error != "" {
		t.Fatalf("ack of delta 3 = %+v", ack)
	}
	if f.hasLink("fvveth11") {
		t.Errorf("fvveth11 still there after delta 3")
	}
	state, err := vsmlink.LoadState(f.opts.StateFile)
	if err != nil || state.Generation != 3 || state.Module != 5 || state.Epoch != 1 || len(state.VSM.Ports) != 2 {
		t.Errorf("stored state = %+v, %v", state, err)
	}

	// A delta whose merge fails validation is refused; nothing changes.
	bad := veth(12)
	bad.Profile = "nope"
	n := len(f.k.Applied)
	if ack := f.config(c, &api.VSMConfigBody{Generation: 4, Base: 3, Ports: []api.Port{bad}}); ack.Generation != 3 || !strings.Contains(ack.Error, "nope") {
		t.Errorf("ack of an invalid delta = %+v, want generation 3 and an error", ack)
	}
	if len(f.k.Applied) != n || f.link.Status().Generation != 3 {
		t.Errorf("an invalid delta changed something")
	}
}

func TestResync(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	c, _ := f.connect(5, 1)
	f.config(c, snapshot(5, 1))

	// A lost message (seq gap): the VEM asks for a snapshot.
	c.Skip()
	c.Send(t, api.VSMMessage{Type: api.VSMHeartbeat})
	c.Expect(t, api.VSMResync, wait)
	if ack := f.config(c, snapshot(5, 2)); ack.Generation != 2 || ack.Error != "" {
		t.Errorf("ack of the resync snapshot = %+v", ack)
	}

	// A delta on another generation is not applied: resync, no ack.
	c.Send(t, api.VSMMessage{Type: api.VSMConfigMsg, Config: &api.VSMConfigBody{Generation: 6, Base: 5, Ports: []api.Port{veth(11)}}})
	c.Expect(t, api.VSMResync, wait)
	if f.hasLink("fvveth11") || f.link.Status().Generation != 2 {
		t.Errorf("a delta on another base was applied")
	}
	snap := snapshot(5, 6)
	snap.Ports = append(snap.Ports, veth(11))
	if ack := f.config(c, snap); ack.Generation != 6 || !f.hasLink("fvveth11") {
		t.Errorf("ack of the second snapshot = %+v", ack)
	}
}

func TestForeignDomainDropped(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	c, _ := f.connect(5, 1)
	f.config(c, snapshot(5, 1))

	foreign := snapshot(5, 9)
	foreign.Ports = append(foreign.Ports, veth(11))
	c.SendRaw(t, api.VSMMessage{Domain: domain + 1, Seq: 1000, Type: api.VSMConfigMsg, Config: foreign})
	c.SendRaw(t, api.VSMMessage{Domain: domain + 1, Seq: 1001, Type: api.VSMAttachResult, AttachResult: &api.VSMAttachResultBody{RequestID: 1, Port: "Veth99"}})
	// The next message of our domain is answered, the foreign ones never.
	if ack := f.config(c, &api.VSMConfigBody{Generation: 2, Base: 1, Ports: []api.Port{veth(12)}}); ack.Generation != 2 {
		t.Errorf("ack = %+v, want generation 2 (the foreign config never acked)", ack)
	}
	if f.hasLink("fvveth11") || !f.hasLink("fvveth12") {
		t.Errorf("a foreign config was acted upon")
	}
	if st := f.link.Status(); st.ForeignDomain != 2 {
		t.Errorf("ForeignDomain = %d, want 2", st.ForeignDomain)
	}
	if rep := c.Expect(t, api.VSMPortReport, wait).Ports; rep.ForeignDomain != 2 {
		t.Errorf("report's ForeignDomain = %d, want 2", rep.ForeignDomain)
	}
}

func TestEpochFencing(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	c, _ := f.connect(5, 2)
	f.config(c, snapshot(5, 1))

	// The old active (epoch 1) tries to program us.
	c.Send(t, api.VSMMessage{Epoch: 1, Type: api.VSMConfigMsg, Config: &api.VSMConfigBody{Generation: 2, Base: 1, Ports: []api.Port{veth(11)}}})
	ack := c.Expect(t, api.VSMAck, wait).Ack
	if ack.Generation != 1 || ack.Error != "stale epoch 1 < 2" {
		t.Errorf("ack of a stale epoch = %+v", ack)
	}
	if f.hasLink("fvveth11") {
		t.Errorf("a stale epoch's config was applied")
	}
	if st := f.link.Status(); st.StaleEpoch != 1 || st.Epoch != 2 {
		t.Errorf("Status = %+v, want StaleEpoch 1, Epoch 2", st)
	}
	// A new active (epoch 3) takes over statefully: its delta applies and
	// raises the epoch.
	c.Epoch = 3
	if ack := f.config(c, &api.VSMConfigBody{Generation: 2, Base: 1, Ports: []api.Port{veth(11)}}); ack.Generation != 2 || ack.Error != "" {
		t.Errorf("ack of epoch 3 = %+v", ack)
	}
	if !f.hasLink("fvveth11") {
		t.Errorf("epoch 3's config not applied")
	}
	if rep := c.Expect(t, api.VSMPortReport, wait).Ports; rep.StaleEpoch != 1 {
		t.Errorf("report's StaleEpoch = %d, want 1", rep.StaleEpoch)
	}
	if st, err := vsmlink.LoadState(f.opts.StateFile); err != nil || st.Epoch != 3 {
		t.Errorf("stored epoch = %d, %v; want 3", st.Epoch, err)
	}
	// Epoch 2 is stale now.
	c.Send(t, api.VSMMessage{Epoch: 2, Type: api.VSMConfigMsg, Config: snapshot(5, 9)})
	if ack := c.Expect(t, api.VSMAck, wait).Ack; ack.Error != "stale epoch 2 < 3" {
		t.Errorf("ack = %+v", ack)
	}
}

// TestHeadlessAndReconnect: a silent VSM is given up after Dead; the VEM
// keeps forwarding (headless), redials, and the same snapshot on the new
// connection changes nothing in the kernel (VSM-8).
func TestHeadlessAndReconnect(t *testing.T) {
	f := newFixture(t, func(o *vsmlink.Options) { o.Dead = 300 * time.Millisecond })
	f.joined()
	c, _ := f.connect(5, 1)
	stopBeats := c.Heartbeats(t, 50*time.Millisecond)
	f.config(c, snapshot(5, 1))
	changes, applied := f.agent.Card().Changes, len(f.k.Applied)

	stopBeats()
	eventually(t, "headless", func() bool { return !f.link.Status().Connected })
	if st := f.link.Status(); !st.Joined || !strings.Contains(st.LastError, "silent") {
		t.Errorf("Status when headless = %+v", st)
	}
	if !f.hasLink("fvveth10") {
		t.Errorf("headless: Veth10's tap is gone")
	}

	c2 := f.vsm.Accept(t, wait)
	c2.Epoch = 1
	c2.Heartbeats(t, 50*time.Millisecond)
	hello := c2.Expect(t, api.VSMHello, wait).Hello
	if hello.Module != 5 || hello.Generation != 1 || hello.Epoch != 1 {
		t.Errorf("hello on reconnect = %+v", hello)
	}
	c2.Send(t, api.VSMMessage{Type: api.VSMWelcome, Welcome: &api.VSMWelcomeBody{Module: 5}})
	// The VSM sends the same programming at its next generation.
	if ack := f.config(c2, snapshot(5, 2)); ack.Generation != 2 || ack.Error != "" {
		t.Errorf("ack on reconnect = %+v", ack)
	}
	if got := f.agent.Card().Changes; got != changes || len(f.k.Applied) != applied {
		t.Errorf("reconnect with the same snapshot: %d kernel changes, want 0", len(f.k.Applied)-applied)
	}
	if !f.link.Status().Connected {
		t.Errorf("not connected after the reconnect")
	}
}

// TestRestartAndReboot: vemd restarting changes nothing; a host rebooting
// while headless restores every port (VSM's included) from the state
// partition before the link is up (VEM-8).
func TestRestartAndReboot(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	c, _ := f.connect(5, 4)
	f.config(c, snapshot(5, 1))
	f.stop()
	f.vsm.Close()

	// vemd restarts: same kernel.
	n := len(f.k.Applied)
	f.newAgent()
	if err := f.agent.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.start()
	time.Sleep(50 * time.Millisecond) // Run's restore and a failed dial
	if len(f.k.Applied) != n {
		t.Errorf("restart: %d kernel changes, want 0", len(f.k.Applied)-n)
	}
	st := f.link.Status()
	if !st.Joined || st.Connected || st.Module != 5 || st.Generation != 1 || st.Epoch != 4 {
		t.Errorf("Status after restart = %+v", st)
	}
	f.stop()

	// The host reboots: an empty kernel.
	f.k = vemtest.New("eth0", "eth1", "vmk0")
	f.newAgent()
	if err := f.agent.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.start()
	for _, l := range []string{"fvveth10", "fvvem0"} {
		if !f.hasLink(l) {
			t.Errorf("after reboot: no %s", l)
		}
	}
	if local, ok := f.link.Local(); !ok || len(local.Ports) != 2 {
		t.Errorf("Local after reboot = %+v, %v", local, ok)
	}
}

func TestLocalPartWhileJoined(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	c, _ := f.connect(5, 1)
	f.config(c, snapshot(5, 1))
	ctx := context.Background()

	// hostd adds a port group and a vmknic on it.
	local := localConfig()
	local.Profiles = append(local.Profiles, api.PortProfile{Name: "pg-Storage", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 20, Enabled: true})
	local.Ports = append(local.Ports, api.Port{Name: "Veth2", Kind: api.PortVeth, Profile: "pg-Storage"})
	if err := f.link.SetLocal(ctx, local); err != nil {
		t.Fatal(err)
	}
	if got, want := portNames(f.applied()), []string{"Eth5/1", "Eth5/2", "Veth1", "Veth10", "Veth2"}; !slices.Equal(got, want) {
		t.Errorf("applied ports = %v, want %v", got, want)
	}
	if got, _ := f.link.Local(); len(got.Ports) != 3 || got.Module != 3 {
		t.Errorf("Local = %+v", got)
	}
	// A name the VSM uses is refused, with the reason.
	clash := local
	clash.Profiles = append(slices.Clone(local.Profiles), api.PortProfile{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, Enabled: true})
	for _, err := range []error{f.link.CheckLocal(clash), f.link.SetLocal(ctx, clash)} {
		if !errors.Is(err, vem.ErrInvalid) || !errors.Is(err, vsmlink.ErrCollision) || !contains(err, "port-profile web") {
			t.Errorf("a colliding local part: %v", err)
		}
	}
	// The VSM using a local name is refused too.
	snap := snapshot(5, 2)
	snap.Ports = append(snap.Ports, api.Port{Name: "Veth2", Kind: api.PortVeth, Profile: "web"})
	if ack := f.config(c, snap); ack.Generation != 1 || !strings.Contains(ack.Error, "port Veth2") {
		t.Errorf("ack of a colliding snapshot = %+v", ack)
	}
}

func TestAttach(t *testing.T) {
	f := newFixture(t, func(o *vsmlink.Options) { o.AttachTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	a := api.VSMAttachBody{Owner: "vm:4c4c4544-0042/nic0", Profile: "web", MAC: "52:54:00:00:00:0c", Description: "web01 nic 0"}
	f.start()
	if _, err := f.link.Attach(ctx, a); !errors.Is(err, vem.ErrNotJoined) {
		t.Errorf("Attach before joining = %v, want ErrNotJoined", err)
	}
	if err := f.link.SetLocal(ctx, localConfig()); err != nil {
		t.Fatal(err)
	}
	if err := f.link.Join(ctx, f.vsm.Join(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.link.Attach(ctx, a); !errors.Is(err, vem.ErrHeadless) {
		t.Errorf("Attach before connecting = %v, want ErrHeadless", err)
	}
	c, _ := f.connect(5, 1)
	eventually(t, "connected", func() bool { return f.link.Status().Connected })

	type result struct {
		port string
		err  error
	}
	attach := func() chan result {
		ch := make(chan result, 1)
		go func() { p, err := f.link.Attach(ctx, a); ch <- result{p, err} }()
		return ch
	}
	ch := attach()
	m := c.Expect(t, api.VSMAttach, wait).Attach
	if m.Owner != a.Owner || m.Profile != "web" || m.MAC != a.MAC || m.RequestID == 0 {
		t.Errorf("attach sent = %+v", m)
	}
	// The host's own vEths as they are now (here vmk0's Veth1).
	if !slices.Equal(m.LocalVeths, []int{1}) {
		t.Errorf("attach sent local vEths %v, want [1]", m.LocalVeths)
	}
	c.Send(t, api.VSMMessage{Type: api.VSMAttachResult, AttachResult: &api.VSMAttachResultBody{RequestID: m.RequestID, Port: "Veth12"}})
	if r := <-ch; r.port != "Veth12" || r.err != nil {
		t.Errorf("Attach = %q, %v; want Veth12", r.port, r.err)
	}

	ch = attach()
	m = c.Expect(t, api.VSMAttach, wait).Attach
	c.Send(t, api.VSMMessage{Type: api.VSMAttachResult, AttachResult: &api.VSMAttachResultBody{RequestID: m.RequestID, Error: "port-profile web is not enabled"}})
	if r := <-ch; !errors.Is(r.err, vem.ErrRefused) || !contains(r.err, "not enabled") {
		t.Errorf("refused Attach = %q, %v", r.port, r.err)
	}

	ch = attach()
	c.Expect(t, api.VSMAttach, wait)
	if r := <-ch; !errors.Is(r.err, vem.ErrNoAnswer) {
		t.Errorf("unanswered Attach = %v, want ErrNoAnswer", r.err)
	}

	if _, err := f.link.Attach(ctx, api.VSMAttachBody{Owner: "nobody", Profile: "web"}); !errors.Is(err, vem.ErrBadRequest) {
		t.Errorf("Attach with a bad owner = %v", err)
	}
	if err := f.link.Detach(ctx, api.VSMDetachBody{Owner: a.Owner, Release: true}); err != nil {
		t.Fatal(err)
	}
	if d := c.Expect(t, api.VSMDetach, wait).Detach; d.Owner != a.Owner || !d.Release {
		t.Errorf("detach sent = %+v", d)
	}
}

func TestJoinLeave(t *testing.T) {
	f := newFixture(t, nil)
	f.joined()
	c, _ := f.connect(5, 1)
	f.config(c, snapshot(5, 1))
	ctx := context.Background()
	j := f.vsm.Join(t)

	// Another domain needs a leave first.
	other := j
	other.Opaque.DomainID = domain + 1
	if err := f.link.Join(ctx, other); !errors.Is(err, vem.ErrJoinedElsewhere) {
		t.Errorf("Join of another domain = %v", err)
	}
	if err := f.link.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.link.Status(); st.Joined || st.Connected || st.DomainID != 0 {
		t.Errorf("Status after Leave = %+v", st)
	}
	sc := f.applied()
	if want := []string{"Eth3/1", "Veth1"}; sc.DomainID != 0 || sc.Module != 3 || !slices.Equal(portNames(sc), want) {
		t.Errorf("programming after Leave = %+v, want the local part", sc)
	}
	if f.hasLink("fvveth10") {
		t.Errorf("Veth10 left behind")
	}
	for _, p := range []string{f.opts.JoinFile, f.opts.StateFile} {
		if _, err := vsmlink.LoadState(p); err == nil {
			t.Errorf("%s still there after Leave", p)
		}
	}
	if err := f.link.Leave(ctx); err != nil {
		t.Errorf("Leave when not joined = %v", err)
	}
	// Standalone again: the local part is the agent's.
	if err := f.link.SetLocal(ctx, localConfig()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.log.String(), "left the switch") {
		t.Errorf("no log of leaving")
	}
	if strings.Contains(f.log.String(), "PRIVATE KEY") || strings.Contains(f.log.String(), keyBody(j.Key)) {
		t.Errorf("the key is in the log")
	}
}

// TestSystemPortsBeforeFirstContact: a freshly joined host brings up its
// system uplinks at once, in the slot the VSM reserved for it (VEM-6), and
// the VSM's first snapshot, naming them the same, changes nothing of them.
func TestSystemPortsBeforeFirstContact(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.agent.SetConfig(context.Background(), localConfig()); err != nil {
		t.Fatal(err)
	}
	f.start()
	sysUplink := api.PortProfile{Name: "sys-uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "100-200,260",
		SystemVLANs: "260", CapabilityUplink: true, Enabled: true}
	sysVmk := api.PortProfile{Name: "sys-vmk", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 260, SystemVLANs: "260", Enabled: true}
	off := api.PortProfile{Name: "sys-off", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 261, SystemVLANs: "261"}
	j := f.vsm.Join(t, api.VSMUplink{Interface: "eth1", Profile: "sys-uplink"})
	j.Module = 4
	j.Opaque.SystemProfiles = []api.PortProfile{sysUplink, sysVmk, off}
	if err := f.link.Join(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	sc := f.applied()
	if want := []string{"Eth4/1", "Eth4/2", "Veth1"}; sc.Module != 4 || !slices.Equal(portNames(sc), want) {
		t.Fatalf("programming before any VSM contact: module %d ports %v, want module 4 ports %v", sc.Module, portNames(sc), want)
	}
	for _, p := range sc.Ports {
		if p.Name == "Eth4/2" && (p.Interface != "eth1" || p.Profile != "sys-uplink") {
			t.Errorf("Eth4/2 = %+v, want eth1 on sys-uplink", p)
		}
	}
	if !slices.ContainsFunc(sc.Profiles, func(p api.PortProfile) bool { return p.Name == "sys-vmk" }) ||
		slices.ContainsFunc(sc.Profiles, func(p api.PortProfile) bool { return p.Name == "sys-off" }) {
		t.Errorf("profiles %+v: want the enabled system profiles only", sc.Profiles)
	}
	if st := f.link.Status(); st.Connected || st.Module != 4 {
		t.Errorf("status before contact = %+v, want module 4, not connected", st)
	}
	if st, err := vsmlink.LoadState(f.opts.StateFile); err != nil || st.Module != 4 || len(st.VSM.Ports) != 1 || st.Generation != 0 {
		t.Errorf("stored state = %+v, %v; want module 4, the system uplink, generation 0 (boot restores it)", st, err)
	}

	// The VSM's snapshot: the same uplink and more profiles. eth1 is not
	// touched again.
	c, hello := f.connect(4, 1)
	if hello.Module != 4 {
		t.Errorf("hello module %d, want the reserved 4", hello.Module)
	}
	n := len(f.k.Applied)
	snap := &api.VSMConfigBody{Generation: 1, Full: true, Profiles: append(vsmProfiles(), sysUplink, sysVmk),
		Ports: []api.Port{{Name: "Eth4/2", Kind: api.PortEth, Profile: "sys-uplink", Interface: "eth1"}, veth(10)}}
	if ack := f.config(c, snap); ack.Generation != 1 || ack.Error != "" {
		t.Fatalf("ack = %+v", ack)
	}
	for _, ch := range f.k.Applied[n:] {
		if ch.Link.Name == "eth1" {
			t.Errorf("the VSM's snapshot changed the system uplink: %s", ch)
		}
	}
	if want := []string{"Eth4/1", "Eth4/2", "Veth1", "Veth10"}; !slices.Equal(portNames(f.applied()), want) {
		t.Errorf("ports after the snapshot %v, want %v", portNames(f.applied()), want)
	}

	// A bundle naming no slot (an older VSM) seeds nothing; a bad slot is
	// refused.
	j.Module = 67
	if _, err := vsmlink.ValidateJoin(j); err == nil {
		t.Errorf("join data with module 67 accepted")
	}
	j.Module = 0
	if p := vsmlink.SystemPart(j); len(p.Ports)+len(p.Profiles) != 0 {
		t.Errorf("SystemPart without a module = %+v, want nothing", p)
	}
}

// keyBody is a distinctive part of a PEM key.
func keyBody(pem string) string {
	lines := strings.Split(pem, "\n")
	return lines[1]
}

var _ io.Writer = (*logBuf)(nil)
