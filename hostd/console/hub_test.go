package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const timeout = 5 * time.Second

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger keeps the log and shows it when the test fails. It does not
// write to t.Log: handlers on hijacked connections may log after the test.
func testLogger(t testing.TB) *slog.Logger {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// eventually waits until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeChardev is QEMU's serial chardev in server mode: a unix socket that
// takes clients one after the other.
type fakeChardev struct {
	t     *testing.T
	path  string
	ln    net.Listener
	conns chan net.Conn
}

func newFakeChardev(t *testing.T) *fakeChardev {
	t.Helper()
	f := &fakeChardev{t: t, path: filepath.Join(t.TempDir(), "serial.sock")}
	f.listen()
	return f
}

func (f *fakeChardev) listen() {
	f.t.Helper()
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.ln = ln
	f.conns = make(chan net.Conn, 4)
	conns := f.conns
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.t.Cleanup(func() { c.Close() })
			conns <- c
		}
	}()
	f.t.Cleanup(func() { ln.Close() })
}

// accept returns the hub's connection as QEMU sees it.
func (f *fakeChardev) accept() net.Conn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(timeout):
		f.t.Fatal("hub did not connect to the chardev")
		return nil
	}
}

// connect waits until h is connected to f, and returns QEMU's side.
func connect(t *testing.T, f *fakeChardev, h *Hub) net.Conn {
	t.Helper()
	c := f.accept()
	eventually(t, "the hub is connected", h.Connected)
	return c
}

// stop is QEMU exiting: the socket and its listener go away.
func (f *fakeChardev) stop(c net.Conn) {
	f.ln.Close() // removes the socket file; first, so the hub cannot redial
	c.Close()
}

func newTestHub(t *testing.T, f *fakeChardev, o Options) *Hub {
	t.Helper()
	o.Log = testLogger(t)
	if o.MaxBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	}
	h := NewHub(UnixDialer(f.path), o)
	t.Cleanup(func() { h.Close() })
	return h
}

func attach(t *testing.T, h *Hub, o AttachOptions) *Session {
	t.Helper()
	s, err := h.Attach(o)
	if err != nil {
		t.Fatalf("Attach(%+v) = %v", o, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readUntil reads r until what it got contains want, and returns all of it.
func readUntil(t *testing.T, r io.ReadCloser, want string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 1024)
		for !strings.Contains(b.String(), want) {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("read %q, then the stream ended; want %q in it", s, want)
		}
		return s
	case <-time.After(timeout):
		r.Close()
		t.Fatalf("read %q; timed out waiting for %q", <-got, want)
		return ""
	}
}

// readFull reads exactly n bytes from c.
func readFull(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes from the chardev: got %q, %v", n, buf, err)
	}
	return string(buf)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func TestHubFanOutAndScrollback(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	qemu := connect(t, f, h)

	write(t, qemu, "BIOS\r\nguest: MARKER-1\r\n")
	// The hub must have read the boot output before late readers attach.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := h.WaitFor(ctx, regexp.MustCompile(`MARKER-1`)); err != nil {
		t.Fatal(err)
	}

	late := attach(t, h, AttachOptions{Scrollback: true})
	late2 := attach(t, h, AttachOptions{Scrollback: true})
	live := attach(t, h, AttachOptions{Scrollback: false})
	write(t, qemu, "login: ")

	for _, tc := range []struct {
		name string
		s    *Session
		want string
	}{
		{"scrollback", late, "BIOS\r\nguest: MARKER-1\r\nlogin: "},
		{"scrollback again", late2, "BIOS\r\nguest: MARKER-1\r\nlogin: "},
		{"live only", live, "login: "},
	} {
		if got := readUntil(t, tc.s, "login: "); got != tc.want {
			t.Errorf("%s: session read %q, want %q", tc.name, got, tc.want)
		}
	}
	if got, want := string(h.Scrollback()), "BIOS\r\nguest: MARKER-1\r\nlogin: "; got != want {
		t.Errorf("Scrollback() = %q, want %q", got, want)
	}
}

func TestHubScrollbackKeepsTheLatest(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{Scrollback: 8})
	qemu := connect(t, f, h)
	s := attach(t, h, AttachOptions{})
	write(t, qemu, "0123456789abcdef")
	readUntil(t, s, "f")
	if got, want := string(h.Scrollback()), "89abcdef"; got != want {
		t.Errorf("Scrollback() = %q, want %q", got, want)
	}
}

func TestHubOneWriter(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	qemu := connect(t, f, h)

	w := attach(t, h, AttachOptions{Write: true})
	ro := attach(t, h, AttachOptions{})
	if !w.Writer() || ro.Writer() {
		t.Errorf("Writer() = %v, %v; want true, false", w.Writer(), ro.Writer())
	}
	if _, err := h.Attach(AttachOptions{Write: true}); !errors.Is(err, ErrWriterTaken) {
		t.Errorf("second writer: Attach = %v, want ErrWriterTaken", err)
	}
	if _, err := ro.Write([]byte("x")); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Write = %v, want ErrReadOnly", err)
	}
	if _, err := w.Write([]byte("root\n")); err != nil {
		t.Fatalf("writer Write = %v", err)
	}
	if got := readFull(t, qemu, 5); got != "root\n" {
		t.Errorf("chardev got %q, want %q", got, "root\n")
	}

	// The role frees up when the writer leaves.
	w.Close()
	w2 := attach(t, h, AttachOptions{Write: true})
	if _, err := w2.Write([]byte("ls\n")); err != nil {
		t.Fatalf("new writer Write = %v", err)
	}
	if got := readFull(t, qemu, 3); got != "ls\n" {
		t.Errorf("chardev got %q, want %q", got, "ls\n")
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}

