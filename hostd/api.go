package hostd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// MaxBodyBytes caps every request body; the API's bodies are tiny.
const MaxBodyBytes = 64 << 10

// initTimeout bounds one call to init. Restart waits for the service to
// stop (TERM, then KILL after init's grace period).
const initTimeout = 60 * time.Second

// Signals are the signals the API lets an operator send to a service.
var Signals = []string{"TERM", "KILL", "HUP", "INT", "USR1", "USR2"}

var serviceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// route is one endpoint. The table is the single source of the routes: the
// mux is built from it and the OpenAPI test compares it with docs/.
type route struct {
	method, path string
	h            http.HandlerFunc
}

func (s *Server) routeTable() []route {
	v := "/api/" + api.Version
	return slices.Concat([]route{
		{"GET", "/healthz", s.healthz},
		{"GET", "/metrics", s.serveMetrics},
		{"GET", v + "/host", s.getHost},
		{"POST", v + "/host/shutdown", s.power("shutdown", s.o.Power.Shutdown)},
		{"POST", v + "/host/reboot", s.power("reboot", s.o.Power.Reboot)},
		{"GET", v + "/services", s.listServices},
		{"GET", v + "/services/{name}/log", s.serviceLog},
		{"POST", v + "/services/{name}/restart", s.restartService},
		{"POST", v + "/services/{name}/signal", s.signalService},
	}, s.storageRoutes(v), s.taskRoutes(v), s.vmRoutes(v), s.portGroupRoutes(v), s.vsmRoutes(v), s.datastoreFileRoutes(v), s.diskRoutes(v))
}

// Routes returns "METHOD PATH" for every endpoint the server registers.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.routes {
		out = append(out, r.method+" "+r.path)
	}
	return out
}

// noAuth lists the only endpoint reachable without a token: load balancers
// and the e2e harness probe it before they have one.
func noAuth(r *http.Request) bool {
	return r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

func (s *Server) buildHandler() http.Handler {
	s.routes = s.routeTable()
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.method+" "+rt.path, rt.h)
	}
	var h http.Handler = jsonMux(mux)
	h = s.authenticate(h)
	h = s.recoverPanics(h)
	h = s.logRequests(h)
	return h
}

// jsonMux answers what the mux itself would answer in plain text (404 and
// 405) with api.Error bodies, keeping the Allow header.
func jsonMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &discardWriter{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusNotFound:
			writeError(w, http.StatusNotFound, api.ErrNotFound, "no such endpoint: "+r.URL.Path)
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, api.ErrMethodNotAllowed,
				fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		default:
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// discardWriter records what the mux's built-in handlers answer.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if noAuth(r) {
			next.ServeHTTP(w, r)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.token.Matches(strings.TrimSpace(tok)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flashvisor"`)
			writeError(w, http.StatusUnauthorized, api.ErrUnauthorized, "missing or invalid bearer token")
			return
		}
		// Uploads to a datastore are streamed to disk, not held in memory.
		if !(r.Method == http.MethodPut && filesPathRE.MatchString(r.URL.Path)) {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a handler panic into a 500 so bad input never takes
// the daemon down (SEC-3).
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("API handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); !ok || !sw.wrote {
				writeError(w, http.StatusInternalServerError, api.ErrInternal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status for the access log and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs every call (SEC-2). It logs neither headers nor bodies:
// the Authorization header holds the token.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(metricMethod(r.Method), strconv.Itoa(sw.status)).Inc()
		s.log.Info("api", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration", d.Round(time.Microsecond).String(), "remote", r.RemoteAddr)
	})
}

// metricMethod bounds the label's values: clients choose the method.
func metricMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "other"
}

// writeJSON writes v with an explicit Content-Length, so the answer is
// complete on the wire once flushed even while the handler goes on.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"internal","message":"encode answer"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

// codeStatus maps the stable error codes init answers with to HTTP.
var codeStatus = map[string]int{
	api.ErrNotFound:    http.StatusNotFound,
	api.ErrBadRequest:  http.StatusBadRequest,
	api.ErrUnavailable: http.StatusServiceUnavailable,
	api.ErrInternal:    http.StatusInternalServerError,
}

// coded is implemented by errors that carry an API error code, like the
// init client's.
type coded interface{ ErrorCode() string }

func (s *Server) initError(w http.ResponseWriter, r *http.Request, err error) {
	code := api.ErrInternal
	var c coded
	switch {
	case errors.As(err, &c):
		if _, ok := codeStatus[c.ErrorCode()]; ok {
			code = c.ErrorCode()
		}
	case errors.Is(err, context.DeadlineExceeded):
		code = api.ErrUnavailable
	}
	if code != api.ErrNotFound && code != api.ErrBadRequest {
		s.log.Warn("init request failed", "path", r.URL.Path, "err", err)
	}
	writeError(w, codeStatus[code], code, err.Error())
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hostInfo())
}

