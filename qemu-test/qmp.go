package qemutest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// QMPError is an error answer from QEMU's monitor.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// qmpConn is a minimal QMP client: greeting, qmp_capabilities, then one
// command at a time; asynchronous events are skipped. It connects on first
// use because QEMU creates the socket a moment after it starts.
type qmpConn struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	id   int
}

type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	ID     *int            `json:"id"`
}

// QMP runs one monitor command (e.g. "system_powerdown", "system_reset",
// "quit", "query-status") with args (nil for none) and returns the "return"
// value. It keeps trying to connect while QEMU starts, and fails if QEMU
// exits first.
func (vm *VM) QMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if command == "system_reset" {
		vm.noteRestart() // the next boot is the test's doing
	}
	raw, err := vm.qmp.execute(ctx, vm.exited, command, args)
	if err != nil {
		return nil, fmt.Errorf("VM %s: QMP %s: %w", vm.name, command, err)
	}
	return raw, nil
}

func (q *qmpConn) execute(ctx context.Context, exited <-chan struct{}, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.conn == nil {
		if err := q.connect(ctx, exited); err != nil {
			return nil, err
		}
	}
	q.id++
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        int    `json:"id"`
	}{command, args, q.id}
	raw, err := q.roundTrip(ctx, req, q.id)
	var qe *QMPError
	if err != nil && !errors.As(err, &qe) {
		// A broken connection is not reused; quit legitimately ends it.
		q.closeLocked()
		if command == "quit" && errors.Is(err, io.EOF) {
			return nil, nil
		}
	}
	return raw, err
}

func (q *qmpConn) connect(ctx context.Context, exited <-chan struct{}) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", q.path)
		if err == nil {
			q.conn, q.r = c, bufio.NewReader(c)
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("QEMU exited: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("connect %s: %w (last: %v)", q.path, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var greeting qmpReply
	if err := q.read(&greeting); err != nil {
		q.closeLocked()
		return fmt.Errorf("greeting: %w", err)
	}
	if greeting.QMP == nil {
		q.closeLocked()
		return errors.New("no QMP greeting")
	}
	q.id++
	req := struct {
		Execute string `json:"execute"`
		ID      int    `json:"id"`
	}{"qmp_capabilities", q.id}
	if _, err := q.roundTrip(ctx, req, q.id); err != nil {
		q.closeLocked()
		return fmt.Errorf("qmp_capabilities: %w", err)
	}
	return nil
}

// roundTrip sends req and reads until the answer with this id.
func (q *qmpConn) roundTrip(ctx context.Context, req any, id int) (json.RawMessage, error) {
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, ctxErr(ctx, err)
	}
	for {
		var r qmpReply
		if err := q.read(&r); err != nil {
			return nil, ctxErr(ctx, err)
		}
		if r.Event != "" || r.ID == nil || *r.ID != id {
			continue // events, and answers to commands given up on
		}
		if r.Error != nil {
			return nil, r.Error
		}
		return r.Return, nil
	}
}

func (q *qmpConn) read(v *qmpReply) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		if len(line) == 0 || err != io.EOF {
			return err
		}
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("bad QMP message %q: %w", line, err)
	}
	return nil
}

// ctxErr prefers the context's error over the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (q *qmpConn) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closeLocked()
}

func (q *qmpConn) closeLocked() {
	if q.conn != nil {
		q.conn.Close()
		q.conn, q.r = nil, nil
	}
}
