package vem_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vemclient"
	"github.com/flashvisor/flashvisor/vem/vemtest"
)

// serve runs the agent's API on a unix socket, as vemd does, and returns a
// client for it.
func serve(t *testing.T, a *vem.Agent) *vemclient.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vem.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: (&vem.Server{Agent: a, HostUUID: "uuid-1", Hostname: "esx1"}).Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return vemclient.New(sock)
}

func TestServerThroughClient(t *testing.T) {
	ctx := context.Background()
	k := vemtest.New("eth0", "eth1", "eth2")
	store := &vem.Store{Path: filepath.Join(t.TempDir(), "vem", "programming.json") /* a directory that does not exist yet */}
	a, err := vem.New(vem.Options{Kernel: k, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, a)

	card, err := c.Card(ctx)
	if err != nil || card.Programmed || card.HostUUID != "uuid-1" || card.Mode != api.SwitchStandalone {
		t.Errorf("card before config = %+v, %v", card, err)
	}
	if _, err := c.Config(ctx); err == nil || !strings.Contains(err.Error(), api.ErrNotFound) {
		t.Errorf("config before any: %v, want not_found", err)
	}

	ports, err := c.SetConfig(ctx, testConfig())
	if err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	if len(ports) != 6 || ports[0].Name != "Eth3/1" {
		t.Errorf("ports after SetConfig = %+v", ports)
	}
	var veth1 api.PortStatus
	for _, p := range ports {
		if p.Name == "Veth1" {
			veth1 = p
		}
	}
	if veth1.Interface != "fvveth1" || veth1.VLANs != "100" || veth1.Mode != api.ModeAccess {
		t.Errorf("Veth1 = %+v", veth1)
	}
	got, err := c.Config(ctx)
	if err != nil || len(got.Ports) != 6 {
		t.Errorf("config = %+v, %v", got, err)
	}
	card, _ = c.Card(ctx)
	if !card.Programmed || card.Ports[api.PortVeth] != 2 || card.Ports[api.PortEth] != 3 || card.Changes == 0 || card.LastReconcile == "" {
		t.Errorf("card = %+v", card)
	}
	macs, err := c.MACs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v1 []api.MACEntry
	for _, m := range macs {
		if m.Port == "Veth1" {
			v1 = append(v1, m)
		}
	}
	if len(v1) != 1 || v1[0].Type != "static" || v1[0].VLAN != 100 || v1[0].MAC != "52:54:00:00:00:01" {
		t.Errorf("Veth1's MACs = %+v (all: %+v)", v1, macs)
	}

	// An invalid config is refused with the reason and changes nothing.
	bad := testConfig()
	bad.Ports[0].Profile = "nope"
	applied := len(k.Applied)
	if err := c.CheckConfig(ctx, bad); !vemclient.IsInvalid(err) {
		t.Errorf("dry run of an invalid config: %v", err)
	}
	other := testConfig()
	other.Ports = other.Ports[:1]
	if err := c.CheckConfig(ctx, other); err != nil {
		t.Errorf("dry run of a valid config: %v", err)
	}
	if len(k.Applied) != applied {
		t.Errorf("a dry run changed the kernel")
	}
	if _, err := c.SetConfig(ctx, bad); !vemclient.IsInvalid(err) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("invalid config: %v", err)
	}
	if len(k.Applied) != applied {
		t.Errorf("an invalid config changed the kernel")
	}

	// A fresh agent (vemd restarted, or the host rebooted) restores the
	// stored programming before serving, and changes nothing.
	a2, _ := vem.New(vem.Options{Kernel: k, Store: store})
	if err := a2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if len(k.Applied) != applied {
		t.Errorf("restore on an unchanged kernel applied %d changes", len(k.Applied)-applied)
	}
	card, _ = serve(t, a2).Card(ctx)
	if !card.Restored || !card.Programmed {
		t.Errorf("card after restore = %+v", card)
	}
}

