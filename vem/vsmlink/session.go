package vsmlink

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
	"github.com/flashvisor/flashvisor/vem"
)

// ErrProtocol wraps a connection given up because the VSM broke the
// protocol (a message that does not decode, seq going backwards, no
// welcome first).
var ErrProtocol = errors.New("vsm protocol error")

// session is one connection to a VSM.
type session struct {
	conn   net.Conn
	br     *bufio.Reader
	joinID uint64
	domain int
	addr   string

	wmu  sync.Mutex
	seq  uint64 // our last seq
	dead time.Duration

	// Read side only (the reading goroutine).
	rseq          uint64 // the VSM's last seq
	module        int    // from welcome (set before relay starts)
	resyncPending bool

	// Packet channel (svs mode L2): the key derived from this TLS
	// session, the VSM's packet vNIC from welcome, and the path relay
	// keeps up to date.
	pktKey []byte
	pktMAC net.HardwareAddr
	pkt    atomic.Pointer[packetPath]
	// pktState is what updatePacket last decided (relay's goroutine).
	pktState string
}

// send numbers m and writes it.
func (s *session) send(m api.VSMMessage) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	m.Version, m.Domain = api.VSMProtocolVersion, s.domain
	m.Seq = s.seq + 1
	b, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	if len(b) > api.VSMMaxMessageBytes {
		return fmt.Errorf("encode %s: %d bytes, at most %d", m.Type, len(b), api.VSMMaxMessageBytes)
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.dead))
	if _, err := s.conn.Write(append(b, '\n')); err != nil {
		s.conn.Close() // the reader notices
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	s.seq++
	return nil
}

// readLine returns the next line without its newline, at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w: message over %d bytes", ErrProtocol, max)
		}
		switch {
		case err == nil:
			buf = append(buf, chunk...)
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
		case errors.Is(err, io.EOF) && len(buf)+len(chunk) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// read returns the next message of our domain, within timeout. Messages
// of another domain are counted and dropped.
func (l *Link) read(s *session, timeout time.Duration) (api.VSMMessage, error) {
	for {
		s.conn.SetReadDeadline(time.Now().Add(timeout))
		line, err := readLine(s.br, api.VSMMaxMessageBytes)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return api.VSMMessage{}, fmt.Errorf("the VSM was silent for %s", timeout)
			}
			return api.VSMMessage{}, err
		}
		if len(line) == 0 || string(line) == "\r" {
			continue
		}
		m, err := api.DecodeVSMMessage(line)
		if err != nil {
			return m, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if m.Domain != s.domain {
			l.mu.Lock()
			l.status.ForeignDomain++
			l.mu.Unlock()
			l.log.Warn("dropped a message of another domain", "domain", m.Domain, "type", m.Type, "vsm", s.addr)
			continue
		}
		if m.Seq <= s.rseq {
			return m, fmt.Errorf("%w: seq %d after %d", ErrProtocol, m.Seq, s.rseq)
		}
		gap := m.Seq != s.rseq+1
		s.rseq = m.Seq
		if gap && s.module != 0 && !(m.Type == api.VSMConfigMsg && m.Config.Full) {
			// A config may have been lost: ask for a snapshot.
			l.log.Warn("gap in the VSM's messages: resync", "seq", m.Seq, "vsm", s.addr)
			l.resync(s)
		}
		return m, nil
	}
}

func (l *Link) resync(s *session) {
	if s.resyncPending {
		return
	}
	if err := s.send(api.VSMMessage{Type: api.VSMResync}); err == nil {
		s.resyncPending = true
	}
}

