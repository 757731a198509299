package vsm_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vsm"
	"github.com/flashvisor/flashvisor/vsm/vsmtest"
)

const testToken = "test-token-0123456789abcdef"

const (
	hostA = "11111111-2222-3333-4444-555555555501"
	hostB = "11111111-2222-3333-4444-555555555502"
	hostC = "11111111-2222-3333-4444-555555555503"
	hostD = "11111111-2222-3333-4444-555555555504"
)

// wait is how long a test waits for one expected message.
const wait = 5 * time.Second

// testLogger writes to t.Log.
type testWriter struct {
	t  testing.TB
	mu sync.Mutex
	on bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// instance is a running server on ephemeral loopback ports.
type instance struct {
	s                      *vsm.Server
	control, api, sh, peer string
	stop                   func()
	// welcome is the last welcome join got.
	welcome api.VSMWelcomeBody
}

func start(t *testing.T, dir string, mod func(*vsm.Options)) *instance {
	t.Helper()
	return startOn(t, dir, "", mod)
}

// startOn is start with a peer listener on peerAddr ("": none; a port of
// 0 picks one).
func startOn(t *testing.T, dir, peerAddr string, mod func(*vsm.Options)) *instance {
	t.Helper()
	listenOn := func(addr string) net.Listener {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	listen := func() net.Listener { return listenOn("127.0.0.1:0") }
	l := vsm.Listeners{Control: listen(), API: listen(), SSH: listen()}
	peer := ""
	if peerAddr != "" {
		l.Peer = listenOn(peerAddr)
		peer = l.Peer.Addr().String()
	}
	tw := &testWriter{t: t, on: true}
	o := vsm.Options{
		StateDir: dir, Token: testToken, DomainID: 100,
		Advertise:         []string{l.Control.Addr().String()},
		Logger:            slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HeartbeatInterval: 100 * time.Millisecond,
		DeadInterval:      800 * time.Millisecond,
		SweepInterval:     50 * time.Millisecond,
		CmdlineFile:       "/nonexistent",
	}
	if mod != nil {
		mod(&o)
	}
	s, err := vsm.New(o)
	if err != nil {
		for _, x := range []net.Listener{l.Control, l.API, l.SSH, l.Peer} {
			if x != nil {
				x.Close()
			}
		}
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			tw.mu.Lock()
			tw.on = false // no t.Log after the test ends
			tw.mu.Unlock()
		})
	}
	t.Cleanup(stop)
	return &instance{s: s, control: l.Control.Addr().String(), api: l.API.Addr().String(), sh: l.SSH.Addr().String(), peer: peer, stop: stop}
}

func (in *instance) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(in.s.CACertPEM())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (in *instance) post(t *testing.T, path, token string, req, resp any) int {
	t.Helper()
	b, _ := json.Marshal(req)
	r, _ := http.NewRequest("POST", "https://"+in.api+path, bytes.NewReader(b))
	r.Header.Set("Authorization", "Bearer "+token)
	res, err := in.client().Do(r)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	if resp != nil && res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(resp); err != nil {
			t.Fatalf("POST %s: decode: %v", path, err)
		}
	}
	return res.StatusCode
}

// cli runs lines through the API and fails the test on an error.
func (in *instance) cli(t *testing.T, lines ...string) string {
	t.Helper()
	var res api.VSMCLIResponse
	if code := in.post(t, "/api/v1/cli", testToken, api.VSMCLIRequest{Commands: lines}, &res); code != http.StatusOK {
		t.Fatalf("CLI %q: status %d", lines, code)
	}
	if res.Error != "" {
		t.Fatalf("CLI %q: line %d: %s\n%s", lines, res.FailedLine, res.Error, res.Output)
	}
	return res.Output
}