// hostInfo gathers the host's facts. A fact that cannot be read is logged
// and left zero: the rest is still worth answering.
func (s *Server) hostInfo() api.Host {
	p := s.o.Sys
	h := api.Host{
		Hostname:          s.boot.Hostname,
		UUID:              s.boot.HostUUID,
		Version:           s.version,
		PersistentState:   s.boot.PersistentState,
		ManagementAddress: s.mgmtAddr,
		Fingerprint:       s.cert.fingerprint,
		KVM:               kvmUsable(p.KVM),
	}
	var err error
	var errs []error
	if h.UptimeSeconds, err = uptime(p.Uptime); err != nil {
		errs = append(errs, err)
	}
	if h.CPUModel, h.CPUs, err = cpuInfo(p.CPUInfo); err != nil {
		errs = append(errs, err)
	}
	if h.CPUs == 0 {
		h.CPUs = runtime.NumCPU()
	}
	if h.MemoryBytes, err = memTotal(p.MemInfo); err != nil {
		errs = append(errs, err)
	}
	if h.Kernel, err = kernelRelease(p.OSRelease); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		s.log.Warn("host facts incomplete", "err", errors.Join(errs...))
	}
	return h
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), initTimeout)
	defer cancel()
	svcs, err := s.o.Services.Services(ctx)
	if err != nil {
		s.initError(w, r, err)
		return
	}
	if svcs == nil {
		svcs = []api.Service{}
	}
	writeJSON(w, http.StatusOK, svcs)
}

// serviceName returns the validated {name}, or answers 400.
func serviceName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !serviceNameRE.MatchString(name) {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest,
			fmt.Sprintf("invalid service name %q: want lowercase letters, digits and dashes, at most 32", name))
		return "", false
	}
	return name, true
}

func (s *Server) serviceLog(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), initTimeout)
	defer cancel()
	lines, err := s.o.Services.Log(ctx, name)
	if err != nil {
		s.initError(w, r, err)
		return
	}
	if lines == nil {
		lines = []string{}
	}
	writeJSON(w, http.StatusOK, api.ServiceLog{Name: name, Lines: lines})
}

func (s *Server) restartService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	s.control(w, r, name, "restart of "+name, func(ctx context.Context) error {
		return s.o.Services.Restart(ctx, name)
	})
}

func (s *Server) signalService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		bodyError(w, err)
		return
	}
	sig, err := parseSignalRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	s.control(w, r, name, "signal "+sig+" to "+name, func(ctx context.Context) error {
		return s.o.Services.Signal(ctx, name, sig)
	})
}

// control runs a service action and answers 202. Acting on hostd itself is
// answered first, because init stops this process before it could answer.
func (s *Server) control(w http.ResponseWriter, r *http.Request, name, what string, do func(context.Context) error) {
	if name == s.o.ServiceName {
		s.answerThen(w, what, do)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), initTimeout)
	defer cancel()
	if err := do(ctx); err != nil {
		s.initError(w, r, err)
		return
	}
	s.log.Info("service action done", "action", what)
	writeJSON(w, http.StatusAccepted, api.Accepted{Message: what + " accepted"})
}

// power answers 202, flushes the answer, and only then asks init: init's
// shutdown funnel stops hostd, so asking first could lose the answer.
func (s *Server) power(what string, do func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("host "+what+" requested over the API", "remote", r.RemoteAddr)
		s.answerThen(w, what, do)
	}
}

func (s *Server) answerThen(w http.ResponseWriter, what string, do func(context.Context) error) {
	writeJSON(w, http.StatusAccepted, api.Accepted{Message: what + " accepted"})
	if err := http.NewResponseController(w).Flush(); err != nil {
		s.log.Warn("flush answer", "err", err)
	}
	go func() {
		time.Sleep(s.o.PowerDelay)
		ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
		defer cancel()
		if err := do(ctx); err != nil {
			s.log.Error("init refused after the API accepted", "action", what, "err", err)
			return
		}
		s.log.Info("init accepted", "action", what)
	}()
}

// bodyError answers a failed body read: 413 when over MaxBodyBytes.
func bodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, api.ErrBodyTooLarge,
			fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		return
	}
	writeError(w, http.StatusBadRequest, api.ErrBadRequest, "read request body: "+err.Error())
}

// parseSignalRequest decodes and validates an api.SignalRequest: exactly one
// JSON object, no unknown fields, a signal from the allow-list.
func parseSignalRequest(body []byte) (string, error) {
	var req api.SignalRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", err
	}
	if !slices.Contains(Signals, req.Signal) {
		return "", fmt.Errorf("signal %q not allowed: want one of %s", req.Signal, strings.Join(Signals, ", "))
	}
	return req.Signal, nil
}

// decodeStrict decodes one JSON value into v, rejecting unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("malformed JSON body: empty")
		}
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("malformed JSON body: data after the object")
	}
	return nil
}
