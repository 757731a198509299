package vsm

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
	"github.com/flashvisor/flashvisor/vsm/chassis"
	"github.com/flashvisor/flashvisor/vsm/config"
	"github.com/flashvisor/flashvisor/vsm/ports"
	"github.com/flashvisor/flashvisor/vsm/render"
)

// tlsHandshakeTimeout bounds a control connection's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// sendQueue is how many messages may wait for a slow VEM; beyond that the
// VSM drops the connection and the VEM resynchronises when it reconnects.
const sendQueue = 256

// vemConn is one admitted VEM's control connection.
type vemConn struct {
	nc       *tls.Conn
	slot     int
	session  uint64
	hostUUID string
	uplinks  []api.VSMUplink
	localPo  []int // the host's own switch's PoN numbers
	local    []int // the host's own VethN numbers

	out       chan []byte
	done      chan struct{}
	closeOnce sync.Once

	// Guarded by Server.mu: the sequence number of the last message
	// queued, the generation last sent and the programming it described.
	seq    uint64
	gen    uint64
	sent   *render.Desired
	opaque *api.VSMOpaque

	// pktKey authenticates the module's packet channel frames (derived
	// from this connection's TLS session; nil: none); pktSeq is the last
	// sequence number taken with it (guarded by Server.mu).
	pktKey []byte
	pktSeq uint64
}

func (c *vemConn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// serveControl accepts VEM connections until ln closes.
func (s *Server) serveControl(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleVEM(ctx, nc)
		}()
	}
}

// handleVEM runs one control connection from TLS handshake to close.
func (s *Server) handleVEM(ctx context.Context, raw net.Conn) {
	tc := tls.Server(raw, s.trust.controlTLS())
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	remote := raw.RemoteAddr().String()
	log := s.log.With("remote", remote)

	hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		log.Info("control: TLS handshake failed", "err", err)
		return
	}
	cn, ok := peerCN(tc.ConnectionState())
	if !ok {
		log.Info("control: no verified client certificate")
		return
	}
	br := bufio.NewReaderSize(tc, 64<<10)
	var lastSeq uint64
	hello, err := s.readHello(tc, br, &lastSeq, log)
	if err != nil {
		log.Info("control: no hello", "err", err)
		s.refuse(tc, api.VSMErrBadMessage, err.Error())
		return
	}
	h := hello.Hello
	if !strings.EqualFold(cn, h.HostUUID) {
		log.Warn("control: hello's host UUID differs from the certificate's", "cert_cn", cn, "host", h.HostUUID)
		s.refuse(tc, api.VSMErrBadMessage, "host uuid does not match the client certificate")
		return
	}
	if ok, why := s.admitHello(h.Epoch); !ok {
		// VEMs cycle through both VSMs: a standby sees them often.
		log.Debug("control: hello refused: not active", "host", h.HostUUID, "vem_epoch", h.Epoch, "reason", why)
		s.refuse(tc, api.VSMErrNotActive, why)
		return
	}
	host := strings.ToLower(h.HostUUID)
	addr, _, _ := net.SplitHostPort(remote)
	m, err := s.chassis.Join(chassis.Host{UUID: host, Hostname: h.Hostname, Address: addr, Version: h.Version, WantSlot: h.Module})
	if err != nil {
		code := api.VSMErrBadMessage
		switch {
		case errors.Is(err, chassis.ErrChassisFull):
			code = api.VSMErrChassisFull
		case errors.Is(err, chassis.ErrSlotTaken):
			code = api.VSMErrSlotTaken
		}
		log.Warn("control: VEM refused", "host", host, "code", code, "err", err)
		s.refuse(tc, code, err.Error())
		return
	}
	// The packet channel works without a key only in that it refuses
	// every frame: the VEM then falls back to this connection.
	pktKey, err := pktchan.Key(tc.ConnectionState())
	if err != nil {
		log.Warn("control: no packet channel key", "err", err)
	}
	vc := &vemConn{
		nc: tc, slot: m.Slot, session: m.Session, hostUUID: host, pktKey: pktKey,
		uplinks: h.Uplinks, local: h.LocalVeths, localPo: h.LocalPortChannels,
		out: make(chan []byte, sendQueue), done: make(chan struct{}),
	}
	log = log.With("module", vc.slot, "host", host)
	s.metrics.joins.Add(1)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.writeLoop(vc, log) }()
	go func() { defer wg.Done(); s.heartbeatLoop(vc) }()
	defer func() {
		vc.close()
		wg.Wait()
		s.unregister(vc)
		if err := s.chassis.Leave(vc.slot, vc.session); err == nil {
			log.Info("control: module left")
		}
	}()

	if err := s.admit(vc, h); err != nil {
		// A bad uplink list: refusing keeps the VEM on its last
		// programming (VEM-8) rather than losing its uplinks to a typo.
		code := api.VSMErrBadMessage
		if errors.Is(err, ErrStandby) {
			code = api.VSMErrNotActive
		}
		log.Warn("control: VEM refused", "err", err)
		s.sendNow(vc, errMsg(code, err.Error()))
		return
	}
	log.Info("control: module online", "hostname", h.Hostname, "vem_generation", h.Generation)
	for {
		tc.SetReadDeadline(time.Now().Add(s.o.DeadInterval + s.o.HeartbeatInterval))
		msg, err := readMessage(br)
		if err != nil {
			select {
			case <-vc.done:
			default:
				if !errors.Is(err, net.ErrClosed) {
					log.Info("control: connection ends", "err", err)
				}
				if isDecodeError(err) {
					s.metrics.badMessages.Add(1)
					s.sendNow(vc, errMsg(api.VSMErrBadMessage, err.Error()))
				}
			}
			return
		}
		s.checkSeq(&lastSeq, msg.Seq, log)
		if !s.ourDomain(msg.Domain) {
			s.metrics.foreignDomain.Add(1)
			log.Debug("control: dropped a message of another domain", "domain", msg.Domain, "type", msg.Type)
			continue
		}
		if err := s.chassis.Heartbeat(vc.slot, vc.session); err != nil {
			log.Info("control: connection replaced or swept", "err", err)
			return
		}
		if err := s.dispatch(vc, &msg, log); err != nil {
			log.Warn("control: closing", "err", err)
			s.sendNow(vc, errMsg(api.VSMErrBadMessage, err.Error()))
			return
		}
	}
}