// join gets a join bundle through the API and connects a fake VEM that
// says hello and must be welcomed into slot want.
func (in *instance) join(t *testing.T, host string, want int, uplinks ...api.VSMUplink) (*vsmtest.VEM, api.VSMConfigBody) {
	t.Helper()
	var j api.VSMJoin
	if code := in.post(t, "/api/v1/join", testToken, api.VSMJoinRequest{HostUUID: host, Uplinks: uplinks}, &j); code != http.StatusOK {
		t.Fatalf("join %s: status %d", host, code)
	}
	v, err := vsmtest.Dial(in.control, j)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	if err := v.Hello(api.VSMHelloBody{HostUUID: host, Hostname: "host-" + host[len(host)-2:], Uplinks: uplinks}); err != nil {
		t.Fatal(err)
	}
	w, err := v.Expect(api.VSMWelcome, wait)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	in.welcome = *w.Welcome
	if w.Welcome.Module != want {
		t.Fatalf("%s welcomed as module %d, want %d", host, w.Welcome.Module, want)
	}
	if w.Domain != 100 || w.Epoch == 0 {
		t.Errorf("welcome domain %d epoch %d, want 100 and an epoch", w.Domain, w.Epoch)
	}
	full, err := v.Expect(api.VSMConfigMsg, wait)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Config.Full || full.Config.Opaque == nil || full.Config.Opaque.DomainID != 100 {
		t.Fatalf("first config is not a full snapshot with opaque data: %+v", full.Config)
	}
	v.Send(api.VSMMessage{Type: api.VSMAck, Ack: &api.VSMAckBody{Generation: full.Config.Generation}})
	return v, *full.Config
}

// nextConfig waits for a config message, acks it and returns it.
func nextConfig(t *testing.T, v *vsmtest.VEM) api.VSMConfigBody {
	t.Helper()
	m, err := v.Expect(api.VSMConfigMsg, wait)
	if err != nil {
		t.Fatal(err)
	}
	v.Send(api.VSMMessage{Type: api.VSMAck, Ack: &api.VSMAckBody{Generation: m.Config.Generation}})
	return *m.Config
}

func hasProfile(c api.VSMConfigBody, name string) bool {
	for _, p := range c.Profiles {
		if p.Name == name {
			return true
		}
	}
	return false
}

func port(c api.VSMConfigBody, name string) (api.Port, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return api.Port{}, false
}

var uplinkProfile = []string{
	"configure terminal",
	"port-profile type ethernet uplink",
	"capability uplink",
	"switchport mode trunk",
	"state enabled",
	"end",
}

var webProfile = []string{
	"configure terminal",
	"port-profile type vethernet web",
	"switchport mode access",
	"switchport access vlan 100",
	"state enabled",
	"end",
}

