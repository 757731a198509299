// Package initclient speaks init's control protocol (api.InitRequest over
// the unix socket layout.InitSocket): one JSON request per connection, one
// JSON answer, then close. It implements hostd's ServiceControl and Power.
package initclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// DefaultTimeout bounds a call whose context has no deadline. Restart waits
// for init to stop the service (TERM, then KILL), so it is not short.
const DefaultTimeout = 60 * time.Second

// maxResponse caps an answer; the largest is a service's log ring buffer.
const maxResponse = 16 << 20

// Error is init's refusal or an unreachable init. Code is one of the api.Err*
// codes, so the API can map it to an HTTP status.
type Error struct {
	Code    string
	Message string
	Err     error // the cause, for an unreachable init
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("init: %s: %v", e.Message, e.Err)
	}
	return "init: " + e.Message
}

// ErrorCode returns the stable API error code.
func (e *Error) ErrorCode() string { return e.Code }

func (e *Error) Unwrap() error { return e.Err }

// Client talks to init at a socket path.
type Client struct {
	socket string
}

// New returns a client for the socket at path.
func New(path string) *Client { return &Client{socket: path} }

// Do sends one request and returns init's answer. A refusal (ErrorCode set)
// is returned as *Error together with the answer.
func (c *Client) Do(ctx context.Context, req api.InitRequest) (api.InitResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	unavailable := func(what string, err error) error {
		// The connection's deadline is the context's (or its cancellation),
		// and may fire a moment before the context reports it.
		if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
			if err = ctx.Err(); err == nil {
				err = context.DeadlineExceeded
			}
		}
		return &Error{Code: api.ErrUnavailable, Message: fmt.Sprintf("%s %s (op %s)", what, c.socket, req.Op), Err: err}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return api.InitResponse{}, unavailable("connect to", err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	// A cancelled context (the API client went away) ends the call now,
	// not at the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return api.InitResponse{}, unavailable("send to", err)
	}
	// Half-close: a server that reads to EOF sees the end of the request.
	if uc, ok := conn.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
	var resp api.InitResponse
	if err := json.NewDecoder(io.LimitReader(conn, maxResponse)).Decode(&resp); err != nil {
		return api.InitResponse{}, unavailable("read answer from", err)
	}
	if resp.Error != "" || resp.ErrorCode != "" {
		code := resp.ErrorCode
		if code == "" {
			code = api.ErrInternal
		}
		msg := resp.Error
		if msg == "" {
			msg = code
		}
		return resp, &Error{Code: code, Message: msg}
	}
	return resp, nil
}

// Services lists the supervised services.
func (c *Client) Services(ctx context.Context) ([]api.Service, error) {
	r, err := c.Do(ctx, api.InitRequest{Op: api.InitOpServices})
	return r.Services, err
}

// Log returns a service's log ring buffer.
func (c *Client) Log(ctx context.Context, name string) ([]string, error) {
	if name == "" {
		return nil, errors.New("initclient: empty service name")
	}
	r, err := c.Do(ctx, api.InitRequest{Op: api.InitOpLog, Service: name})
	return r.Log, err
}

// Restart stops and starts a service.
func (c *Client) Restart(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("initclient: empty service name")
	}
	_, err := c.Do(ctx, api.InitRequest{Op: api.InitOpRestart, Service: name})
	return err
}

// Signal sends a signal ("TERM", "KILL", ...) to a service's process group.
func (c *Client) Signal(ctx context.Context, name, signal string) error {
	if name == "" {
		return errors.New("initclient: empty service name")
	}
	_, err := c.Do(ctx, api.InitRequest{Op: api.InitOpSignal, Service: name, Signal: signal})
	return err
}

// Shutdown asks init to power off through its shutdown funnel.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.Do(ctx, api.InitRequest{Op: api.InitOpShutdown})
	return err
}

// Reboot asks init to reboot through its shutdown funnel.
func (c *Client) Reboot(ctx context.Context) error {
	_, err := c.Do(ctx, api.InitRequest{Op: api.InitOpReboot})
	return err
}

// ReleaseNetwork asks init to hand the management NIC over to the switch
// (no more DHCP renewals or addresses of init's on it).
func (c *Client) ReleaseNetwork(ctx context.Context) error {
	_, err := c.Do(ctx, api.InitRequest{Op: api.InitOpReleaseNetwork})
	return err
}
