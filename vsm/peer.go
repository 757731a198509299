package vsm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/vsm/chassis"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/ports"
)

// The peer link (VSM-7): one TLS 1.3 connection between the two VSMs of
// a pair, on the peer port (2002). The secondary dials, the primary
// accepts, whatever their states: one dialer means never two links. Both
// present their server certificate (CN "vsm", signed by the domain CA)
// and each checks the other's: a VEM's client certificate (CN = a host
// UUID) cannot open a peer link. A connection without a client
// certificate may only pair (pair.go).
//
// Messages are newline-delimited JSON peerMsgs, at most
// peerMaxMessageBytes. Each side says hello first (role, state, epoch,
// advertised control addresses), then every message carries its
// sender's state and epoch: heartbeats every PeerHeartbeat both ways; the
// active sends its whole replicated state (peerState) whenever it changed
// (checked at every heartbeat and right after every change), numbered by
// a revision; the standby installs it and acks the revision. A link
// silent for PeerDead is closed. Whole states rather than deltas: the
// state is small (the configuration text and two binding tables), a
// reconnect needs no replay logic, and installing is idempotent.
//
// Only VSMs speak this protocol and it carries the VSM's own records
// (chassis.State, ports.State), so its types live here, not in api.

// Peer message types.
const (
	peerHello     = "hello"
	peerHeartbeat = "heartbeat"
	peerState     = "state"
	peerAck       = "ack"
	peerPair      = "pair"
	peerPaired    = "paired"
	peerError     = "error"
	// peerSwitchover: the active asks its synchronized standby to take
	// over now (`system switchover`).
	peerSwitchover = "switchover"
)

// peerMaxMessageBytes bounds one peer message (a state with 64 modules of
// 1024 vEths each is about 15 MiB of JSON).
const peerMaxMessageBytes = 64 << 20

