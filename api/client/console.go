package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/flashvisor/flashvisor/api"
)

// Console attaches to a VM's serial console. Reads return the console's
// output, the recent scrollback first; writes type into the guest when
// write is true (the host refuses a second writer with an APIError of
// status 409). Without write, what is written is discarded by the host.
// The connection lasts until Close, ctx ends, or the VM powers off (Read
// then returns io.EOF).
func (c *Client) Console(ctx context.Context, name string, write bool) (io.ReadWriteCloser, error) {
	q := url.Values{}
	if write {
		q.Set("write", "true")
	}
	return c.dialWebsocket(ctx, consolePath(name, "/console"), q, nil)
}

// VNC opens a connection to a VM's VNC display: the bytes are the RFB
// protocol, as from a VNC server's socket. The connection lasts until
// Close, ctx ends, or the display goes away.
func (c *Client) VNC(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	return c.dialWebsocket(ctx, consolePath(name, "/vnc"), nil, []string{"binary"})
}

func consolePath(name, tail string) string {
	return "/api/" + api.Version + "/vms/" + url.PathEscape(name) + tail
}

// dialWebsocket dials path over the client's pinned TLS and returns the
// stream of binary messages as bytes.
func (c *Client) dialWebsocket(ctx context.Context, path string, q url.Values, subprotocols []string) (io.ReadWriteCloser, error) {
	tr, err := c.websocketTransport()
	if err != nil {
		return nil, err
	}
	// A refused handshake leaves its connection idle in this transport,
	// which nobody else uses.
	defer tr.CloseIdleConnections()
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	dctx, cancel := context.WithTimeout(ctx, c.handshakeTimeout())
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		HTTPHeader:   h,
		Subprotocols: subprotocols,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, answerError(resp)
		}
		// Unwrapping keeps ErrFingerprintMismatch visible to errors.Is.
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	// Console bursts and VNC framebuffer updates are bounded by what the
	// host sends, not by this limit's 32 KiB default.
	ws.SetReadLimit(-1)
	return websocket.NetConn(ctx, ws, websocket.MessageBinary), nil
}

// websocketTransport is a transport with the client's TLS settings (the
// pinned fingerprint) that speaks HTTP/1.1 only: the websocket upgrade
// does not exist in HTTP/2, which the host also offers.
func (c *Client) websocketTransport() (*http.Transport, error) {
	base, ok := c.hc.Transport.(*http.Transport)
	if !ok || base.TLSClientConfig == nil {
		return nil, errors.New("client: websocket: transport has no TLS configuration")
	}
	tc := base.TLSClientConfig.Clone()
	tc.NextProtos = []string{"http/1.1"}
	return &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: base.TLSHandshakeTimeout,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
	}, nil
}

// handshakeTimeout bounds the upgrade like any API call; the connection
// itself then lives as long as the caller wants.
func (c *Client) handshakeTimeout() time.Duration {
	if c.hc.Timeout > 0 {
		return c.hc.Timeout
	}
	return DefaultTimeout
}

// answerError turns a refused upgrade into an APIError. websocket.Dial
// leaves at most 1 KiB of the body readable, plenty for an api.Error.
func answerError(resp *http.Response) error {
	e := &APIError{Status: resp.StatusCode}
	var b []byte
	if resp.Body != nil {
		b, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	}
	var ae api.Error
	if json.Unmarshal(b, &ae) == nil && ae.Code != "" {
		e.Code, e.Message = ae.Code, ae.Message
	} else {
		e.Code = "http_" + fmt.Sprint(resp.StatusCode)
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}
