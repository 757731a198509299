// Package client is the Go client of the host management API (HOSTD-9), used
// by fvctl and by the end-to-end harness. Hosts use a self-signed certificate,
// so the client does not check a CA chain or host name: it pins the SHA-256
// fingerprint of the host's leaf certificate instead, the way ssh pins host
// keys.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// DefaultPort is the API's port when an address has none.
const DefaultPort = "443"

// DefaultTimeout bounds one API call when Options.Timeout is zero. It is
// generous because a service restart waits for the service to stop.
const DefaultTimeout = 60 * time.Second

// ErrFingerprintMismatch is returned (wrapped) when the host presents a
// certificate whose fingerprint is not the pinned one.
var ErrFingerprintMismatch = errors.New("host certificate fingerprint does not match the pinned fingerprint")

// maxBody caps what the client reads of an answer; service logs are the
// largest bodies and stay far below it.
const maxBody = 16 << 20

// Options configure a Client.
type Options struct {
	Addr        string // host:port; a missing port means 443
	Token       string // API bearer token
	Fingerprint string // pinned certificate SHA-256, any form NormalizeFingerprint accepts
	Insecure    bool   // accept any certificate (only when Fingerprint is empty)
	Timeout     time.Duration
}

// Client talks to one host's management API. It is safe for concurrent use.
type Client struct {
	base  string // https://host:port
	token string
	hc    *http.Client
}

// APIError is returned for every non-2xx answer.
type APIError struct {
	Status  int
	Code    string // stable, one of the api.Err* codes
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("API error %d %s: %s", e.Status, e.Code, e.Message)
}

// New returns a client for o.Addr. It refuses to be built without a way to
// trust the host: a fingerprint to pin, or an explicit Insecure.
func New(o Options) (*Client, error) {
	addr, err := WithDefaultPort(o.Addr)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	switch {
	case o.Fingerprint != "":
		want, err := NormalizeFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces the CA and host name checks, which a self-signed
		// host certificate cannot pass; VerifyConnection still runs.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no certificate presented", ErrFingerprintMismatch)
			}
			got := Fingerprint(cs.PeerCertificates[0].Raw)
			if got != want {
				return fmt.Errorf("%w: host presented %s, pinned %s", ErrFingerprintMismatch, got, want)
			}
			return nil
		}
	case o.Insecure:
		tc.InsecureSkipVerify = true
	default:
		return nil, errors.New("client: neither a certificate fingerprint to pin nor Insecure given")
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	tr := &http.Transport{
		Proxy:               nil, // a management network is reached directly
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{
		base:  "https://" + addr,
		token: o.Token,
		hc:    &http.Client{Transport: tr, Timeout: timeout},
	}, nil
}

// WithDefaultPort returns addr as host:port, adding port 443 when it has
// none. IPv6 literals may come with or without brackets.
func WithDefaultPort(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("client: empty host address")
	}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		if n, err := strconv.Atoi(p); h == "" || err != nil || n < 1 || n > 65535 || strings.ContainsAny(h, "/ ") {
			return "", fmt.Errorf("client: bad host address %q: want host or host:port", addr)
		}
		return addr, nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if h == "" || strings.ContainsAny(h, "[]/ ") {
		return "", fmt.Errorf("client: bad host address %q", addr)
	}
	return net.JoinHostPort(h, DefaultPort), nil
}

// Fingerprint returns the SHA-256 of a certificate's DER bytes as uppercase
// colon-separated hex ("AB:CD:..."), the form hosts print on the console.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return formatFingerprint(sum[:])
}

func formatFingerprint(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	sb.Grow(len(b) * 3)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// NormalizeFingerprint accepts a SHA-256 fingerprint in any case, with or
// without colons (and an optional "sha256:" prefix), and returns it in the
// canonical "AB:CD:..." form.
func NormalizeFingerprint(s string) (string, error) {
	t := strings.TrimSpace(s)
	if len(t) > 7 && strings.EqualFold(t[:7], "sha256:") {
		t = t[7:]
	}
	t = strings.ReplaceAll(t, ":", "")
	b, err := hex.DecodeString(t)
	if err != nil {
		return "", fmt.Errorf("fingerprint %q: not hex: %w", s, err)
	}
	if len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: %d bytes, want %d (SHA-256)", s, len(b), sha256.Size)
	}
	return formatFingerprint(b), nil
}