func TestServerEndToEnd(t *testing.T) {
	dir := t.TempDir()
	in := start(t, dir, nil)
	in.cli(t, uplinkProfile...)
	eth1 := api.VSMUplink{Interface: "eth1", Profile: "uplink"}

	a, fullA := in.join(t, hostA, 3, eth1)
	b, _ := in.join(t, hostB, 4)
	if !slices.ContainsFunc(fullA.Ports, func(p api.Port) bool {
		return p.Kind == api.PortEth && strings.HasPrefix(p.Name, "Eth3/") && p.Interface == "eth1"
	}) {
		t.Errorf("module 3 snapshot lacks an Eth3/N port on eth1: %+v", fullA.Ports)
	}
	out := in.cli(t, "show module")
	for _, want := range []string{hostA, hostB, "active *"} {
		if !strings.Contains(out, want) {
			t.Errorf("show module lacks %q:\n%s", want, out)
		}
	}

	// A profile created and enabled through the CLI reaches both VEMs.
	in.cli(t, webProfile...)
	for _, v := range []*vsmtest.VEM{a, b} {
		c := nextConfig(t, v)
		if c.Full || c.Base+1 != c.Generation || !hasProfile(c, "web") {
			t.Errorf("after creating web: config %+v, want a delta with profile web", c)
		}
	}

	// Attach: the owner gets Veth1 and module 3 a delta with the port.
	owner := "vm:aaaaaaaa-0000-0000-0000-000000000001/nic0"
	a.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 7, Owner: owner, Profile: "web", MAC: "02:00:00:00:00:01", Description: "web01 nic 0"}})
	res, err := a.Expect(api.VSMAttachResult, wait)
	if err != nil {
		t.Fatal(err)
	}
	if res.AttachResult.Port != "Veth1" || res.AttachResult.RequestID != 7 {
		t.Fatalf("attach result %+v, want Veth1 for request 7", res.AttachResult)
	}
	c := nextConfig(t, a)
	if p, ok := port(c, "Veth1"); !ok || p.Profile != "web" || p.Owner != owner {
		t.Errorf("delta after attach: %+v, want Veth1 on web", c)
	}
	// A second attach of a second owner on an uplink profile is refused.
	a.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 8, Owner: "vm:bbbb/nic0", Profile: "uplink"}})
	if res, err := a.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Error == "" {
		t.Errorf("attach on an uplink profile: %+v, %v; want a refusal", res.AttachResult, err)
	}

	// Port reports show up in show interface.
	a.Send(api.VSMMessage{Type: api.VSMPortReport, Ports: &api.VSMPortReportBody{
		Ports: []api.PortStatus{{Name: "Veth1", Kind: api.PortVeth, State: api.PortUp, Counters: api.PortCounters{RxPackets: 4242}}},
		MACs:  []api.MACEntry{{VLAN: 100, MAC: "0200.0000.0001", Type: "static", Port: "Veth1"}},
	}})
	waitFor(t, func() bool { return strings.Contains(in.cli(t, "show mac address-table"), "0200.0000.0001") }, "MAC in show mac address-table")

	// Another domain's message is dropped and counted.
	before := in.s.Health().ForeignDomain
	a.Send(api.VSMMessage{Domain: 28, Type: api.VSMResync})
	waitFor(t, func() bool { return in.s.Health().ForeignDomain == before+1 }, "foreign domain counted")
	if m, err := a.Next(300 * time.Millisecond); err == nil {
		t.Errorf("domain 28 resync answered with %s", m.Type)
	}

	// A resync (our domain) gets a full snapshot at the next generation.
	a.Send(api.VSMMessage{Type: api.VSMResync})
	if c2 := nextConfig(t, a); !c2.Full || c2.Generation != c.Generation+1 {
		t.Errorf("resync: %+v, want full at generation %d", c2, c.Generation+1)
	}

	// A silent VEM is taken offline and comes back to the same slot.
	b.Silence()
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("silent VEM not disconnected")
	}
	waitFor(t, func() bool { return strings.Contains(in.cli(t, "show module"), "offline") }, "module 4 offline")
	b2, _ := in.join(t, hostB, 4)
	_ = b2

	// Restart: same state dir keeps slots, bindings and config.
	in.stop()
	a.Close()
	in2 := start(t, dir, nil)
	if in2.s.Epoch() <= in.s.Epoch() {
		t.Errorf("epoch after restart %d, want more than %d", in2.s.Epoch(), in.s.Epoch())
	}
	out = in2.cli(t, "show module")
	for _, want := range []string{hostA, hostB} {
		if !strings.Contains(out, want) {
			t.Errorf("after restart, show module lacks %q:\n%s", want, out)
		}
	}
	if out := in2.cli(t, "show running-config"); !strings.Contains(out, "port-profile type vethernet web") {
		t.Errorf("after restart, running config lacks web:\n%s", out)
	}
	a2, full := in2.join(t, hostA, 3, eth1)
	if p, ok := port(full, "Veth1"); !ok || p.Owner != owner {
		t.Errorf("after restart, module 3 snapshot lacks Veth1 of %s: %+v", owner, full.Ports)
	}
	a2.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 9, Owner: owner, Profile: "web", MAC: "02:00:00:00:00:01", Description: "web01 nic 0"}})
	if res, err := a2.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Port != "Veth1" {
		t.Errorf("re-attach after restart: %+v, %v; want Veth1", res.AttachResult, err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestChassisFull(t *testing.T) {
	in := start(t, t.TempDir(), func(o *vsm.Options) { o.MaxSlot = 4 })
	in.join(t, hostA, 3)
	// Host C's bundle reserves slot 4; the operator frees it again and
	// host B takes it, so C's hello finds a full chassis.
	var j api.VSMJoin
	if code := in.post(t, "/api/v1/join", testToken, api.VSMJoinRequest{HostUUID: hostC}, &j); code != http.StatusOK || j.Module != 4 {
		t.Fatalf("join bundle of host C: status %d, module %d; want 200 and module 4", code, j.Module)
	}
	in.cli(t, "configure terminal", "vem 4", "host id "+hostC, "no host id "+hostC)
	in.join(t, hostB, 4)
	// A new host's bundle is refused while every slot is bound.
	if code := in.post(t, "/api/v1/join", testToken, api.VSMJoinRequest{HostUUID: hostD}, nil); code != http.StatusConflict {
		t.Errorf("join bundle on a full chassis: status %d, want 409", code)
	}
	v, err := vsmtest.Dial(in.control, j)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.Hello(api.VSMHelloBody{HostUUID: hostC})
	m, err := v.Expect(api.VSMError, wait)
	if err != nil {
		t.Fatal(err)
	}
	if m.Error.Code != api.VSMErrChassisFull {
		t.Errorf("refusal code %q, want %q", m.Error.Code, api.VSMErrChassisFull)
	}
	select {
	case <-v.Done():
	case <-time.After(wait):
		t.Error("refused VEM's connection not closed")
	}
}

func TestHelloMustMatchCertificate(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	var j api.VSMJoin
	in.post(t, "/api/v1/join", testToken, api.VSMJoinRequest{HostUUID: hostA}, &j)
	v, err := vsmtest.Dial(in.control, j)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.Hello(api.VSMHelloBody{HostUUID: hostD})
	if m, err := v.Expect(api.VSMError, wait); err != nil || m.Error.Code != api.VSMErrBadMessage {
		t.Errorf("hello for another UUID: %+v, %v; want bad_message", m.Error, err)
	}
}

func TestAPIRefusesWrongToken(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	for _, tok := range []string{"", "wrong-token-0123456789", testToken + "x"} {
		if code := in.post(t, "/api/v1/cli", tok, api.VSMCLIRequest{Commands: []string{"show module"}}, nil); code != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, code)
		}
	}
	req, _ := http.NewRequest("GET", "https://"+in.api+"/api/v1/health", nil)
	res, err := in.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("health without token: %d, want 401", res.StatusCode)
	}
	var mods []api.VSMModule
	req, _ = http.NewRequest("GET", "https://"+in.api+"/api/v1/modules", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err = in.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(res.Body).Decode(&mods)
	res.Body.Close()
	if len(mods) != 1 || mods[0].Slot != 1 || mods[0].Status != "active *" {
		t.Errorf("GET modules = %+v, want the active VSM in slot 1", mods)
	}
}

