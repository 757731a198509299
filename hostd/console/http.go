package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/flashvisor/flashvisor/api"
)

// pingInterval: a client that vanished without closing (laptop lid shut)
// is noticed within about two intervals, and frees the writer role.
const pingInterval = 30 * time.Second

// SerialHandler serves GET /api/v1/vms/{name}/console: it upgrades to a
// websocket carrying the serial console as binary messages both ways.
// Query: write=true asks for the writer role (409 while another session
// has it); scrollback=false skips the recent output sent first. Input from
// a read-only session is discarded. lookup returns the VM's hub, or an
// error wrapping ErrNoVM or ErrNoConsole.
func SerialHandler(lookup func(name string) (*Hub, error), log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		write, err := queryBool(r, "write", false)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		scrollback, err := queryBool(r, "scrollback", true)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		if !isUpgrade(r) {
			writeError(w, http.StatusUpgradeRequired, api.ErrBadRequest, "the console is a websocket: send an upgrade request")
			return
		}
		hub, err := lookup(name)
		if err != nil {
			lookupError(w, log, name, err)
			return
		}
		s, err := hub.Attach(AttachOptions{Write: write, Scrollback: scrollback})
		if err != nil {
			lookupError(w, log, name, err)
			return
		}
		defer s.Close()
		ws, err := accept(w, r)
		if err != nil {
			log.Debug("console: websocket accept failed", "vm", name, "err", err)
			return
		}
		defer ws.CloseNow()
		log.Info("console attached", "vm", name, "write", write, "remote", r.RemoteAddr)
		serveSerial(r.Context(), ws, s, log.With("vm", name))
		if n := s.Lost(); n > 0 {
			log.Info("console session read too slowly; output dropped", "vm", name, "bytes", n)
		}
		log.Info("console detached", "vm", name, "remote", r.RemoteAddr)
	})
}

func serveSerial(ctx context.Context, ws *websocket.Conn, s *Session, log *slog.Logger) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { keepalive(ctx, ws, cancel) })
	wg.Go(func() {
		defer cancel()
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 {
				if ws.Write(ctx, websocket.MessageBinary, buf[:n]) != nil {
					return
				}
			}
			if errors.Is(err, io.EOF) {
				ws.Close(websocket.StatusNormalClosure, "console closed: VM powered off")
				return
			}
			if err != nil {
				return
			}
		}
	})
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			break
		}
		if !s.Writer() {
			continue
		}
		if _, err := s.Write(p); err != nil {
			if errors.Is(err, ErrNotConnected) {
				// QEMU is restarting; typing into the gap is lost, as on
				// a real serial line.
				log.Debug("console input dropped", "err", err)
				continue
			}
			break
		}
	}
	cancel()
	s.Close() // wakes the output goroutine
	wg.Wait()
}

// VNCHandler serves GET /api/v1/vms/{name}/vnc: it upgrades to a websocket
// (subprotocol "binary" accepted, as noVNC asks for it) and proxies raw
// bytes to and from a new connection to the VM's VNC unix socket. lookup
// returns the socket's path, or an error wrapping ErrNoVM or ErrNoConsole.
func VNCHandler(lookup func(name string) (vncSocketPath string, err error), log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !isUpgrade(r) {
			writeError(w, http.StatusUpgradeRequired, api.ErrBadRequest, "the VNC display is a websocket: send an upgrade request")
			return
		}
		path, err := lookup(name)
		if err != nil {
			lookupError(w, log, name, err)
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(r.Context(), "unix", path)
		if err != nil {
			// The socket goes with QEMU: most often the VM just stopped.
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable, fmt.Sprintf("VM %s: VNC display not reachable: %v", name, err))
			return
		}
		defer conn.Close()
		ws, err := accept(w, r)
		if err != nil {
			log.Debug("vnc: websocket accept failed", "vm", name, "err", err)
			return
		}
		defer ws.CloseNow()
		log.Info("vnc attached", "vm", name, "remote", r.RemoteAddr)
		proxy(r.Context(), ws, conn)
		log.Info("vnc detached", "vm", name, "remote", r.RemoteAddr)
	})
}

// proxy copies between ws and conn until either side ends.
func proxy(ctx context.Context, ws *websocket.Conn, conn net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { keepalive(ctx, ws, cancel) })
	wg.Go(func() {
		defer cancel()
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if ws.Write(ctx, websocket.MessageBinary, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				ws.Close(websocket.StatusNormalClosure, "VNC display closed")
				return
			}
		}
	})
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			break
		}
		if _, err := conn.Write(p); err != nil {
			break
		}
	}
	cancel()
	conn.Close() // wakes the reading goroutine
	wg.Wait()
}

// keepalive pings the client so a dead peer ends the session.
func keepalive(ctx context.Context, ws *websocket.Conn, fail context.CancelFunc) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, pingInterval)
			err := ws.Ping(pctx)
			cancel()
			if err != nil {
				fail()
				return
			}
		}
	}
}

// accept upgrades the request.
func accept(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	// A hijacked connection keeps the deadlines the server set for plain
	// requests; a console lives for hours.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	return websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{"binary"},
		// The API authenticates with a bearer header, which a browser
		// never attaches on its own to a cross-site request, so the
		// origin check would protect nothing and would only stop a noVNC
		// page served from elsewhere.
		InsecureSkipVerify: true,
	})
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func queryBool(r *http.Request, key string, def bool) (bool, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query %s=%q: want true or false", key, v)
	}
	return b, nil
}

func lookupError(w http.ResponseWriter, log *slog.Logger, name string, err error) {
	switch {
	case errors.Is(err, ErrNoVM):
		writeError(w, http.StatusNotFound, api.ErrNotFound, fmt.Sprintf("VM %s: %v", name, err))
	case errors.Is(err, ErrNoConsole), errors.Is(err, ErrWriterTaken), errors.Is(err, ErrClosed):
		writeError(w, http.StatusConflict, api.ErrConflict, fmt.Sprintf("VM %s: %v", name, err))
	default:
		log.Warn("console lookup failed", "vm", name, "err", err)
		writeError(w, http.StatusInternalServerError, api.ErrInternal, fmt.Sprintf("VM %s: console: %v", name, err))
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(api.Error{Code: code, Message: msg})
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