// readHello waits for the first message of our domain; it must be hello.
func (s *Server) readHello(tc *tls.Conn, br *bufio.Reader, lastSeq *uint64, log *slog.Logger) (api.VSMMessage, error) {
	for {
		tc.SetReadDeadline(time.Now().Add(s.o.DeadInterval))
		msg, err := readMessage(br)
		if err != nil {
			if isDecodeError(err) {
				s.metrics.badMessages.Add(1)
			}
			return msg, err
		}
		*lastSeq = msg.Seq
		if !s.ourDomain(msg.Domain) {
			s.metrics.foreignDomain.Add(1)
			log.Debug("control: dropped a message of another domain", "domain", msg.Domain, "type", msg.Type)
			continue
		}
		if msg.Type != api.VSMHello {
			return msg, fmt.Errorf("first message is %s, want hello", msg.Type)
		}
		return msg, nil
	}
}

// isDecodeError tells a message that does not decode or validate from a
// connection that failed.
func isDecodeError(err error) bool { return errors.Is(err, ErrBadMessage) }

// checkSeq counts gaps in the VEM's numbering. VEM->VSM messages are
// requests and reports that need no replay; a gap means a bug or a
// tampered stream, so it is counted and logged.
func (s *Server) checkSeq(last *uint64, seq uint64, log *slog.Logger) {
	if *last != 0 && seq != *last+1 {
		s.metrics.seqGaps.Add(1)
		log.Warn("control: sequence gap", "after", *last, "got", seq)
	}
	*last = seq
}

// refuse sends an error message on a connection that was not admitted and
// lets the caller close it.
func (s *Server) refuse(tc *tls.Conn, code, message string) {
	m := errMsg(code, message)
	m.Version, m.Domain, m.Epoch, m.Seq = api.VSMProtocolVersion, s.domainForRefusal(), s.Epoch(), 1
	if b, err := encodeMessage(&m); err == nil {
		tc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		tc.Write(b)
	}
}

func errMsg(code, message string) api.VSMMessage {
	if len(message) > 500 {
		message = message[:500]
	}
	return api.VSMMessage{Type: api.VSMError, Error: &api.VSMErrorBody{Code: code, Message: message}}
}

// writeLoop writes queued messages until the connection closes.
func (s *Server) writeLoop(vc *vemConn, log *slog.Logger) {
	for {
		select {
		case <-vc.done:
			return
		case b := <-vc.out:
			vc.nc.SetWriteDeadline(time.Now().Add(s.o.DeadInterval))
			if _, err := vc.nc.Write(b); err != nil {
				log.Info("control: write failed", "err", err)
				vc.close()
				return
			}
		}
	}
}

