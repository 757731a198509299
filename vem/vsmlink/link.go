package vsmlink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// Agent is what the link needs from the VEM agent (vem.Agent).
type Agent interface {
	SetConfig(ctx context.Context, sc api.SwitchConfig) error
	Config() (api.SwitchConfig, bool)
	Status(ctx context.Context) ([]api.PortStatus, error)
	MACTable(ctx context.Context) ([]api.MACEntry, error)
}

// Options configure a Link. Zero timers take the protocol's defaults.
type Options struct {
	Agent Agent
	// JoinFile and StateFile are where the join data and the link state
	// are kept (layout.VEMJoinFile, layout.VEMLinkStateFile in the state
	// directory).
	JoinFile, StateFile string
	// Identity sent in hello.
	HostUUID, Hostname, Version string
	Log                         *slog.Logger

	// Heartbeat is the send period (2 s), Dead how long the VSM may be
	// silent before the connection is given up (8 s).
	Heartbeat, Dead time.Duration
	// Welcome bounds dial, handshake and the wait for welcome (10 s);
	// AttachTimeout the wait for an attach-result (10 s).
	Welcome, AttachTimeout time.Duration
	// Report is the period of port reports (10 s).
	Report time.Duration
	// MinBackoff and MaxBackoff bound the redial delay (1 s .. 10 s).
	MinBackoff, MaxBackoff time.Duration

	// Frames, when set, captures the CDP frames received on the uplinks
	// (the Eth ports of the programming) and the IGMP frames received on
	// every port while the link is connected; each is relayed to the VSM
	// as a frame message (packet channel, VEM-9), CDP at most one per
	// port per FrameInterval (1 s), IGMP in a bounded burst (see relay).
	Frames        FrameSource
	FrameInterval time.Duration
	// CaptureVeths also captures the IGMP frames the VSM's vEths receive
	// (each VM's tap); without it only the Eth ports are captured.
	CaptureVeths bool
	// IfaceExists tells whether a kernel interface is there (nil: assume
	// so); vEth taps of powered-off VMs are not captured.
	IfaceExists func(name string) bool
	// Packet opens the packet channel's sending end on the vmknic of the
	// packet VLAN in svs mode L2 (nil: relayed frames always take the
	// control connection).
	Packet PacketOpener
	// Dial opens the TCP connection to a VSM (nil: a net.Dialer; tests
	// dial from another network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Heartbeat, api.VSMHeartbeatSeconds*time.Second)
	def(&o.Dead, api.VSMDeadSeconds*time.Second)
	def(&o.Welcome, 10*time.Second)
	def(&o.AttachTimeout, 10*time.Second)
	def(&o.Report, 10*time.Second)
	def(&o.MinBackoff, time.Second)
	def(&o.MaxBackoff, 10*time.Second)
	def(&o.FrameInterval, time.Second)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Link is the VEM's control channel to its VSM. It implements
// vem.VSMLink and vem.LocalConfig: the vem.Server routes /v1/vsm and
// /v1/config through it. Build it with New, run it with Run.
type Link struct {
	o     Options
	log   *slog.Logger
	agent Agent

	// pmu serializes everything that changes the programming or the join:
	// Join, Leave, SetLocal, applied configs.
	pmu    sync.Mutex
	join   *api.VSMJoin
	tls    *tls.Config
	joinID uint64 // bumped by every Join and Leave
	st     State
	// profiles is the VSM's enabled vethernet profiles of st (setSt).
	profiles atomic.Pointer[[]api.PortProfile]
	changed  chan struct{} // closed (and replaced) on every Join and Leave
	// restored is set once Run has checked the agent against the state.
	restored bool

	// mu guards the status and the live session; never held while
	// waiting for pmu.
	mu      sync.Mutex
	status  api.VSMLinkStatus
	sess    *session
	nextReq uint64
	waiters map[uint64]chan api.VSMAttachResultBody
	// captureLogged lists the NICs whose CDP capture failure was logged.
	captureLogged map[string]bool

	// framesKick wakes the CDP relay when the programming changed.
	framesKick chan struct{}
}

var (
	_ vem.VSMLink     = (*Link)(nil)
	_ vem.LocalConfig = (*Link)(nil)
)

// New loads the join data and the link state, if any. A missing join
// file means standalone; an unusable one is logged and reported by Status
// (the host then runs standalone until joined again): vemd must come up
// whatever is on disk.
func New(o Options) (*Link, error) {
	if o.Agent == nil {
		return nil, errors.New("vsmlink: no agent")
	}
	if o.JoinFile == "" || o.StateFile == "" {
		return nil, errors.New("vsmlink: no join or state file")
	}
	o.defaults()
	l := &Link{o: o, log: o.Log, agent: o.Agent, changed: make(chan struct{}), waiters: map[uint64]chan api.VSMAttachResultBody{},
		captureLogged: map[string]bool{}, framesKick: make(chan struct{}, 1)}
	j, err := LoadJoin(o.JoinFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return l, nil
	case err != nil:
		l.log.Error("join data unusable: running standalone until joined again", "err", err)
		l.status.LastError = err.Error()
		return l, nil
	}
	tc, _ := ValidateJoin(j) // LoadJoin validated it
	st, err := LoadState(o.StateFile)
	if err == nil && st.Domain != j.Opaque.DomainID {
		err = fmt.Errorf("state of domain %d, joined to %d", st.Domain, j.Opaque.DomainID)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			l.log.Warn("vsm link state unusable: starting from the agent's programming", "err", err)
		}
		st = State{Domain: j.Opaque.DomainID}
		if sc, ok := o.Agent.Config(); ok {
			st.Local = localOf(sc)
		}
	}
	l.join, l.tls = &j, tc
	l.setSt(st)
	l.publish()
	return l, nil
}