// session runs one connection to addr until it fails or ctx ends; it
// reports whether the VSM welcomed us.
func (l *Link) session(ctx context.Context, id uint64, addr string, tc *tls.Config) (welcomed bool, err error) {
	l.pmu.Lock()
	if l.joinID != id {
		l.pmu.Unlock()
		return false, nil
	}
	j, st := *l.join, l.st
	l.pmu.Unlock()
	l.mu.Lock()
	l.status.VSM = addr
	l.mu.Unlock()

	// The dial has its own short bound: an address whose host is gone
	// must not hold up the next one for the whole welcome wait.
	dctx, cancel := context.WithTimeout(ctx, min(l.o.Welcome, dialTimeout))
	dial := l.o.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	raw, err := dial(dctx, "tcp", addr)
	var conn *tls.Conn
	if err == nil {
		conn = tls.Client(raw, tc)
		if err = conn.HandshakeContext(dctx); err != nil {
			raw.Close()
		}
	}
	cancel()
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s := &session{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), joinID: id, domain: j.Opaque.DomainID, addr: addr, dead: l.o.Dead}
	s.pktKey, _ = pktchan.Key(conn.ConnectionState()) // nil: frames take this connection

	hello := api.VSMMessage{Version: api.VSMProtocolVersion, Domain: s.domain, Type: api.VSMHello, Seq: 1, Hello: &api.VSMHelloBody{
		HostUUID: l.o.HostUUID, Hostname: l.o.Hostname, Module: st.Module, Generation: st.Generation, Epoch: st.Epoch,
		Uplinks: j.Uplinks, LocalVeths: localVeths(st.Local), LocalPortChannels: localPortChannels(st.Local), Version: l.o.Version,
	}}
	if err := hello.Validate(); err != nil {
		return false, fmt.Errorf("hello: %w", err)
	}
	if err := s.send(hello); err != nil {
		return false, err
	}
	m, err := l.read(s, l.o.Welcome)
	if err != nil {
		return false, fmt.Errorf("%s: waiting for welcome: %w", addr, err)
	}
	switch m.Type {
	case api.VSMWelcome:
	case api.VSMError:
		if m.Error.Code == api.VSMErrNotActive {
			return false, fmt.Errorf("%w: %s: %s", errNotActive, addr, m.Error.Message)
		}
		return false, fmt.Errorf("%s refused us: %s (%s)", addr, m.Error.Message, m.Error.Code)
	default:
		return false, fmt.Errorf("%w: %s sent %s before welcome", ErrProtocol, addr, m.Type)
	}
	s.module = m.Welcome.Module
	s.pktMAC, _ = net.ParseMAC(m.Welcome.PacketMAC) // validated
	l.welcomed(s, m)
	defer func() { l.gone(s, err) }()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go l.heartbeats(sctx, s)
	go l.reports(sctx, s)
	go l.relay(sctx, s)
	for {
		m, err := l.read(s, l.o.Dead)
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return true, fmt.Errorf("%s: %w", addr, err)
		}
		switch m.Type {
		case api.VSMHeartbeat:
		case api.VSMConfigMsg:
			if l.handleConfig(ctx, s, m) {
				l.kickFrames()
				go l.report(sctx, s)
			}
		case api.VSMAttachResult:
			l.mu.Lock()
			ch := l.waiters[m.AttachResult.RequestID]
			l.mu.Unlock()
			if ch != nil {
				select {
				case ch <- *m.AttachResult:
				default:
				}
			}
		case api.VSMError:
			return true, fmt.Errorf("%s: error from the VSM: %s (%s)", addr, m.Error.Message, m.Error.Code)
		default:
			l.log.Warn("unexpected message from the VSM: ignored", "type", m.Type, "vsm", addr)
		}
	}
}

// welcomed makes s the live session.
func (l *Link) welcomed(s *session, m api.VSMMessage) {
	l.pmu.Lock()
	if m.Epoch > l.st.Epoch && l.joinID == s.joinID {
		next := l.st
		next.Epoch = m.Epoch
		if err := SaveState(l.o.StateFile, next); err != nil {
			l.log.Error("store epoch", "err", err)
		} else {
			l.setSt(next)
		}
	} else if m.Epoch < l.st.Epoch {
		l.log.Warn("the VSM's epoch is lower than seen before: its programming will be refused", "epoch", m.Epoch, "highest", l.st.Epoch)
	}
	l.publish()
	l.pmu.Unlock()
	l.mu.Lock()
	l.sess = s
	l.status.Module, l.status.VSM, l.status.LastError = s.module, s.addr, ""
	l.mu.Unlock()
	l.log.Info("connected to the VSM", "vsm", s.addr, "module", s.module, "epoch", m.Epoch)
}

