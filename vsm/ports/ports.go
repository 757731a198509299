// Package ports is the VSM's port registry (SPEC VSM-5, VEM-2, HOSTD-6):
// which vEth number belongs to which vNIC or vmknic, and which Eth port
// name to which host NIC.
//
// A vEth belongs to an owner ("vm:<uuid>/nic<N>", "vmk:<host>/<name>"),
// not to a host: the owner keeps its VethN from its first attach until it
// is released (the VM is deleted), across power cycles, VSM restarts and
// migrations, like the Nexus 1000V's global vEth numbers. Eth ports are
// per module: EthM/P, with P stable for a given host NIC name.
//
// The registry only records bindings and checks them against the port
// profiles it is shown; turning bindings into VEM programming is package
// render's job. It does no network I/O.
package ports

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/flashvisor/flashvisor/api"
)

// Sentinel errors; every error of the Registry wraps one.
var (
	ErrBadOwner       = errors.New("bad owner")
	ErrUnknownOwner   = errors.New("unknown owner")
	ErrBadModule      = errors.New("bad module")
	ErrBadMAC         = errors.New("bad mac")
	ErrMACInUse       = errors.New("mac in use on the module")
	ErrNoProfile      = errors.New("no such port-profile")
	ErrProfileState   = errors.New("port-profile not enabled")
	ErrProfileType    = errors.New("wrong port-profile type")
	ErrMaxPorts       = errors.New("port-profile max-ports reached")
	ErrModuleFull     = errors.New("module has no free vEth")
	ErrVethConflict   = errors.New("vEth number used by the host's own switch")
	ErrBadUplink      = errors.New("bad uplink")
	ErrTooManyUplinks = errors.New("too many uplinks")
)

// MaxUplinks is the most Eth ports one module may have (32 physical NICs,
// as the original and the VEM's own limit).
const MaxUplinks = 32

// ProfileLookup returns the port profile of that name as configured now.
// The Registry calls it with its lock held: it must not call back into the
// Registry.
type ProfileLookup func(name string) (api.PortProfile, bool)

// LookupIn returns a ProfileLookup over a list of profiles.
func LookupIn(profiles []api.PortProfile) ProfileLookup {
	m := make(map[string]api.PortProfile, len(profiles))
	for _, p := range profiles {
		m[p.Name] = p
	}
	return func(name string) (api.PortProfile, bool) {
		p, ok := m[name]
		return p, ok
	}
}

// Store persists the registry. Load returns the zero State when nothing
// was stored yet.
type Store interface {
	Load() (State, error)
	Save(State) error
}

// Journal is a Store that can also record a single binding change (an
// attach, a detach, a release) instead of saving the whole State; Save
// then compacts. FileStore is one.
type Journal interface {
	Record(JournalRecord) error
}

// DefaultMaxJournal is how many changes are recorded before the next one
// saves the whole State.
const DefaultMaxJournal = 4096

// Options configure a Registry; the zero value works (no persistence).
type Options struct {
	Store  Store
	Logger *slog.Logger
	// MaxModule is the highest VEM slot (default api.VSMSlots).
	MaxModule int
	// MaxVethPerModule bounds the vEths programmed on one module (default
	// api.VSMMaxVethPerVEM).
	MaxVethPerModule int
	// MaxJournal is how many changes a Journal store records before the
	// next change saves the whole State (default DefaultMaxJournal).
	MaxJournal int
}

// AttachRequest asks for a vEth (the VEM's attach message, plus what the
// VSM knows about the host).
type AttachRequest struct {
	Owner  string
	Module int
	// Profile names a vethernet port profile.
	Profile     string
	MAC         string
	Description string
	// LocalVeths are the VethN numbers the module's own standalone switch
	// uses (from its hello): never assigned there.
	LocalVeths []int
}

// Registry holds the vEth and uplink bindings. It is safe for concurrent
// use.
type Registry struct {
	log        *slog.Logger
	store      Store
	maxModule  int
	maxVeth    int
	maxJournal int

	mu      sync.Mutex
	veths   map[string]Binding // by owner
	nums    map[int]string     // VethN number -> owner
	uplinks map[upKey]UplinkRecord
	// localPo are the PoN numbers each module's own switch uses (from its
	// hello; not persisted): its port-channels are numbered around them.
	localPo map[int][]int
	// seq numbers the changes (State.Seq); journaled counts those
	// recorded in the journal since the last full save.
	seq       uint64
	journaled int
}

