package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// vsmServer plays a host's hostd and the VSM's API on one TLS server: the
// routes do not overlap.
func vsmServer(t *testing.T) (base []string, reqs func() []string) {
	const token = "tok-0123456789abcdef"
	var mu sync.Mutex
	var got []string
	joined := api.VSMLinkStatus{}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/host", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.Host{Hostname: "esx1", UUID: "4225e800-d334-720d-e73e-d3a8d500a201"})
	})
	mux.HandleFunc("POST /api/v1/join", func(w http.ResponseWriter, r *http.Request) {
		var req api.VSMJoinRequest
		json.NewDecoder(r.Body).Decode(&req)
		reply(w, 200, api.VSMJoin{Opaque: api.VSMOpaque{DomainID: 18, SwitchName: "n1k", VSMs: []string{"10.0.0.5:2001"}, Mode: "L3"},
			CACert: "CA", Cert: "CERT-" + req.HostUUID, Key: "KEY"})
	})
	mux.HandleFunc("POST /api/v1/vsm/join", func(w http.ResponseWriter, r *http.Request) {
		var j api.VSMJoin
		json.NewDecoder(r.Body).Decode(&j)
		mu.Lock()
		joined = api.VSMLinkStatus{Joined: true, Connected: true, DomainID: j.Opaque.DomainID, SwitchName: j.Opaque.SwitchName, Module: 3,
			VSM: "10.0.0.5:2001", Profiles: []api.PortProfile{{Name: "web"}}}
		mu.Unlock()
		reply(w, 200, joined)
	})
	mux.HandleFunc("GET /api/v1/vsm", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reply(w, 200, joined)
	})
	mux.HandleFunc("POST /api/v1/cli", func(w http.ResponseWriter, r *http.Request) {
		var req api.VSMCLIRequest
		json.NewDecoder(r.Body).Decode(&req)
		resp := api.VSMCLIResponse{FailedLine: -1}
		for i, l := range req.Commands {
			if l == "bogus" {
				resp.Output += "bogus\n^\n% Invalid command at '^' marker.\n"
				resp.Error, resp.FailedLine = "% Invalid command at '^' marker.", i
				break
			}
			resp.Output += "ran " + l + "\n"
		}
		reply(w, 200, resp)
	})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		mu.Lock()
		got = append(got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(bytes.TrimSpace(b))))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			reply(w, 401, api.Error{Code: api.ErrUnauthorized, Message: "missing or invalid bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	fp := client.Fingerprint(ts.Certificate().Raw)
	addr := ts.Listener.Addr().String()
	base = []string{"--host", addr, "--token", token, "--fingerprint", fp, "--vsm", addr, "--vsm-token", token, "--vsm-fingerprint", fp}
	return base, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func TestVSMJoinAndStatus(t *testing.T) {
	base, reqs := vsmServer(t)
	var out, errOut bytes.Buffer
	args := append([]string{"vsm", "join", "--uplink", "eth1=uplink", "--uplink", "eth2=uplink"}, base...)
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("vsm join: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "joined switch n1k, domain 18") || !strings.Contains(out.String(), "Module:") {
		t.Errorf("vsm join printed:\n%s", out.String())
	}
	var joinReq string
	for _, r := range reqs() {
		if strings.HasPrefix(r, "POST /api/v1/vsm/join ") {
			joinReq = r
		}
	}
	var j api.VSMJoin
	if err := json.Unmarshal([]byte(strings.TrimPrefix(joinReq, "POST /api/v1/vsm/join ")), &j); err != nil {
		t.Fatalf("join request %q: %v", joinReq, err)
	}
	if j.Cert != "CERT-4225e800-d334-720d-e73e-d3a8d500a201" || len(j.Uplinks) != 2 || j.Uplinks[1] != (api.VSMUplink{Interface: "eth2", Profile: "uplink"}) {
		t.Errorf("host got join bundle %+v; want the VSM's bundle for the host's UUID with both uplinks", j)
	}
	out.Reset()
	if err := run(context.Background(), append([]string{"vsm", "status"}, base...), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Joined:", "yes", "Domain:", "18", "Port groups from the VSM:", "web"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("vsm status lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), append([]string{"vsm", "join", "--uplink", "eth1"}, base...), io.Discard, io.Discard); exitCode(err) != 2 {
		t.Errorf("vsm join --uplink eth1 = %v, want a usage error", err)
	}
}

func TestVSMCLI(t *testing.T) {
	base, _ := vsmServer(t)
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"vsm", "cli", "show module", "show svs domain"}, base...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ran show module\nran show svs domain\n" {
		t.Errorf("vsm cli printed %q", out.String())
	}
	out.Reset()
	err := run(context.Background(), append([]string{"vsm", "cli", "conf t", "bogus"}, base...), &out, io.Discard)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), `line 2 ("bogus")`) || !strings.Contains(out.String(), "% Invalid command") {
		t.Errorf("vsm cli with a bad line = %v, output %q; want exit 1 naming line 2", err, out.String())
	}
}

func TestVSMDeployUsage(t *testing.T) {
	for _, args := range [][]string{
		{"vsm", "deploy", "--domain", "18", "--vsm-token", "tok-0123456789abcdef"},                                           // no datastore
		{"vsm", "deploy", "--datastore", "ds1", "--domain", "0", "--vsm-token", "tok-0123456789abcdef"},                      // domain
		{"vsm", "deploy", "--datastore", "ds1", "--domain", "18"},                                                            // token
		{"vsm", "deploy", "--datastore", "ds1", "--domain", "18", "--vsm-token", "tok-0123456789abcdef", "--memory", "1024"}, // VSM-1
		{"vsm", "deploy", "--datastore", "ds1", "--domain", "18", "--vsm-token", "tok-0123456789abcdef", "--role", "boss"},
		{"vsm", "deploy", "--datastore", "ds1", "--domain", "18", "--vsm-token", "tok-0123456789abcdef", "--ip", "10.0.0.300/24"},
		{"vsm", "bogus"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); exitCode(err) != 2 {
			t.Errorf("fvctl %q = %v, want a usage error", args, err)
		}
	}
}

func TestVSMSpec(t *testing.T) {
	s := VSMSpec("vsm", "ds1", "vsm-image/vsm", "console=ttyS0", 384, [3]string{"ctl", "mgmt", "pkt"})
	if s.VCPUs != 1 || s.MemoryMiB != 384 || len(s.NICs) != 3 || s.NICs[0].PortGroup != "ctl" || s.NICs[1].PortGroup != "mgmt" || s.NICs[2].PortGroup != "pkt" {
		t.Errorf("VSMSpec = %+v: want 1 vCPU, 384 MiB, NICs control, management, packet", s)
	}
	if s.KernelBoot == nil || s.KernelBoot.Kernel != "[ds1] vsm-image/vsm/vmlinuz" || !s.Autostart.Enabled || len(s.Disks) != 1 {
		t.Errorf("VSMSpec = %+v: want a direct kernel boot from the datastore, a state disk, autostart", s)
	}
}
