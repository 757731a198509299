package vsm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/chassis"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/ports"
)

// Files of the VSM's state directory besides the trust material.
const (
	// RunningConfigFile is the running configuration. NX-OS keeps it in
	// memory only and loses it on reload unless `copy running-config
	// startup-config` saved it; the VSM writes it after every change as
	// well, so a VSM process restart (a crash, an upgrade, a reboot of
	// the VSM VM) loses nothing. At start the running file wins over the
	// startup file; the startup file stays what `copy run start` saved.
	RunningConfigFile = "running-config"
	// StartupConfigFile is `copy running-config startup-config`'s file.
	StartupConfigFile = "startup-config"
	// ChassisFile holds the slot bindings (package chassis).
	ChassisFile = "chassis.json"
	// PortsFile holds the vEth and uplink bindings (package ports).
	PortsFile = "ports.json"
)

// Default listen addresses.
const (
	DefaultAPIAddr = ":443"
	DefaultSSHAddr = ":22"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// StateDir holds configs, bindings, keys, the token hash and the
	// epoch. Required.
	StateDir string
	// ControlAddr, APIAddr and SSHAddr are the listen addresses used by
	// Run (defaults ":2001", ":443", ":22").
	ControlAddr string
	APIAddr     string
	SSHAddr     string
	// Advertise are the host:port addresses VEMs reach this VSM's control
	// port at; they go into the opaque data and their IPs into the server
	// certificate. Default: none (the join bundle then lists none).
	Advertise []string
	// DomainID presets `domain id` on a fresh configuration (0: leave it
	// unconfigured; the VSM then admits no VEM until an operator sets it).
	DomainID int
	// Token, when set, is the API token and SSH password (from
	// -token-file); otherwise it comes from CmdlineFile's
	// flashvisor.token, the stored hash, or is generated and printed once
	// on Console.
	Token       string
	CmdlineFile string
	Console     io.Writer
	Logger      *slog.Logger
	// Clock drives the chassis's dead-interval bookkeeping (tests inject a
	// fake one); Now is derived from it.
	Clock chassis.Clock
	// HeartbeatInterval, DeadInterval and SweepInterval default to 2 s, 8 s
	// and 1 s (VSM-3); tests shorten them.
	HeartbeatInterval time.Duration
	DeadInterval      time.Duration
	SweepInterval     time.Duration
	// MaxSlot is the highest VEM slot (default 66); tests lower it.
	MaxSlot int
	// Version is the software version shown in `show module`.
	Version string
	// Now is the wall clock (default: Clock.Now).
	Now func() time.Time

	// High availability (VSM-7, see ha.go). Role is this VSM's
	// redundancy role (config.RoleStandalone, RolePrimary or
	// RoleSecondary); empty: the configuration's `system redundancy
	// role`. A role given here is written into the configuration.
	Role string
	// PeerAddr is the other VSM's peer port (host:port). The secondary
	// dials it: to fetch the domain's trust material on its first start
	// (pairing) and for the peer link. The primary only listens.
	PeerAddr string
	// PeerListenAddr is the peer port Run listens on in an HA role
	// (default ":2002").
	PeerListenAddr string
	// PeerHeartbeat and PeerDead default to 1 s and 6 s: heartbeats on
	// the peer link, and how long a standby goes without hearing an
	// active peer before it takes over. PairTimeout (default 2 min)
	// bounds how long New tries to pair a secondary that has no trust
	// material yet. Tests shorten them.
	PeerHeartbeat time.Duration
	PeerDead      time.Duration
	PairTimeout   time.Duration

	// Packet is the receiving end of the packet channel on the packet
	// vNIC (svs mode L2, VEM-9; internal/pktchan.Conn in the VSM VM),
	// PacketMAC that vNIC's address, which the welcome tells VEMs. Nil:
	// VEMs relay frames over the control connection only.
	Packet    PacketSource
	PacketMAC net.HardwareAddr
}

// PacketSource delivers the packet channel payloads received on the
// packet vNIC: Run calls fn with each (fn does not keep it) until ctx
// ends (then it returns nil) or the socket fails.
type PacketSource interface {
	Run(ctx context.Context, fn func(payload []byte)) error
}

