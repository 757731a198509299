package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is wrapped by every error of a call that failed because the
// connection is gone (QEMU exited, a protocol error, or Close).
var ErrClosed = errors.New("qmp: connection closed")

// ErrProtocol is wrapped by errors about input that is not QMP.
var ErrProtocol = errors.New("qmp: protocol error")

// ErrNoFDPassing means the connection cannot carry file descriptors (it is
// not a unix socket), so commands such as MigrateToFile are unavailable.
var ErrNoFDPassing = errors.New("qmp: connection cannot pass file descriptors")

// Error is an error answer from QEMU: {"error": {"class": ..., "desc": ...}}.
type Error struct {
	Command string // the command that failed
	Class   string // e.g. "GenericError", "CommandNotFound", "DeviceNotFound"
	Desc    string // QEMU's human-readable description
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Version is QEMU's version as announced in the greeting and by query-version.
type Version struct {
	Major   int    `json:"major"`
	Minor   int    `json:"minor"`
	Micro   int    `json:"micro"`
	Package string `json:"package,omitempty"`
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// maxLine bounds one message from QEMU; the largest answers hostd asks for
// (query-qmp-schema aside) are far smaller.
const maxLine = 16 << 20

// eventBacklog bounds the events kept for a reader that does not keep up;
// beyond it the oldest are dropped (and counted).
const eventBacklog = 4096

// Option configures a Client.
type Option func(*Client)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) { c.log = l }
}

// Client is a QMP connection. It is safe for concurrent use.
type Client struct {
	conn    net.Conn
	log     *slog.Logger
	version Version
	caps    []string

	wmu   sync.Mutex    // serialises writes
	fdSeq atomic.Uint64 // names for GetFD

	mu       sync.Mutex
	nextID   uint64
	pending  map[string]*call
	closeErr error         // set once, when the connection is gone
	done     chan struct{} // closed with closeErr

	evmu      sync.Mutex
	evq       []Event
	evHead    uint64 // sequence number of evq[0]
	evDropped uint64
	evWake    chan struct{}
	events    chan Event
	stop      chan struct{} // closed by Close: the event pump gives up
	stopOnce  sync.Once
}

type call struct {
	cmd string
	ch  chan response // buffered 1
}

type response struct {
	ret json.RawMessage
	err error
}

// Dial connects to the QMP unix socket at path and negotiates as New does.
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	c, err := New(ctx, conn, opts...)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return c, nil
}

// New speaks QMP on conn: it reads the greeting, sends qmp_capabilities and
// starts reading answers and events. ctx bounds the handshake only. The
// Client owns conn from now on (Close closes it), also when New fails.
func New(ctx context.Context, conn net.Conn, opts ...Option) (*Client, error) {
	c := &Client{
		conn:    conn,
		log:     slog.New(slog.DiscardHandler),
		pending: make(map[string]*call),
		done:    make(chan struct{}),
		evWake:  make(chan struct{}, 1),
		events:  make(chan Event),
		stop:    make(chan struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	r := bufio.NewReaderSize(conn, 64<<10)

	// The handshake runs in this goroutine; the context reaches the
	// blocking reads and writes through the connection's deadline.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stopWatch := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err := c.handshake(r)
	stopped := stopWatch()
	conn.SetDeadline(time.Time{})
	if err == nil && !stopped {
		err = ctx.Err() // the watcher fired: the deadline is poisoned
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("qmp handshake: %w (%v)", ctx.Err(), err)
		}
		conn.Close()
		return nil, err
	}
	go c.readLoop(r)
	go c.pumpEvents()
	return c, nil
}

func (c *Client) handshake(r *bufio.Reader) error {
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	m, err := parseMessage(line)
	if err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	if m.kind != kindGreeting {
		return fmt.Errorf("qmp greeting: %w: first message is a %s", ErrProtocol, m.kind)
	}
	c.version, c.caps = m.version, m.caps
	// Capabilities: none enabled (no "oob"); commands run in order.
	req, _ := json.Marshal(request{Execute: "qmp_capabilities", ID: "cap"})
	if _, err := c.conn.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("qmp_capabilities: %w", err)
	}
	for {
		line, err := readLine(r)
		if err != nil {
			return fmt.Errorf("qmp_capabilities: %w", err)
		}
		m, err := parseMessage(line)
		if err != nil {
			return fmt.Errorf("qmp_capabilities: %w", err)
		}
		switch {
		case m.kind == kindEvent:
			c.queueEvent(m.event)
			continue
		case m.kind != kindResponse:
			return fmt.Errorf("qmp_capabilities: %w: unexpected %s", ErrProtocol, m.kind)
		case m.err != nil:
			m.err.Command = "qmp_capabilities"
			return m.err
		}
		return nil
	}
}

// Version is QEMU's version from the greeting.
func (c *Client) Version() Version { return c.version }

// Capabilities lists the capabilities QEMU offered in its greeting.
func (c *Client) Capabilities() []string { return append([]string(nil), c.caps...) }

// Done is closed when the connection is gone; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is nil while the connection is up, then an error wrapping ErrClosed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Close closes the connection; pending calls fail with ErrClosed and the
// Events channel is closed (events not yet read are dropped).
func (c *Client) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.fail(fmt.Errorf("%w: closed by client", ErrClosed))
	return nil
}