// localOf is the local part of a programming applied before the host
// joined (standalone: no domain).
func localOf(sc api.SwitchConfig) *api.SwitchConfig {
	sc.DomainID = 0
	return &sc
}

// publish copies what Status reports from the programming state; pmu held.
func (l *Link) publish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.status
	s.Joined = l.join != nil
	s.DomainID, s.SwitchName, s.Generation, s.Epoch, s.ControlMode, s.ControlVLAN = 0, "", 0, 0, "", 0
	if l.join != nil {
		s.DomainID, s.SwitchName = l.join.Opaque.DomainID, l.join.Opaque.SwitchName
		s.Generation, s.Epoch = l.st.Generation, l.st.Epoch
		if s.ControlMode = controlMode(l.st.Opaque, l.join); s.ControlMode == api.SVSModeL2 {
			s.ControlVLAN = l.join.Opaque.ControlVLAN
			if o := l.st.Opaque; o != nil {
				s.ControlVLAN = o.ControlVLAN
			}
		}
		if l.sess == nil {
			s.Module = l.st.Module
		}
	} else {
		s.Module, s.VSM, s.ForeignDomain, s.StaleEpoch = 0, "", 0, 0
	}
}

// Status implements vem.VSMLink. It never includes the join data.
func (l *Link) Status() api.VSMLinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Connected = l.sess != nil && s.Joined
	s.Headless = s.Joined && !s.Connected
	if p := l.profiles.Load(); p != nil && s.Joined {
		s.Profiles = *p
	}
	return s
}

// setSt replaces the link state (pmu held) and publishes the VSM's
// enabled vethernet profiles for Status (hosts offer them as port groups)
// without Status having to wait for pmu.
func (l *Link) setSt(st State) {
	l.st = st
	var ps []api.PortProfile
	for _, p := range st.VSM.Profiles {
		if p.Type == api.ProfileVethernet && p.Enabled {
			ps = append(ps, p)
		}
	}
	l.profiles.Store(&ps)
}

func (l *Link) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status.LastError = err.Error()
}

// merged is the programming for local and the VSM part st; pmu held.
func (l *Link) merged(local *api.SwitchConfig, st State) (api.SwitchConfig, error) {
	return l.mergedFor(l.join, local, st)
}