type upKey struct {
	module int
	iface  string
}

// chanKey is one port-channel: a module's uplinks on one profile.
type chanKey struct {
	module  int
	profile string
}

// MaxChannel is the highest PoN number (as the CLI's port-channel range).
const MaxChannel = 4096

// New returns a Registry with the bindings loaded from opts.Store. It
// fails when the stored state cannot be read or does not validate.
func New(opts Options) (*Registry, error) {
	r := &Registry{
		log:        opts.Logger,
		store:      opts.Store,
		maxModule:  cmp.Or(opts.MaxModule, api.VSMSlots),
		maxVeth:    cmp.Or(opts.MaxVethPerModule, api.VSMMaxVethPerVEM),
		maxJournal: cmp.Or(opts.MaxJournal, DefaultMaxJournal),
		veths:      map[string]Binding{},
		nums:       map[int]string{},
		uplinks:    map[upKey]UplinkRecord{},
		localPo:    map[int][]int{},
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.store == nil {
		return r, nil
	}
	st, err := r.store.Load()
	if err != nil {
		return nil, fmt.Errorf("ports: load: %w", err)
	}
	if err := st.Validate(r.maxModule); err != nil {
		return nil, fmt.Errorf("ports: load: %w", err)
	}
	for _, b := range st.Veths {
		n, _ := api.VethNumber(b.Port)
		r.veths[b.Owner], r.nums[n] = b, b.Owner
	}
	for _, u := range st.Uplinks {
		r.uplinks[upKey{u.Module, u.Interface}] = u
	}
	r.seq = st.Seq
	r.log.Info("port bindings loaded", "veths", len(st.Veths), "uplinks", len(st.Uplinks))
	return r, nil
}

// ownerRE is the wire check of api.VSMAttachBody.Owner.
var ownerRE = regexp.MustCompile(`^(vm|vmk):[A-Za-z0-9._:-]{1,64}/[A-Za-z0-9._-]{1,32}$`)

func (r *Registry) checkModule(m int) error {
	if m < api.VSMFirstVEMSlot || m > r.maxModule {
		return fmt.Errorf("module %d: %w: VEM modules are %d-%d", m, ErrBadModule, api.VSMFirstVEMSlot, r.maxModule)
	}
	return nil
}

// normMAC returns a unicast MAC in the canonical form ("" stays "").
func normMAC(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 || string(hw) == string(make([]byte, 6)) {
		return "", fmt.Errorf("mac %q: %w: want a unicast Ethernet address", s, ErrBadMAC)
	}
	return hw.String(), nil
}

// onModule reports whether b is programmed on module m: where it is
// active, and where it is still running while it migrates away.
func (b Binding) onModule(m int) bool {
	return (b.Active && b.Module == m) || b.Leaving == m
}

// Attach returns the vEth of req.Owner, creating the binding if needed.
// A known owner keeps its VethN (and so its counters on the VEM, and its
// name in `show interface`) and follows the VM to another module; the
// binding takes the request's profile, MAC and description. A new owner
// gets the lowest number not used in the domain nor by the target
// module's own switch.
//
// The profile must exist, be enabled (state enabled) and be a vethernet
// profile: an uplink profile is only for Eth/Po ports (VSM-5). Its
// max-ports counts every vEth bound to it, powered on or not, because a
// powered-off VM's vEth still holds its place (as on the Nexus 1000V).
//
// Attaching on module B an owner active on module A is a migration: the
// port stays programmed on A (Binding.Leaving) until A detaches it, so the
// VM keeps its network on the source until the switch-over.
func (r *Registry) Attach(req AttachRequest, profiles ProfileLookup) (string, error) {
	if !ownerRE.MatchString(req.Owner) {
		return "", fmt.Errorf("attach %q: %w: want vm:<uuid>/nic<N> or vmk:<host>/<name>", req.Owner, ErrBadOwner)
	}
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("attach %s on module %d: %w", req.Owner, req.Module, err)
	}
	if err := r.checkModule(req.Module); err != nil {
		return fail(err)
	}
	mac, err := normMAC(req.MAC)
	if err != nil {
		return fail(err)
	}
	pp, ok := profiles(req.Profile)
	switch {
	case !ok:
		return fail(fmt.Errorf("port-profile %q: %w", req.Profile, ErrNoProfile))
	case pp.Type != api.ProfileVethernet || pp.CapabilityUplink:
		return fail(fmt.Errorf("port-profile %q is an uplink (type %s) profile: %w: a vEth needs a vethernet profile", req.Profile, pp.Type, ErrProfileType))
	case !pp.Enabled:
		return fail(fmt.Errorf("port-profile %q: %w (state enabled)", req.Profile, ErrProfileState))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	old, known := r.veths[req.Owner]
	b := old
	if !known {
		b = Binding{Owner: req.Owner}
	}
	b.Profile, b.MAC, b.Description = req.Profile, mac, req.Description
	if b.Active && b.Module != req.Module {
		b.Leaving = b.Module
	}
	if b.Leaving == req.Module {
		b.Leaving = 0
	}
	b.Module, b.Active = req.Module, true
	if known && b == old {
		return b.Port, nil
	}

	// Checks against the other bindings.
	used, macOwner := 0, ""
	onModule := 0
	for o, x := range r.veths {
		if o == req.Owner {
			continue
		}
		if x.Profile == req.Profile {
			used++
		}
		if x.onModule(req.Module) {
			onModule++
			if mac != "" && x.MAC == mac {
				macOwner = x.Port
			}
		}
	}
	// Limits apply to what is new: a VM powering on keeps its port even if
	// an operator lowered max-ports below the ports already bound.
	if (!known || old.Profile != req.Profile) && pp.MaxPorts > 0 && used >= pp.MaxPorts {
		return fail(fmt.Errorf("port-profile %q: %w: %d ports, max-ports %d", req.Profile, ErrMaxPorts, used, pp.MaxPorts))
	}
	if !old.onModule(req.Module) && onModule >= r.maxVeth {
		return fail(fmt.Errorf("%w: %d vEths, at most %d", ErrModuleFull, onModule, r.maxVeth))
	}
	if macOwner != "" {
		return fail(fmt.Errorf("mac %s: %w: %s has it", mac, ErrMACInUse, macOwner))
	}
	local := map[int]bool{}
	for _, n := range req.LocalVeths {
		local[n] = true
	}
	if known {
		if n, _ := api.VethNumber(b.Port); local[n] {
			// The name follows the VM (VEM-2), so it cannot be renumbered
			// here: the move is refused with the reason.
			return fail(fmt.Errorf("%s: %w on that host", b.Port, ErrVethConflict))
		}
	} else {
		n := 1
		for r.nums[n] != "" || local[n] {
			n++
		}
		b.Port = "Veth" + strconv.Itoa(n)
	}

	r.veths[b.Owner] = b
	n, _ := api.VethNumber(b.Port)
	r.nums[n] = b.Owner
	if err := r.recordLocked(b.Owner); err != nil {
		if known {
			r.veths[b.Owner] = old
		} else {
			delete(r.veths, b.Owner)
			delete(r.nums, n)
		}
		return fail(err)
	}
	r.log.Info("vEth attached", "port", b.Port, "owner", b.Owner, "module", b.Module, "profile", b.Profile, "new", !known, "leaving", b.Leaving)
	return b.Port, nil
}

// Detach tells that module no longer runs the owner's port (the VM was
// powered off, or moved away). The binding and its number stay. A detach
// from the module a port is migrating away from ends the migration; one
// from the destination of an unfinished migration sends the port back to
// the source (the migration failed); one from any other module is stale
// and ignored.
func (r *Registry) Detach(owner string, module int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.veths[owner]
	if !ok {
		return fmt.Errorf("detach %q: %w", owner, ErrUnknownOwner)
	}
	old := b
	switch {
	case b.Leaving != 0 && module == b.Leaving:
		b.Leaving = 0
	case b.Leaving != 0 && module == b.Module:
		b.Module, b.Leaving = b.Leaving, 0
	case module == b.Module:
		b.Active = false
	}
	if b == old {
		return nil
	}
	r.veths[owner] = b
	if err := r.recordLocked(owner); err != nil {
		r.veths[owner] = old
		return fmt.Errorf("detach %s: %w", owner, err)
	}
	r.log.Info("vEth detached", "port", b.Port, "owner", owner, "module", module, "active", b.Active)
	return nil
}

// DetachModule detaches every port programmed on module (its host was
// unbound from the chassis: whatever ran there is gone). It returns the
// ports affected.
func (r *Registry) DetachModule(module int) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	undo := r.cloneLocked()
	var done []string
	for o, b := range r.veths {
		if !b.onModule(module) {
			continue
		}
		if b.Leaving == module {
			b.Leaving = 0
		} else {
			b.Active, b.Module, b.Leaving = b.Leaving != 0, cmp.Or(b.Leaving, b.Module), 0
		}
		r.veths[o] = b
		done = append(done, b.Port)
	}
	if len(done) == 0 {
		return nil, nil
	}
	if err := r.saveLocked(); err != nil {
		r.restoreLocked(undo)
		return nil, fmt.Errorf("detach module %d: %w", module, err)
	}
	slices.SortFunc(done, comparePorts)
	return done, nil
}

