// Package console gives API clients a VM's serial console and VNC display.
//
// A Hub owns the one connection to a VM's serial chardev (QEMU's socket
// chardev in server mode takes a single client at a time), keeps a
// scrollback ring, and fans the output out to any number of Sessions. One
// Session at a time may write. The HTTP handlers in this package carry
// Sessions and VNC sockets over websockets.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"time"
)

// Errors callers (and the lookup functions given to the handlers) use.
var (
	// ErrNoVM: no VM has that name. The handlers answer 404.
	ErrNoVM = errors.New("no such VM")
	// ErrNoConsole: the VM exists but has no console to attach to (it is
	// powered off, or has no serial port / VNC display). The handlers answer
	// 409.
	ErrNoConsole = errors.New("VM has no console: powered off or not configured")
	// ErrWriterTaken: another session holds the writer role. The handlers
	// answer 409; attach read-only or wait for the writer to detach.
	ErrWriterTaken = errors.New("console already has a writer")
	// ErrReadOnly is returned by Write on a session attached without the
	// writer role.
	ErrReadOnly = errors.New("console session is read-only")
	// ErrNotConnected is returned by Write while the hub has no connection
	// to QEMU (between a QEMU exit and the next successful dial).
	ErrNotConnected = errors.New("console not connected to QEMU")
	// ErrClosed is returned by Attach and Write after Close.
	ErrClosed = errors.New("console closed")
)

// Defaults for Options.
const (
	DefaultScrollback   = 64 << 10
	DefaultReaderBuffer = 256 << 10
	defaultMinBackoff   = 50 * time.Millisecond
	defaultMaxBackoff   = 2 * time.Second
)

// DialFunc opens the connection to the serial chardev.
type DialFunc func(ctx context.Context) (io.ReadWriteCloser, error)

// UnixDialer dials the unix socket of a QEMU chardev (server=on,wait=off).
func UnixDialer(path string) DialFunc {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// Options tune a Hub. The zero value is usable.
type Options struct {
	// Scrollback is how many of the latest output bytes a new session
	// receives first. Default DefaultScrollback.
	Scrollback int
	// ReaderBuffer is how many bytes may wait for a session that reads too
	// slowly; beyond it the oldest are discarded (see Session.Lost).
	// Default DefaultReaderBuffer.
	ReaderBuffer int
	// MinBackoff and MaxBackoff bound the wait between dials while QEMU's
	// socket is not there (yet or again).
	MinBackoff, MaxBackoff time.Duration
	Log                    *slog.Logger
}

// Hub is one VM's serial console. Create it with NewHub when the VM powers
// on and Close it when the VM powers off. While it is open it keeps
// dialing: if QEMU's socket goes away and comes back (QEMU restarted by the
// same power-on), the hub reconnects and its sessions stay attached.
type Hub struct {
	dial DialFunc
	o    Options
	log  *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	ring     ring
	sessions map[*Session]struct{}
	writer   *Session
	conn     io.ReadWriteCloser // nil while not connected
	closed   bool

	wmu sync.Mutex // serialises input so writes from one session don't interleave
}

// NewHub starts connecting to the chardev with dial and returns at once.
func NewHub(dial DialFunc, o Options) *Hub {
	if o.Scrollback <= 0 {
		o.Scrollback = DefaultScrollback
	}
	if o.ReaderBuffer <= 0 {
		o.ReaderBuffer = DefaultReaderBuffer
	}
	// A new session's queue must hold the whole scrollback.
	o.ReaderBuffer = max(o.ReaderBuffer, o.Scrollback)
	if o.MinBackoff <= 0 {
		o.MinBackoff = defaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(defaultMaxBackoff, o.MinBackoff)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		dial:     dial,
		o:        o,
		log:      log,
		cancel:   cancel,
		done:     make(chan struct{}),
		ring:     ring{buf: make([]byte, o.Scrollback)},
		sessions: map[*Session]struct{}{},
	}
	go h.loop(ctx)
	return h
}

// loop dials, reads until the connection fails, and dials again, until
// Close.
func (h *Hub) loop(ctx context.Context) {
	defer close(h.done)
	backoff := h.o.MinBackoff
	logged := false // log a failing dial once, not every backoff step
	for ctx.Err() == nil {
		c, err := h.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !logged {
				h.log.Debug("console: dial failed; retrying", "err", err)
				logged = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, h.o.MaxBackoff)
			continue
		}
		backoff, logged = h.o.MinBackoff, false
		if !h.setConn(c) {
			c.Close()
			return
		}
		h.log.Debug("console: connected")
		err = h.readFrom(c)
		h.setConn(nil)
		c.Close()
		if ctx.Err() == nil {
			h.log.Debug("console: connection lost; reconnecting", "err", err)
		}
	}
}

// setConn records the current connection; it reports false when the hub
// closed meanwhile.
func (h *Hub) setConn(c io.ReadWriteCloser) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed && c != nil {
		return false
	}
	h.conn = c
	return true
}

func (h *Hub) readFrom(c io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			h.broadcast(buf[:n])
		}
		if err != nil {
			return err
		}
	}
}

// broadcast appends p to the scrollback and to every session's queue. It
// never blocks on a session: the guest's console must not stall because a
// client is slow.
func (h *Hub) broadcast(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring.write(p)
	for s := range h.sessions {
		s.push(p)
	}
}

// Connected reports whether the hub holds a connection to QEMU now.
func (h *Hub) Connected() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn != nil
}