func TestHubSlowReaderDoesNotBlock(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{Scrollback: 16, ReaderBuffer: 64})
	qemu := connect(t, f, h)

	slow := attach(t, h, AttachOptions{}) // never reads until the end
	fast := attach(t, h, AttachOptions{})

	// The fast reader keeps pace line by line; the slow one never reads.
	var all strings.Builder
	for i := range 100 {
		line := strings.Repeat(string(rune('a'+i%26)), 9) + "\n"
		all.WriteString(line)
		write(t, qemu, line)
		if got := readUntil(t, fast, "\n"); got != line {
			t.Fatalf("fast reader got %q, want %q", got, line)
		}
	}
	if slow.Lost() == 0 {
		t.Errorf("slow reader Lost() = 0, want the overflow counted")
	}
	got := readUntil(t, slow, all.String()[all.Len()-10:])
	if want := all.String()[all.Len()-64:]; got != want {
		t.Errorf("slow reader kept %q, want the latest 64 bytes %q", got, want)
	}
	if got, want := slow.Lost()+64, int64(all.Len()); got != want {
		t.Errorf("Lost()+kept = %d, want %d", got, want)
	}
}

func TestHubReconnects(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	qemu := connect(t, f, h)
	r := attach(t, h, AttachOptions{})
	w := attach(t, h, AttachOptions{Write: true})

	write(t, qemu, "first boot\n")
	readUntil(t, r, "first boot\n")

	// QEMU exits and a new one starts on the same path.
	f.stop(qemu)
	eventually(t, "the hub sees QEMU gone", func() bool { return !h.Connected() })
	if _, err := w.Write([]byte("lost")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Write while QEMU is gone = %v, want ErrNotConnected", err)
	}
	f.listen()
	qemu = connect(t, f, h)
	write(t, qemu, "second boot\n")
	if got, want := readUntil(t, r, "second boot\n"), "second boot\n"; got != want {
		t.Errorf("after reconnect read %q, want %q", got, want)
	}
	if _, err := w.Write([]byte("hi\n")); err != nil {
		t.Fatalf("Write after reconnect = %v", err)
	}
	if got := readFull(t, qemu, 3); got != "hi\n" {
		t.Errorf("new chardev got %q, want %q", got, "hi\n")
	}
	if got, want := string(h.Scrollback()), "first boot\nsecond boot\n"; got != want {
		t.Errorf("Scrollback() = %q, want %q", got, want)
	}
}

func TestHubWriteWhileDisconnected(t *testing.T) {
	dial := func(ctx context.Context) (io.ReadWriteCloser, error) {
		return nil, errors.New("no socket yet")
	}
	h := NewHub(dial, Options{Log: testLogger(t)})
	defer h.Close()
	w := attach(t, h, AttachOptions{Write: true})
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Write before any connection = %v, want ErrNotConnected", err)
	}
}

func TestHubClose(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	qemu := connect(t, f, h)
	s := attach(t, h, AttachOptions{})
	w := attach(t, h, AttachOptions{Write: true})
	write(t, qemu, "bye\n")
	readUntil(t, w, "bye\n") // s has it queued too

	if err := h.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	// Queued output survives the close, then EOF.
	b, err := io.ReadAll(s)
	if err != nil || string(b) != "bye\n" {
		t.Errorf("ReadAll(session) = %q, %v; want %q, nil", b, err, "bye\n")
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after hub Close = %v, want ErrClosed", err)
	}
	if _, err := h.Attach(AttachOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Close = %v, want ErrClosed", err)
	}
	// QEMU sees the hub hang up.
	qemu.SetReadDeadline(time.Now().Add(timeout))
	if _, err := qemu.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("chardev Read after hub Close = %v, want EOF", err)
	}
}

func TestHubCloseWhileDialing(t *testing.T) {
	// No socket at all: Close must not wait for one.
	h := NewHub(UnixDialer(filepath.Join(t.TempDir(), "none.sock")), Options{Log: testLogger(t)})
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatal("Close hung while the hub was dialing")
	}
}

func TestWaitFor(t *testing.T) {
	f := newFakeChardev(t)
	h := newTestHub(t, f, Options{})
	qemu := connect(t, f, h)
	write(t, qemu, "early ")

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type result struct {
		m   []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		m, err := h.WaitFor(ctx, regexp.MustCompile(`ready v(\d+)`))
		res <- result{m, err}
	}()
	// The match is split across two chunks on purpose.
	write(t, qemu, "rea")
	time.Sleep(10 * time.Millisecond)
	write(t, qemu, "dy v42\n")
	r := <-res
	if r.err != nil || string(r.m) != "ready v42" {
		t.Errorf("WaitFor = %q, %v; want %q, nil", r.m, r.err, "ready v42")
	}

	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := h.WaitFor(short, regexp.MustCompile(`never`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor(never) = %v, want DeadlineExceeded", err)
	}
}

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"partial", 4, []string{"ab"}, "ab"},
		{"exactly full", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps", 4, []string{"abc", "def"}, "cdef"},
		{"write larger than ring", 4, []string{"a", "0123456789"}, "6789"},
		{"many small", 3, []string{"a", "b", "c", "d", "e"}, "cde"},
		{"empty write", 3, []string{"ab", "", "c"}, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ring{buf: make([]byte, tc.size)}
			for _, w := range tc.writes {
				r.write([]byte(w))
			}
			if got := string(r.bytes()); got != tc.want {
				t.Errorf("ring(%d) after %q = %q, want %q", tc.size, tc.writes, got, tc.want)
			}
		})
	}
}
