package client

import (
	"context"
	"net/http"

	"github.com/flashvisor/flashvisor/api"
)

// The distributed switch. Two servers speak these routes: a host's hostd
// (/api/v1/vsm: join, leave, link status) and the VSM itself (/api/v1/cli,
// /api/v1/join, /api/v1/modules); point the Client at the one you mean.

// JoinVSM hands the host to a VSM with the join bundle the VSM issued
// (hostd).
func (c *Client) JoinVSM(ctx context.Context, j api.VSMJoin) error {
	return c.do(ctx, http.MethodPost, v1("/vsm/join"), j, nil)
}

// LeaveVSM takes the host off its VSM: the VSM's ports go, the host's own
// switch stays (hostd).
func (c *Client) LeaveVSM(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, v1("/vsm/join"), nil, nil)
}

// VSMStatus is the host's link to its VSM (hostd).
func (c *Client) VSMStatus(ctx context.Context) (api.VSMLinkStatus, error) {
	var s api.VSMLinkStatus
	err := c.do(ctx, http.MethodGet, v1("/vsm"), nil, &s)
	return s, err
}

// VSMCLI runs CLI lines on the VSM as one session (VSM).
func (c *Client) VSMCLI(ctx context.Context, lines ...string) (api.VSMCLIResponse, error) {
	var r api.VSMCLIResponse
	err := c.do(ctx, http.MethodPost, v1("/cli"), api.VSMCLIRequest{Commands: lines}, &r)
	return r, err
}

// VSMJoinBundle asks the VSM for a host's join bundle (VSM).
func (c *Client) VSMJoinBundle(ctx context.Context, req api.VSMJoinRequest) (api.VSMJoin, error) {
	var j api.VSMJoin
	err := c.do(ctx, http.MethodPost, v1("/join"), req, &j)
	return j, err
}

// VSMModules is `show module` as data (VSM).
func (c *Client) VSMModules(ctx context.Context) ([]api.VSMModule, error) {
	var m []api.VSMModule
	err := c.do(ctx, http.MethodGet, v1("/modules"), nil, &m)
	return m, err
}

// VSMHealth is the VSM's state and control-channel counters (VSM).
func (c *Client) VSMHealth(ctx context.Context) (api.VSMHealth, error) {
	var h api.VSMHealth
	err := c.do(ctx, http.MethodGet, v1("/health"), nil, &h)
	return h, err
}
