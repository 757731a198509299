// Package chassis is the VSM's virtual chassis (SPEC VSM-2, VSM-3): 66
// slots, slot 1 the active VSM, slot 2 the standby, slots 3-66 the VEMs
// (one per host, a "line card").
//
// A VEM's slot is bound to its host UUID the first time it joins and the
// binding outlives the connection: a host that reboots, drops off the
// network or sees the VSM restart comes back in the same slot. An operator
// can pin a UUID to a slot ("host <uuid> module N") before the host ever
// joins, and free a binding ("no host ...") while the host is offline.
// Bindings and pins are persisted through a Store; liveness (online,
// heartbeats, sessions) is not, because it describes connections, which do
// not survive the VSM process.
//
// Chassis is pure bookkeeping: it does no network I/O and reads time only
// through the injected Clock, so the daemon drives it (Join on hello,
// Heartbeat on every heartbeat, Sweep every second or so, Leave when a
// connection closes) and the tests drive it with a fake clock.
package chassis

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Sentinel errors; every error the Chassis returns wraps one of them.
var (
	// ErrChassisFull: every VEM slot is bound to (or pinned for) another host.
	ErrChassisFull = errors.New("chassis full")
	// ErrSlotTaken: the slot is bound or pinned to another host.
	ErrSlotTaken = errors.New("slot taken")
	// ErrBadUUID: the host UUID is not a canonical UUID.
	ErrBadUUID = errors.New("bad host uuid")
	// ErrBadSlot: the slot is outside the VEM range 3..MaxSlot.
	ErrBadSlot = errors.New("bad slot")
	// ErrOnline: the operation needs the module to be offline.
	ErrOnline = errors.New("module is online")
	// ErrUnknownHost: no binding or pin for this host UUID.
	ErrUnknownHost = errors.New("unknown host")
	// ErrStaleSession: the call came from a connection that is no longer
	// the module's current one (it was replaced, or the module left).
	ErrStaleSession = errors.New("stale session")
)

// Clock is where the Chassis reads the time (a fake in tests).
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Store persists bindings and pins. Load returns the zero State when
// nothing was stored yet.
type Store interface {
	Load() (State, error)
	Save(State) error
}

// Options configure a Chassis. The zero value works: system clock, no
// logging, no persistence, 66 slots, 8 s dead interval.
type Options struct {
	Clock  Clock
	Logger *slog.Logger
	// Store persists bindings; nil keeps them in memory only.
	Store Store
	// MaxSlot is the highest VEM slot (default api.VSMSlots, 66). Raise it
	// only for benchmarks; the CLI and the VEM's port names assume 66.
	MaxSlot int
	// DeadAfter is how long a VEM may stay silent before Sweep takes it
	// offline (default api.VSMDeadSeconds).
	DeadAfter time.Duration
}

// Host is what a joining VEM says about itself (its hello).
type Host struct {
	UUID     string
	Hostname string
	Address  string // the VEM's address as the VSM sees the connection
	Version  string
	// WantSlot is the slot the VEM had last (0: none). It is honoured when
	// the VSM has no binding for the host and the slot is free, so a VSM
	// that lost its state gets every VEM back in its old slot.
	WantSlot int
}

// Member is an admitted VEM connection.
type Member struct {
	Slot int
	// Session identifies this connection; Heartbeat, Acked and Leave take
	// it so that a replaced connection cannot touch its successor.
	Session uint64
	// Replaced is true when the host was already online: the new
	// connection replaces the old one (a VEM that restarted before the old
	// connection timed out). The caller closes the old connection.
	Replaced bool
	// New is true when the host got a slot it was not bound to before.
	New bool
}

type entry struct {
	Binding
	online     bool
	session    uint64
	lastSeen   time.Time
	version    string
	generation uint64
}

// Chassis is the slot table. It is safe for concurrent use.
type Chassis struct {
	clock   Clock
	log     *slog.Logger
	store   Store
	maxSlot int
	dead    time.Duration

	mu          sync.Mutex
	bySlot      map[int]*entry
	byUUID      map[string]*entry
	lastSession uint64
	sups        [2]api.VSMModule // active, standby; Slot 0 = absent
}