// fail records the first reason the connection ended, closes it and fails
// every pending call.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.closeErr != nil {
		c.mu.Unlock()
		return
	}
	c.closeErr = err
	pending := c.pending
	c.pending = nil
	close(c.done)
	c.mu.Unlock()
	c.conn.Close()
	for _, p := range pending {
		p.ch <- response{err: err}
	}
	c.wakePump()
}

// request is what goes on the wire.
type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        string `json:"id"`
}

// Execute runs cmd with args (nil, or anything that marshals to a JSON
// object) and decodes QEMU's "return" value into result (nil to ignore it).
func (c *Client) Execute(ctx context.Context, cmd string, args any, result any) error {
	raw, err := c.execute(ctx, cmd, args, nil)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("qmp %s: decoding answer: %w", cmd, err)
	}
	return nil
}

// ExecuteRaw is Execute returning the undecoded "return" value.
func (c *Client) ExecuteRaw(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	return c.execute(ctx, cmd, args, nil)
}

func (c *Client) execute(ctx context.Context, cmd string, args any, fd *os.File) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.mu.Lock()
	if c.closeErr != nil {
		err := c.closeErr
		c.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.nextID++
	id := "fv-" + strconv.FormatUint(c.nextID, 10)
	p := &call{cmd: cmd, ch: make(chan response, 1)}
	c.pending[id] = p
	c.mu.Unlock()

	req, err := json.Marshal(request{Execute: cmd, Arguments: args, ID: id})
	if err != nil {
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: encoding arguments: %w", cmd, err)
	}
	if err := c.write(ctx, append(req, '\n'), fd); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	select {
	case r := <-p.ch:
		if r.err != nil {
			var qe *Error
			if errors.As(r.err, &qe) {
				qe.Command = cmd
				return nil, qe
			}
			return nil, fmt.Errorf("qmp %s: %w", cmd, r.err)
		}
		return r.ret, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// write sends one request, with fd attached (SCM_RIGHTS) when not nil. A
// write that the context interrupts before any byte left keeps the
// connection; a partial one leaves the stream unusable and closes it.
func (c *Client) write(ctx context.Context, b []byte, fd *os.File) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		c.conn.SetWriteDeadline(time.Time{})
	}()
	var n int
	var err error
	if fd != nil {
		uc, ok := c.conn.(*net.UnixConn)
		if !ok {
			return ErrNoFDPassing
		}
		var oobn int
		n, oobn, err = uc.WriteMsgUnix(b, unix.UnixRights(int(fd.Fd())), nil)
		if err == nil && oobn == 0 {
			err = errors.New("file descriptor not sent")
		}
		if err == nil && n < len(b) {
			var m int
			m, err = c.conn.Write(b[n:])
			n += m
		}
	} else {
		n, err = c.conn.Write(b)
	}
	if err == nil {
		return nil
	}
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		// Only ctx sets write deadlines: it is ending, if its timer has
		// not fired yet.
		<-ctx.Done()
		return ctx.Err()
	}
	err = fmt.Errorf("%w: write: %v", ErrClosed, err)
	c.fail(err)
	return err
}

// readLoop dispatches answers to callers and events to the pump until the
// connection ends.
func (c *Client) readLoop(r *bufio.Reader) {
	for {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				c.fail(fmt.Errorf("%w: %w", ErrClosed, err))
			} else {
				c.fail(fmt.Errorf("%w: %v", ErrClosed, err))
			}
			return
		}
		m, err := parseMessage(line)
		if err != nil {
			c.log.Error("qmp: malformed message; closing", "err", err)
			c.fail(fmt.Errorf("%w: %w", ErrClosed, err))
			return
		}
		switch m.kind {
		case kindEvent:
			c.queueEvent(m.event)
		case kindResponse:
			c.mu.Lock()
			p := c.pending[m.id]
			delete(c.pending, m.id)
			c.mu.Unlock()
			if p == nil {
				// A caller that gave up, or an answer without id
				// (QEMU could not parse a request).
				c.log.Debug("qmp: answer nobody waits for", "id", m.id, "err", errOrNil(m.err))
				continue
			}
			if m.err != nil {
				p.ch <- response{err: m.err}
			} else {
				p.ch <- response{ret: m.ret}
			}
		case kindGreeting:
			c.log.Warn("qmp: second greeting ignored")
		}
	}
}

func errOrNil(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

// readLine returns one line without its terminator. QEMU ends each message
// with "\r\n" and never puts a raw newline inside one.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLine {
			return nil, fmt.Errorf("%w: message longer than %d bytes", ErrProtocol, maxLine)
		}
		switch {
		case err == nil:
			buf = trimEOL(append(buf, chunk...))
			if len(bytes.TrimSpace(buf)) == 0 {
				buf = buf[:0] // blank line: not a message
				continue
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
		case errors.Is(err, io.EOF) && len(buf)+len(chunk) > 0:
			return nil, fmt.Errorf("%w: connection ended inside a message", ErrProtocol)
		default:
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