func sshExec(addr, password, cmd string) (string, error) {
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: "admin", Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

func TestSSHExec(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	out, err := sshExec(in.sh, testToken, "show module")
	if err != nil {
		t.Fatalf("ssh show module: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Virtual Supervisor Module") {
		t.Errorf("ssh show module:\n%s", out)
	}
	if _, err := sshExec(in.sh, "wrong-password-0123", "show module"); err == nil {
		t.Error("ssh with a wrong password worked")
	}
	// A failing line exits non-zero.
	if _, err := sshExec(in.sh, testToken, "show bogus"); err == nil {
		t.Error("ssh exec of an invalid command exited 0")
	} else if ee := (*ssh.ExitError)(nil); !errors.As(err, &ee) {
		t.Errorf("ssh exec of an invalid command: %v, want an exit status", err)
	}
}

func TestSSHShell(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	c, err := ssh.Dial("tcp", in.sh, &ssh.ClientConfig{
		User: "admin", Auth: []ssh.AuthMethod{ssh.Password(testToken)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 40, 120, nil); err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	var out syncBuffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	// '?' prints help and keeps the line; the line then runs.
	fmt.Fprint(stdin, "show mod?")
	waitFor(t, func() bool {
		return strings.Contains(out.String(), "module") && strings.Count(out.String(), "vsm# ") >= 2
	}, "help after ?")
	fmt.Fprint(stdin, "ule\r")
	waitFor(t, func() bool { return strings.Contains(out.String(), "Virtual Supervisor Module") }, "show module output")
	fmt.Fprint(stdin, "exit\r")
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("exit did not close the session; output:\n%s", out.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A host's own vEths added after its hello come with each attach: the VSM
// does not hand out their numbers on that module.
func TestAttachSkipsLocalVeths(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	in.cli(t, webProfile...)
	a, _ := in.join(t, hostA, 3) // its hello lists no local vEths
	attach := func(id uint64, owner string, local []int) api.VSMAttachResultBody {
		t.Helper()
		a.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: id, Owner: owner, Profile: "web", LocalVeths: local}})
		for {
			m, err := a.Next(wait)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type == api.VSMAttachResult {
				return *m.AttachResult
			}
		}
	}
	if r := attach(1, "vm:web01/nic0", []int{1, 2}); r.Port != "Veth3" {
		t.Errorf("attach with local Veth1, Veth2 = %+v, want Veth3", r)
	}
	// Without the list: as last told.
	if r := attach(2, "vm:web02/nic0", nil); r.Port != "Veth4" {
		t.Errorf("attach without a list = %+v, want Veth4", r)
	}
}

// TestPortChannelAuto: `channel-group auto` on an uplink profile bundles a
// host's uplinks on it into a PoN in its programming (which the VEM's
// validation accepts), numbered around the host's own port-channels, and
// removing it dissolves the channel live.
func TestPortChannelAuto(t *testing.T) {
	dir := t.TempDir()
	in := start(t, dir, nil)
	in.cli(t, append(uplinkProfile[:len(uplinkProfile)-1], "channel-group auto mode active", "end")...)
	eth1 := api.VSMUplink{Interface: "eth1", Profile: "uplink"}
	eth2 := api.VSMUplink{Interface: "eth2", Profile: "uplink"}
	var j api.VSMJoin
	if code := in.post(t, "/api/v1/join", testToken, api.VSMJoinRequest{HostUUID: hostA}, &j); code != http.StatusOK {
		t.Fatalf("join: status %d", code)
	}
	v, err := vsmtest.Dial(in.control, j)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// The host's own switch has a Po1.
	if err := v.Hello(api.VSMHelloBody{HostUUID: hostA, Hostname: "esx1", Uplinks: []api.VSMUplink{eth1, eth2}, LocalPortChannels: []int{1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Expect(api.VSMWelcome, wait); err != nil {
		t.Fatal(err)
	}
	full := nextConfig(t, v)
	po, ok := port(full, "Po2")
	if !ok || po.ChannelMode != api.ChannelLACP || !slices.Equal(po.Members, []string{"Eth3/2", "Eth3/3"}) || po.Profile != "uplink" {
		t.Fatalf("snapshot ports %+v: want Po2 (LACP, Eth3/2 and Eth3/3; Po1 is the host's)", full.Ports)
	}
	sc := api.SwitchConfig{DomainID: 100, Module: 3, Profiles: full.Profiles, Ports: full.Ports}
	if _, err := vem.Validate(sc); err != nil {
		t.Errorf("the VEM refuses the programming: %v", err)
	}
	// The running configuration cannot be saved (a directory in its
	// place): the change fails, and the bundle stays as it was.
	sess := in.s.NewSession()
	for _, l := range []string{"configure terminal", "port-profile type ethernet uplink"} {
		if out, err := sess.Exec(l); err != nil {
			t.Fatalf("%s: %v %s", l, err, out)
		}
	}
	cfgFile := filepath.Join(dir, vsm.RunningConfigFile)
	saved, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfgFile); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cfgFile, "blocker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := sess.Exec("no channel-group"); err == nil {
		t.Fatalf("no channel-group without a running-config to save worked: %s", out)
	}
	if err := os.RemoveAll(cfgFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	v.Send(api.VSMMessage{Type: api.VSMResync})
	if again, ok := port(nextConfig(t, v), "Po2"); !ok || !slices.Equal(again.Members, po.Members) {
		t.Fatalf("after a change that was not saved: Po2 %+v (present %v), want it as before", again, ok)
	}

	in.cli(t, "configure terminal", "port-profile type ethernet uplink", "no channel-group", "end")
	c := nextConfig(t, v)
	if !slices.Contains(c.RemovePorts, "Po2") {
		t.Errorf("delta after no channel-group: %+v, want Po2 removed", c)
	}
}
