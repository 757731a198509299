package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/flashvisor/flashvisor/api"
)

// consoleServer mounts the handlers the way hostd does, for VMs "vm1"
// (running, console on hub) and "off" (powered off).
func consoleServer(t *testing.T, hub *Hub, vncPath string) *httptest.Server {
	t.Helper()
	hubs := func(name string) (*Hub, error) {
		switch name {
		case "vm1":
			return hub, nil
		case "off":
			return nil, fmt.Errorf("VM off: %w", ErrNoConsole)
		case "broken":
			return nil, errors.New("inventory is on fire")
		}
		return nil, fmt.Errorf("lookup %s: %w", name, ErrNoVM)
	}
	vncs := func(name string) (string, error) {
		switch name {
		case "vm1":
			return vncPath, nil
		case "gone":
			return filepath.Join(t.TempDir(), "vnc.sock"), nil
		case "off":
			return "", ErrNoConsole
		}
		return "", ErrNoVM
	}
	log := testLogger(t)
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/vms/{name}/console", SerialHandler(hubs, log))
	mux.Handle("GET /api/v1/vms/{name}/vnc", VNCHandler(vncs, log))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func dialWS(t *testing.T, ts *httptest.Server, path string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, ts.URL+path, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// wsReadUntil reads messages until their concatenation contains want.
func wsReadUntil(t *testing.T, ws *websocket.Conn, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		typ, p, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("websocket read %q, then %v; want %q", got.String(), err, want)
		}
		if typ != websocket.MessageBinary {
			t.Errorf("message type %v, want binary", typ)
		}
		got.Write(p)
	}
	return got.String()
}

func wsWrite(t *testing.T, ws *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageBinary, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestSerialHandler(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	qemu := connect(t, f, h)
	ts := consoleServer(t, h, "")
	write(t, qemu, "guest: MARKER\r\n")
	eventually(t, "the marker is in the scrollback", func() bool { return strings.Contains(string(h.Scrollback()), "MARKER") })

	w := dialWS(t, ts, "/api/v1/vms/vm1/console?write=true")
	ro := dialWS(t, ts, "/api/v1/vms/vm1/console")
	live := dialWS(t, ts, "/api/v1/vms/vm1/console?scrollback=false")
	for _, ws := range []*websocket.Conn{w, ro} {
		if got := wsReadUntil(t, ws, "MARKER\r\n"); got != "guest: MARKER\r\n" {
			t.Errorf("first output = %q, want the scrollback %q", got, "guest: MARKER\r\n")
		}
	}

	// Typing: the writer's bytes reach the guest, a reader's do not.
	wsWrite(t, ro, "ignored")
	wsWrite(t, w, "uname\n")
	if got := readFull(t, qemu, 6); got != "uname\n" {
		t.Errorf("chardev got %q, want %q", got, "uname\n")
	}
	write(t, qemu, "Linux\r\n")
	for i, ws := range []*websocket.Conn{w, ro, live} {
		if got := wsReadUntil(t, ws, "Linux\r\n"); got != "Linux\r\n" {
			t.Errorf("session %d read %q, want %q", i, got, "Linux\r\n")
		}
	}

	// A second writer is refused while the first is attached.
	resp := dialStatus(t, ts, "/api/v1/vms/vm1/console?write=1")
	if resp.status != http.StatusConflict || resp.code != api.ErrConflict {
		t.Errorf("second writer: %d %q, want %d %q", resp.status, resp.code, http.StatusConflict, api.ErrConflict)
	}
	w.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the writer role is free", func() bool {
		s, err := h.Attach(AttachOptions{Write: true})
		if err != nil {
			return false
		}
		s.Close()
		return true
	})

	// Power off: readers see a normal close after the last output.
	write(t, qemu, "reboot: Power down\r\n")
	wsReadUntil(t, ro, "Power down\r\n")
	h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, _, err := ro.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Errorf("read after power off = %v, want a normal closure", err)
	}
}

type status struct {
	status int
	code   string
}

// dialStatus makes a websocket request that must fail and returns the
// answer's status and API error code.
func dialStatus(t *testing.T, ts *httptest.Server, path string) status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, ts.URL+path, nil)
	if err == nil {
		ws.CloseNow()
		t.Fatalf("dial %s succeeded, want a refusal", path)
	}
	if resp == nil {
		t.Fatalf("dial %s: %v, and no HTTP answer", path, err)
	}
	var e api.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Errorf("dial %s: answer %d is not an api.Error: %v", path, resp.StatusCode, err)
	}
	return status{resp.StatusCode, e.Code}
}

func TestHandlerErrors(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	ts := consoleServer(t, h, "")
	for _, tc := range []struct {
		path string
		want status
	}{
		{"/api/v1/vms/nope/console", status{404, api.ErrNotFound}},
		{"/api/v1/vms/off/console", status{409, api.ErrConflict}},
		{"/api/v1/vms/broken/console", status{500, api.ErrInternal}},
		{"/api/v1/vms/vm1/console?write=maybe", status{400, api.ErrBadRequest}},
		{"/api/v1/vms/vm1/console?scrollback=", status{0, ""}}, // empty means default: accepted
		{"/api/v1/vms/nope/vnc", status{404, api.ErrNotFound}},
		{"/api/v1/vms/off/vnc", status{409, api.ErrConflict}},
		{"/api/v1/vms/gone/vnc", status{503, api.ErrUnavailable}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if tc.want.status == 0 {
				dialWS(t, ts, tc.path)
				return
			}
			if got := dialStatus(t, ts, tc.path); got != tc.want {
				t.Errorf("GET %s = %+v, want %+v", tc.path, got, tc.want)
			}
		})
	}

	// A plain GET (curl without upgrade) gets JSON, not a library's text.
	for _, path := range []string{"/api/v1/vms/vm1/console", "/api/v1/vms/vm1/vnc"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired || e.Code != api.ErrBadRequest {
			t.Errorf("plain GET %s = %d %q, want %d %q", path, resp.StatusCode, e.Code, http.StatusUpgradeRequired, api.ErrBadRequest)
		}
	}
}

// fakeVNC is a VNC server socket that greets and then echoes.
func fakeVNC(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vnc.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
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
	return path
}

func TestVNCHandler(t *testing.T) {
	ts := consoleServer(t, nil, fakeVNC(t))
	for _, tc := range []struct {
		name         string
		subprotocols []string
		want         string
	}{
		{"noVNC", []string{"binary"}, "binary"},
		{"no subprotocol", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := dialWS(t, ts, "/api/v1/vms/vm1/vnc", tc.subprotocols...)
			if got := ws.Subprotocol(); got != tc.want {
				t.Errorf("Subprotocol() = %q, want %q", got, tc.want)
			}
			if got := wsReadUntil(t, ws, "\n"); got != "RFB 003.008\n" {
				t.Errorf("greeting = %q, want the VNC server's", got)
			}
			wsWrite(t, ws, "RFB 003.008\n")
			wsWrite(t, ws, "\x01")
			if got := wsReadUntil(t, ws, "\x01"); got != "RFB 003.008\n\x01" {
				t.Errorf("echo = %q, want the bytes sent", got)
			}
		})
	}
}

func TestVNCHandlerDisplayCloses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vnc.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "RFB 003.008\n")
		c.Close() // QEMU exits
	}()
	ts := consoleServer(t, nil, path)
	ws := dialWS(t, ts, "/api/v1/vms/vm1/vnc", "binary")
	wsReadUntil(t, ws, "\n")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, _, err = ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Errorf("read after the display closed = %v, want a normal closure", err)
	}
}