func TestServerRefusesBadBodies(t *testing.T) {
	a, _ := vem.New(vem.Options{Kernel: vemtest.New()})
	sock := filepath.Join(t.TempDir(), "s")
	ln, _ := net.Listen("unix", sock)
	srv := &http.Server{Handler: (&vem.Server{Agent: a}).Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	for _, body := range []string{`{"module":3,"frob":1}`, `{"module":3}{}`, `{`, `{"module":"3"}`, `{"module":99}`} {
		req, _ := http.NewRequest("PUT", "http://vem/v1/config", strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("PUT %s = %d, want 400", body, resp.StatusCode)
		}
	}
	if _, ok := a.Config(); ok {
		t.Errorf("a bad body configured the agent")
	}
}

// fakeLink is a VSM link and local-config owner that records its calls.
type fakeLink struct {
	status  api.VSMLinkStatus
	local   api.SwitchConfig
	err     error // returned by Join, Leave, Attach, Detach, SetLocal
	joined  []api.VSMJoin
	calls   []string
	attachA api.VSMAttachBody
}

func (f *fakeLink) Status() api.VSMLinkStatus { return f.status }
func (f *fakeLink) Join(ctx context.Context, j api.VSMJoin) error {
	f.calls = append(f.calls, "join")
	f.joined = append(f.joined, j)
	return f.err
}
func (f *fakeLink) Leave(ctx context.Context) error { f.calls = append(f.calls, "leave"); return f.err }
func (f *fakeLink) Attach(ctx context.Context, a api.VSMAttachBody) (string, error) {
	f.calls = append(f.calls, "attach")
	f.attachA = a
	if f.err != nil {
		return "", f.err
	}
	return "Veth12", nil
}
func (f *fakeLink) Detach(ctx context.Context, d api.VSMDetachBody) error {
	f.calls = append(f.calls, "detach "+d.Owner)
	return f.err
}
func (f *fakeLink) Local() (api.SwitchConfig, bool) { return f.local, f.local.Module != 0 }
func (f *fakeLink) SetLocal(ctx context.Context, sc api.SwitchConfig) error {
	f.calls = append(f.calls, "set local")
	if f.err != nil {
		return f.err
	}
	f.local = sc
	return nil
}
func (f *fakeLink) CheckLocal(sc api.SwitchConfig) error {
	f.calls = append(f.calls, "check local")
	return f.err
}

func TestServerVSMRoutes(t *testing.T) {
	ctx := context.Background()
	a, _ := vem.New(vem.Options{Kernel: vemtest.New("eth0", "eth1", "eth2")})
	if err := a.SetConfig(ctx, testConfig()); err != nil {
		t.Fatal(err)
	}
	// Without a link: no /v1/vsm.
	if _, err := serve(t, a).VSMStatus(ctx); err == nil || !strings.Contains(err.Error(), api.ErrNotFound) {
		t.Errorf("VSMStatus without a link = %v, want not_found", err)
	}

	fl := &fakeLink{status: api.VSMLinkStatus{Joined: true, DomainID: 7, Module: 5, VSM: "10.0.0.5:2001", Connected: false}}
	sock := filepath.Join(t.TempDir(), "vem.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: (&vem.Server{Agent: a, Local: fl, VSM: fl}).Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := vemclient.New(sock)

	card, err := c.Card(ctx)
	if err != nil || card.Mode != api.SwitchVSM || card.DomainID != 7 || card.Module != 5 || card.VSM != "10.0.0.5:2001" || card.Connected || !card.Headless {
		t.Errorf("card of a headless VEM = %+v, %v", card, err)
	}
	fl.status.Connected = true
	if card, _ := c.Card(ctx); !card.Connected || card.Headless {
		t.Errorf("card of a connected VEM = %+v", card)
	}
	if st, err := c.VSMStatus(ctx); err != nil || !reflect.DeepEqual(st, fl.status) {
		t.Errorf("VSMStatus = %+v, %v", st, err)
	}

	j := api.VSMJoin{Opaque: api.VSMOpaque{DomainID: 7}, Key: "secret"}
	if _, err := c.JoinVSM(ctx, j); err != nil || len(fl.joined) != 1 || fl.joined[0].Key != "secret" {
		t.Errorf("JoinVSM = %v (joined %+v)", err, fl.joined)
	}
	if err := c.LeaveVSM(ctx); err != nil {
		t.Errorf("LeaveVSM = %v", err)
	}
	if port, err := c.AttachVSM(ctx, api.VSMAttachBody{RequestID: 9, Owner: "vm:x/nic0", Profile: "web"}); err != nil || port != "Veth12" || fl.attachA.Owner != "vm:x/nic0" {
		t.Errorf("AttachVSM = %q, %v", port, err)
	}
	if err := c.DetachVSM(ctx, api.VSMDetachBody{Owner: "vm:x/nic0"}); err != nil {
		t.Errorf("DetachVSM = %v", err)
	}

	// The local part goes through the link; ?merged=1 is the agent's.
	local := testConfig()
	local.Ports = local.Ports[:1]
	if _, err := c.SetConfig(ctx, local); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckConfig(ctx, local); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Config(ctx); err != nil || len(got.Ports) != 1 {
		t.Errorf("Config = %d ports, %v; want the local part's 1", len(got.Ports), err)
	}
	if got, err := c.AppliedConfig(ctx); err != nil || len(got.Ports) != 6 {
		t.Errorf("AppliedConfig = %d ports, %v; want the agent's 6", len(got.Ports), err)
	}
	want := []string{"join", "leave", "attach", "detach vm:x/nic0", "set local", "check local"}
	if !slices.Equal(fl.calls, want) {
		t.Errorf("calls = %q, want %q", fl.calls, want)
	}

	// Errors keep their meaning through the API.
	for _, tc := range []struct {
		err    error
		status int
		check  func(error) bool
	}{
		{fmt.Errorf("x: %w", vem.ErrHeadless), 503, vemclient.IsHeadless},
		{fmt.Errorf("x: %w", vem.ErrBadRequest), 400, vemclient.IsInvalid},
		{fmt.Errorf("x: %w", vem.ErrInvalid), 400, vemclient.IsInvalid},
		{vem.ErrNotJoined, 409, nil},
		{vem.ErrJoinedElsewhere, 409, nil},
		{vem.ErrRefused, 409, nil},
		{vem.ErrNoAnswer, 504, nil},
		{errors.New("disk full"), 500, nil},
	} {
		fl.err = tc.err
		_, err := c.AttachVSM(ctx, api.VSMAttachBody{Owner: "vm:x/nic0", Profile: "web"})
		var ve *vemclient.Error
		if !errors.As(err, &ve) || ve.Status != tc.status || (tc.check != nil && !tc.check(err)) {
			t.Errorf("AttachVSM with %v = %v, want HTTP %d", tc.err, err, tc.status)
		}
	}
	fl.err = nil
	// Strict bodies.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	for _, body := range []string{`{"opaque":{},"frob":1}`, `{}{}`, `{`} {
		req, _ := http.NewRequest("PUT", "http://vem/v1/vsm/join", strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("PUT /v1/vsm/join %s = %d, want 400", body, resp.StatusCode)
		}
	}
}
