package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/console"
)

// consoleHost serves the real console handlers over TLS 1.3 with HTTP/2
// on offer, as hostd does, behind a bearer token check. It returns the
// server, its fingerprint, and QEMU's side of the serial chardev.
func consoleHost(t *testing.T) (*httptest.Server, string, net.Conn, *console.Hub) {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "serial.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	vnc, err := net.Listen("unix", filepath.Join(dir, "vnc.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vnc.Close() })
	go func() {
		for {
			c, err := vnc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "RFB 003.008\n")
				io.Copy(c, c)
			}()
		}
	}()

	hub := console.NewHub(console.UnixDialer(filepath.Join(dir, "serial.sock")), console.Options{})
	t.Cleanup(func() { hub.Close() })
	qemu, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qemu.Close() })

	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/vms/{name}/console", console.SerialHandler(func(name string) (*console.Hub, error) {
		if name != "vm1" {
			return nil, fmt.Errorf("%s: %w", name, console.ErrNoVM)
		}
		return hub, nil
	}, nil))
	mux.Handle("GET /api/v1/vms/{name}/vnc", console.VNCHandler(func(name string) (string, error) {
		return filepath.Join(dir, "vnc.sock"), nil
	}, nil))
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sekrit" {
			w.WriteHeader(401)
			io.WriteString(w, `{"code":"unauthorized","message":"no"}`)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts, Fingerprint(ts.Certificate().Raw), qemu, hub
}

func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	var got strings.Builder
	buf := make([]byte, 1024)
	for !strings.Contains(got.String(), want) {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("read %q, then %v; want %q", got.String(), err, want)
		}
	}
	return got.String()
}

func TestConsole(t *testing.T) {
	ts, fp, qemu, hub := consoleHost(t)
	addr := ts.Listener.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(Options{Addr: addr, Token: "sekrit", Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}

	io.WriteString(qemu, "guest: MARKER\n")
	for !strings.Contains(string(hub.Scrollback()), "MARKER") {
		time.Sleep(time.Millisecond)
	}
	con, err := c.Console(ctx, "vm1", true)
	if err != nil {
		t.Fatalf("Console(vm1, write) = %v", err)
	}
	defer con.Close()
	if got := readUntil(t, con, "MARKER\n"); got != "guest: MARKER\n" {
		t.Errorf("console output = %q, want the scrollback", got)
	}
	if _, err := io.WriteString(con, "poweroff\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("poweroff\n"))
	qemu.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(qemu, buf); err != nil || string(buf) != "poweroff\n" {
		t.Errorf("guest got %q, %v; want %q", buf, err, "poweroff\n")
	}

	// A second writer gets the host's refusal as an APIError.
	_, err = c.Console(ctx, "vm1", true)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("second writer: Console = %v, want an APIError 409", err)
	}
	ro, err := c.Console(ctx, "vm1", false)
	if err != nil {
		t.Fatalf("Console(vm1, read-only) = %v", err)
	}
	defer ro.Close()
	readUntil(t, ro, "MARKER\n")

	// Power off ends the stream with EOF after the last output.
	io.WriteString(qemu, "reboot: Power down\n")
	readUntil(t, con, "Power down\n")
	hub.Close()
	if b, err := io.ReadAll(con); err != nil {
		t.Errorf("after power off: ReadAll = %q, %v; want EOF", b, err)
	}
}

func TestConsoleErrors(t *testing.T) {
	ts, fp, _, _ := consoleHost(t)
	addr := ts.Listener.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wrong := strings.Repeat("AB:", 31) + "AB"
	for _, tc := range []struct {
		name     string
		o        Options
		vm       string
		status   int
		code     string
		mismatch bool
	}{
		{"unknown VM", Options{Addr: addr, Token: "sekrit", Fingerprint: fp}, "nope", 404, api.ErrNotFound, false},
		{"bad token", Options{Addr: addr, Token: "wrong", Fingerprint: fp}, "vm1", 401, api.ErrUnauthorized, false},
		{"wrong pin", Options{Addr: addr, Token: "sekrit", Fingerprint: wrong}, "vm1", 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			con, err := c.Console(ctx, tc.vm, false)
			if err == nil {
				con.Close()
				t.Fatalf("Console(%s) = nil error, want one", tc.vm)
			}
			if tc.mismatch {
				if !errors.Is(err, ErrFingerprintMismatch) {
					t.Errorf("Console = %v, want ErrFingerprintMismatch", err)
				}
				return
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
				t.Errorf("Console = %v, want APIError %d %s", err, tc.status, tc.code)
			}
		})
	}
}

func TestVNC(t *testing.T) {
	ts, fp, _, _ := consoleHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(Options{Addr: ts.Listener.Addr().String(), Token: "sekrit", Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.VNC(ctx, "vm1")
	if err != nil {
		t.Fatalf("VNC(vm1) = %v", err)
	}
	defer v.Close()
	if got := readUntil(t, v, "\n"); got != "RFB 003.008\n" {
		t.Errorf("greeting = %q, want the VNC server's", got)
	}
	io.WriteString(v, "RFB 003.008\n")
	if got := readUntil(t, v, "\n"); got != "RFB 003.008\n" {
		t.Errorf("echo = %q, want %q", got, "RFB 003.008\n")
	}
}
