package qemutest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// fakeHostAPI is a TLS server answering GET /api/v1/host like hostd once
// `unavailable` earlier requests got 503 (a host still starting).
func fakeHostAPI(t *testing.T, token string, unavailable int32) *httptest.Server {
	var n atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(api.Error{Code: api.ErrUnauthorized, Message: "bad token"})
		case n.Add(1) <= unavailable:
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(api.Error{Code: api.ErrUnavailable, Message: "starting"})
		case r.URL.Path == "/api/v1/host":
			json.NewEncoder(w).Encode(api.Host{Hostname: "fake1"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// sleepingVM starts a fake QEMU that runs until killed, with guest port 443
// "forwarded" to addr.
func sleepingVM(t *testing.T, addr string) *VM {
	qemu, _ := fakeQEMU(t, `exec sleep 1000`)
	vm := Start(t, "api", WithQEMU(qemu), WithStateDir(t.TempDir()), WithForward(443))
	vm.hostFwd[443] = strings.TrimPrefix(addr, "https://")
	return vm
}

func TestWaitAPIReady(t *testing.T) {
	token := RandomToken(t)
	srv := fakeHostAPI(t, token, 1)
	vm := sleepingVM(t, srv.URL)
	c, fp, err := vm.WaitAPI(ctxFor(t, 30*time.Second), 443, token)
	if err != nil {
		t.Fatalf("WaitAPI = %v", err)
	}
	if want := client.Fingerprint(srv.Certificate().Raw); fp != want {
		t.Errorf("WaitAPI fingerprint = %s, want %s", fp, want)
	}
	h, err := c.Host(ctxFor(t, 10*time.Second))
	if err != nil || h.Hostname != "fake1" {
		t.Errorf("client.Host() = %+v, %v, want hostname fake1", h, err)
	}
}

func TestWaitAPIFailsFast(t *testing.T) {
	srv := fakeHostAPI(t, "right-token-0123456789", 0)
	exitingQEMU, _ := fakeQEMU(t, `exit 7`)
	for _, tc := range []struct {
		name string
		vm   func() *VM
		port int
		want string
	}{
		{"wrong token", func() *VM { return sleepingVM(t, srv.URL) }, 443, "401"},
		{"not forwarded", func() *VM { return sleepingVM(t, srv.URL) }, 22, "not forwarded"},
		{"QEMU exits", func() *VM {
			return Start(t, "gone", WithQEMU(exitingQEMU), WithStateDir(t.TempDir()), WithForward(443))
		}, 443, "exited"},
	} {
		start := time.Now()
		_, _, err := tc.vm().WaitAPI(ctxFor(t, 60*time.Second), tc.port, "wrong-token-0123456789")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: WaitAPI error = %v, want one containing %q", tc.name, err, tc.want)
		}
		if el := time.Since(start); el > 15*time.Second {
			t.Errorf("%s: WaitAPI took %v, want it to give up at once", tc.name, el)
		}
	}
}
