// Package hostd is the host daemon. This part serves the host's management
// API (HOSTD-9): HTTPS with TLS 1.3 on the management address only, a
// self-signed certificate generated at first start and pinned by clients,
// bearer-token authentication, JSON bodies from package api, and Prometheus
// metrics. Service control and power actions are forwarded to init over its
// control socket through the small ServiceControl and Power interfaces.
package hostd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/events"
	"github.com/flashvisor/flashvisor/hostd/task"
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// ServiceControl is what the API needs from init's service supervisor.
type ServiceControl interface {
	Services(ctx context.Context) ([]api.Service, error)
	Log(ctx context.Context, name string) ([]string, error)
	Restart(ctx context.Context, name string) error
	Signal(ctx context.Context, name, signal string) error
}

// Power is what the API needs from init's shutdown funnel.
type Power interface {
	Shutdown(ctx context.Context) error
	Reboot(ctx context.Context) error
}

// ErrNoManagementAddress is returned when boot.json names no management
// address and no listen address is configured: hostd must not fall back to
// listening everywhere (SEC-1).
var ErrNoManagementAddress = errors.New("no management address: refusing to listen anywhere else")

// Options configure the daemon. Zero paths mean the layout defaults.
type Options struct {
	BootInfoFile string // api.BootInfo written by init
	ManifestFile string // api.Manifest of the image, for the version
	CmdlineFile  string // kernel command line, for flashvisor.token
	// StateDir overrides BootInfo.StateDir.
	StateDir string
	// Listen overrides the listen address (host:port); by default it is the
	// management address from boot.json, port layout.APIPort.
	Listen string
	// ServiceName is hostd's own service name: restarting or signalling it
	// is answered before init is asked, as init will stop this process.
	ServiceName string
	Sys         SysPaths

	Services ServiceControl
	Power    Power
	Logger   *slog.Logger
	// Console receives the banner and a generated token (stdout, which init
	// copies to the console).
	Console io.Writer
	Now     func() time.Time
	// PowerDelay is how long after answering a shutdown or reboot request
	// init is asked; it gives the answer time to leave the host.
	PowerDelay time.Duration

	// OpenDatastores returns the datastore manager, given the state
	// directory it keeps its list in (known only inside New). nil, or a nil
	// result, runs hostd without datastores. Tasks runs long operations and
	// Events is the event bus; New makes both when nil and publishes each
	// task's end unless Tasks.Done is set.
	OpenDatastores func(stateDir string) Datastores
	Tasks          *task.Manager
	Events         *events.Bus

	// OpenVMs builds the VM manager and port groups (nil: no VMs).
	OpenVMs OpenVMs
	// VEM is the VEM agent, for its debug views (nil: 503).
	VEM VEM
	// VSM joins the host to a distributed switch and lists both switches'
	// port groups (nil: 503, and only the standalone switch's are listed).
	VSM VSM
	// ManagementAddrs, if set, lists the management vmknics' addresses
	// now: the API then listens on every address but answers only on
	// these and the boot management address (see mgmtListener).
	ManagementAddrs func() []netip.Addr
	// AutostartMarker (on tmpfs) records that autostart ran since boot;
	// ShutdownMarker is init's "the host is going down" file.
	AutostartMarker string
	ShutdownMarker  string
	// NetworkReady, if set, is closed when vNICs can be attached (the
	// switch reached the VEM agent, which starts alongside hostd).
	// Autostart waits for it, up to AutostartNetworkWait (default 3 min),
	// then goes on: a VM that still cannot attach gets an event.
	NetworkReady         <-chan struct{}
	AutostartNetworkWait time.Duration

	// OpenDisks builds the disk operations (import, clone, grow, info) on
	// the datastores; nil, or no datastores, answers 503.
	OpenDisks OpenDisks
}

// Server is a configured API server. New does every check that can fail
// before anything listens.
type Server struct {
	o        Options
	log      *slog.Logger
	boot     api.BootInfo
	version  string
	stateDir string
	listen   string
	mgmtAddr string
	cert     hostCert
	token    tokenHash
	metrics  *metrics
	handler  http.Handler
	routes   []route
	ds       Datastores
	tasks    *task.Manager
	vms      VMs
	pgs      PortGroups
	vem      VEM
	// mgmtAddrs filters the wildcard listener (nil: bound to one address).
	mgmtAddrs func() []netip.Addr
	disks     Disks
}