// gone ends s: headless until the next welcome; pending attaches fail.
func (l *Link) gone(s *session, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess == s {
		l.sess = nil
		l.status.PacketChannel = ""
		if err != nil {
			l.status.LastError = err.Error()
		}
	}
	for id, ch := range l.waiters {
		close(ch)
		delete(l.waiters, id)
	}
	l.log.Warn("VSM connection lost: headless", "vsm", s.addr)
}

func (l *Link) heartbeats(ctx context.Context, s *session) {
	t := time.NewTicker(l.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.send(api.VSMMessage{Type: api.VSMHeartbeat}) != nil {
				return
			}
		}
	}
}

func (l *Link) reports(ctx context.Context, s *session) {
	t := time.NewTicker(l.o.Report)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.report(ctx, s)
		}
	}
}

// report sends the ports, the MAC table and the counters.
func (l *Link) report(ctx context.Context, s *session) {
	ports, err := l.agent.Status(ctx)
	if err != nil {
		l.log.Warn("port report", "err", err)
	}
	macs, err := l.agent.MACTable(ctx)
	if err != nil {
		l.log.Debug("port report: no MAC table", "err", err)
	}
	l.mu.Lock()
	body := &api.VSMPortReportBody{Ports: ports, MACs: macs, ForeignDomain: l.status.ForeignDomain, StaleEpoch: l.status.StaleEpoch}
	l.mu.Unlock()
	s.send(api.VSMMessage{Type: api.VSMPortReport, Ports: body})
}

// handleConfig applies (or refuses) a config message and acks it; it
// reports whether something was applied.
func (l *Link) handleConfig(ctx context.Context, s *session, m api.VSMMessage) bool {
	c := m.Config
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.joinID != s.joinID {
		return false // left or joined again meanwhile
	}
	ack := func(gen uint64, err error) {
		b := &api.VSMAckBody{Generation: gen}
		if err != nil {
			b.Error = err.Error()
		}
		s.send(api.VSMMessage{Type: api.VSMAck, Ack: b})
	}
	if m.Epoch < l.st.Epoch {
		l.mu.Lock()
		l.status.StaleEpoch++
		l.mu.Unlock()
		l.log.Warn("config from a stale epoch refused", "epoch", m.Epoch, "highest", l.st.Epoch, "generation", c.Generation)
		ack(l.st.Generation, fmt.Errorf("stale epoch %d < %d", m.Epoch, l.st.Epoch))
		return false
	}
	modeBefore := controlMode(l.st.Opaque, l.join)
	next := l.st
	next.Epoch = m.Epoch
	var part Part
	switch {
	case c.Full:
		part = Snapshot(c)
		s.resyncPending = false
		if o := c.Opaque; o != nil && o.DomainID == s.domain {
			next.Opaque = o
		}
	case c.Base != l.st.Generation || l.st.Module != s.module:
		l.log.Info("delta on another generation: resync", "base", c.Base, "running", l.st.Generation, "module", l.st.Module)
		l.saveEpoch(next)
		l.resync(s)
		return false
	default:
		part = l.st.VSM.Apply(c)
	}
	next.Generation, next.Module, next.VSM = c.Generation, s.module, part
	merged, err := l.merged(next.Local, next)
	if err != nil {
		l.saveEpoch(next)
		l.log.Warn("vsm config refused", "generation", c.Generation, "err", err)
		ack(l.st.Generation, fmt.Errorf("generation %d refused: %w", c.Generation, err))
		return false
	}
	if err := SaveState(l.o.StateFile, next); err != nil {
		l.log.Error("vsm config not stored", "err", err)
		ack(l.st.Generation, err)
		return false
	}
	l.setSt(next)
	l.publish()
	if err := l.apply(ctx, merged); err != nil {
		// Validated above: not expected.
		l.log.Error("vsm config", "err", err)
	}
	l.log.Info("vsm config applied", "generation", c.Generation, "full", c.Full, "epoch", m.Epoch)
	ack(c.Generation, nil)
	if before, after := modeBefore, controlMode(next.Opaque, l.join); before != after {
		// `svs mode` changed on the VSM: this connection is the old
		// mode's. Dropping it after the ack makes the link dial again in
		// the new one (L2: the link-local addresses through the control
		// vmknic; L3: the routable ones); forwarding is not touched.
		l.log.Info("svs mode changed: reconnecting", "from", before, "to", after)
		s.conn.Close()
	}
	return true
}