// New returns a Chassis with the bindings and pins loaded from opts.Store.
// It fails if the stored state cannot be read or does not validate.
func New(opts Options) (*Chassis, error) {
	c := &Chassis{
		clock:   opts.Clock,
		log:     opts.Logger,
		store:   opts.Store,
		maxSlot: cmp.Or(opts.MaxSlot, api.VSMSlots),
		dead:    cmp.Or(opts.DeadAfter, api.VSMDeadSeconds*time.Second),
		bySlot:  map[int]*entry{},
		byUUID:  map[string]*entry{},
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.maxSlot < api.VSMFirstVEMSlot {
		return nil, fmt.Errorf("chassis: max slot %d: %w: want at least %d", c.maxSlot, ErrBadSlot, api.VSMFirstVEMSlot)
	}
	if c.store == nil {
		return c, nil
	}
	st, err := c.store.Load()
	if err != nil {
		return nil, fmt.Errorf("chassis: load: %w", err)
	}
	if err := st.Validate(c.maxSlot); err != nil {
		return nil, fmt.Errorf("chassis: load: %w", err)
	}
	for _, b := range st.Bindings {
		e := &entry{Binding: b}
		c.bySlot[b.Slot] = e
		c.byUUID[b.HostUUID] = e
	}
	c.log.Info("chassis loaded", "bindings", len(st.Bindings))
	return c, nil
}

func (c *Chassis) vemRange() string {
	return fmt.Sprintf("%d-%d", api.VSMFirstVEMSlot, c.maxSlot)
}

func (c *Chassis) checkSlot(slot int) error {
	if slot < api.VSMFirstVEMSlot || slot > c.maxSlot {
		return fmt.Errorf("slot %d: %w: VEM slots are %s", slot, ErrBadSlot, c.vemRange())
	}
	return nil
}

// Join admits a VEM. The slot is, in order: the host's binding or pin; the
// slot it asks for (WantSlot) when that is neither bound nor pinned to
// another host; the lowest slot from 3 that is neither. A host already
// online is admitted again on a new session (Member.Replaced): a VEM only
// reconnects when it has given up on its old connection, so the newest one
// is the live one.
func (c *Chassis) Join(h Host) (Member, error) {
	if !api.ValidHostUUID(h.UUID) {
		return Member{}, fmt.Errorf("join: host uuid %q: %w", h.UUID, ErrBadUUID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	e, known := c.byUUID[h.UUID]
	m := Member{}
	if known {
		if h.WantSlot != 0 && h.WantSlot != e.Slot {
			// The VSM's binding wins: the VEM's memory may predate an
			// operator's pin or unbind.
			c.log.Warn("host asked for another slot than its binding", "host", h.UUID, "want", h.WantSlot, "slot", e.Slot)
		}
		m.Replaced = e.online
		if e.Hostname != h.Hostname || e.Address != h.Address {
			e.Hostname, e.Address = h.Hostname, h.Address
			// Names only: a failed save costs a stale name after a VSM
			// restart, not a slot, so it must not refuse the VEM.
			if err := c.saveLocked(); err != nil {
				c.log.Error("chassis: save host names", "slot", e.Slot, "err", err)
			}
		}
	} else {
		slot := 0
		if h.WantSlot != 0 && c.checkSlot(h.WantSlot) == nil && c.bySlot[h.WantSlot] == nil {
			slot = h.WantSlot
		} else {
			for s := api.VSMFirstVEMSlot; s <= c.maxSlot; s++ {
				if c.bySlot[s] == nil {
					slot = s
					break
				}
			}
		}
		if slot == 0 {
			return Member{}, fmt.Errorf("join host %s: %w: all %d VEM slots %s are bound",
				h.UUID, ErrChassisFull, c.maxSlot-api.VSMFirstVEMSlot+1, c.vemRange())
		}
		e = &entry{Binding: Binding{Slot: slot, HostUUID: h.UUID, Hostname: h.Hostname, Address: h.Address}}
		c.bySlot[slot], c.byUUID[h.UUID] = e, e
		// A new binding must be on disk before the VEM learns its slot:
		// otherwise a VSM restart could hand the slot to another host.
		if err := c.saveLocked(); err != nil {
			delete(c.bySlot, slot)
			delete(c.byUUID, h.UUID)
			return Member{}, fmt.Errorf("join host %s as module %d: %w", h.UUID, slot, err)
		}
		m.New = true
		c.log.Info("host detected", "host", h.UUID, "hostname", h.Hostname, "module", slot)
	}
	c.lastSession++
	e.online, e.session, e.lastSeen, e.version = true, c.lastSession, now, h.Version
	m.Slot, m.Session = e.Slot, e.session
	c.log.Info("module online", "module", e.Slot, "host", h.UUID, "replaced", m.Replaced)
	return m, nil
}

// Reserve binds a host that is about to join to a slot without bringing
// it online, and returns the slot: its binding or pin if it has one, else
// the lowest free slot from 3 (persisted first, as in Join). The VSM
// reserves a slot when it issues a host's join bundle, so the host knows
// its module, and names its system uplinks, before its first contact
// (VEM-6). The slot shows offline in Modules until the host says hello;
// Unbind frees it.
func (c *Chassis) Reserve(hostUUID string) (int, error) {
	if !api.ValidHostUUID(hostUUID) {
		return 0, fmt.Errorf("reserve a slot for host %q: %w", hostUUID, ErrBadUUID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byUUID[hostUUID]; ok {
		return e.Slot, nil
	}
	slot := 0
	for s := api.VSMFirstVEMSlot; s <= c.maxSlot; s++ {
		if c.bySlot[s] == nil {
			slot = s
			break
		}
	}
	if slot == 0 {
		return 0, fmt.Errorf("reserve a slot for host %s: %w: all %d VEM slots %s are bound",
			hostUUID, ErrChassisFull, c.maxSlot-api.VSMFirstVEMSlot+1, c.vemRange())
	}
	e := &entry{Binding: Binding{Slot: slot, HostUUID: hostUUID}}
	c.bySlot[slot], c.byUUID[hostUUID] = e, e
	if err := c.saveLocked(); err != nil {
		delete(c.bySlot, slot)
		delete(c.byUUID, hostUUID)
		return 0, fmt.Errorf("reserve module %d for host %s: %w", slot, hostUUID, err)
	}
	c.log.Info("slot reserved for a joining host", "host", hostUUID, "module", slot)
	return slot, nil
}

// current returns the online entry of slot for session.
func (c *Chassis) current(slot int, session uint64) (*entry, error) {
	e := c.bySlot[slot]
	if e == nil || !e.online || e.session != session {
		return nil, fmt.Errorf("module %d session %d: %w", slot, session, ErrStaleSession)
	}
	return e, nil
}

// Heartbeat records that the module's connection is alive.
func (c *Chassis) Heartbeat(slot int, session uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.current(slot, session)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	e.lastSeen = c.clock.Now()
	return nil
}

// Acked records the config generation the module applied (show module).
// An ack is also a sign of life.
func (c *Chassis) Acked(slot int, session uint64, generation uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.current(slot, session)
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	e.generation, e.lastSeen = generation, c.clock.Now()
	return nil
}

// Leave takes the module offline because its connection closed. The
// binding stays. A stale session (a replaced connection closing late) is
// ignored and reported as ErrStaleSession.
func (c *Chassis) Leave(slot int, session uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.current(slot, session)
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	e.online = false
	c.log.Info("module offline", "module", slot, "host", e.HostUUID, "reason", "connection closed")
	return nil
}

// Sweep takes offline every module silent for more than DeadAfter and
// returns their slots in ascending order. The caller closes their
// connections.
func (c *Chassis) Sweep() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	var gone []int
	for slot, e := range c.bySlot {
		if silent := now.Sub(e.lastSeen); e.online && silent > c.dead {
			e.online = false
			gone = append(gone, slot)
			c.log.Warn("module offline", "module", slot, "host", e.HostUUID, "reason", "heartbeat lost", "silent", silent)
		}
	}
	slices.Sort(gone)
	return gone
}

// Pin binds hostUUID to slot by operator configuration ("host <uuid>
// module N"). It refuses a slot bound or pinned to another host (free it
// first with Unbind) and moving a host that is online.
func (c *Chassis) Pin(hostUUID string, slot int) error {
	if !api.ValidHostUUID(hostUUID) {
		return fmt.Errorf("pin host %q: %w", hostUUID, ErrBadUUID)
	}
	if err := c.checkSlot(slot); err != nil {
		return fmt.Errorf("pin host %s: %w", hostUUID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.bySlot[slot]; o != nil && o.HostUUID != hostUUID {
		return fmt.Errorf("pin host %s to module %d: %w: bound to host %s", hostUUID, slot, ErrSlotTaken, o.HostUUID)
	}
	e := c.byUUID[hostUUID]
	if e != nil && e.Slot == slot && e.Pinned {
		return nil
	}
	if e != nil && e.Slot != slot && e.online {
		return fmt.Errorf("pin host %s to module %d: %w as module %d", hostUUID, slot, ErrOnline, e.Slot)
	}
	undo := c.snapshotLocked()
	if e == nil {
		e = &entry{Binding: Binding{HostUUID: hostUUID}}
		c.byUUID[hostUUID] = e
	}
	delete(c.bySlot, e.Slot)
	e.Slot, e.Pinned = slot, true
	c.bySlot[slot] = e
	if err := c.saveLocked(); err != nil {
		c.restoreLocked(undo)
		return fmt.Errorf("pin host %s to module %d: %w", hostUUID, slot, err)
	}
	c.log.Info("host pinned", "host", hostUUID, "module", slot)
	return nil
}

// Unbind forgets a host's binding and pin ("no host <uuid> module N"), so
// its slot can go to another host. It refuses while the host is online.
func (c *Chassis) Unbind(hostUUID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byUUID[hostUUID]
	if e == nil {
		return fmt.Errorf("unbind host %q: %w", hostUUID, ErrUnknownHost)
	}
	if e.online {
		return fmt.Errorf("unbind host %s: %w as module %d", hostUUID, ErrOnline, e.Slot)
	}
	delete(c.bySlot, e.Slot)
	delete(c.byUUID, hostUUID)
	if err := c.saveLocked(); err != nil {
		c.bySlot[e.Slot], c.byUUID[hostUUID] = e, e
		return fmt.Errorf("unbind host %s: %w", hostUUID, err)
	}
	c.log.Info("host unbound", "host", hostUUID, "module", e.Slot)
	return nil
}

// SetSupervisors sets the VSM rows of Modules (slots 1 and 2). A row whose
// Slot is 0 is left out (no standby).
func (c *Chassis) SetSupervisors(active, standby api.VSMModule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sups = [2]api.VSMModule{active, standby}
}

// Module columns of a VEM row.
const (
	VEMPorts = 248 // as the original: 32 physical + 216 virtual
	VEMType  = "Virtual Ethernet Module"
	VEMModel = "Flashvisor-VEM"

	StatusOK      = "ok"
	StatusOffline = "offline"
)

// Modules returns the rows of `show module`: the supervisors, then every
// bound or pinned VEM slot in order, online ("ok") or not ("offline").
func (c *Chassis) Modules() []api.VSMModule {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rows []api.VSMModule
	for _, s := range c.sups {
		if s.Slot != 0 {
			rows = append(rows, s)
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(c.bySlot)) {
		rows = append(rows, c.rowLocked(c.bySlot[slot]))
	}
	return rows
}

// Module returns one VEM slot's row.
func (c *Chassis) Module(slot int) (api.VSMModule, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.bySlot[slot]
	if e == nil {
		return api.VSMModule{}, false
	}
	return c.rowLocked(e), true
}

// Online reports whether slot's VEM is online, and its session.
func (c *Chassis) Online(slot int) (session uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.bySlot[slot]
	if e == nil || !e.online {
		return 0, false
	}
	return e.session, true
}

func (c *Chassis) rowLocked(e *entry) api.VSMModule {
	r := api.VSMModule{
		Slot: e.Slot, Ports: VEMPorts, Type: VEMType, Model: VEMModel, Status: StatusOffline,
		Version: e.version, HostUUID: e.HostUUID, Hostname: e.Hostname, Address: e.Address,
		Generation: e.generation,
	}
	if e.online {
		r.Status = StatusOK
	}
	if !e.lastSeen.IsZero() {
		r.LastSeen = e.lastSeen.UTC().Format(time.RFC3339)
	}
	return r
}

// State returns the persistent part of the chassis (for HA sync and tests).
func (c *Chassis) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

func (c *Chassis) stateLocked() State {
	st := State{Version: StateVersion}
	for _, slot := range slices.Sorted(maps.Keys(c.bySlot)) {
		st.Bindings = append(st.Bindings, c.bySlot[slot].Binding)
	}
	return st
}

func (c *Chassis) saveLocked() error {
	if c.store == nil {
		return nil
	}
	if err := c.store.Save(c.stateLocked()); err != nil {
		return fmt.Errorf("save chassis: %w", err)
	}
	return nil
}

// snapshotLocked and restoreLocked undo a change whose save failed.
func (c *Chassis) snapshotLocked() map[string]Binding {
	m := make(map[string]Binding, len(c.byUUID))
	for u, e := range c.byUUID {
		m[u] = e.Binding
	}
	return m
}

func (c *Chassis) restoreLocked(undo map[string]Binding) {
	for u, e := range c.byUUID {
		if b, ok := undo[u]; ok {
			e.Binding = b
		} else {
			delete(c.byUUID, u)
		}
	}
	clear(c.bySlot)
	for _, e := range c.byUUID {
		c.bySlot[e.Slot] = e
	}
}

// Replace makes st the chassis's bindings and pins, as an HA standby
// receives them from the active VSM. A module online in the same slot
// with the same host keeps its liveness; every other one is dropped. st
// is validated and stored first: on error nothing changes.
func (c *Chassis) Replace(st State) error {
	if err := st.Validate(c.maxSlot); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	st.Version = StateVersion
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store != nil {
		if err := c.store.Save(st); err != nil {
			return fmt.Errorf("replace: save chassis: %w", err)
		}
	}
	bySlot := make(map[int]*entry, len(st.Bindings))
	byUUID := make(map[string]*entry, len(st.Bindings))
	for _, b := range st.Bindings {
		e := &entry{Binding: b}
		if old := c.bySlot[b.Slot]; old != nil && old.HostUUID == b.HostUUID {
			e.online, e.session, e.lastSeen, e.version, e.generation = old.online, old.session, old.lastSeen, old.version, old.generation
		}
		bySlot[b.Slot], byUUID[b.HostUUID] = e, e
	}
	c.bySlot, c.byUUID = bySlot, byUUID
	return nil
}
