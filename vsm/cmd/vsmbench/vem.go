package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Timers of the simulated VEM: vem/vsmlink's defaults.
const (
	dialTimeout    = 3 * time.Second  // TCP and TLS handshake with one address
	welcomeTimeout = 10 * time.Second // the wait for welcome after hello
	minBackoff     = time.Second      // redial delay, doubling up to maxBackoff
	maxBackoff     = 10 * time.Second
	// vsmlinkAttachTimeout is how long the real VEM waits for an
	// attach-result; the bench waits longer and counts the slower ones.
	vsmlinkAttachTimeout = 10 * time.Second
)

// fleetStats are counters over every simulated VEM.
type fleetStats struct {
	hbSent, hbRecv, configs, resyncs, reports, welcomes, dropped atomic.Uint64
}

// simVEM is one simulated VEM: a host's control channel to the VSM as
// vem/vsmlink speaks it over TLS (hello; heartbeats every 2 s on its own
// timer; every config applied to an in-memory copy of the VSM's part and
// acknowledged, or a resync asked for; a port report every 10 s and after
// every applied config; attach requests), with no kernel behind it.
type simVEM struct {
	idx      int
	uuid     string
	hostname string
	join     api.VSMJoin
	tls      *tls.Config
	stats    *fleetStats
	// reports switches port reports on and off for the whole fleet.
	reports *atomic.Bool
	// heartbeat and report are the send periods.
	heartbeat, report time.Duration

	mu       sync.Mutex
	conn     *tls.Conn // nil while headless
	seq      uint64
	module   int
	gen      uint64
	profiles map[string]api.PortProfile
	ports    map[string]api.Port
	fullAt   time.Time // when the last full snapshot was applied and acked
	portsAt  time.Time // when a config last changed the set of ports
	lastErr  error
	nextReq  uint64
	waiters  map[uint64]chan api.VSMAttachResultBody
	watch    *watch
	epoch    uint64         // highest VSM epoch seen (sent in hello)
	opaque   *api.VSMOpaque // the last full snapshot's
}

// watch records when a VEM first runs a programming that satisfies ok.
type watch struct {
	ok func(profiles map[string]api.PortProfile) bool
	at time.Time // zero until seen
}

func newSimVEM(idx int, uuid string, j api.VSMJoin, stats *fleetStats, reports *atomic.Bool) (*simVEM, error) {
	cert, err := tls.X509KeyPair([]byte(j.Cert), []byte(j.Key))
	if err != nil {
		return nil, fmt.Errorf("VEM %d: client certificate: %w", idx, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(j.CACert)) {
		return nil, fmt.Errorf("VEM %d: no CA certificate in the join bundle", idx)
	}
	return &simVEM{
		idx: idx, uuid: uuid, hostname: fmt.Sprintf("bench-%d", idx), join: j, stats: stats, reports: reports,
		heartbeat: api.VSMHeartbeatSeconds * time.Second, report: 10 * time.Second,
		tls: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			RootCAs: pool, ServerName: "vsm",
		},
		profiles: map[string]api.PortProfile{}, ports: map[string]api.Port{},
		waiters: map[uint64]chan api.VSMAttachResultBody{},
	}, nil
}

