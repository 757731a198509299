package vsmlink_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vemclient"
)

// TestThroughAgentAPI joins, programs and leaves through vemd's API as
// hostd does; the key goes in once and never comes out (API, logs).
func TestThroughAgentAPI(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.agent.SetConfig(context.Background(), localConfig()); err != nil {
		t.Fatal(err)
	}
	f.start()
	sock := filepath.Join(t.TempDir(), "vem.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: (&vem.Server{Agent: f.agent, Local: f.link, VSM: f.link, HostUUID: hostUUID, Log: f.logger}).Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := vemclient.New(sock)
	ctx := context.Background()

	if card, err := c.Card(ctx); err != nil || card.Mode != api.SwitchStandalone || card.Headless {
		t.Errorf("card before joining = %+v, %v", card, err)
	}
	if _, err := c.AttachVSM(ctx, api.VSMAttachBody{Owner: "vm:a/nic0", Profile: "web"}); err == nil || vemclient.IsHeadless(err) {
		t.Errorf("AttachVSM before joining = %v, want not joined", err)
	}
	bad := f.vsm.Join(t)
	bad.Opaque.VSMs = nil
	if _, err := c.JoinVSM(ctx, bad); !vemclient.IsInvalid(err) {
		t.Errorf("JoinVSM without a VSM = %v, want invalid", err)
	}

	j := f.vsm.Join(t, api.VSMUplink{Interface: "eth1", Profile: "dvs-uplink"})
	st, err := c.JoinVSM(ctx, j)
	if err != nil || !st.Joined || st.DomainID != domain {
		t.Fatalf("JoinVSM = %+v, %v", st, err)
	}
	if fi, err := os.Stat(f.opts.JoinFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("join file: %v, %v; want mode 0600", fi, err)
	}
	// Headless until the VSM answers: no vEth can be created.
	if _, err := c.AttachVSM(ctx, api.VSMAttachBody{Owner: "vm:a/nic0", Profile: "web"}); !vemclient.IsHeadless(err) {
		t.Errorf("AttachVSM before connecting = %v, want headless", err)
	}
	conn, _ := f.connect(5, 1)
	f.config(conn, snapshot(5, 1))

	card, err := c.Card(ctx)
	if err != nil || card.Mode != api.SwitchVSM || card.DomainID != domain || card.Module != 5 || !card.Connected || card.Headless || card.VSM != f.vsm.Addr {
		t.Errorf("card when connected = %+v, %v", card, err)
	}
	if local, err := c.Config(ctx); err != nil || len(local.Ports) != 2 || local.Ports[0].Name != "Eth3/1" {
		t.Errorf("Config = %+v, %v; want the local part", local, err)
	}
	if merged, err := c.AppliedConfig(ctx); err != nil || len(merged.Ports) != 4 || merged.Module != 5 {
		t.Errorf("AppliedConfig = %+v, %v; want the merged programming", merged, err)
	}

	// Nothing hands the key back.
	for _, path := range []string{"/v1/vsm", "/v1/card", "/v1/config", "/v1/config?merged=1"} {
		body := get(t, sock, path)
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, keyBody(j.Key)) {
			t.Errorf("GET %s shows the key: %s", path, body)
		}
	}
	if err := c.LeaveVSM(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.VSMStatus(ctx); err != nil || st.Joined {
		t.Errorf("VSMStatus after leaving = %+v, %v", st, err)
	}
	if _, err := os.Stat(f.opts.JoinFile); !os.IsNotExist(err) {
		t.Errorf("join file after leaving: %v", err)
	}
	if logs := f.log.String(); strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, keyBody(j.Key)) {
		t.Errorf("the key is in the log")
	}
}

func get(t *testing.T, sock, path string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	resp, err := hc.Get("http://vem" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