// New reads boot.json, the manifest and the kernel command line, loads or
// creates the TLS identity and the API token, and builds the handler.
func New(o Options) (*Server, error) {
	if o.BootInfoFile == "" {
		o.BootInfoFile = layout.BootInfoFile
	}
	if o.ManifestFile == "" {
		o.ManifestFile = layout.ManifestFile
	}
	if o.CmdlineFile == "" {
		o.CmdlineFile = "/proc/cmdline"
	}
	if o.ServiceName == "" {
		o.ServiceName = "hostd"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PowerDelay == 0 {
		o.PowerDelay = 200 * time.Millisecond
	}
	if o.Services == nil || o.Power == nil {
		return nil, errors.New("hostd: Services and Power are required")
	}
	o.Sys = o.Sys.withDefaults()
	s := &Server{o: o, log: o.Logger}

	if err := readJSON(o.BootInfoFile, &s.boot); err != nil {
		return nil, fmt.Errorf("boot info: %w", err)
	}
	var m api.Manifest
	switch err := readJSON(o.ManifestFile, &m); {
	case err != nil:
		s.log.Warn("image manifest unreadable, version unknown", "err", err)
		s.version = "unknown"
	case m.Version == "":
		s.log.Warn("image manifest has no version", "path", o.ManifestFile)
		s.version = "unknown"
	default:
		s.version = m.Version
	}

	var mgmtIP netip.Addr
	if a := s.boot.Management.Address; a != "" {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("boot info: management address %q: %w", a, err)
		}
		mgmtIP = p.Addr()
		s.mgmtAddr = mgmtIP.String()
	}
	s.listen = o.Listen
	switch {
	case s.listen != "":
	case o.ManagementAddrs != nil:
		// Wildcard, filtered: see mgmtListener.
		s.listen = net.JoinHostPort("", strconv.Itoa(layout.APIPort))
		s.mgmtAddrs = func() []netip.Addr {
			as := o.ManagementAddrs()
			if mgmtIP.IsValid() {
				as = append(as, mgmtIP)
			}
			return as
		}
	case mgmtIP.IsValid():
		s.listen = net.JoinHostPort(mgmtIP.String(), strconv.Itoa(layout.APIPort))
	default:
		return nil, ErrNoManagementAddress
	}

	s.vem = o.VEM
	s.stateDir = o.StateDir
	if s.stateDir == "" {
		s.stateDir = s.boot.StateDir
	}
	if s.stateDir == "" {
		s.stateDir = layout.StateDir
	}
	if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if !s.boot.PersistentState {
		s.log.Warn("state is not persistent: the TLS identity and API token are new at every boot", "state_dir", s.stateDir)
	}

	hostname := s.boot.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	var ips []netip.Addr
	if mgmtIP.IsValid() {
		ips = append(ips, mgmtIP)
	}
	cert, err := loadOrCreateCert(s.stateDir, hostname, ips, o.Now(), s.log)
	if err != nil {
		return nil, err
	}
	s.cert = cert

	tok, err := s.cmdlineToken()
	if err != nil {
		return nil, err
	}
	if s.token, err = resolveToken(s.stateDir, tok, o.Console, s.log); err != nil {
		return nil, err
	}

	s.openDatastores()
	s.openDisks()
	s.initTasks()
	s.metrics = newMetrics(s)
	s.handler = s.buildHandler()
	return s, nil
}

// cmdlineToken returns flashvisor.token from the kernel command line, or "".
// Parse problems are init's to report (it parses the same line at boot);
// logging them here could echo a mistyped secret.
func (s *Server) cmdlineToken() (string, error) {
	b, err := os.ReadFile(s.o.CmdlineFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("kernel command line: %w", err)
	}
	c, err := cmdline.Parse(string(b))
	if err != nil {
		s.log.Warn("kernel command line has invalid flashvisor.* keys; see init's boot log")
	}
	return c.Token, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Fingerprint is the SHA-256 fingerprint of the host certificate.
func (s *Server) Fingerprint() string { return s.cert.fingerprint }

// Handler is the API's HTTP handler, with authentication, logging, limits
// and panic recovery.
func (s *Server) Handler() http.Handler { return s.handler }

// TLSConfig is the server TLS configuration: the host certificate, TLS 1.3
// only.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert.cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// Run listens on the management address, prints the console banner and
// serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.listen, err)
	}
	if s.mgmtAddrs != nil {
		ln = &mgmtListener{Listener: ln, allowed: s.mgmtAddrs, refused: func(local, remote net.Addr) {
			s.log.Debug("API connection to a non-management address refused", "local", local.String(), "remote", remote.String())
		}}
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an existing listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Restart waits for init to stop a service.
		WriteTimeout:   90 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.mountDatastores(ctx)
	s.startVMs(ctx)
	s.printBanner(ln.Addr())
	s.log.Info("API listening", "addr", ln.Addr().String(), "fingerprint", s.cert.fingerprint)

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.stopVMs()
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		s.log.Warn("graceful stop cut short", "err", err)
	}
	<-errc
	s.log.Info("API stopped")
	return nil
}

// BannerLines are the console lines printed once the API listens.
func (s *Server) BannerLines(addr net.Addr) []string {
	host := s.boot.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	hostport := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() && s.mgmtAddrs != nil {
		// Listening everywhere, answering on the management addresses.
		var hs []string
		for _, a := range s.mgmtAddrs() {
			h := netip.AddrPortFrom(a, uint16(ta.Port)).String()
			if ta.Port == layout.APIPort {
				h = strings.TrimSuffix(h, ":443")
			}
			hs = append(hs, h)
		}
		hostport = strings.Join(hs, ", https://")
		if len(hs) == 0 {
			hostport = "(no management address yet)"
		}
	} else if ta, ok := addr.(*net.TCPAddr); ok && ta.Port == layout.APIPort {
		hostport = ta.IP.String()
		if strings.Contains(hostport, ":") {
			hostport = "[" + hostport + "]"
		}
	}
	return []string{
		"Flashvisor host " + host + " (" + s.version + ")",
		"  API URL:             https://" + hostport + "/",
		"  Certificate SHA-256: " + s.cert.fingerprint,
	}
}

func (s *Server) printBanner(addr net.Addr) {
	var b strings.Builder
	b.WriteString("\n")
	for _, l := range s.BannerLines(addr) {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	io.WriteString(s.o.Console, b.String())
}
