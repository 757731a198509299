// Package vemclient talks to the VEM agent's local API on its unix socket.
// It is how hostd (and the debug CLI behind fvctl vem show) reaches the
// switch without importing the agent's kernel-programming code.
package vemclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Error is an error answer of the agent, with its stable code.
type Error struct {
	Status        int
	Code, Message string
}

func (e *Error) Error() string { return fmt.Sprintf("vem: %s (%s)", e.Message, e.Code) }

// IsInvalid reports whether err is the agent refusing a config as invalid.
func IsInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == api.ErrBadRequest
}

// IsHeadless reports whether err is the agent saying it has no connection
// to its VSM (no vEth can be created until it has one).
func IsHeadless(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == api.ErrHeadless
}

// Client is a VEM agent client.
type Client struct {
	hc *http.Client
}

// New returns a client for the agent listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 2,
	}
	// Applying 1,000 ports from scratch takes seconds on hardware and
	// minutes under emulation; a hung agent must still not hang hostd
	// forever.
	return &Client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vem"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("vem agent: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("vem agent: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var ae api.Error
		if json.Unmarshal(data, &ae) != nil || ae.Code == "" {
			ae.Code, ae.Message = api.ErrInternal, fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, data)
		}
		return &Error{Status: resp.StatusCode, Code: ae.Code, Message: ae.Message}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("vem agent: decode %s: %w", path, err)
		}
	}
	return nil
}

// Card is "show card".
func (c *Client) Card(ctx context.Context) (api.VEMCard, error) {
	var v api.VEMCard
	return v, c.do(ctx, "GET", "/v1/card", nil, &v)
}

// Config returns the applied config; an *Error with code not_found before
// the first one.
func (c *Client) Config(ctx context.Context) (api.SwitchConfig, error) {
	var v api.SwitchConfig
	return v, c.do(ctx, "GET", "/v1/config", nil, &v)
}

// AppliedConfig returns what the agent applies: the local part merged
// with the VSM's when the host has joined a switch.
func (c *Client) AppliedConfig(ctx context.Context) (api.SwitchConfig, error) {
	var v api.SwitchConfig
	return v, c.do(ctx, "GET", "/v1/config?merged=1", nil, &v)
}

// SetConfig applies a whole switch config and returns the ports' status.
func (c *Client) SetConfig(ctx context.Context, sc api.SwitchConfig) ([]api.PortStatus, error) {
	var v []api.PortStatus
	return v, c.do(ctx, "PUT", "/v1/config", sc, &v)
}

// CheckConfig asks whether the agent would take sc, changing nothing.
func (c *Client) CheckConfig(ctx context.Context, sc api.SwitchConfig) error {
	return c.do(ctx, "PUT", "/v1/config?dry_run=1", sc, nil)
}

// Ports is "show ports".
func (c *Client) Ports(ctx context.Context) ([]api.PortStatus, error) {
	var v []api.PortStatus
	return v, c.do(ctx, "GET", "/v1/ports", nil, &v)
}

// MACs is "show mac".
func (c *Client) MACs(ctx context.Context) ([]api.MACEntry, error) {
	var v []api.MACEntry
	return v, c.do(ctx, "GET", "/v1/macs", nil, &v)
}

// VSMStatus is the state of the agent's link to its VSM.
func (c *Client) VSMStatus(ctx context.Context) (api.VSMLinkStatus, error) {
	var v api.VSMLinkStatus
	return v, c.do(ctx, "GET", "/v1/vsm", nil, &v)
}

// JoinVSM hands the agent the host's join data (it stores it, key
// included, and connects to the VSM); joining the same domain again
// replaces it.
func (c *Client) JoinVSM(ctx context.Context, j api.VSMJoin) (api.VSMLinkStatus, error) {
	var v api.VSMLinkStatus
	return v, c.do(ctx, "PUT", "/v1/vsm/join", j, &v)
}

// LeaveVSM makes the host leave its switch: the VSM's ports go, the local
// (standalone) part stays.
func (c *Client) LeaveVSM(ctx context.Context) error {
	return c.do(ctx, "DELETE", "/v1/vsm/join", nil, nil)
}

// AttachVSM asks the VSM (through the agent) for a vEth for a vNIC or
// vmknic and returns its name, VethN; the port itself arrives with the
// VSM's next config. IsHeadless(err) while the agent has no VSM
// connection.
func (c *Client) AttachVSM(ctx context.Context, a api.VSMAttachBody) (string, error) {
	a.RequestID = 0 // the agent's own
	var v api.VEMAttachResult
	return v.Port, c.do(ctx, "POST", "/v1/vsm/attach", a, &v)
}

// DetachVSM tells the VSM the owner's vEth is no longer needed here
// (Release: freed for good).
func (c *Client) DetachVSM(ctx context.Context, d api.VSMDetachBody) error {
	return c.do(ctx, "POST", "/v1/vsm/detach", d, nil)
}