// Scrollback returns a copy of the latest output (at most Options.Scrollback
// bytes).
func (h *Hub) Scrollback() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ring.bytes()
}

// AttachOptions say what a session wants.
type AttachOptions struct {
	// Write asks for the writer role; Attach fails with ErrWriterTaken while
	// another session holds it. Refusing, rather than queueing or taking
	// over, keeps two people from typing into one shell unknowingly: the
	// second one is told and can attach read-only.
	Write bool
	// Scrollback delivers the recent output first.
	Scrollback bool
}

// Attach adds a session. Output from now on (after the scrollback, when
// asked) is queued for it until it is closed.
func (h *Hub) Attach(o AttachOptions) (*Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if o.Write && h.writer != nil {
		return nil, ErrWriterTaken
	}
	s := &Session{h: h, writer: o.Write, limit: h.o.ReaderBuffer}
	s.cond.L = &s.mu
	if o.Scrollback {
		// Taken under h.mu, so no output falls between scrollback and live.
		s.push(h.ring.bytes())
	}
	h.sessions[s] = struct{}{}
	if o.Write {
		h.writer = s
	}
	return s, nil
}

func (h *Hub) detach(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s)
	if h.writer == s {
		h.writer = nil
	}
}

// input sends p to QEMU.
func (h *Hub) input(p []byte) (int, error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	c, closed := h.conn, h.closed
	h.mu.Unlock()
	switch {
	case closed:
		return 0, ErrClosed
	case c == nil:
		return 0, ErrNotConnected
	}
	// A guest that does not read its UART makes QEMU stop reading the
	// socket, so this may block; only the writer waits, and Close or a
	// reconnect (which closes c) ends the wait.
	n, err := c.Write(p)
	if err != nil {
		return n, fmt.Errorf("console input: %w", err)
	}
	return n, nil
}

// WaitFor waits until the console output (the scrollback included) matches
// re and returns the match. Matches are looked for within the last
// Options.Scrollback bytes, so a pattern must be shorter than that.
func (h *Hub) WaitFor(ctx context.Context, re *regexp.Regexp) ([]byte, error) {
	s, err := h.Attach(AttachOptions{Scrollback: true})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var window []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		window = append(window, buf[:n]...)
		if loc := re.FindIndex(window); loc != nil {
			return append([]byte(nil), window[loc[0]:loc[1]]...), nil
		}
		if over := len(window) - h.o.Scrollback; over > 0 {
			window = append(window[:0], window[over:]...)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("wait for %q on console: %w", re, ctx.Err())
			}
			return nil, fmt.Errorf("wait for %q on console: %w", re, err)
		}
	}
}

// Close disconnects from QEMU and ends every session: their Reads return
// what is queued, then io.EOF. It is safe to call more than once.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.done
		return nil
	}
	h.closed = true
	c := h.conn
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	h.cancel()
	if c != nil {
		c.Close() // ends the loop's Read and a blocked input
	}
	<-h.done
	for _, s := range sessions {
		s.end(io.EOF)
	}
	return nil
}

// Session is one attached client: an io.ReadWriteCloser. Reads return
// console output; Writes go to the guest when the session is the writer.
// Read may be called from one goroutine while Write is called from another.
type Session struct {
	h      *Hub
	writer bool
	limit  int

	mu      sync.Mutex
	cond    sync.Cond
	pending []byte
	lost    int64
	err     error // set once the session ended; returned after pending drains
}

// push queues p, dropping the oldest bytes beyond the limit.
func (s *Session) push(p []byte) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.pending = append(s.pending, p...)
	if over := len(s.pending) - s.limit; over > 0 {
		s.lost += int64(over)
		s.pending = s.pending[over:]
	}
	s.cond.Broadcast()
}

// Read returns queued output, waiting for some. After the hub closed it
// returns the rest and then io.EOF; after the session's own Close, ErrClosed.
func (s *Session) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) == 0 && s.err == nil {
		s.cond.Wait()
	}
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil // let a large burst's array go
		}
		return n, nil
	}
	return 0, s.err
}

// Write sends p to the guest's serial port.
func (s *Session) Write(p []byte) (int, error) {
	if !s.writer {
		return 0, ErrReadOnly
	}
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return 0, ErrClosed
	}
	return s.h.input(p)
}

// Writer reports whether the session holds the writer role.
func (s *Session) Writer() bool { return s.writer }

// Lost returns how many output bytes were discarded because the session
// read too slowly.
func (s *Session) Lost() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// Close detaches the session and gives up the writer role. Pending output
// is discarded.
func (s *Session) Close() error {
	s.h.detach(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = ErrClosed
	}
	s.pending = nil
	s.cond.Broadcast()
	return nil
}

// end marks the session finished by the hub; queued output stays readable.
func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	s.cond.Broadcast()
}

// ring keeps the last len(buf) bytes written.
type ring struct {
	buf  []byte
	next int  // where the next byte goes
	full bool // buf has wrapped at least once
}

func (r *ring) write(p []byte) {
	if len(p) >= len(r.buf) {
		copy(r.buf, p[len(p)-len(r.buf):])
		r.next, r.full = 0, true
		return
	}
	n := copy(r.buf[r.next:], p)
	if n < len(p) {
		copy(r.buf, p[n:])
		r.full = true
	}
	r.next = (r.next + len(p)) % len(r.buf)
	if r.next == 0 && len(p) > 0 {
		r.full = true
	}
}

func (r *ring) bytes() []byte {
	if !r.full {
		return append([]byte(nil), r.buf[:r.next]...)
	}
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