// heartbeatLoop queues a heartbeat every HeartbeatInterval.
func (s *Server) heartbeatLoop(vc *vemConn) {
	t := time.NewTicker(s.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-vc.done:
			return
		case <-t.C:
			s.mu.Lock()
			s.queueLocked(vc, api.VSMMessage{Type: api.VSMHeartbeat})
			s.mu.Unlock()
		}
	}
}

// queueLocked stamps m (version, domain, epoch, next seq) and queues it.
// A VEM whose queue is full is disconnected: it will reconnect and get a
// full snapshot. Callers hold s.mu, which orders seq with queueing.
func (s *Server) queueLocked(vc *vemConn, m api.VSMMessage) {
	vc.seq++
	m.Version, m.Domain, m.Epoch, m.Seq = api.VSMProtocolVersion, s.cfg.SVSDomain.ID, s.epoch, vc.seq
	b, err := encodeMessage(&m)
	if err != nil {
		s.log.Error("control: cannot encode", "module", vc.slot, "err", err)
		vc.close()
		return
	}
	select {
	case vc.out <- b:
	case <-vc.done:
	default:
		s.log.Warn("control: VEM too slow, dropping its connection", "module", vc.slot)
		vc.close()
	}
}

// sendNow queues m and gives the writer a moment to send it before the
// caller closes the connection.
func (s *Server) sendNow(vc *vemConn, m api.VSMMessage) {
	s.mu.Lock()
	s.queueLocked(vc, m)
	s.mu.Unlock()
	deadline := time.Now().Add(time.Second)
	for len(vc.out) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// admit registers vc as its slot's connection (closing one it replaces)
// and sends the welcome and the full snapshot.
func (s *Server) admit(vc *vemConn, h *api.VSMHelloBody) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ha.active {
		return ErrStandby // stepped down since the hello
	}
	if old := s.conns[vc.slot]; old != nil {
		old.close()
	}
	s.conns[vc.slot] = vc
	if err := s.setUplinksLocked(vc); err != nil {
		return err
	}
	vc.gen = max(vc.gen, s.gens[vc.slot], h.Generation)
	s.queueLocked(vc, api.VSMMessage{Type: api.VSMWelcome, Welcome: &api.VSMWelcomeBody{
		Module: vc.slot, SwitchName: s.cfg.SwitchName,
		HeartbeatSeconds: api.VSMHeartbeatSeconds, DeadSeconds: api.VSMDeadSeconds,
		PacketMAC: s.packetMAC(),
	}})
	s.sendFullLocked(vc)
	return nil
}

// unregister forgets vc if it is still its slot's connection.
func (s *Server) unregister(vc *vemConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[vc.slot] == vc {
		delete(s.conns, vc.slot)
	}
}

// sendFullLocked sends vc a full snapshot at the module's next generation.
func (s *Server) sendFullLocked(vc *vemConn) {
	want := s.desiredLocked(vc.slot)
	vc.gen++
	s.gens[vc.slot] = vc.gen
	vc.opaque = s.opaqueLocked()
	body := render.Full(vc.gen, want, vc.opaque)
	vc.sent = &want
	s.queueLocked(vc, api.VSMMessage{Type: api.VSMConfigMsg, Config: &body})
	s.kickSync()
}

// pushLocked sends every connected module whose programming changed a
// delta at its next generation (VSM-5: profile changes are live), or a
// full snapshot when the opaque data changed (deltas do not carry it).
func (s *Server) pushLocked() { s.pushModulesLocked(nil) }

// pushModulesLocked is pushLocked for the modules in only (nil: all). An
// attach or detach changes the ports of one or two modules: rendering
// every module's programming for each one made attaches slow down with
// the number of VEMs.
func (s *Server) pushModulesLocked(only map[int]bool) {
	opaque := s.opaqueLocked()
	for _, vc := range s.conns {
		if only != nil && !only[vc.slot] {
			continue
		}
		if vc.sent == nil || !reflect.DeepEqual(vc.opaque, opaque) {
			s.sendFullLocked(vc)
			continue
		}
		want := s.desiredLocked(vc.slot)
		body, changed := render.Delta(vc.gen, *vc.sent, want)
		if !changed {
			continue
		}
		vc.gen++
		s.gens[vc.slot] = vc.gen
		vc.sent = &want
		s.queueLocked(vc, api.VSMMessage{Type: api.VSMConfigMsg, Config: &body})
		s.kickSync()
	}
}