// Release frees the owner's vEth number (the VM or vmknic was deleted).
func (r *Registry) Release(owner string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.veths[owner]
	if !ok {
		return fmt.Errorf("release %q: %w", owner, ErrUnknownOwner)
	}
	n, _ := api.VethNumber(b.Port)
	delete(r.veths, owner)
	delete(r.nums, n)
	if err := r.recordLocked(owner); err != nil {
		r.veths[owner], r.nums[n] = b, owner
		return fmt.Errorf("release %s: %w", owner, err)
	}
	r.log.Info("vEth released", "port", b.Port, "owner", owner)
	return nil
}

// Binding returns the owner's binding.
func (r *Registry) Binding(owner string) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.veths[owner]
	return b, ok
}

// ByPort returns the binding of a vEth by its name (VethN).
func (r *Registry) ByPort(port string) (Binding, bool) {
	n, ok := api.VethNumber(port)
	if !ok {
		return Binding{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	owner, ok := r.nums[n]
	if !ok {
		return Binding{}, false
	}
	b, ok := r.veths[owner]
	return b, ok
}

// Bindings returns every vEth binding, by port number.
func (r *Registry) Bindings() []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bindingsLocked()
}

func (r *Registry) bindingsLocked() []Binding {
	return sortedBindings(maps.Values(r.veths), func(Binding) bool { return true })
}

// sortedBindings returns the bindings of seq that keep accepts, by port
// number. The number is parsed once per binding: with thousands of
// bindings a comparison that parses names dominated every attach.
func sortedBindings(seq iter.Seq[Binding], keep func(Binding) bool) []Binding {
	type numbered struct {
		n int
		b Binding
	}
	var bs []numbered
	for b := range seq {
		if !keep(b) {
			continue
		}
		n, _ := api.VethNumber(b.Port)
		bs = append(bs, numbered{n, b})
	}
	slices.SortFunc(bs, func(a, b numbered) int {
		return cmp.Or(cmp.Compare(a.n, b.n), strings.Compare(a.b.Port, b.b.Port))
	})
	out := make([]Binding, len(bs))
	for i, x := range bs {
		out[i] = x.b
	}
	return out
}

// SetUplinks records the host NICs module gives to the switch (from its
// hello) and returns their Eth ports in the order given. A NIC keeps its
// EthM/P for as long as the module exists, also when it is missing from a
// later list; a new NIC takes the lowest P its module has not given out.
//
// Every uplink profile must exist, be enabled and be an ethernet profile
// with capability uplink. On any error nothing changes: the caller should
// refuse the VEM, which then keeps forwarding on its last programming
// (VEM-8) rather than lose its uplinks to a typo.
func (r *Registry) SetUplinks(module int, uplinks []api.VSMUplink, profiles ProfileLookup) ([]UplinkBinding, error) {
	fail := func(err error) ([]UplinkBinding, error) {
		return nil, fmt.Errorf("uplinks of module %d: %w", module, err)
	}
	if err := r.checkModule(module); err != nil {
		return fail(err)
	}
	if len(uplinks) > MaxUplinks {
		return fail(fmt.Errorf("%w: %d, at most %d", ErrTooManyUplinks, len(uplinks), MaxUplinks))
	}
	newUse := map[string]int{}
	seen := map[string]bool{}
	for _, u := range uplinks {
		if !validIfName(u.Interface) {
			return fail(fmt.Errorf("interface %q: %w: not a kernel interface name", u.Interface, ErrBadUplink))
		}
		if seen[u.Interface] {
			return fail(fmt.Errorf("interface %s: %w: listed twice", u.Interface, ErrBadUplink))
		}
		seen[u.Interface] = true
		pp, ok := profiles(u.Profile)
		switch {
		case !ok:
			return fail(fmt.Errorf("%s: port-profile %q: %w", u.Interface, u.Profile, ErrNoProfile))
		case pp.Type != api.ProfileEthernet || !pp.CapabilityUplink:
			return fail(fmt.Errorf("%s: port-profile %q: %w: an uplink needs an ethernet profile with capability uplink", u.Interface, u.Profile, ErrProfileType))
		case !pp.Enabled:
			return fail(fmt.Errorf("%s: port-profile %q: %w (state enabled)", u.Interface, u.Profile, ErrProfileState))
		}
		newUse[u.Profile]++
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for name, n := range newUse {
		pp, _ := profiles(name)
		if pp.MaxPorts == 0 {
			continue
		}
		used := 0
		for k, u := range r.uplinks {
			if k.module != module && u.Present && u.Profile == name {
				used++
			}
		}
		if used+n > pp.MaxPorts {
			return fail(fmt.Errorf("port-profile %q: %w: %d ports, max-ports %d", name, ErrMaxPorts, used+n, pp.MaxPorts))
		}
	}
	undo := r.cloneLocked()
	taken := map[int]bool{}
	for k, u := range r.uplinks {
		if k.module == module {
			taken[u.Number] = true
			u.Present = false
			r.uplinks[k] = u
		}
	}
	out := make([]UplinkBinding, 0, len(uplinks))
	for _, ul := range uplinks {
		k := upKey{module, ul.Interface}
		u, ok := r.uplinks[k]
		if !ok {
			// ethN is EthM/(N+1), like vmnicN on the original: the
			// host's own switch numbers its uplinks the same way, so
			// the two never give one port number to two NICs. Other
			// names take the lowest free number from 33 (past the
			// NICs a server has).
			u = UplinkRecord{Module: module, Interface: ul.Interface, Number: 33}
			if n, ok := ethIndex(ul.Interface); ok {
				u.Number = n + 1
			}
			for taken[u.Number] {
				u.Number++
			}
			taken[u.Number] = true
		}
		u.Profile, u.Present = ul.Profile, true
		r.uplinks[k] = u
	}
	if err := r.channelsLocked(module, profiles); err != nil {
		r.restoreLocked(undo)
		return fail(err)
	}
	for _, ul := range uplinks {
		out = append(out, r.uplinks[upKey{module, ul.Interface}].binding())
	}
	if !maps.Equal(undo.uplinks, r.uplinks) {
		if err := r.saveLocked(); err != nil {
			r.restoreLocked(undo)
			return fail(err)
		}
		r.log.Info("uplinks set", "module", module, "uplinks", len(out))
	}
	return out, nil
}

// channelsLocked bundles module's present uplinks by profile (package
// doc: port-channels): those on a profile with a channel-group get their
// PoN, the others none. A module's channel on a profile keeps its number
// while any of its records (also an absent NIC's) has one; a new channel
// takes the lowest number no other channel uses.
func (r *Registry) channelsLocked(module int, profiles ProfileLookup) error {
	owner := map[int]chanKey{}
	for _, u := range r.uplinks {
		if u.Channel != 0 {
			owner[u.Channel] = chanKey{u.Module, u.Profile}
		}
	}
	local := r.localPo[module]
	number := map[string]int{}
	for _, u := range r.uplinks {
		if u.Module == module && u.Channel != 0 && owner[u.Channel] == (chanKey{module, u.Profile}) && !slices.Contains(local, u.Channel) {
			number[u.Profile] = u.Channel
		}
	}
	// In port order, so that numbers do not depend on map order.
	var mine []upKey
	for k, u := range r.uplinks {
		if k.module == module && u.Present {
			mine = append(mine, k)
		}
	}
	slices.SortFunc(mine, func(a, b upKey) int { return cmp.Compare(r.uplinks[a].Number, r.uplinks[b].Number) })
	for _, k := range mine {
		u := r.uplinks[k]
		pp, ok := profiles(u.Profile)
		if !ok || pp.ChannelGroup == "" {
			u.Channel = 0
			r.uplinks[k] = u
			continue
		}
		n := number[u.Profile]
		if n == 0 {
			for n = 1; n <= MaxChannel; n++ {
				if _, taken := owner[n]; !taken && !slices.Contains(local, n) {
					break
				}
			}
			if n > MaxChannel {
				return fmt.Errorf("port-channel for %s: %w: all %d numbers in use", u.Profile, ErrTooManyUplinks, MaxChannel)
			}
			number[u.Profile], owner[n] = n, chanKey{module, u.Profile}
		}
		u.Channel = n
		r.uplinks[k] = u
	}
	return nil
}

// SetLocalChannels records the PoN numbers module's own switch uses (its
// hello's); call it before SetUplinks.
func (r *Registry) SetLocalChannels(module int, nums []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.localPo[module] = slices.Clone(nums)
}

// Rechannel bundles every module's uplinks again after a profile's
// channel-group changed (profiles: the configuration to be) and returns
// the modules whose programming changed. Nothing changes on an error.
func (r *Registry) Rechannel(profiles ProfileLookup) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	undo := r.cloneLocked()
	modules := map[int]bool{}
	for k := range r.uplinks {
		modules[k.module] = true
	}
	for _, m := range slices.Sorted(maps.Keys(modules)) {
		if err := r.channelsLocked(m, profiles); err != nil {
			r.restoreLocked(undo)
			return nil, err
		}
	}
	if maps.Equal(undo.uplinks, r.uplinks) {
		return nil, nil
	}
	if err := r.saveLocked(); err != nil {
		r.restoreLocked(undo)
		return nil, err
	}
	var changed []int
	for k, u := range r.uplinks {
		if undo.uplinks[k] != u && !slices.Contains(changed, k.module) {
			changed = append(changed, k.module)
		}
	}
	slices.Sort(changed)
	r.log.Info("port-channels rebundled", "modules", changed)
	return changed, nil
}

// Uplinks returns the module's present uplinks by port.
func (r *Registry) Uplinks(module int) []UplinkBinding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uplinksLocked(module)
}