// mergedFor is merged for join data j (before it is the link's).
func (l *Link) mergedFor(j *api.VSMJoin, local *api.SwitchConfig, st State) (api.SwitchConfig, error) {
	var lc api.SwitchConfig
	if local != nil {
		lc = *local
	}
	sc, err := Merge(lc, st.VSM, j.Opaque.DomainID, st.Module)
	if err != nil {
		return sc, err
	}
	if _, err := vem.Validate(sc); err != nil {
		return sc, err
	}
	return sc, nil
}

// apply hands sc to the agent unless it already runs exactly that. A
// kernel error is logged: the agent keeps sc and retries on its own.
func (l *Link) apply(ctx context.Context, sc api.SwitchConfig) error {
	if cur, ok := l.agent.Config(); ok && sameConfig(cur, sc) {
		return nil
	}
	err := l.agent.SetConfig(ctx, sc)
	if err != nil && !errors.Is(err, vem.ErrInvalid) {
		l.log.Warn("switch programming applied with errors", "err", err)
		return nil
	}
	return err
}

func sameConfig(a, b api.SwitchConfig) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// Local implements vem.LocalConfig.
func (l *Link) Local() (api.SwitchConfig, bool) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.join == nil {
		return l.agent.Config()
	}
	if l.st.Local == nil {
		return api.SwitchConfig{}, false
	}
	return *l.st.Local, true
}

// CheckLocal implements vem.LocalConfig.
func (l *Link) CheckLocal(sc api.SwitchConfig) error {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.join == nil {
		_, err := vem.Validate(sc)
		return err
	}
	_, err := l.merged(&sc, l.st)
	return err
}

// SetLocal implements vem.LocalConfig: standalone, sc is the whole
// programming; joined, it replaces the local part, merged with the VSM's.
func (l *Link) SetLocal(ctx context.Context, sc api.SwitchConfig) error {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.join == nil {
		return l.agent.SetConfig(ctx, sc)
	}
	m, err := l.merged(&sc, l.st)
	if err != nil {
		return err
	}
	next := l.st
	next.Local = &sc
	if err := SaveState(l.o.StateFile, next); err != nil {
		return err
	}
	l.setSt(next)
	defer l.kickFrames()
	return l.agent.SetConfig(ctx, m)
}