// FetchFingerprint connects to addr without verifying anything and returns
// the fingerprint of the certificate it presents. It is for trust on first
// use: show the fingerprint to a person or store it, then pin it.
func FetchFingerprint(ctx context.Context, addr string) (string, error) {
	addr, err := WithDefaultPort(addr)
	if err != nil {
		return "", err
	}
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config:    &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true},
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fetch fingerprint of %s: %w", addr, err)
	}
	defer conn.Close()
	cs := conn.(*tls.Conn).ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("fetch fingerprint of %s: no certificate presented", addr)
	}
	return Fingerprint(cs.PeerCertificates[0].Raw), nil
}

// do sends one request and decodes a JSON answer into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	body, err := c.raw(ctx, method, path, in)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// raw sends one request and returns the body of a 2xx answer.
func (c *Client) raw(ctx context.Context, method, path string, in any) ([]byte, error) {
	_, b, err := c.send(ctx, method, path, in)
	return b, err
}

// send is raw that also returns the 2xx status, for the calls whose
// answer depends on it (a guarded network change answers 202).
func (c *Client) send(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// url.Error carries the token-free URL; unwrapping keeps
		// ErrFingerprintMismatch visible to errors.Is.
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return 0, nil, apiError(resp.StatusCode, b)
	}
	return resp.StatusCode, b, nil
}

// apiError decodes a non-2xx answer.
func apiError(status int, b []byte) *APIError {
	e := &APIError{Status: status}
	var ae api.Error
	if json.Unmarshal(b, &ae) == nil && ae.Code != "" {
		e.Code, e.Message = ae.Code, ae.Message
	} else {
		e.Code = "http_" + fmt.Sprint(status)
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}

func servicePath(name, tail string) string {
	return "/api/" + api.Version + "/services/" + url.PathEscape(name) + tail
}

// Healthz checks that the API answers; it needs no token.
func (c *Client) Healthz(ctx context.Context) error {
	_, err := c.raw(ctx, http.MethodGet, "/healthz", nil)
	return err
}

// Host returns the host's facts.
func (c *Client) Host(ctx context.Context) (api.Host, error) {
	var h api.Host
	err := c.do(ctx, http.MethodGet, "/api/"+api.Version+"/host", nil, &h)
	return h, err
}

// Services lists the services init supervises.
func (c *Client) Services(ctx context.Context) ([]api.Service, error) {
	var s []api.Service
	err := c.do(ctx, http.MethodGet, "/api/"+api.Version+"/services", nil, &s)
	return s, err
}

// ServiceLog returns the last lines a service wrote.
func (c *Client) ServiceLog(ctx context.Context, name string) (api.ServiceLog, error) {
	var l api.ServiceLog
	err := c.do(ctx, http.MethodGet, servicePath(name, "/log"), nil, &l)
	return l, err
}

// RestartService stops a service (TERM, then KILL) and starts it again.
func (c *Client) RestartService(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, servicePath(name, "/restart"), nil, nil)
}

// SignalService sends a signal ("TERM", "KILL", "HUP", "INT", "USR1",
// "USR2") to a service's process group.
func (c *Client) SignalService(ctx context.Context, name, signal string) error {
	return c.do(ctx, http.MethodPost, servicePath(name, "/signal"), api.SignalRequest{Signal: signal}, nil)
}

// Shutdown asks the host to power off cleanly.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/"+api.Version+"/host/shutdown", nil, nil)
}

// Reboot asks the host to reboot cleanly.
func (c *Client) Reboot(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/"+api.Version+"/host/reboot", nil, nil)
}

// Metrics returns the Prometheus text exposition of the host.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	b, err := c.raw(ctx, http.MethodGet, "/metrics", nil)
	return string(b), err
}
