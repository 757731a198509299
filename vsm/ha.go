package vsm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// High availability (VSM-7): an active/standby pair.
//
// Roles are administrative (`system redundancy role`, Options.Role): the
// primary sits in chassis slot 1, the secondary in slot 2. States are
// operational: exactly one of the pair is active (programs VEMs, takes
// configuration), the other is the standby (refuses VEM hellos with
// not_active, refuses configuration changes, mirrors the active's state).
//
// Decisions, evaluated every PeerHeartbeat/4 by haLoop:
//
//   - An active VSM steps down when it hears an active peer with a higher
//     epoch (a healed partition: the newer activation wins, as on the
//     VEMs), or when a VEM's hello carries a higher epoch than its own
//     (a VEM has followed a newer active). Stepping down closes every VEM
//     connection; the VEMs move on to the next VSM of their list.
//   - A standby stays standby while it hears an active peer.
//   - A primary that never paired becomes active when its start window
//     (PeerDead/2) passes without an active peer; any primary becomes
//     active at once when its peer is a standby too.
//   - Otherwise a standby becomes active when no active peer was heard for
//     PeerDead (6 s): the secondary when the primary dies, and a primary
//     that was paired before and restarts into silence.
//
// Activating raises the epoch above every epoch seen (the peer's, and the
// VEMs' hellos) with the role's parity (see nextEpochFor), stored before
// anything is sent with it.

// HA defaults.
const (
	DefaultPeerPort      = 2002
	PeerHeartbeatSeconds = 1
	PeerDeadSeconds      = 6
)

// PeerFile records, in the state directory, what this VSM learnt about its
// peer: its advertised control addresses (VEMs get both VSMs in their
// opaque data) and the highest epoch seen anywhere. Written only when it
// changes.
const PeerFile = "peer.json"

// ErrStandby is returned by configuration changes on the standby VSM.
var ErrStandby = errors.New("this VSM is the HA standby: make changes on the active VSM")

// Operational states.
const (
	StateActive  = "active"
	StateStandby = "standby"
)

// peerRecord is PeerFile's content.
type peerRecord struct {
	Advertise []string `json:"advertise,omitempty"`
	EpochSeen uint64   `json:"epoch_seen,omitempty"`
}

// peerInfo is what the live peer link says about the other VSM.
type peerInfo struct {
	role, state, version string
	epoch                uint64
	advertise            []string
	rev                  uint64 // the state revision it last applied (standby) or sent (active)
}

// haState is the redundancy state; guarded by Server.mu.
type haState struct {
	active bool
	// rec is PeerFile's content.
	rec peerRecord
	// link is the live peer link and peer what it said last (nil: none).
	link *peerLink
	peer *peerInfo
	// started is when Serve began; lastActive when an active peer was
	// heard last (started until then); sawActive whether one ever was.
	started, lastActive time.Time
	sawActive           bool
	// wasActive: this process has been active (the start window is over).
	wasActive bool
	// paired: this process got the domain CA from its peer (a secondary's
	// first start, or a primary replacing a lost one): an active peer
	// exists, so it waits for it rather than activating at start.
	paired bool
	// rev numbers the replicated state's versions; state is the encoded
	// state of rev (active: what the sender computed last).
	rev   uint64
	state []byte
	// acked is the revision the standby confirmed (active side), applied
	// the one installed from the active (standby side).
	acked, applied uint64
}

