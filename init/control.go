package boot

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"syscall"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"golang.org/x/sys/unix"
)

// PowerAction is what the shutdown funnel does at its end.
type PowerAction int

const (
	PowerOff PowerAction = iota
	Reboot
)

func (a PowerAction) String() string {
	if a == Reboot {
		return "reboot"
	}
	return "power off"
}

// signals is the allow-list of signals the control socket will send.
var signals = map[string]syscall.Signal{
	"TERM": unix.SIGTERM, "KILL": unix.SIGKILL, "HUP": unix.SIGHUP,
	"INT": unix.SIGINT, "USR1": unix.SIGUSR1, "USR2": unix.SIGUSR2,
}

var serviceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Control answers api.InitRequest on init's unix socket.
type Control struct {
	Sup *Supervisor
	// Power starts the shutdown funnel; it must not block.
	Power func(PowerAction)
	// ReleaseNetwork hands the management NIC to the switch (nil: the
	// op is refused).
	ReleaseNetwork func() error
	Log            *slog.Logger
}

// maxRequest bounds a control request; real ones are under 200 bytes.
const maxRequest = 64 * 1024

// Listen creates the socket at path, readable by root only.
func Listen(path string) (net.Listener, error) {
	_ = os.Remove(path)
	old := unix.Umask(0o077)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	return l, err
}

// Serve handles connections until l is closed.
func (c *Control) Serve(l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go c.serveConn(conn)
	}
}

func (c *Control) serveConn(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req api.InitRequest
	dec := json.NewDecoder(io.LimitReader(conn, maxRequest))
	dec.DisallowUnknownFields()
	var resp api.InitResponse
	if err := dec.Decode(&req); err != nil {
		resp = api.InitResponse{Error: "malformed request: " + err.Error(), ErrorCode: api.ErrBadRequest}
	} else {
		resp = c.Handle(req)
	}
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		c.Log.Warn("control: writing response", "err", err)
	}
}

// Handle answers one request.
func (c *Control) Handle(req api.InitRequest) api.InitResponse {
	fail := func(code, msg string) api.InitResponse { return api.InitResponse{Error: msg, ErrorCode: code} }
	needService := req.Op == api.InitOpLog || req.Op == api.InitOpRestart || req.Op == api.InitOpSignal
	if needService && !serviceNameRE.MatchString(req.Service) {
		return fail(api.ErrBadRequest, "invalid service name")
	}
	svcErr := func(err error) api.InitResponse {
		if errors.Is(err, ErrNoService) {
			return fail(api.ErrNotFound, err.Error())
		}
		return fail(api.ErrUnavailable, err.Error())
	}
	switch req.Op {
	case api.InitOpServices:
		return api.InitResponse{Services: c.Sup.Status()}
	case api.InitOpLog:
		lines, err := c.Sup.Log(req.Service)
		if err != nil {
			return svcErr(err)
		}
		return api.InitResponse{Log: lines}
	case api.InitOpRestart:
		c.Log.Info("control: restart", "service", req.Service)
		if err := c.Sup.Restart(req.Service); err != nil {
			return svcErr(err)
		}
		return api.InitResponse{}
	case api.InitOpSignal:
		sig, ok := signals[req.Signal]
		if !ok {
			return fail(api.ErrBadRequest, "unknown signal "+quote(req.Signal))
		}
		c.Log.Info("control: signal", "service", req.Service, "signal", req.Signal)
		if err := c.Sup.Signal(req.Service, sig); err != nil {
			return svcErr(err)
		}
		return api.InitResponse{}
	case api.InitOpShutdown:
		c.Power(PowerOff)
		return api.InitResponse{}
	case api.InitOpReboot:
		c.Power(Reboot)
		return api.InitResponse{}
	case api.InitOpReleaseNetwork:
		if c.ReleaseNetwork == nil {
			return fail(api.ErrUnavailable, "this init cannot release the management network")
		}
		c.Log.Info("control: management network released to the switch")
		if err := c.ReleaseNetwork(); err != nil {
			return fail(api.ErrInternal, err.Error())
		}
		return api.InitResponse{}
	default:
		return fail(api.ErrBadRequest, "unknown op "+quote(req.Op))
	}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