// dispatch acts on one message of an admitted VEM.
func (s *Server) dispatch(vc *vemConn, m *api.VSMMessage, log *slog.Logger) error {
	switch m.Type {
	case api.VSMHeartbeat:
	case api.VSMAck:
		if m.Ack.Error != "" {
			log.Warn("control: VEM refused its programming", "generation", m.Ack.Generation, "err", m.Ack.Error)
			s.metrics.nacks.Add(1)
			return nil
		}
		s.chassis.Acked(vc.slot, vc.session, m.Ack.Generation)
	case api.VSMResync:
		log.Info("control: VEM asked for a resync")
		s.mu.Lock()
		s.sendFullLocked(vc)
		s.mu.Unlock()
	case api.VSMAttach:
		s.attach(vc, m.Attach, log)
	case api.VSMDetach:
		s.detach(vc, m.Detach, log)
	case api.VSMPortReport:
		s.mu.Lock()
		s.reports[vc.slot] = portReport{body: *m.Ports, at: s.o.Now()}
		s.mu.Unlock()
	case api.VSMFrame:
		s.metrics.frames.Add(1)
		s.relayedFrame(vc, m.Frame, log)
	case api.VSMError:
		return fmt.Errorf("VEM error %s: %s", m.Error.Code, m.Error.Message)
	default:
		return fmt.Errorf("unexpected %s message from a VEM", m.Type)
	}
	return nil
}

// attach binds the owner's vEth to this module and answers; the port then
// reaches the VEM as a delta.
func (s *Server) attach(vc *vemConn, a *api.VSMAttachBody, log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &api.VSMAttachResultBody{RequestID: a.RequestID}
	if a.LocalVeths != nil {
		vc.local = a.LocalVeths
	}
	before, _ := s.ports.Binding(a.Owner)
	port, err := s.attachLocked(vc, a)
	if err != nil {
		res.Error = err.Error()
		log.Info("control: attach refused", "owner", a.Owner, "profile", a.Profile, "err", err)
	} else {
		res.Port = port
		log.Info("control: attached", "owner", a.Owner, "profile", a.Profile, "port", port)
	}
	s.queueLocked(vc, api.VSMMessage{Type: api.VSMAttachResult, AttachResult: res})
	if err == nil {
		after, _ := s.ports.Binding(a.Owner)
		s.pushModulesLocked(modulesOf(before, after))
		s.kickSync()
	}
}

// modulesOf lists the modules a vEth was or is programmed on, before and
// after a change to its binding.
func modulesOf(bs ...ports.Binding) map[int]bool {
	out := map[int]bool{}
	for _, b := range bs {
		for _, m := range []int{b.Module, b.Leaving} {
			if m != 0 {
				out[m] = true
			}
		}
	}
	return out
}

func (s *Server) detach(vc *vemConn, d *api.VSMDetachBody, log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, _ := s.ports.Binding(d.Owner)
	if err := s.detachLocked(vc, d); err != nil {
		log.Info("control: detach", "owner", d.Owner, "release", d.Release, "err", err)
		return
	}
	log.Info("control: detached", "owner", d.Owner, "release", d.Release)
	after, _ := s.ports.Binding(d.Owner)
	s.pushModulesLocked(modulesOf(before, after, ports.Binding{Module: vc.slot}))
	s.kickSync()
	if n, ok := api.VethNumber(before.Port); ok && d.Release && s.cfg.Veths[n] != (config.Veth{}) {
		// The vEth is gone: so is its interface block, as on NX-OS, or
		// the next VM given its number would inherit a shutdown. Update
		// takes the locks held here, in its order.
		go s.dropVeth(n, log)
	}
}

// dropVeth removes `interface vethernet n` from the configuration.
func (s *Server) dropVeth(n int, log *slog.Logger) {
	err := s.Update(func(c *config.Config) error {
		delete(c.Veths, n)
		return nil
	})
	if err != nil {
		log.Warn("control: the released vEth's interface settings stay", "port", fmt.Sprintf("Veth%d", n), "err", err)
	}
}

// sweepLoop takes silent VEMs offline every SweepInterval and closes their
// connections; they come back to the same slot when they reconnect.
func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gone := s.chassis.Sweep()
		if len(gone) == 0 {
			continue
		}
		s.mu.Lock()
		for _, slot := range gone {
			// What its ports reported no longer holds (a real switch
			// flushes a line card's snooping entries with it).
			s.igmp.forgetModule(slot)
			if vc := s.conns[slot]; vc != nil {
				s.log.Warn("control: module silent, closing its connection", "module", slot)
				vc.close()
				delete(s.conns, slot)
			}
		}
		s.mu.Unlock()
	}
}