// controlMode is the switch's control mode: the stored opaque data's, else
// the join data's (L3 when unset).
func controlMode(o *api.VSMOpaque, j *api.VSMJoin) string {
	mode := ""
	if o != nil {
		mode = o.Mode
	} else if j != nil {
		mode = j.Opaque.Mode
	}
	if mode == "" {
		return api.SVSModeL3
	}
	return mode
}

// saveEpoch stores a raised epoch of a config that was not applied; pmu
// held.
func (l *Link) saveEpoch(next State) {
	if next.Epoch <= l.st.Epoch {
		return
	}
	st := l.st
	st.Epoch = next.Epoch
	if err := SaveState(l.o.StateFile, st); err != nil {
		l.log.Error("store epoch", "err", err)
		return
	}
	l.setSt(st)
	l.publish()
}

// live returns the current session, or why there is none.
func (l *Link) live() (*session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.status.Joined {
		return nil, vem.ErrNotJoined
	}
	if l.sess == nil {
		return nil, vem.ErrHeadless
	}
	return l.sess, nil
}

// Attach implements vem.VSMLink: it asks the VSM for a vEth for a.Owner
// on a.Profile (a.RequestID is the link's own) and waits for the answer.
func (l *Link) Attach(ctx context.Context, a api.VSMAttachBody) (string, error) {
	s, err := l.live()
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", a.Owner, err)
	}
	// The host's own vEths may have changed since the hello: the VSM
	// must not hand out one of their numbers on this module.
	if local, ok := l.Local(); ok {
		a.LocalVeths = localVeths(&local)
	}
	l.mu.Lock()
	l.nextReq++
	a.RequestID = l.nextReq
	ch := make(chan api.VSMAttachResultBody, 1)
	l.waiters[a.RequestID] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiters, a.RequestID)
		l.mu.Unlock()
	}()
	m := api.VSMMessage{Version: api.VSMProtocolVersion, Domain: s.domain, Seq: 1, Type: api.VSMAttach, Attach: &a}
	if err := m.Validate(); err != nil {
		return "", fmt.Errorf("%w: %w", vem.ErrBadRequest, err)
	}
	if err := s.send(m); err != nil {
		return "", fmt.Errorf("attach %s: %w: %w", a.Owner, vem.ErrHeadless, err)
	}
	t := time.NewTimer(l.o.AttachTimeout)
	defer t.Stop()
	select {
	case r, ok := <-ch:
		switch {
		case !ok:
			return "", fmt.Errorf("attach %s: connection lost: %w", a.Owner, vem.ErrHeadless)
		case r.Error != "":
			return "", fmt.Errorf("attach %s: %w: %s", a.Owner, vem.ErrRefused, r.Error)
		}
		return r.Port, nil
	case <-t.C:
		return "", fmt.Errorf("attach %s: %w in %s", a.Owner, vem.ErrNoAnswer, l.o.AttachTimeout)
	case <-ctx.Done():
		return "", fmt.Errorf("attach %s: %w", a.Owner, ctx.Err())
	}
}

// Detach implements vem.VSMLink.
func (l *Link) Detach(ctx context.Context, d api.VSMDetachBody) error {
	s, err := l.live()
	if err != nil {
		return fmt.Errorf("detach %s: %w", d.Owner, err)
	}
	m := api.VSMMessage{Version: api.VSMProtocolVersion, Domain: s.domain, Seq: 1, Type: api.VSMDetach, Detach: &d}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %w", vem.ErrBadRequest, err)
	}
	if err := s.send(m); err != nil {
		return fmt.Errorf("detach %s: %w: %w", d.Owner, vem.ErrHeadless, err)
	}
	return nil
}