type sysClock struct{}

func (sysClock) Now() time.Time { return time.Now() }

// metrics are counters shown in logs and the health endpoint.
type metrics struct {
	joins, foreignDomain, seqGaps, badMessages, nacks, frames atomic.Uint64
	// packetFrames are the frames taken in from the packet VLAN,
	// packetDropped those refused (malformed, unknown module, bad tag,
	// replayed).
	packetFrames, packetDropped atomic.Uint64
}

// portReport is a VEM's last port report.
type portReport struct {
	body api.VSMPortReportBody
	at   time.Time
}

// Server is the VSM daemon: control channel, switch model, management API
// and SSH CLI. Build it with New; Run or Serve it.
type Server struct {
	o       Options
	log     *slog.Logger
	trust   *trust
	token   tokenHash
	sshKey  ssh.Signer
	chassis *chassis.Chassis
	ports   *ports.Registry
	metrics metrics
	handler http.Handler
	// cdp is the CDP neighbor table the VEMs' relayed frames fill.
	cdp cdpTable
	// igmp is the IGMP snooping table the VEMs' relayed frames fill.
	igmp igmpTable

	// role is the redundancy role this process runs (fixed at New).
	role string
	// syncKick wakes the peer link's sender after a change (HA sync).
	syncKick chan struct{}
	// syncDirty is set by every replicated change until the peer sender
	// has folded it into a state revision (Redundancy's sync state).
	syncDirty atomic.Bool

	// updateMu serialises Update (validate, persist, commit, push) and
	// the standby's installs of the active's state.
	updateMu sync.Mutex
	// mu guards the running configuration, the connections and the
	// reports, and orders every message queued to a VEM.
	mu  sync.Mutex
	cfg config.Config
	// domain mirrors cfg.SVSDomain.ID for the check every VEM message
	// gets: it must not wait for s.mu while a push holds it.
	domain  atomic.Int64
	conns   map[int]*vemConn
	gens    map[int]uint64 // last generation sent per module
	reports map[int]portReport
	// epoch is the activation epoch stamped on every message (VSM-7):
	// raised and stored at each activation.
	epoch uint64
	// ha is the redundancy state (ha.go).
	ha haState
	// startup is the startup configuration's text (synced to the peer).
	startup string
}

