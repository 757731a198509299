package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// pipeConsole is a consoleDialer whose console is one end of a net.Pipe;
// the test plays the host on the other end.
type pipeConsole struct {
	host  net.Conn
	user  net.Conn
	write bool // what the last Console call asked for
	err   error
}

func newPipeConsole(t *testing.T) *pipeConsole {
	host, user := net.Pipe()
	t.Cleanup(func() { host.Close(); user.Close() })
	return &pipeConsole{host: host, user: user}
}

func (p *pipeConsole) Console(ctx context.Context, name string, write bool) (io.ReadWriteCloser, error) {
	p.write = write
	if p.err != nil {
		return nil, p.err
	}
	return p.user, nil
}

// received collects what the host side reads until it is closed.
func (p *pipeConsole) received() func() string {
	var b bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&b, p.host)
		close(done)
	}()
	return func() string {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			return "(host side still reading)"
		}
		return b.String()
	}
}

// lockedBuffer is a goroutine-safe bytes.Buffer.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRunConsoleDetach(t *testing.T) {
	for _, tc := range []struct {
		name      string
		readOnly  bool
		stdin     []string // chunks typed
		wantHost  string
		wantWrite bool
	}{
		{"detach key alone", false, []string{"ls\n", "\x1d"}, "ls\n", true},
		{"text before the key in one chunk", false, []string{"exit\x1dnot sent"}, "exit", true},
		{"read-only sends nothing", true, []string{"rm -rf /\n", "\x1d"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := newPipeConsole(t)
			got := pc.received()
			stdinR, stdinW := io.Pipe()
			defer stdinW.Close()
			var stdout, stderr lockedBuffer
			res := make(chan error, 1)
			go func() {
				res <- runConsole(context.Background(), pc, "vm1", consoleOpts{readOnly: tc.readOnly}, stdinR, &stdout, &stderr)
			}()
			for _, s := range tc.stdin {
				io.WriteString(stdinW, s)
			}
			select {
			case err := <-res:
				if err != nil {
					t.Fatalf("runConsole = %v, want nil after Ctrl-]", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("runConsole did not return after Ctrl-]")
			}
			if h := got(); h != tc.wantHost {
				t.Errorf("host received %q, want %q", h, tc.wantHost)
			}
			if pc.write != tc.wantWrite {
				t.Errorf("Console(write=%v), want write=%v", pc.write, tc.wantWrite)
			}
			if e := stderr.String(); !strings.Contains(e, "Connected to vm1's serial console") || !strings.Contains(e, "Ctrl-] to detach") || !strings.Contains(e, "Detached from vm1") {
				t.Errorf("stderr = %q, want the hint and the detach line", e)
			}
		})
	}
}

func TestRunConsoleOutputAndHostClose(t *testing.T) {
	pc := newPipeConsole(t)
	var stdout, stderr lockedBuffer
	res := make(chan error, 1)
	// stdin ends at once (a pipe, /dev/null): the output must keep coming.
	go func() {
		res <- runConsole(context.Background(), pc, "vm1", consoleOpts{}, strings.NewReader("uptime\n"), &stdout, &stderr)
	}()
	pc.host.SetDeadline(time.Now().Add(5 * time.Second))
	typed := make([]byte, len("uptime\n"))
	if _, err := io.ReadFull(pc.host, typed); err != nil || string(typed) != "uptime\n" {
		t.Errorf("host received %q, %v; want %q", typed, err, "uptime\n")
	}
	io.WriteString(pc.host, "guest: MARKER\r\n")
	io.WriteString(pc.host, "reboot: Power down\r\n")
	pc.host.Close() // the VM powers off
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("runConsole = %v, want nil when the host closes", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runConsole did not return when the host closed the console")
	}
	if want := "guest: MARKER\r\nreboot: Power down\r\n"; stdout.String() != want {
		t.Errorf("stdout = %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "closed by the host") {
		t.Errorf("stderr = %q, want a closing line", stderr.String())
	}
}

func TestRunConsoleRawMode(t *testing.T) {
	pc := newPipeConsole(t)
	pc.received()
	var stderr lockedBuffer
	var calls []string
	o := consoleOpts{raw: func() (func(), error) {
		calls = append(calls, "raw")
		return func() { calls = append(calls, "restore") }, nil
	}}
	err := runConsole(context.Background(), pc, "vm1", o, strings.NewReader("\x1d"), io.Discard, &stderr)
	if err != nil {
		t.Fatalf("runConsole = %v", err)
	}
	if got := strings.Join(calls, ","); got != "raw,restore" {
		t.Errorf("terminal calls = %s, want raw,restore", got)
	}
	// In raw mode a bare \n would not return the carriage.
	if !strings.Contains(stderr.String(), "\r\nDetached from vm1.\r\n") {
		t.Errorf("stderr = %q, want CRLF line ends in raw mode", stderr.String())
	}
}

func TestRunConsoleDialError(t *testing.T) {
	pc := newPipeConsole(t)
	pc.err = &client.APIError{Status: 409, Code: api.ErrConflict, Message: "console already has a writer"}
	raw := false
	o := consoleOpts{raw: func() (func(), error) { raw = true; return func() {}, nil }}
	err := runConsole(context.Background(), pc, "vm1", o, strings.NewReader(""), io.Discard, io.Discard)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 409 {
		t.Errorf("runConsole = %v, want the APIError", err)
	}
	if raw {
		t.Error("terminal put in raw mode although the console was refused")
	}
}

func TestRunConsoleContextEnds(t *testing.T) {
	pc := newPipeConsole(t)
	pc.received()
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- runConsole(ctx, pc, "vm1", consoleOpts{}, stdinR, io.Discard, io.Discard) }()
	cancel() // Ctrl-C when stdin is not a terminal
	select {
	case err := <-res:
		if err != nil {
			t.Errorf("runConsole = %v, want nil on interrupt", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runConsole did not return when ctx ended")
	}
}

// echoVNC is a vncDialer whose displays greet and echo.
type echoVNC struct{}

func (echoVNC) VNC(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	host, user := net.Pipe()
	go func() {
		defer host.Close()
		io.WriteString(host, "RFB 003.008\n")
		io.Copy(host, host)
	}()
	return user, nil
}

func TestServeVNC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- serveVNC(ctx, echoVNC{}, "vm1", ln, io.Discard) }()

	for i := range 2 { // each viewer connection gets its own display connection
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 12)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "RFB 003.008\n" {
			t.Errorf("viewer %d: greeting %q, %v", i, buf, err)
		}
		io.WriteString(c, "hi")
		if _, err := io.ReadFull(c, buf[:2]); err != nil || string(buf[:2]) != "hi" {
			t.Errorf("viewer %d: echo %q, %v", i, buf[:2], err)
		}
		c.Close()
	}
	cancel()
	select {
	case err := <-res:
		if err != nil {
			t.Errorf("serveVNC = %v, want nil when ctx ends", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveVNC did not return when ctx ended")
	}
}