// run keeps the VEM connected until ctx ends, as vsmlink's connectLoop
// does: each round tries the VSMs of the last snapshot's opaque data,
// then the join bundle's, the address whose session just ended last, in
// turn until one welcomes it; then it waits the backoff: 1 s after a
// welcome or while a standby answers not_active, else doubling to 10 s.
func (v *simVEM) run(ctx context.Context) {
	backoff := minBackoff
	lastEnded := ""
	for ctx.Err() == nil {
		addrs := v.addresses()
		if i := slices.Index(addrs, lastEnded); i >= 0 && len(addrs) > 1 {
			addrs = append(slices.Delete(addrs, i, i+1), lastEnded)
		}
		standby := false
		for _, addr := range addrs {
			welcomed, err := v.session(ctx, addr)
			if ctx.Err() != nil {
				return
			}
			v.mu.Lock()
			v.lastErr = err
			v.mu.Unlock()
			standby = standby || errors.Is(err, errNotActive)
			if welcomed {
				backoff, lastEnded = minBackoff, addr
				break
			}
		}
		if standby {
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !standby {
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// errNotActive is a standby VSM's refusal.
var errNotActive = errors.New("VSM is not active")

func (v *simVEM) addresses() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	if v.opaque != nil && v.opaque.DomainID == v.join.Opaque.DomainID {
		out = append(out, v.opaque.VSMs...)
	}
	for _, a := range v.join.Opaque.VSMs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// session runs one connection: hello, welcome, then messages until it ends.
func (v *simVEM) session(ctx context.Context, addr string) (welcomed bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	d := tls.Dialer{Config: v.tls}
	nc, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return false, err
	}
	conn := nc.(*tls.Conn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 64<<10)

	v.mu.Lock()
	v.conn, v.seq = conn, 0
	hello := &api.VSMHelloBody{
		HostUUID: v.uuid, Hostname: v.hostname, Generation: v.gen, Epoch: v.epoch,
		Uplinks: v.join.Uplinks, Version: "bench",
	}
	if v.module <= api.VSMSlots { // benchmark slots past 66 fail hello validation
		hello.Module = v.module
	}
	err = v.sendLocked(api.VSMMessage{Type: api.VSMHello, Hello: hello})
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.conn = nil
		for id, ch := range v.waiters {
			close(ch)
			delete(v.waiters, id)
		}
		v.mu.Unlock()
	}()
	if err != nil {
		return false, err
	}
	conn.SetReadDeadline(time.Now().Add(welcomeTimeout))
	m, err := readMsg(br)
	if err != nil {
		return false, fmt.Errorf("waiting for welcome: %w", err)
	}
	switch m.Type {
	case api.VSMWelcome:
	case api.VSMError:
		if m.Error.Code == api.VSMErrNotActive {
			return false, fmt.Errorf("%w: %s", errNotActive, m.Error.Message)
		}
		return false, fmt.Errorf("refused: %s (%s)", m.Error.Message, m.Error.Code)
	default:
		return false, fmt.Errorf("%s before welcome", m.Type)
	}
	v.mu.Lock()
	v.module = m.Welcome.Module
	v.epoch = max(v.epoch, m.Epoch)
	v.mu.Unlock()
	v.stats.welcomes.Add(1)

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go v.heartbeats(sctx)
	go v.reportLoop(sctx)
	for {
		conn.SetReadDeadline(time.Now().Add(api.VSMDeadSeconds * time.Second))
		m, err := readMsg(br)
		if err != nil {
			v.stats.dropped.Add(1)
			return true, err
		}
		switch m.Type {
		case api.VSMHeartbeat:
			v.stats.hbRecv.Add(1)
		case api.VSMConfigMsg:
			v.stats.configs.Add(1)
			if v.applyConfig(m.Epoch, m.Config) && v.reports.Load() {
				go v.sendReport()
			}
		case api.VSMAttachResult:
			v.mu.Lock()
			ch := v.waiters[m.AttachResult.RequestID]
			delete(v.waiters, m.AttachResult.RequestID)
			v.mu.Unlock()
			if ch != nil {
				ch <- *m.AttachResult
			}
		case api.VSMError:
			return true, fmt.Errorf("VSM error: %s (%s)", m.Error.Message, m.Error.Code)
		}
	}
}

// readMsg reads and validates one message. A welcome to a slot past 66
// is accepted: the scale sweep raises the chassis size (-max-slot).
func readMsg(br *bufio.Reader) (api.VSMMessage, error) {
	line, err := br.ReadBytes('\n')
	if err != nil {
		return api.VSMMessage{}, err
	}
	m, err := api.DecodeVSMMessage(line)
	if err != nil && !(m.Type == api.VSMWelcome && m.Welcome != nil && m.Welcome.Module > api.VSMSlots) {
		return m, err
	}
	return m, nil
}

// sendLocked stamps and writes m; v.mu is held (it orders Seq).
func (v *simVEM) sendLocked(m api.VSMMessage) error {
	if v.conn == nil {
		return errors.New("not connected")
	}
	v.seq++
	m.Version, m.Domain, m.Seq = api.VSMProtocolVersion, v.join.Opaque.DomainID, v.seq
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	v.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = v.conn.Write(append(b, '\n'))
	return err
}

func (v *simVEM) send(m api.VSMMessage) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sendLocked(m)
}

func (v *simVEM) heartbeats(ctx context.Context) {
	// Real VEMs are not in step: start each at a random phase.
	first := time.NewTimer(time.Duration(rand.Int64N(int64(v.heartbeat))))
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	t := time.NewTicker(v.heartbeat)
	defer t.Stop()
	for {
		if v.send(api.VSMMessage{Type: api.VSMHeartbeat}) != nil {
			return
		}
		v.stats.hbSent.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *simVEM) reportLoop(ctx context.Context) {
	first := time.NewTimer(time.Duration(rand.Int64N(int64(v.report))))
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	t := time.NewTicker(v.report)
	defer t.Stop()
	for {
		if v.reports.Load() {
			v.sendReport()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sendReport sends what vsmlink reports: every port with its state and
// counters, and the MAC table (the vEths' static MACs).
func (v *simVEM) sendReport() {
	v.mu.Lock()
	defer v.mu.Unlock()
	body := &api.VSMPortReportBody{}
	names := make([]string, 0, len(v.ports))
	for n := range v.ports {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		p := v.ports[n]
		pp := v.profiles[p.Profile]
		st := api.PortStatus{
			Name: p.Name, Kind: p.Kind, Profile: p.Profile, Interface: p.Interface, State: "up",
			Mode: pp.Mode, VLANs: fmt.Sprint(pp.AccessVLAN), Owner: p.Owner,
			Counters: api.PortCounters{RxPackets: uint64(1000 + i), RxBytes: uint64(1500000 + i), TxPackets: uint64(900 + i), TxBytes: uint64(1400000 + i)},
		}
		if p.Kind == api.PortVeth {
			st.Interface = fmt.Sprintf("fvt%07x", v.idx<<12+i)
		}
		body.Ports = append(body.Ports, st)
		for _, mac := range p.MACs {
			body.MACs = append(body.MACs, api.MACEntry{VLAN: max(pp.AccessVLAN, 1), MAC: mac, Type: "static", Port: p.Name})
		}
	}
	if v.sendLocked(api.VSMMessage{Type: api.VSMPortReport, Ports: body}) == nil {
		v.stats.reports.Add(1)
	}
}

// applyConfig applies c (sent with the VSM's epoch) to the VEM's copy
// and acks it, or asks for a resync when a delta does not start from the
// generation it runs. It reports whether c was applied.
func (v *simVEM) applyConfig(epoch uint64, c *api.VSMConfigBody) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case epoch < v.epoch:
		// A VSM older than one already seen (VSM-7): refused, as vsmlink does.
		v.sendLocked(api.VSMMessage{Type: api.VSMAck, Ack: &api.VSMAckBody{Generation: c.Generation, Error: "stale epoch"}})
		return false
	case c.Full:
		v.opaque = c.Opaque
		v.profiles, v.ports = map[string]api.PortProfile{}, map[string]api.Port{}
	case c.Base != v.gen:
		v.stats.resyncs.Add(1)
		v.sendLocked(api.VSMMessage{Type: api.VSMResync})
		return false
	}
	for _, n := range c.RemoveProfiles {
		delete(v.profiles, n)
	}
	for _, n := range c.RemovePorts {
		delete(v.ports, n)
	}
	for _, p := range c.Profiles {
		v.profiles[p.Name] = p
	}
	n := len(v.ports)
	for _, p := range c.Ports {
		v.ports[p.Name] = p
	}
	changed := n != len(v.ports) || len(c.RemovePorts) > 0
	v.gen = c.Generation
	err := v.sendLocked(api.VSMMessage{Type: api.VSMAck, Ack: &api.VSMAckBody{Generation: c.Generation}})
	now := time.Now()
	if c.Full && err == nil {
		v.fullAt = now
	}
	if changed {
		v.portsAt = now
	}
	if w := v.watch; w != nil && w.at.IsZero() && err == nil && w.ok(v.profiles) {
		w.at = now
	}
	return true
}

// attach asks the VSM for a vEth and waits for the answer.
func (v *simVEM) attach(ctx context.Context, a api.VSMAttachBody, timeout time.Duration) (string, error) {
	ch := make(chan api.VSMAttachResultBody, 1)
	v.mu.Lock()
	v.nextReq++
	a.RequestID = v.nextReq
	v.waiters[a.RequestID] = ch
	err := v.sendLocked(api.VSMMessage{Type: api.VSMAttach, Attach: &a})
	if err != nil {
		delete(v.waiters, a.RequestID)
	}
	v.mu.Unlock()
	if err != nil {
		return "", err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r, ok := <-ch:
		switch {
		case !ok:
			return "", errors.New("connection lost")
		case r.Error != "":
			return "", errors.New(r.Error)
		}
		return r.Port, nil
	case <-t.C:
		return "", fmt.Errorf("no attach-result in %v", timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// vemState is a snapshot of what the bench polls.
type vemState struct {
	connected  bool
	module     int
	ports      int
	fullAt     time.Time
	lastPortAt time.Time
	watchAt    time.Time
	lastErr    error
}

func (v *simVEM) state() vemState {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := vemState{connected: v.conn != nil, module: v.module, fullAt: v.fullAt, lastPortAt: v.portsAt, lastErr: v.lastErr}
	for _, p := range v.ports {
		if p.Kind == api.PortVeth {
			s.ports++
		}
	}
	if v.watch != nil {
		s.watchAt = v.watch.at
	}
	return s
}

func (v *simVEM) setWatch(ok func(map[string]api.PortProfile) bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.watch = &watch{ok: ok}
	if ok(v.profiles) {
		v.watch.at = time.Now()
	}
}
