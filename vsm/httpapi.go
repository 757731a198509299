package vsm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/chassis"
)

// MaxBodyBytes caps every API request body.
const MaxBodyBytes = 256 << 10

// MaxCLILines caps the lines of one CLI request.
const MaxCLILines = 10000

// Routes of the management API (all require the bearer token).
const (
	RouteCLI     = "POST /api/v1/cli"
	RouteJoin    = "POST /api/v1/join"
	RouteModules = "GET /api/v1/modules"
	RouteHealth  = "GET /api/v1/health"
)

// Routes lists the management API's routes (docs/vsm-openapi.yaml).
func Routes() []string { return []string{RouteCLI, RouteJoin, RouteModules, RouteHealth} }

// Health is the body of GET /api/v1/health (docs/vsm-openapi.yaml).
type Health = api.VSMHealth

func (s *Server) buildHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(RouteCLI, s.handleCLI)
	mux.HandleFunc(RouteJoin, s.handleJoin)
	mux.HandleFunc(RouteModules, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Modules()) })
	mux.HandleFunc(RouteHealth, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Health()) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.ErrNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s.logRequests(s.recoverPanics(s.authenticate(mux)))
}

// Health reports the VSM's state and control-channel counters.
func (s *Server) Health() Health {
	s.mu.Lock()
	n, domain, state, epoch := len(s.conns), s.cfg.SVSDomain.ID, s.stateLocked(), s.epoch
	s.mu.Unlock()
	return Health{
		Status: state, Epoch: epoch, Domain: domain, Modules: n,
		Joins: s.metrics.joins.Load(), ForeignDomain: s.metrics.foreignDomain.Load(),
		SeqGaps: s.metrics.seqGaps.Load(), BadMessages: s.metrics.badMessages.Load(),
		Nacks: s.metrics.nacks.Load(), Version: s.o.Version,
		Frames: s.metrics.frames.Load(), PacketFrames: s.metrics.packetFrames.Load(), PacketDropped: s.metrics.packetDropped.Load(),
	}
}

// authenticate checks the bearer token (constant time) on every route and
// caps the body.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.token.Matches(strings.TrimSpace(tok)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flashvisor-vsm"`)
			writeError(w, http.StatusUnauthorized, api.ErrUnauthorized, "missing or invalid bearer token")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("API handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, api.ErrInternal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// logRequests logs method, path and status: never headers (the token) or
// bodies (join bundles hold keys).
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.log.Info("api", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration", time.Since(start).Round(time.Microsecond).String(), "remote", r.RemoteAddr)
	})
}

// handleCLI runs the request's lines in one new session. Output of every
// line that ran is returned; the first failing line stops the rest.
func (s *Server) handleCLI(w http.ResponseWriter, r *http.Request) {
	var req api.VSMCLIRequest
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Commands) > MaxCLILines {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, fmt.Sprintf("%d lines, at most %d", len(req.Commands), MaxCLILines))
		return
	}
	writeJSON(w, http.StatusOK, RunCLI(s.NewSession(), req.Commands))
}

// RunCLI runs lines in sess and collects the output as the API returns it.
func RunCLI(sess Session, lines []string) api.VSMCLIResponse {
	res := api.VSMCLIResponse{FailedLine: -1}
	var out strings.Builder
	for i, line := range lines {
		o, err := sess.Exec(line)
		out.WriteString(ensureNL(o))
		if err != nil {
			res.Error = errorText(err)
			res.FailedLine = i
			break
		}
		if sess.Done() {
			break
		}
	}
	res.Output = out.String()
	return res
}

// errorText is what an operator sees for a failed line.
func errorText(err error) string { return err.Error() }

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.VSMJoinRequest
	if !readJSON(w, r, &req) {
		return
	}
	j, err := s.JoinBundle(req.HostUUID, req.Uplinks)
	switch {
	case errors.Is(err, ErrBadJoin):
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
	case errors.Is(err, ErrNoDomain), errors.Is(err, ErrStandby), errors.Is(err, chassis.ErrChassisFull):
		writeError(w, http.StatusConflict, api.ErrConflict, err.Error())
	case err != nil:
		s.log.Error("join bundle", "err", err)
		writeError(w, http.StatusInternalServerError, api.ErrInternal, "cannot issue the join bundle")
	default:
		s.log.Info("join bundle issued", "host", req.HostUUID)
		writeJSON(w, http.StatusOK, j)
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, api.ErrBodyTooLarge, fmt.Sprintf("body over %d bytes", mbe.Limit))
			return false
		}
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

// serveAPI serves the management API over TLS on ln until ctx is done.
func (s *Server) serveAPI(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.trust.apiTLS(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("API: %w", err)
}