func (r *Registry) uplinksLocked(module int) []UplinkBinding {
	var out []UplinkBinding
	for k, u := range r.uplinks {
		if k.module == module && u.Present {
			out = append(out, u.binding())
		}
	}
	slices.SortFunc(out, func(a, b UplinkBinding) int { return comparePorts(a.Port, b.Port) })
	return out
}

// Ports returns what module must program, as unrendered api.Ports (for
// render.Snapshot): its vEths (active there, or still there while they
// migrate away) and its Eth uplinks, by name. Profiles are not checked
// here: a profile disabled since the attach is render's concern.
func (r *Registry) Ports(module int) []api.Port {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []api.Port
	channels := map[int]*api.Port{}
	for _, u := range r.uplinksLocked(module) {
		out = append(out, api.Port{Name: u.Port, Kind: api.PortEth, Interface: u.Interface, Profile: u.Profile})
		if u.Channel == 0 {
			continue
		}
		po := channels[u.Channel]
		if po == nil {
			po = &api.Port{Name: fmt.Sprintf("Po%d", u.Channel), Kind: api.PortPortChannel, Profile: u.Profile}
			channels[u.Channel] = po
		}
		po.Members = append(po.Members, u.Port)
	}
	for _, n := range slices.Sorted(maps.Keys(channels)) {
		out = append(out, *channels[n])
	}
	for _, b := range sortedBindings(maps.Values(r.veths), func(b Binding) bool { return b.onModule(module) }) {
		p := api.Port{Name: b.Port, Kind: api.PortVeth, Profile: b.Profile, Owner: b.Owner}
		if b.MAC != "" {
			p.MACs = []string{b.MAC}
		}
		out = append(out, p)
	}
	return out
}