// Join implements vem.VSMLink: it validates and stores the join data and
// (re)starts the link. Joining again the same domain replaces the join
// data (new certificate, other VSM addresses) and keeps the programming;
// another domain needs a Leave first.
func (l *Link) Join(ctx context.Context, j api.VSMJoin) error {
	tc, err := ValidateJoin(j)
	if err != nil {
		return err
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.join != nil && l.join.Opaque.DomainID != j.Opaque.DomainID {
		return fmt.Errorf("join domain %d: %w (domain %d)", j.Opaque.DomainID, vem.ErrJoinedElsewhere, l.join.Opaque.DomainID)
	}
	st := l.st
	if l.join == nil {
		st = State{Domain: j.Opaque.DomainID}
		if sc, ok := l.agent.Config(); ok {
			st.Local = localOf(sc)
		}
		// VEM-6: the system ports come up now, not at the first contact,
		// in the module the VSM reserved (its snapshot then names them
		// the same: nothing flaps when it arrives).
		if j.Module != 0 {
			seeded := st
			seeded.Module, seeded.VSM, seeded.Opaque = j.Module, SystemPart(j), &j.Opaque
			if _, err := l.mergedFor(&j, st.Local, seeded); err != nil {
				l.log.Warn("system ports wait for the VSM: they do not fit the host's switch", "err", err)
			} else {
				st = seeded
			}
		}
	}
	// State first: a join file without state is recovered from the
	// agent's programming, state without a join file is ignored.
	if err := SaveState(l.o.StateFile, st); err != nil {
		return err
	}
	if err := SaveJoin(l.o.JoinFile, j); err != nil {
		return err
	}
	first := l.join == nil
	l.join, l.tls = &j, tc
	l.setSt(st)
	l.restart()
	l.log.Info("joined the switch", "domain", j.Opaque.DomainID, "switch", j.Opaque.SwitchName, "vsms", j.Opaque.VSMs)
	if first && (st.Local != nil || len(st.VSM.Ports) > 0 || len(st.VSM.Profiles) > 0) {
		// The same ports with the domain set (no kernel change), and the
		// system ports.
		if m, err := l.merged(st.Local, st); err == nil {
			if err := l.apply(ctx, m); err != nil {
				l.log.Warn("programming with the domain", "err", err)
			}
		}
	}
	return nil
}

// restart tells Run the join changed (Run then ends the session and
// starts over); pmu held.
func (l *Link) restart() {
	l.joinID++
	close(l.changed)
	l.changed = make(chan struct{})
	l.publish()
}

// Leave implements vem.VSMLink: the link stops, the switch runs the local
// part alone (standalone) and the join data and state are removed.
// Leaving when not joined does nothing.
func (l *Link) Leave(ctx context.Context) error {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.join == nil {
		return nil
	}
	local := api.SwitchConfig{Module: 3}
	if l.st.Local != nil {
		local = *l.st.Local
	}
	l.join = nil
	l.restart()
	// The programming first: a crash before the files are gone leaves a
	// joined host that reconnects, never a standalone one with VSM ports.
	if err := l.apply(ctx, local); err != nil {
		return fmt.Errorf("leave the switch: %w", err)
	}
	if err := removeFile(l.o.JoinFile); err != nil {
		return fmt.Errorf("leave the switch: %w", err)
	}
	if err := removeFile(l.o.StateFile); err != nil {
		return fmt.Errorf("leave the switch: %w", err)
	}
	l.setSt(State{})
	l.publish()
	l.log.Info("left the switch")
	return nil
}

// Run runs the link until ctx ends: while joined it keeps a connection to
// one of the VSMs, redialling with backoff forever; the programming keeps
// forwarding meanwhile (headless, VEM-8). First it makes sure the agent
// runs the stored programming (it normally does: vem.Agent.Restore).
func (l *Link) Run(ctx context.Context) error {
	l.restore(ctx)
	for {
		l.pmu.Lock()
		joined, id, ch := l.join != nil, l.joinID, l.changed
		l.pmu.Unlock()
		if !joined {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ch:
				continue
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-ch:
				cancel()
			case <-sctx.Done():
			}
		}()
		l.connectLoop(sctx, id)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// restore re-applies the merged programming if the agent's differs from
// it (a crash between saving the state and the agent's store).
func (l *Link) restore(ctx context.Context) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.restored || l.join == nil {
		return
	}
	l.restored = true
	if l.st.Local == nil && len(l.st.VSM.Ports) == 0 && len(l.st.VSM.Profiles) == 0 {
		return
	}
	m, err := l.merged(l.st.Local, l.st)
	if err != nil {
		l.log.Error("stored vsm programming does not merge: keeping the agent's", "err", err)
		return
	}
	if err := l.apply(ctx, m); err != nil {
		l.log.Error("restore vsm programming", "err", err)
	}
}

// addresses are the VSMs to dial in turn, for the switch's control mode
// (the last snapshot's opaque data, else the join data's): the last
// snapshot's addresses, then the join data's. L3 dials the routable ones.
// L2 dials the IPv6 link-local ones, through the host's vmknic on the
// control VLAN (controlInterface): they reach only what that VLAN reaches,
// and neither end needs an IP configuration.
func (l *Link) addresses() ([]string, error) {
	o := l.join.Opaque
	var all []string
	if so := l.st.Opaque; so != nil && so.DomainID == o.DomainID {
		o = *so
		all = append(all, so.VSMs...)
	}
	for _, a := range l.join.Opaque.VSMs {
		if !slices.Contains(all, a) {
			all = append(all, a)
		}
	}
	var iface string
	if o.Mode == api.SVSModeL2 {
		sc, _ := l.agent.Config()
		var err error
		if iface, err = controlInterface(sc, o.ControlVLAN); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, a := range all {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(host)
		linkLocal := err == nil && ip.Is6() && ip.IsLinkLocalUnicast() && ip.Zone() == ""
		switch {
		case o.Mode == api.SVSModeL2 && linkLocal:
			out = append(out, net.JoinHostPort(ip.WithZone(iface).String(), port))
		case o.Mode != api.SVSModeL2 && !linkLocal:
			out = append(out, a)
		}
	}
	if len(out) == 0 && o.Mode == api.SVSModeL2 {
		return nil, fmt.Errorf("svs mode L2: the VSMs advertise no IPv6 link-local address (%s)", strings.Join(all, ", "))
	}
	return out, nil
}

// ErrNoControlInterface: in L2 mode the host has no vmknic on the control
// VLAN to reach the VSM through.
var ErrNoControlInterface = errors.New("svs mode L2: no vmknic on the control VLAN")

// controlInterface is the vmknic L2 mode talks through: the one whose vEth
// (in either part of the programming) is an access port of the control
// VLAN; with several, the lowest VethN's.
func controlInterface(sc api.SwitchConfig, vlan int) (string, error) {
	if name, ok := vmknicOn(sc, vlan); ok {
		return name, nil
	}
	return "", fmt.Errorf("%w %d: add one (fvctl network vmknic add, IPv4 none) on a port group of VLAN %d", ErrNoControlInterface, vlan, vlan)
}

// vmknicOn is the host's vmknic whose vEth (in either part of the
// programming) is an access port of vlan; with several, the lowest
// VethN's.
func vmknicOn(sc api.SwitchConfig, vlan int) (string, bool) {
	profiles := map[string]api.PortProfile{}
	for _, p := range sc.Profiles {
		profiles[p.Name] = p
	}
	best, bestN := "", 0
	for _, p := range sc.Ports {
		n, ok := api.VethNumber(p.Name)
		if !ok || p.Kind != api.PortVeth {
			continue
		}
		name, ok := vmknic.HostEnd(p.Interface)
		pp := profiles[p.Profile]
		if !ok || pp.Mode != api.ModeAccess || pp.AccessVLAN != vlan {
			continue
		}
		if best == "" || n < bestN {
			best, bestN = name, n
		}
	}
	return best, best != ""
}

// connectLoop dials the VSMs in turn until ctx ends.
//
// Two rules keep a switchover to the standby VSM short (VSM-7): an address
// whose session just ended is tried last next round (its VSM, or its host,
// is likely gone; the standby is taking over elsewhere), and while some
// VSM answers "not active" (a standby about to take over) the retry stays
// at the shortest backoff instead of growing.
func (l *Link) connectLoop(ctx context.Context, id uint64) {
	backoff := l.o.MinBackoff
	var lastEnded string
	for {
		l.pmu.Lock()
		if l.joinID != id {
			l.pmu.Unlock()
			return
		}
		addrs, err := l.addresses()
		tc := l.tls
		l.pmu.Unlock()
		if err != nil {
			l.log.Warn("vsm connection", "err", err)
			l.setErr(err)
		}
		if i := slices.Index(addrs, lastEnded); i >= 0 && len(addrs) > 1 {
			addrs = append(slices.Delete(slices.Clone(addrs), i, i+1), lastEnded)
		}
		standby := false
		for _, addr := range addrs {
			welcomed, err := l.session(ctx, id, addr, tc)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				l.log.Warn("vsm connection", "vsm", addr, "err", err)
				l.setErr(err)
			}
			standby = standby || errors.Is(err, errNotActive)
			if welcomed {
				backoff, lastEnded = l.o.MinBackoff, addr
				break
			}
		}
		if standby {
			backoff = l.o.MinBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !standby {
			backoff = min(2*backoff, l.o.MaxBackoff)
		}
	}
}

// dialTimeout bounds the TCP and TLS handshake with one VSM address.
const dialTimeout = 3 * time.Second

// errNotActive is a standby VSM's refusal: it will not program us, the
// active (or, soon, itself) will.
var errNotActive = errors.New("VSM is not active")
