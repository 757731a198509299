package vem_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
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