// New loads or creates the VSM's state: trust material, token, SSH host
// key, configuration, chassis and port bindings. A standalone VSM raises
// the activation epoch and is active from here on; one of an HA pair
// starts as standby and Serve decides (ha.go). A secondary without trust
// material first pairs with its primary (pair.go).
func New(o Options) (*Server, error) {
	if o.StateDir == "" {
		return nil, errors.New("vsm: no state directory")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = os.Stdout
	}
	if o.Clock == nil {
		o.Clock = sysClock{}
	}
	if o.Now == nil {
		o.Now = o.Clock.Now
	}
	if o.ControlAddr == "" {
		o.ControlAddr = fmt.Sprintf(":%d", api.VSMDefaultPort)
	}
	if o.APIAddr == "" {
		o.APIAddr = DefaultAPIAddr
	}
	if o.SSHAddr == "" {
		o.SSHAddr = DefaultSSHAddr
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = api.VSMHeartbeatSeconds * time.Second
	}
	if o.DeadInterval <= 0 {
		o.DeadInterval = api.VSMDeadSeconds * time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Second
	}
	if o.MaxSlot == 0 {
		o.MaxSlot = api.VSMSlots
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.PeerListenAddr == "" {
		o.PeerListenAddr = fmt.Sprintf(":%d", DefaultPeerPort)
	}
	if o.PeerHeartbeat <= 0 {
		o.PeerHeartbeat = PeerHeartbeatSeconds * time.Second
	}
	if o.PeerDead <= 0 {
		o.PeerDead = PeerDeadSeconds * time.Second
	}
	if o.PairTimeout <= 0 {
		o.PairTimeout = 2 * time.Minute
	}
	switch o.Role {
	case "", config.RoleStandalone, config.RolePrimary, config.RoleSecondary:
	default:
		return nil, fmt.Errorf("vsm: redundancy role %q: want standalone, primary or secondary", o.Role)
	}
	if o.DomainID < 0 || o.DomainID > api.VSMDomainIDMax {
		return nil, fmt.Errorf("vsm: domain id %d out of range 1-%d", o.DomainID, api.VSMDomainIDMax)
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("vsm: state directory: %w", err)
	}
	s := &Server{
		o: o, log: o.Logger, syncKick: make(chan struct{}, 1),
		conns: map[int]*vemConn{}, gens: map[int]uint64{}, reports: map[int]portReport{},
	}
	var err error
	if s.token, err = resolveToken(o.StateDir, o.Token, o.CmdlineFile, o.Console, s.log); err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	if s.cfg, err = s.loadConfig(); err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	s.domain.Store(int64(s.cfg.SVSDomain.ID))
	s.role = cmp.Or(o.Role, s.cfg.Redundancy, config.RoleStandalone)
	if s.cfg.Redundancy != s.role {
		s.cfg.Redundancy = s.role
		if err := s.cfg.Save(filepath.Join(o.StateDir, RunningConfigFile)); err != nil {
			return nil, fmt.Errorf("vsm: %w", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(o.StateDir, StartupConfigFile)); err == nil {
		s.startup = string(b)
	}
	// A secondary pairs on its first start; a primary with a peer address
	// and no domain CA replaces a lost primary and pairs the same way with
	// the surviving VSM (active by now).
	if s.role == config.RoleSecondary || (s.role == config.RolePrimary && o.PeerAddr != "") {
		paired, err := s.pairIfNeeded()
		if err != nil {
			return nil, fmt.Errorf("vsm: %w", err)
		}
		s.ha.paired = paired
	}
	if s.trust, err = loadOrCreateTrust(o.StateDir, advertisedIPs(o.Advertise), o.Now, s.log); err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	if s.sshKey, err = loadOrCreateSSHKey(o.StateDir, s.log); err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	s.chassis, err = chassis.New(chassis.Options{
		Clock: o.Clock, Logger: s.log.With("part", "chassis"),
		Store:   chassis.FileStore{Path: filepath.Join(o.StateDir, ChassisFile)},
		MaxSlot: o.MaxSlot, DeadAfter: o.DeadInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	if err := s.applyPins(config.Config{}, s.cfg); err != nil {
		s.log.Warn("host pins of the configuration do not fit the chassis", "err", err)
	}
	s.ports, err = ports.New(ports.Options{
		Store:  ports.FileStore{Path: filepath.Join(o.StateDir, PortsFile)},
		Logger: s.log.With("part", "ports"), MaxModule: o.MaxSlot,
	})
	if err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	if err := s.initHA(); err != nil {
		return nil, fmt.Errorf("vsm: %w", err)
	}
	s.handler = s.buildHandler()
	return s, nil
}

// loadConfig reads the running configuration, else the startup one, else
// starts from config.Default with Options.DomainID.
func (s *Server) loadConfig() (config.Config, error) {
	for _, name := range []string{RunningConfigFile, StartupConfigFile} {
		path := filepath.Join(s.o.StateDir, name)
		c, err := cli.LoadStartup(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return config.Config{}, fmt.Errorf("%w (fix or remove the file)", err)
		}
		s.log.Info("configuration loaded", "file", path)
		return c, nil
	}
	c := config.Default()
	c.SVSDomain.ID = s.o.DomainID
	if err := c.Save(filepath.Join(s.o.StateDir, RunningConfigFile)); err != nil {
		return config.Config{}, err
	}
	s.log.Info("fresh configuration", "domain", c.SVSDomain.ID)
	return c, nil
}

// Epoch is this VSM's activation epoch, sent on every message (VSM-7).
// A standby reports the epoch of its last activation (0: never active).
func (s *Server) Epoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// CACertPEM is the domain CA certificate.
func (s *Server) CACertPEM() []byte { return s.trust.caPEM }

// Handler is the management API's HTTP handler (authentication, limits
// and logging included).
func (s *Server) Handler() http.Handler { return s.handler }

// ourDomain reports whether a message's domain is this switch's.
func (s *Server) ourDomain(d int) bool {
	id := s.domain.Load()
	return id != 0 && int64(d) == id
}

// domainForRefusal is the domain stamped on a refusal: ours, or 1 when
// none is configured (a message must carry a valid domain).
func (s *Server) domainForRefusal() int {
	return max(int(s.domain.Load()), 1)
}

// setConfigLocked makes c the running configuration in memory.
func (s *Server) setConfigLocked(c config.Config) {
	s.cfg = c
	s.domain.Store(int64(c.SVSDomain.ID))
}

// Listeners are the sockets Serve uses; a nil one is not served. Peer
// is the HA peer port (ignored by a standalone VSM).
type Listeners struct {
	Control net.Listener
	API     net.Listener
	SSH     net.Listener
	Peer    net.Listener
}

// Run listens on the configured addresses and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	var l Listeners
	var err error
	closeAll := func() {
		for _, x := range []net.Listener{l.Control, l.API, l.SSH, l.Peer} {
			if x != nil {
				x.Close()
			}
		}
	}
	if l.Control, err = net.Listen("tcp", s.o.ControlAddr); err != nil {
		return fmt.Errorf("vsm: control listener: %w", err)
	}
	if l.API, err = net.Listen("tcp", s.o.APIAddr); err != nil {
		closeAll()
		return fmt.Errorf("vsm: API listener: %w", err)
	}
	if l.SSH, err = net.Listen("tcp", s.o.SSHAddr); err != nil {
		closeAll()
		return fmt.Errorf("vsm: SSH listener: %w", err)
	}
	if s.role != config.RoleStandalone {
		if l.Peer, err = net.Listen("tcp", s.o.PeerListenAddr); err != nil {
			closeAll()
			return fmt.Errorf("vsm: peer listener: %w", err)
		}
	}
	return s.Serve(ctx, l)
}

// Serve serves the given listeners until ctx is done, then closes them
// and every connection. It returns the first serving error.
func (s *Server) Serve(ctx context.Context, l Listeners) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-ctx.Done()
		for _, x := range []net.Listener{l.Control, l.API, l.SSH, l.Peer} {
			if x != nil {
				x.Close()
			}
		}
		return nil
	})
	g.Go(func() error { s.sweepLoop(ctx); return nil })
	if s.role != config.RoleStandalone {
		s.serveHA(ctx, g, l.Peer)
	}
	if s.o.Packet != nil {
		g.Go(func() error { s.servePacket(ctx); return nil })
	}
	if l.Control != nil {
		s.log.Info("control channel listening", "addr", l.Control.Addr().String())
		g.Go(func() error { return s.serveControl(ctx, l.Control) })
	}
	if l.API != nil {
		s.log.Info("management API listening", "addr", l.API.Addr().String())
		g.Go(func() error { return s.serveAPI(ctx, l.API) })
	}
	if l.SSH != nil {
		s.log.Info("SSH CLI listening", "addr", l.SSH.Addr().String(),
			"fingerprint", ssh.FingerprintSHA256(s.sshKey.PublicKey()))
		srv := newSSHServer(s.sshKey, s.token, s.NewSession, "Flashvisor VSM "+s.o.Version+"\n", s.log.With("part", "ssh"))
		g.Go(func() error { return srv.serve(ctx, l.SSH) })
	}
	return g.Wait()
}

// NewSession starts a CLI session on this switch.
func (s *Server) NewSession() Session {
	return cli.NewSession(s, cli.Options{Now: s.o.Now, Version: s.o.Version})
}

// Session is one CLI session as the SSH and API front ends drive it;
// *cli.Session implements it.
type Session interface {
	Prompt() string
	Exec(line string) (string, error)
	Help(line string) string
	Complete(line string) (string, []string)
	// Done reports that the operator left (`exit` in exec mode).
	Done() bool
}