// peerMsg is the envelope of every peer message.
type peerMsg struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq"`
	// The sender's role, state (active/standby) and activation epoch.
	Role  string `json:"role,omitempty"`
	State string `json:"state,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	// Rev is the state revision carried (state) or applied (ack).
	Rev uint64 `json:"rev,omitempty"`
	// Hello: the sender's advertised control addresses and version.
	Advertise []string `json:"advertise,omitempty"`
	Version   string   `json:"version,omitempty"`
	// Sync is a peerSync (state messages).
	Sync json.RawMessage `json:"sync,omitempty"`
	// Pairing (pair.go): each side's proof of the token; the domain CA.
	Proof  []byte `json:"proof,omitempty"`
	CACert string `json:"ca_cert,omitempty"`
	CAKey  string `json:"ca_key,omitempty"`
	Error  string `json:"error,omitempty"`
}

// peerSync is the state the active replicates: everything a standby needs
// to send each VEM, after a takeover, the snapshot the VEM already runs.
type peerSync struct {
	// Config is the running configuration's text; Startup the startup
	// configuration's ("" when never saved).
	Config  string `json:"config"`
	Startup string `json:"startup,omitempty"`
	// Chassis are the slot bindings and pins, Ports the vEth and uplink
	// bindings, Gens the last generation sent to each module.
	Chassis chassis.State  `json:"chassis"`
	Ports   ports.State    `json:"ports"`
	Gens    map[int]uint64 `json:"gens,omitempty"`
}

// peerLink is one live peer connection.
type peerLink struct {
	conn      *tls.Conn
	br        *bufio.Reader
	wmu       sync.Mutex
	seq       uint64
	done      chan struct{}
	closeOnce sync.Once
	// sentRev is the state revision last sent (the sender goroutine's).
	sentRev uint64
}

func newPeerLink(c *tls.Conn) *peerLink {
	return &peerLink{conn: c, br: bufio.NewReaderSize(c, 64<<10), done: make(chan struct{})}
}

func (lk *peerLink) close() {
	lk.closeOnce.Do(func() {
		close(lk.done)
		lk.conn.Close()
	})
}

// send numbers m and writes it within timeout.
func (lk *peerLink) send(m peerMsg, timeout time.Duration) error {
	lk.wmu.Lock()
	defer lk.wmu.Unlock()
	lk.seq++
	m.Seq = lk.seq
	b, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("encode peer %s: %w", m.Type, err)
	}
	if len(b) > peerMaxMessageBytes {
		return fmt.Errorf("encode peer %s: %d bytes, at most %d", m.Type, len(b), peerMaxMessageBytes)
	}
	lk.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := lk.conn.Write(append(b, '\n')); err != nil {
		lk.close()
		return fmt.Errorf("send peer %s: %w", m.Type, err)
	}
	return nil
}

// read returns the next message within timeout.
func (lk *peerLink) read(timeout time.Duration) (peerMsg, error) {
	return readPeerMsg(lk.conn, lk.br, timeout)
}

func readPeerMsg(c net.Conn, br *bufio.Reader, timeout time.Duration) (peerMsg, error) {
	var m peerMsg
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := readLine(br, peerMaxMessageBytes)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return m, fmt.Errorf("%w: peer message: %w", ErrBadMessage, err)
	}
	if m.Type == "" {
		return m, fmt.Errorf("%w: peer message without a type", ErrBadMessage)
	}
	return m, nil
}

// peerTLSServer is the peer port's configuration: the server certificate;
// a client certificate from the domain CA when one is given (the peer),
// none for pairing.
func (t *trust) peerTLSServer() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    t.pool,
	}
}

// peerTLSClient is the dialer's: our server certificate as the client
// one, the peer's verified against the domain CA under ServerName.
func (t *trust) peerTLSClient() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.server},
		RootCAs:      t.pool,
		ServerName:   ServerName,
	}
}

// servePeer accepts peer connections until ln closes.
func (s *Server) servePeer(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("peer accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handlePeerConn(ctx, nc)
		}()
	}
}

// handlePeerConn runs one accepted peer connection: a pairing request
// (no client certificate) or the peer link (the peer's VSM certificate).
func (s *Server) handlePeerConn(ctx context.Context, raw net.Conn) {
	tc := tls.Server(raw, s.trust.peerTLSServer())
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	log := s.log.With("part", "peer", "remote", raw.RemoteAddr().String())
	hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		log.Info("peer: TLS handshake failed", "err", err)
		return
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		s.servePair(tc, log)
		return
	}
	if cn, ok := peerCN(cs); !ok || cn != ServerName {
		log.Warn("peer: refused a certificate that is not a VSM's", "cn", cn)
		return
	}
	s.runPeerLink(ctx, tc, log)
}

// dialPeerLoop keeps a peer link to PeerAddr (the secondary's side): it
// dials every PeerHeartbeat while there is none.
func (s *Server) dialPeerLoop(ctx context.Context) {
	log := s.log.With("part", "peer", "peer", s.o.PeerAddr)
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: max(s.o.PeerDead/2, time.Second)}, Config: s.trust.peerTLSClient()}
	failing := false
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", s.o.PeerAddr)
		if err == nil {
			failing = false
			s.runPeerLink(ctx, c.(*tls.Conn), log)
		} else if !failing && ctx.Err() == nil {
			failing = true
			log.Info("peer: cannot reach the peer VSM (retrying)", "err", err)
		}
		t := time.NewTimer(s.o.PeerHeartbeat)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// helloLocked is this VSM's hello (or any message's header).
func (s *Server) headerLocked(typ string) peerMsg {
	return peerMsg{Type: typ, Role: s.role, State: s.stateLocked(), Epoch: s.epoch}
}

func (s *Server) header(typ string) peerMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headerLocked(typ)
}

// runPeerLink runs an authenticated peer connection until it fails or ctx
// ends.
func (s *Server) runPeerLink(ctx context.Context, tc *tls.Conn, log *slog.Logger) {
	lk := newPeerLink(tc)
	defer lk.close()
	stop := context.AfterFunc(ctx, lk.close)
	defer stop()

	hello := s.header(peerHello)
	hello.Advertise, hello.Version = s.o.Advertise, s.o.Version
	if err := lk.send(hello, s.o.PeerDead); err != nil {
		log.Info("peer: hello not sent", "err", err)
		return
	}
	m, err := lk.read(s.o.PeerDead)
	if err != nil {
		log.Info("peer: no hello", "err", err)
		return
	}
	if m.Type != peerHello {
		log.Warn("peer: first message is not hello", "type", m.Type)
		return
	}
	if m.Role == s.role || (m.Role != config.RolePrimary && m.Role != config.RoleSecondary) {
		log.Error("peer: refused: a pair needs one primary and one secondary", "ours", s.role, "peer", m.Role)
		lk.send(peerMsg{Type: peerError, Error: fmt.Sprintf("role %s meets role %s", m.Role, s.role)}, time.Second)
		return
	}
	s.mu.Lock()
	if old := s.ha.link; old != nil {
		old.close()
	}
	s.ha.link = lk
	s.ha.peer = &peerInfo{role: m.Role, version: m.Version, advertise: slices.Clone(m.Advertise)}
	s.notePeerAdvertiseLocked(m.Advertise)
	s.peerSaysLocked(&m, log)
	s.mu.Unlock()
	log.Info("peer: link up", "peer_role", m.Role, "peer_state", m.State, "peer_epoch", m.Epoch)
	defer func() {
		s.mu.Lock()
		if s.ha.link == lk {
			s.ha.link, s.ha.peer = nil, nil
			s.updateSupervisorsLocked()
		}
		s.mu.Unlock()
		log.Warn("peer: link down")
	}()

	go s.peerSender(lk, log)
	for {
		m, err := lk.read(s.o.PeerDead)
		if err != nil {
			select {
			case <-lk.done:
			default:
				log.Info("peer: connection ends", "err", err)
			}
			return
		}
		s.mu.Lock()
		s.peerSaysLocked(&m, log)
		s.mu.Unlock()
		switch m.Type {
		case peerHeartbeat:
		case peerState:
			if err := s.installSync(&m); err != nil {
				log.Error("peer: state not installed", "rev", m.Rev, "err", err)
				continue
			}
			ack := s.header(peerAck)
			ack.Rev = m.Rev
			lk.send(ack, s.o.PeerDead)
		case peerAck:
			s.mu.Lock()
			if s.ha.active {
				s.ha.acked = max(s.ha.acked, m.Rev)
			}
			s.mu.Unlock()
		case peerSwitchover:
			s.mu.Lock()
			why := s.switchoverLocked(&m)
			s.mu.Unlock()
			if why != "" {
				log.Warn("peer: switchover refused", "why", why)
			}
		case peerError:
			log.Warn("peer: error from the peer", "err", m.Error)
			return
		default:
			log.Warn("peer: unexpected message ignored", "type", m.Type)
		}
	}
}

// peerSaysLocked records the state and epoch a peer message carries and
// acts on them: an active VSM that hears a newer active steps down.
func (s *Server) peerSaysLocked(m *peerMsg, log *slog.Logger) {
	p := s.ha.peer
	if p == nil {
		return
	}
	changed := p.state != m.State || p.epoch != m.Epoch
	p.state, p.epoch = m.State, m.Epoch
	if m.Type == peerAck || (m.Type == peerState && m.State == StateActive) {
		p.rev = m.Rev
	}
	s.noteEpochLocked(m.Epoch)
	if m.State == StateActive {
		s.ha.lastActive = time.Now()
		if s.ha.active && m.Epoch > s.epoch {
			s.stepDownLocked(fmt.Sprintf("the peer is active with epoch %d, ours is %d", m.Epoch, s.epoch))
			changed = true
		}
	}
	if changed {
		s.updateSupervisorsLocked()
		log.Info("peer: state", "peer_state", m.State, "peer_epoch", m.Epoch, "our_state", s.stateLocked(), "our_epoch", s.epoch)
		s.kickSync()
	}
}

// peerSender sends heartbeats every PeerHeartbeat and at once when our
// state or epoch changed, and, while this VSM is active and the peer is
// not, the replicated state whenever it changed.
func (s *Server) peerSender(lk *peerLink, log *slog.Logger) {
	t := time.NewTicker(s.o.PeerHeartbeat)
	defer t.Stop()
	beat := true
	var said peerMsg
	for {
		if msg, ok := s.syncMessage(lk); ok {
			if err := lk.send(msg, s.o.PeerDead); err != nil {
				log.Info("peer: state not sent", "err", err)
				return
			}
			lk.sentRev = msg.Rev
			said = msg
			// At most one state per PeerHeartbeat/10: a burst of changes (VEMs
			// joining, attaching) coalesces into the next one.
			select {
			case <-lk.done:
				return
			case <-time.After(s.o.PeerHeartbeat / 10):
			}
		}
		hb := s.header(peerHeartbeat)
		if beat || hb.State != said.State || hb.Epoch != said.Epoch {
			if err := lk.send(hb, s.o.PeerDead); err != nil {
				return
			}
			said = hb
		}
		select {
		case <-lk.done:
			return
		case <-t.C:
			beat = true
		case <-s.syncKick:
			beat = false
		}
	}
}

// syncMessage returns the state message to send on lk, if any: this VSM
// is active, the peer is not, and the state changed since lk last got it.
// The bindings are copied and everything is encoded outside Server.mu, so
// the control channel does not wait for a large state's encoding; a state
// torn by a concurrent change is followed by the next one at once (the
// change kicks the sender).
func (s *Server) syncMessage(lk *peerLink) (peerMsg, bool) {
	s.mu.Lock()
	if !s.ha.active || s.ha.peer == nil || s.ha.peer.state == StateActive {
		s.mu.Unlock()
		return peerMsg{}, false
	}
	// Cleared before the state is read: a change from now on kicks again.
	s.syncDirty.Store(false)
	st := peerSync{Config: s.cfg.Render(), Startup: s.startup, Gens: maps.Clone(s.gens)}
	s.mu.Unlock()
	st.Chassis, st.Ports = s.chassis.State(), s.ports.State()
	b, err := json.Marshal(&st)
	if err != nil {
		s.log.Error("peer: encode state", "err", err)
		return peerMsg{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ha.active {
		return peerMsg{}, false
	}
	if !bytes.Equal(b, s.ha.state) {
		s.ha.rev++
		s.ha.state = b
	}
	if lk.sentRev == s.ha.rev {
		return peerMsg{}, false
	}
	m := s.headerLocked(peerState)
	m.Rev, m.Sync = s.ha.rev, s.ha.state
	return m, true
}

// installSync makes the active's state this standby's: configuration
// (keeping our own redundancy role), slot and port bindings, generations.
// Everything is stored as the active stores it, so a standby restarted
// while the active is gone takes over with the last state it had.
func (s *Server) installSync(m *peerMsg) error {
	if m.State != StateActive {
		return errors.New("state from a VSM that is not active")
	}
	var st peerSync
	if err := json.Unmarshal(m.Sync, &st); err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	c, err := cli.ParseConfig(st.Config)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	c.Redundancy = s.role
	if err := c.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ha.active {
		return errors.New("this VSM is active")
	}
	if err := s.chassis.Replace(st.Chassis); err != nil {
		return err
	}
	if err := s.ports.Replace(st.Ports); err != nil {
		return err
	}
	if err := c.Save(filepath.Join(s.o.StateDir, RunningConfigFile)); err != nil {
		return fmt.Errorf("save running configuration: %w", err)
	}
	s.setConfigLocked(c)
	if st.Startup != "" && st.Startup != s.startup {
		if _, err := atomicfile.WriteIfChanged(filepath.Join(s.o.StateDir, StartupConfigFile), []byte(st.Startup), 0o600); err != nil {
			return fmt.Errorf("save startup configuration: %w", err)
		}
		s.startup = st.Startup
	}
	s.gens = maps.Clone(st.Gens)
	if s.gens == nil {
		s.gens = map[int]uint64{}
	}
	s.ha.applied = m.Rev
	s.ha.rev = m.Rev
	return nil
}
