// Package qmptest is a fake QEMU monitor for tests of code that uses package
// qmp. It speaks the real wire protocol (greeting, capabilities, ids, events)
// so the qmp.Client under test is the real one, but works on decoded
// commands: tests register a handler per command name, emit events and read
// back the list of commands that ran.
//
//	s := qmptest.NewServer(map[string]qmptest.Handler{
//		"query-status": func(json.RawMessage) (any, error) {
//			return qmp.Status{Status: "running", Running: true}, nil
//		},
//	})
//	c := qmptest.Pipe(t, s)
//
// NewVM returns a server whose handlers behave like a small QEMU (run state,
// power button, quit, migration to a file descriptor, hot-plug).
package qmptest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/hostd/qmp"
	"golang.org/x/sys/unix"
)

// Handler answers one command. args is the command's "arguments" object (nil
// when absent). The result is marshalled as "return" (nil becomes {}); an
// error is sent as a QMP error: a *qmp.Error keeps its class, any other error
// becomes a GenericError with its text.
type Handler func(args json.RawMessage) (any, error)

// Command is one command the server received.
type Command struct {
	Name string
	Args json.RawMessage
}

// Server is a fake QMP server for one VM. It serves one connection at a time,
// like QEMU's monitor socket.
type Server struct {
	// Greeting is the version announced to clients (default 8.2.0).
	Greeting qmp.Version

	mu         sync.Mutex
	handlers   map[string]Handler
	cmds       []Command
	conn       net.Conn
	fds        map[string]*os.File
	closeAfter bool

	wmu sync.Mutex
}

// NewServer returns a server answering with handlers (which it copies).
// qmp_capabilities, getfd and closefd are built in.
func NewServer(handlers map[string]Handler) *Server {
	s := &Server{
		Greeting: qmp.Version{Major: 8, Minor: 2, Micro: 0},
		handlers: make(map[string]Handler),
		fds:      make(map[string]*os.File),
	}
	for k, v := range handlers {
		s.handlers[k] = v
	}
	return s
}

// Handle sets (or with nil removes) the handler for name.
func (s *Server) Handle(name string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.handlers, name)
		return
	}
	s.handlers[name] = h
}

// Commands returns the commands received so far, in order, without the
// qmp_capabilities negotiation.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.cmds...)
}

// CommandNames returns the names of Commands().
func (s *Server) CommandNames() []string {
	var names []string
	for _, c := range s.Commands() {
		names = append(names, c.Name)
	}
	return names
}

// FD returns the file a client passed with getfd under name, if QEMU has not
// used or closed it yet.
func (s *Server) FD(name string) (*os.File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.fds[name]
	return f, ok
}

// TakeFD is FD that also forgets the file, as QEMU does when a command
// consumes "fd:name". The caller closes it.
func (s *Server) TakeFD(name string) (*os.File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.fds[name]
	delete(s.fds, name)
	return f, ok
}

// CloseAfterReply makes the server hang up right after answering the
// current command (what QEMU does for quit). Call it from a handler.
func (s *Server) CloseAfterReply() {
	s.mu.Lock()
	s.closeAfter = true
	s.mu.Unlock()
}

// Emit sends an event with data (nil for none) to the connected client.
func (s *Server) Emit(name string, data any) error {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return errors.New("qmptest: no client connected")
	}
	now := time.Now()
	ev := map[string]any{
		"event":     name,
		"timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)},
	}
	if data != nil {
		ev["data"] = data
	}
	return s.send(conn, ev)
}

// Hangup closes the current connection, as a crashing QEMU would.
func (s *Server) Hangup() {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (s *Server) send(conn net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = conn.Write(append(b, '\r', '\n'))
	return err
}

// ServeListener accepts connections one after the other (a restarted hostd
// reconnects) until l is closed.
func (s *Server) ServeListener(l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		_ = s.Serve(conn)
	}
}