// Users returns the ports bound to a profile, by name: every vEth (active
// or not) and every present uplink. The config layer refuses to disable or
// delete a profile that has users.
func (r *Registry) Users(profile string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.veths {
		if b.Profile == profile {
			out = append(out, b.Port)
		}
	}
	for _, u := range r.uplinks {
		if u.Present && u.Profile == profile {
			out = append(out, u.binding().Port)
		}
	}
	slices.SortFunc(out, comparePorts)
	return out
}

// State returns the persistent registry (HA sync, tests).
func (r *Registry) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateLocked()
}

func (r *Registry) stateLocked() State {
	st := State{Version: StateVersion, Seq: r.seq, Veths: r.bindingsLocked()}
	for _, u := range r.uplinks {
		st.Uplinks = append(st.Uplinks, u)
	}
	slices.SortFunc(st.Uplinks, func(a, b UplinkRecord) int {
		return cmp.Or(cmp.Compare(a.Module, b.Module), cmp.Compare(a.Number, b.Number))
	})
	return st
}

// saveLocked stores the whole state as one more change.
func (r *Registry) saveLocked() error {
	if r.store == nil {
		return nil
	}
	r.seq++
	if err := r.store.Save(r.stateLocked()); err != nil {
		r.seq--
		return fmt.Errorf("save port bindings: %w", err)
	}
	r.journaled = 0
	return nil
}

