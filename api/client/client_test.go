package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
)

// server is a TLS 1.3 test server that checks the token.
func server(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/v1/host", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sekrit" {
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(api.Error{Code: api.ErrUnauthorized, Message: "no"})
			return
		}
		json.NewEncoder(w).Encode(api.Host{Hostname: "esx1"})
	})
	mux.HandleFunc("POST /api/v1/services/{name}/signal", func(w http.ResponseWriter, r *http.Request) {
		var req api.SignalRequest
		json.NewDecoder(r.Body).Decode(&req)
		if r.PathValue("name") != "vem" || req.Signal != "KILL" {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(api.Error{Code: api.ErrBadRequest, Message: "bad"})
			return
		}
		w.WriteHeader(202)
		json.NewEncoder(w).Encode(api.Accepted{Message: "ok"})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("up 1\n")) })
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "proxy says no", 502) })
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts, Fingerprint(ts.Certificate().Raw)
}

func TestPinning(t *testing.T) {
	ts, fp := server(t)
	addr := ts.Listener.Addr().String()
	ctx := context.Background()
	wrong := strings.Repeat("AB:", 31) + "AB"

	for _, tc := range []struct {
		name     string
		o        Options
		newErr   bool
		mismatch bool
	}{
		{"pinned", Options{Addr: addr, Fingerprint: fp}, false, false},
		{"pinned lowercase without colons", Options{Addr: addr, Fingerprint: strings.ToLower(strings.ReplaceAll(fp, ":", ""))}, false, false},
		{"wrong pin", Options{Addr: addr, Fingerprint: wrong}, false, true},
		{"wrong pin wins over insecure", Options{Addr: addr, Fingerprint: wrong, Insecure: true}, false, true},
		{"insecure", Options{Addr: addr, Insecure: true}, false, false},
		{"neither", Options{Addr: addr}, true, false},
		{"bad pin", Options{Addr: addr, Fingerprint: "AB:CD"}, true, false},
		{"no address", Options{Insecure: true}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.o)
			if tc.newErr {
				if err == nil {
					t.Fatalf("New(%+v) = nil error, want one", tc.o)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v) = %v", tc.o, err)
			}
			err = c.Healthz(ctx)
			if tc.mismatch {
				if !errors.Is(err, ErrFingerprintMismatch) {
					t.Errorf("Healthz() = %v, want ErrFingerprintMismatch", err)
				}
				if err != nil && !strings.Contains(err.Error(), fp) {
					t.Errorf("Healthz() = %v, want the presented fingerprint in the message", err)
				}
				return
			}
			if err != nil {
				t.Errorf("Healthz() = %v, want nil", err)
			}
		})
	}
}

func TestCalls(t *testing.T) {
	ts, fp := server(t)
	ctx := context.Background()
	c, err := New(Options{Addr: ts.Listener.Addr().String(), Token: "sekrit", Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Host(ctx)
	if err != nil || h.Hostname != "esx1" {
		t.Errorf("Host() = %+v, %v, want esx1", h, err)
	}
	if err := c.SignalService(ctx, "vem", "KILL"); err != nil {
		t.Errorf("SignalService(vem, KILL) = %v", err)
	}
	var ae *APIError
	if err := c.SignalService(ctx, "vem", "HUP"); !errors.As(err, &ae) || ae.Status != 400 || ae.Code != api.ErrBadRequest {
		t.Errorf("SignalService(vem, HUP) = %v, want APIError 400 bad_request", err)
	}
	if err := c.Reboot(ctx); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("Reboot() on a server without it = %v, want APIError 404", err)
	}
	if m, err := c.Metrics(ctx); err != nil || m != "up 1\n" {
		t.Errorf("Metrics() = %q, %v, want %q", m, err, "up 1\n")
	}
	if _, err := c.raw(ctx, "GET", "/broken", nil); !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "http_502" || ae.Message != "proxy says no" {
		t.Errorf("GET /broken = %#v, want APIError 502 http_502 with the text body", err)
	}

	bad, _ := New(Options{Addr: ts.Listener.Addr().String(), Token: "wrong", Fingerprint: fp})
	if _, err := bad.Host(ctx); !errors.As(err, &ae) || ae.Status != 401 || ae.Code != api.ErrUnauthorized {
		t.Errorf("Host() with a wrong token = %v, want APIError 401 unauthorized", err)
	}
}

func TestFetchFingerprint(t *testing.T) {
	ts, fp := server(t)
	got, err := FetchFingerprint(context.Background(), ts.Listener.Addr().String())
	if err != nil || got != fp {
		t.Errorf("FetchFingerprint() = %s, %v, want %s", got, err, fp)
	}
	if _, err := FetchFingerprint(context.Background(), "127.0.0.1:1"); err == nil {
		t.Error("FetchFingerprint(closed port) = nil error, want one")
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	canon := "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
	bare := strings.ReplaceAll(canon, ":", "")
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{canon, canon, false},
		{strings.ToLower(canon), canon, false},
		{bare, canon, false},
		{strings.ToLower(bare), canon, false},
		{"  " + canon + "\n", canon, false},
		{"SHA256:" + canon, canon, false},
		{"sha256:" + strings.ToLower(bare), canon, false},
		{"", "", true},
		{canon[:len(canon)-3], "", true}, // 31 bytes
		{canon + ":00", "", true},        // 33 bytes
		{strings.Replace(canon, "FF", "GG", 1), "", true},
		{bare[1:], "", true}, // odd length
	} {
		got, err := NormalizeFingerprint(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v, want %q (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzNormalizeFingerprint(f *testing.F) {
	f.Add("00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF")
	f.Add("sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	f.Add("::::")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeFingerprint(s)
		if err != nil {
			return
		}
		if len(got) != 32*3-1 || strings.ToUpper(got) != got {
			t.Fatalf("NormalizeFingerprint(%q) = %q, not canonical", s, got)
		}
		again, err := NormalizeFingerprint(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeFingerprint(%q) = %q, %v, want it unchanged", got, again, err)
		}
	})
}

func TestWithDefaultPort(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"10.0.2.15", "10.0.2.15:443", false},
		{"10.0.2.15:8443", "10.0.2.15:8443", false},
		{"esx1.example.com", "esx1.example.com:443", false},
		{"fd00::5", "[fd00::5]:443", false},
		{"[fd00::5]", "[fd00::5]:443", false},
		{"[fd00::5]:8443", "[fd00::5]:8443", false},
		{"", "", true},
		{":443", "", true},
		{"host:", "", true},
		{"https://host/", "", true},
		{"host:99999", "", true},
		{"host:https", "", true},
	} {
		got, err := WithDefaultPort(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("WithDefaultPort(%q) = %q, %v, want %q (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