// Serve speaks QMP on conn until the client hangs up (nil) or a protocol
// error happens. It closes conn.
func (s *Server) Serve(conn net.Conn) error {
	defer conn.Close()
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.conn == conn {
			s.conn = nil
		}
		s.mu.Unlock()
	}()

	var rd io.Reader = conn
	fr := &fdReader{}
	if uc, ok := conn.(*net.UnixConn); ok {
		fr.uc = uc
		rd = fr
	}
	greeting := map[string]any{"QMP": map[string]any{
		"version": map[string]any{
			"qemu":    map[string]int{"major": s.Greeting.Major, "minor": s.Greeting.Minor, "micro": s.Greeting.Micro},
			"package": s.Greeting.Package,
		},
		"capabilities": []string{"oob"},
	}}
	if err := s.send(conn, greeting); err != nil {
		return ignoreClosed(err)
	}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	negotiated := false
	for sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil || req.Execute == "" {
			_ = s.send(conn, map[string]any{"error": qerr("GenericError", "JSON parse error")})
			continue
		}
		reply := map[string]any{}
		if len(req.ID) > 0 {
			reply["id"] = req.ID
		}
		ret, err := s.dispatch(req.Execute, req.Arguments, negotiated, fr)
		if req.Execute == "qmp_capabilities" && err == nil {
			negotiated = true
		}
		if err != nil {
			var qe *qmp.Error
			if errors.As(err, &qe) {
				reply["error"] = qerr(qe.Class, qe.Desc)
			} else {
				reply["error"] = qerr("GenericError", err.Error())
			}
		} else {
			if ret == nil {
				ret = struct{}{}
			}
			reply["return"] = ret
		}
		if err := s.send(conn, reply); err != nil {
			return ignoreClosed(err)
		}
		s.mu.Lock()
		closeNow := s.closeAfter
		s.closeAfter = false
		s.mu.Unlock()
		if closeNow {
			return nil
		}
	}
	return ignoreClosed(sc.Err())
}

func (s *Server) dispatch(name string, args json.RawMessage, negotiated bool, fr *fdReader) (any, error) {
	if name == "qmp_capabilities" {
		if negotiated {
			return nil, &qmp.Error{Class: "CommandNotFound", Desc: "Capabilities negotiation is already complete, command ignored"}
		}
		return nil, nil
	}
	if !negotiated {
		return nil, &qmp.Error{Class: "CommandNotFound", Desc: "Expecting capabilities negotiation with 'qmp_capabilities'"}
	}
	s.mu.Lock()
	s.cmds = append(s.cmds, Command{Name: name, Args: args})
	h := s.handlers[name]
	s.mu.Unlock()
	switch name {
	case "getfd":
		var a struct {
			FDName string `json:"fdname"`
		}
		if err := json.Unmarshal(args, &a); err != nil || a.FDName == "" {
			return nil, &qmp.Error{Class: "GenericError", Desc: "Parameter 'fdname' is missing"}
		}
		f := fr.take()
		if f == nil {
			return nil, &qmp.Error{Class: "GenericError", Desc: "No file descriptor supplied via SCM_RIGHTS"}
		}
		s.mu.Lock()
		if old := s.fds[a.FDName]; old != nil {
			old.Close()
		}
		s.fds[a.FDName] = f
		s.mu.Unlock()
		return nil, nil
	case "closefd":
		var a struct {
			FDName string `json:"fdname"`
		}
		_ = json.Unmarshal(args, &a)
		f, ok := s.TakeFD(a.FDName)
		if !ok {
			return nil, &qmp.Error{Class: "GenericError", Desc: fmt.Sprintf("File descriptor named '%s' not found", a.FDName)}
		}
		f.Close()
		return nil, nil
	}
	if h == nil {
		return nil, &qmp.Error{Class: "CommandNotFound", Desc: fmt.Sprintf("The command %s has not been found", name)}
	}
	return h(args)
}

func qerr(class, desc string) map[string]string {
	return map[string]string{"class": class, "desc": desc}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

// fdReader reads from a unix socket and keeps the descriptors that arrive
// with the bytes (SCM_RIGHTS), in order.
type fdReader struct {
	uc  *net.UnixConn
	mu  sync.Mutex
	fds []*os.File
}

func (r *fdReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := r.uc.ReadMsgUnix(p, oob)
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				r.mu.Lock()
				for _, fd := range fds {
					r.fds = append(r.fds, os.NewFile(uintptr(fd), "qmp-passed-fd"))
				}
				r.mu.Unlock()
			}
		}
	}
	return n, err
}

func (r *fdReader) take() *os.File {
	if r == nil || r.uc == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fds) == 0 {
		return nil
	}
	f := r.fds[0]
	r.fds = r.fds[1:]
	return f
}