// recordLocked stores the change of one owner's binding (its binding now,
// or its removal): a journal record when the store keeps one and it is
// not full, else the whole state.
func (r *Registry) recordLocked(owner string) error {
	j, ok := r.store.(Journal)
	if !ok || r.journaled >= r.maxJournal {
		return r.saveLocked()
	}
	rec := JournalRecord{Seq: r.seq + 1}
	if b, ok := r.veths[owner]; ok {
		rec.Set = &b
	} else {
		rec.Remove = owner
	}
	if err := j.Record(rec); err != nil {
		return fmt.Errorf("save port bindings: %w", err)
	}
	r.seq++
	r.journaled++
	return nil
}

type registryMaps struct {
	veths   map[string]Binding
	nums    map[int]string
	uplinks map[upKey]UplinkRecord
}

// cloneLocked and restoreLocked undo a change whose save failed, so that
// memory never holds a binding the disk does not.
func (r *Registry) cloneLocked() registryMaps {
	return registryMaps{maps.Clone(r.veths), maps.Clone(r.nums), maps.Clone(r.uplinks)}
}

func (r *Registry) restoreLocked(m registryMaps) {
	r.veths, r.nums, r.uplinks = m.veths, m.nums, m.uplinks
}

// comparePorts orders port names by kind, then numerically (Veth2 before
// Veth10, Eth3/2 before Eth3/10).
func comparePorts(a, b string) int {
	ka, na := portKey(a)
	kb, nb := portKey(b)
	if c := cmp.Compare(ka, kb); c != 0 {
		return c
	}
	if c := slices.Compare(na, nb); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func portKey(s string) (string, []int) {
	i := strings.IndexAny(s, "0123456789")
	if i < 0 {
		return s, nil
	}
	var nums []int
	for _, f := range strings.Split(s[i:], "/") {
		n, _ := strconv.Atoi(f)
		nums = append(nums, n)
	}
	return s[:i], nums
}

func validIfName(s string) bool {
	return s != "" && len(s) <= 15 && s != "." && s != ".." &&
		!strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '/' || r == ':' || r >= 0x7f })
}

// ethIndex parses the N of a kernel NIC name "ethN" (N < 32).
func ethIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "eth")
	if !ok || rest == "" || len(rest) > 2 || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	n := 0
	for _, r := range rest {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + int(r-'0')
	}
	return n, n < 32
}

// Replace makes st the registry's bindings, as an HA standby receives
// them from the active VSM. st is validated and stored first: on error
// nothing changes.
func (r *Registry) Replace(st State) error {
	if err := st.Validate(r.maxModule); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	st.Version = StateVersion
	veths := make(map[string]Binding, len(st.Veths))
	nums := make(map[int]string, len(st.Veths))
	for _, b := range st.Veths {
		n, _ := api.VethNumber(b.Port)
		veths[b.Owner], nums[n] = b, b.Owner
	}
	uplinks := make(map[upKey]UplinkRecord, len(st.Uplinks))
	for _, u := range st.Uplinks {
		uplinks[upKey{u.Module, u.Interface}] = u
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store != nil {
		if err := r.store.Save(st); err != nil {
			return fmt.Errorf("replace: save port bindings: %w", err)
		}
	}
	r.veths, r.nums, r.uplinks = veths, nums, uplinks
	r.seq, r.journaled = st.Seq, 0
	return nil
}