// initHA loads the peer record and sets the start state: a standalone VSM
// is active at once with a new epoch; one of a pair starts as standby with
// the epoch of its last activation.
func (s *Server) initHA() error {
	b, err := os.ReadFile(filepath.Join(s.o.StateDir, PeerFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s.ha.rec); err != nil {
			s.log.Warn("peer record unusable: ignored", "file", PeerFile, "err", err)
			s.ha.rec = peerRecord{}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read peer record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.role == config.RoleStandalone {
		if s.epoch, err = nextEpoch(filepath.Join(s.o.StateDir, EpochFile), 0); err != nil {
			return err
		}
		s.ha.active = true
		s.updateSupervisorsLocked()
		s.log.Info("VSM active", "role", s.role, "epoch", s.epoch, "domain", s.cfg.SVSDomain.ID, "switch", s.cfg.SwitchName)
		return nil
	}
	if s.epoch, err = readEpoch(filepath.Join(s.o.StateDir, EpochFile)); err != nil {
		return err
	}
	s.updateSupervisorsLocked()
	s.log.Info("VSM standby until the pair decides", "role", s.role, "epoch", s.epoch, "peer", s.o.PeerAddr,
		"domain", s.cfg.SVSDomain.ID, "switch", s.cfg.SwitchName)
	return nil
}

// serveHA starts the decision loop, the peer listener and, on the
// secondary, the peer dialer.
func (s *Server) serveHA(ctx context.Context, g *errgroup.Group, peer net.Listener) {
	s.mu.Lock()
	now := time.Now()
	s.ha.started, s.ha.lastActive = now, now
	s.mu.Unlock()
	g.Go(func() error { s.haLoop(ctx); return nil })
	if peer != nil {
		s.log.Info("peer port listening", "addr", peer.Addr().String())
		g.Go(func() error { return s.servePeer(ctx, peer) })
	}
	if s.role == config.RoleSecondary && s.o.PeerAddr != "" {
		g.Go(func() error { s.dialPeerLoop(ctx); return nil })
	}
}

// haLoop evaluates the standby's decision until ctx ends.
func (s *Server) haLoop(ctx context.Context) {
	t := time.NewTicker(max(s.o.PeerHeartbeat/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if why := s.takeOverLocked(time.Now()); why != "" {
			s.activateLocked(why)
		}
		s.mu.Unlock()
	}
}

// takeOverLocked says why a standby must become active now, or "".
func (s *Server) takeOverLocked(now time.Time) string {
	if s.ha.active {
		return ""
	}
	if s.ha.paired && s.ha.applied == 0 {
		// It just proved its peer alive and has nothing to serve yet:
		// activating would put an empty switch in front of the VEMs.
		return ""
	}
	p := s.ha.peer
	switch {
	case p != nil && p.state == StateActive:
		if p.epoch > s.epoch || s.ha.sawActive {
			s.ha.lastActive, s.ha.sawActive = now, true
			return ""
		}
		// An active peer older than our own last activation (it never
		// saw our epoch): ours is the newer one, and it will step down
		// when it hears us.
		if s.role == config.RolePrimary {
			return fmt.Sprintf("peer active with epoch %d, ours was %d", p.epoch, s.epoch)
		}
		s.ha.lastActive = now
		return ""
	case p != nil && s.role == config.RolePrimary:
		return "peer is standby"
	case s.role == config.RolePrimary && len(s.ha.rec.Advertise) == 0 && !s.ha.sawActive && !s.ha.wasActive && !s.ha.paired &&
		now.Sub(s.ha.started) >= s.o.PeerDead/2:
		return "no active peer at start"
	case now.Sub(s.ha.lastActive) >= s.o.PeerDead:
		return fmt.Sprintf("no active peer for %s", now.Sub(s.ha.lastActive).Round(time.Millisecond))
	}
	return ""
}

// activateLocked makes this VSM active: a new epoch above every one seen,
// stored before anything is sent with it. On a storage error it stays
// standby (the next tick retries).
func (s *Server) activateLocked(why string) {
	floor := max(s.ha.rec.EpochSeen, s.epoch)
	if p := s.ha.peer; p != nil {
		floor = max(floor, p.epoch)
	}
	parity := epochOdd
	if s.role == config.RoleSecondary {
		parity = epochEven
	}
	e, err := nextEpochFor(filepath.Join(s.o.StateDir, EpochFile), floor, parity)
	if err != nil {
		s.log.Error("cannot become active: epoch not stored", "err", err)
		return
	}
	s.epoch, s.ha.active, s.ha.wasActive = e, true, true
	s.ha.acked = 0
	s.updateSupervisorsLocked()
	s.kickSync()
	s.log.Warn("VSM active", "role", s.role, "epoch", e, "reason", why, "state_revision", s.ha.applied)
}

// stepDownLocked makes this active VSM the standby and closes every VEM
// connection: the VEMs try the next VSM of their list.
func (s *Server) stepDownLocked(why string) {
	if !s.ha.active {
		return
	}
	s.ha.active = false
	s.ha.lastActive = time.Now()
	for slot, vc := range s.conns {
		vc.close()
		delete(s.conns, slot)
	}
	s.updateSupervisorsLocked()
	s.log.Warn("VSM steps down to standby", "role", s.role, "epoch", s.epoch, "reason", why)
}

// Switchover implements cli.Switch (`system switchover`): the active
// asks its standby, which must hold the active's latest state, to take
// over now. The standby activates with a higher epoch; this VSM steps
// down when it hears that (as after any takeover) and its VEMs reconnect
// to the new active, which sends them what they already run.
func (s *Server) Switchover() error {
	s.mu.Lock()
	p, lk := s.ha.peer, s.ha.link
	switch {
	case !s.ha.active:
		s.mu.Unlock()
		return errors.New("this supervisor is the standby: run system switchover on the active one")
	case p == nil || lk == nil:
		s.mu.Unlock()
		return errors.New("no standby supervisor: nothing to switch over to")
	case p.state == StateActive:
		s.mu.Unlock()
		return errors.New("the other supervisor is active too: wait until the pair has settled")
	case s.ha.rev == 0 || s.ha.acked != s.ha.rev || s.syncDirty.Load():
		s.mu.Unlock()
		return fmt.Errorf("the standby is not synchronized yet (state revision %d of %d): try again in a moment", s.ha.acked, s.ha.rev)
	}
	m := s.headerLocked(peerSwitchover)
	m.Rev = s.ha.rev
	s.mu.Unlock()
	s.log.Warn("switchover: asking the standby to take over", "state_revision", m.Rev)
	if err := lk.send(m, s.o.PeerDead); err != nil {
		return fmt.Errorf("switchover: the standby cannot be told: %w", err)
	}
	return nil
}

// switchoverLocked acts on the active's switchover request: a standby
// holding the revision the request names takes over. It says why not.
func (s *Server) switchoverLocked(m *peerMsg) string {
	switch {
	case s.ha.active:
		return "this VSM is active already"
	case m.State != StateActive:
		return "the request does not come from the active"
	case s.ha.applied != m.Rev:
		return fmt.Sprintf("this standby holds state revision %d, the active %d", s.ha.applied, m.Rev)
	}
	s.activateLocked("switchover asked by the active")
	return ""
}

// active reports whether this VSM is the active one.
func (s *Server) active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ha.active
}

// admitHello decides whether a VEM's hello may be served: only by the
// active VSM, and (in a pair) only when the VEM has not seen a newer
// epoch than ours, which means a newer active exists: then this one steps
// down. Every epoch seen raises the floor of our next activation.
func (s *Server) admitHello(epoch uint64) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteEpochLocked(epoch)
	if !s.ha.active {
		return false, "this VSM is the HA standby"
	}
	if s.role != config.RoleStandalone && epoch > s.epoch {
		s.stepDownLocked(fmt.Sprintf("a VEM has seen epoch %d, ours is %d", epoch, s.epoch))
		return false, fmt.Sprintf("epoch %d is stale: a VEM has seen %d", s.epoch, epoch)
	}
	return true, ""
}

// noteEpochLocked raises the highest epoch seen (stored when it rises).
func (s *Server) noteEpochLocked(e uint64) {
	if e <= s.ha.rec.EpochSeen {
		return
	}
	rec := s.ha.rec
	rec.EpochSeen = e
	s.savePeerRecordLocked(rec)
}

// notePeerAdvertiseLocked records the peer's control addresses; the
// active then sends its VEMs the new opaque data (both VSMs listed).
func (s *Server) notePeerAdvertiseLocked(addrs []string) {
	if len(addrs) == 0 || slices.Equal(addrs, s.ha.rec.Advertise) {
		return
	}
	rec := s.ha.rec
	rec.Advertise = slices.Clone(addrs)
	s.savePeerRecordLocked(rec)
	if s.ha.active {
		s.pushLocked()
	}
}

func (s *Server) savePeerRecordLocked(rec peerRecord) {
	s.ha.rec = rec
	b, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := atomicfile.WriteIfChanged(filepath.Join(s.o.StateDir, PeerFile), append(b, '\n'), 0o600); err != nil {
		s.log.Error("store peer record", "err", err)
	}
}

// vsmAddressesLocked are the VSMs' control addresses for the opaque
// data: the active's first, then the standby's.
func (s *Server) vsmAddressesLocked() []string {
	own, peer := s.o.Advertise, s.ha.rec.Advertise
	if !s.ha.active {
		own, peer = peer, own
	}
	out := slices.Clone(own)
	for _, a := range peer {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// kickSync wakes the peer link's sender (non-blocking). Until the sender
// has turned the change into a state revision, the pair does not count as
// synchronized.
func (s *Server) kickSync() {
	s.syncDirty.Store(true)
	select {
	case s.syncKick <- struct{}{}:
	default:
	}
}

// slotOf is a role's chassis slot: the secondary is slot 2.
func slotOf(role string) int {
	if role == config.RoleSecondary {
		return api.VSMStandbySlot
	}
	return api.VSMActiveSlot
}

// supervisorRow is `show module`'s row of a VSM.
func supervisorRow(role, state, version string, advertise []string) api.VSMModule {
	addr := ""
	if ips := advertisedIPs(advertise); len(ips) > 0 {
		addr = ips[0].String()
	}
	status := "active *"
	if state != StateActive {
		status = "ha-standby"
	}
	return api.VSMModule{
		Slot: slotOf(role), Ports: 0, Type: "Virtual Supervisor Module", Model: "Flashvisor-VSM",
		Status: status, Version: version, Address: addr,
	}
}

// updateSupervisorsLocked sets the chassis's slots 1 and 2: this VSM and
// the peer while its link is up.
func (s *Server) updateSupervisorsLocked() {
	rows := [3]api.VSMModule{}
	me := supervisorRow(s.role, s.stateLocked(), s.o.Version, s.o.Advertise)
	rows[me.Slot] = me
	if p := s.ha.peer; p != nil && slotOf(p.role) != me.Slot {
		rows[slotOf(p.role)] = supervisorRow(p.role, p.state, p.version, p.advertise)
	}
	s.chassis.SetSupervisors(rows[1], rows[2])
}

func (s *Server) stateLocked() string {
	if s.ha.active {
		return StateActive
	}
	return StateStandby
}

// Redundancy is `show system redundancy status`: role, state, the peer's
// state, epochs and how far the standby is synchronised.
func (s *Server) Redundancy() api.VSMRedundancy {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := api.VSMRedundancy{Role: s.role, State: s.stateLocked(), PeerState: "Not present", Epoch: s.epoch}
	p := s.ha.peer
	if p != nil {
		r.PeerEpoch = p.epoch
		if p.state == StateActive {
			r.PeerState = "Active"
		} else {
			r.PeerState = "HA standby"
		}
	}
	switch {
	case s.role == config.RoleStandalone:
		r.Description = "Active with no standby"
	case s.ha.active && p == nil:
		r.Description = "No standby: HA not synchronized"
	case s.ha.active:
		r.SyncedGen, r.Revision = s.ha.acked, s.ha.rev
		if s.ha.acked == s.ha.rev && s.ha.rev != 0 && !s.syncDirty.Load() {
			r.Description = "HA synchronized (state revision " + strconv.FormatUint(s.ha.rev, 10) + ")"
		} else {
			r.Description = "HA synchronization in progress"
		}
	default:
		r.SyncedGen, r.Revision = s.ha.applied, s.ha.applied
		if p != nil && p.state == StateActive {
			r.Description = "Synchronized with the active (state revision " + strconv.FormatUint(s.ha.applied, 10) + ")"
		} else {
			r.Description = "No active peer: waiting to take over"
		}
	}
	return r
}
