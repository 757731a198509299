package ports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// StateVersion is the version of State this code writes and reads.
const StateVersion = 1

// ErrBadState is wrapped by every validation error of a stored State.
var ErrBadState = errors.New("bad port state")

// Binding is one vEth: its number and whose it is.
type Binding struct {
	Port  string `json:"port"` // VethN
	Owner string `json:"owner"`
	// Module is where the port runs (or ran last, when inactive).
	Module      int    `json:"module"`
	Profile     string `json:"profile"`
	MAC         string `json:"mac,omitempty"`
	Description string `json:"description,omitempty"`
	// Active is false while no host runs the owner (VM powered off): the
	// port is kept but programmed nowhere.
	Active bool `json:"active"`
	// Leaving is the module the port is migrating away from: it stays
	// programmed there too until that module detaches it.
	Leaving int `json:"leaving,omitempty"`
}

// UplinkBinding is one Eth port: a host NIC of a module.
type UplinkBinding struct {
	Port      string `json:"port"` // EthM/P
	Module    int    `json:"module"`
	Interface string `json:"interface"`
	Profile   string `json:"profile"`
	// Channel is N of the PoN the port is a member of (0: none).
	Channel int `json:"channel,omitempty"`
}

// UplinkRecord is the stored form of an uplink: Number is P in EthM/P,
// kept while the NIC is absent (Present false) so it comes back as the
// same port.
type UplinkRecord struct {
	Module    int    `json:"module"`
	Interface string `json:"interface"`
	Number    int    `json:"number"`
	Profile   string `json:"profile,omitempty"`
	Present   bool   `json:"present"`
	// Channel is N of the PoN the NIC is bundled into (its profile has a
	// channel-group), kept while it is absent; 0: none.
	Channel int `json:"channel,omitempty"`
}

func (u UplinkRecord) binding() UplinkBinding {
	return UplinkBinding{Port: fmt.Sprintf("Eth%d/%d", u.Module, u.Number), Module: u.Module, Interface: u.Interface,
		Profile: u.Profile, Channel: u.Channel}
}

// State is the persistent registry.
type State struct {
	Version int `json:"version"`
	// Seq is the number of the last change the state holds: journal
	// records numbered up to it are already in.
	Seq     uint64         `json:"seq,omitempty"`
	Veths   []Binding      `json:"veths,omitempty"`
	Uplinks []UplinkRecord `json:"uplinks,omitempty"`
}

// JournalRecord is one vEth binding change: Set stores a binding (by its
// owner), Remove forgets an owner's.
type JournalRecord struct {
	Seq    uint64   `json:"seq"`
	Set    *Binding `json:"set,omitempty"`
	Remove string   `json:"remove,omitempty"`
}

// apply applies the records numbered after s.Seq, in order.
func (s *State) apply(recs []JournalRecord) error {
	for _, r := range recs {
		if r.Seq <= s.Seq {
			continue // already in the snapshot
		}
		switch {
		case r.Set != nil && r.Remove == "":
			i := slices.IndexFunc(s.Veths, func(b Binding) bool { return b.Owner == r.Set.Owner })
			if i < 0 {
				s.Veths = append(s.Veths, *r.Set)
			} else {
				s.Veths[i] = *r.Set
			}
		case r.Set == nil && r.Remove != "":
			s.Veths = slices.DeleteFunc(s.Veths, func(b Binding) bool { return b.Owner == r.Remove })
		default:
			return fmt.Errorf("%w: journal record %d: want set or remove", ErrBadState, r.Seq)
		}
		s.Seq = r.Seq
	}
	return nil
}

// Validate checks a State for a chassis whose highest module is maxModule:
// every record well formed, no number, owner, NIC or Eth port twice.
func (s State) Validate(maxModule int) error {
	if s.Version == 0 && len(s.Veths) == 0 && len(s.Uplinks) == 0 {
		return nil
	}
	if s.Version != StateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadState, s.Version, StateVersion)
	}
	module := func(m int, zeroOK bool) bool {
		return (zeroOK && m == 0) || (m >= api.VSMFirstVEMSlot && m <= maxModule)
	}
	nums := map[int]string{}
	owners := map[string]bool{}
	for i, b := range s.Veths {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: veth %d (%s): %s", ErrBadState, i, b.Port, fmt.Sprintf(format, args...))
		}
		n, ok := api.VethNumber(b.Port)
		switch {
		case !ok:
			return bad("port: want VethN")
		case nums[n] != "":
			return bad("number also bound to %s", nums[n])
		case !ownerRE.MatchString(b.Owner):
			return bad("owner %q invalid", b.Owner)
		case owners[b.Owner]:
			return bad("owner %s bound twice", b.Owner)
		case !module(b.Module, false):
			return bad("module %d out of range", b.Module)
		case !module(b.Leaving, true) || (b.Leaving != 0 && (b.Leaving == b.Module || !b.Active)):
			return bad("leaving module %d invalid", b.Leaving)
		case b.Profile == "":
			return bad("no profile")
		}
		if m, err := normMAC(b.MAC); err != nil || m != b.MAC {
			return bad("mac %q: want a canonical unicast MAC", b.MAC)
		}
		nums[n], owners[b.Owner] = b.Owner, true
	}
	ifaces := map[upKey]bool{}
	numbers := map[[2]int]bool{}
	channels := map[int]chanKey{}
	for i, u := range s.Uplinks {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: uplink %d (module %d %s): %s", ErrBadState, i, u.Module, u.Interface, fmt.Sprintf(format, args...))
		}
		switch {
		case !module(u.Module, false):
			return bad("module out of range")
		case !validIfName(u.Interface):
			return bad("interface name invalid")
		case u.Number < 1 || u.Number > 1024:
			return bad("number %d out of range 1-1024", u.Number)
		case u.Present && u.Profile == "":
			return bad("present without a profile")
		case ifaces[upKey{u.Module, u.Interface}]:
			return bad("listed twice")
		case numbers[[2]int{u.Module, u.Number}]:
			return bad("Eth%d/%d given twice", u.Module, u.Number)
		case u.Channel < 0 || u.Channel > MaxChannel:
			return bad("channel %d out of range 0-%d", u.Channel, MaxChannel)
		case u.Channel != 0 && u.Profile == "":
			return bad("in Po%d without a profile", u.Channel)
		}
		if u.Channel != 0 {
			k := chanKey{u.Module, u.Profile}
			if o, ok := channels[u.Channel]; ok && o != k {
				return bad("Po%d also bundles module %d's %s uplinks", u.Channel, o.module, o.profile)
			}
			channels[u.Channel] = k
		}
		ifaces[upKey{u.Module, u.Interface}], numbers[[2]int{u.Module, u.Number}] = true, true
	}
	return nil
}

// FileStore keeps the State as JSON in one file, replaced atomically, and
// the binding changes since in a journal next to it (Path + ".journal",
// one JSON record per line, each appended and synced): an attach then
// writes one line instead of every binding.
type FileStore struct {
	Path string
}

func (f FileStore) journalPath() string { return f.Path + ".journal" }

// Load reads the file, then replays the journal records it does not hold
// yet; a missing file is the zero State. Unknown fields are ignored (a
// newer version on the other flash bank wrote them); anything else that
// does not parse is an error, except a last journal line cut short (a
// crash while it was written: that change was never confirmed). New
// validates.
func (f FileStore) Load() (State, error) {
	data, err := os.ReadFile(f.Path)
	var s State
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return State{}, fmt.Errorf("load port state: %w", err)
	default:
		if err := json.Unmarshal(data, &s); err != nil {
			return State{}, fmt.Errorf("%s: %w: %w", f.Path, ErrBadState, err)
		}
	}
	recs, err := f.readJournal()
	if err != nil {
		return State{}, err
	}
	if len(recs) > 0 && s.Version == 0 {
		s.Version = StateVersion
	}
	if err := s.apply(recs); err != nil {
		return State{}, fmt.Errorf("%s: %w", f.journalPath(), err)
	}
	return s, nil
}

func (f FileStore) readJournal() ([]JournalRecord, error) {
	data, err := os.ReadFile(f.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load port journal: %w", err)
	}
	lines := strings.Split(string(data), "\n")
	var recs []JournalRecord
	for i, l := range lines {
		if l == "" {
			continue
		}
		var r JournalRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			if i == len(lines)-1 {
				break // cut short by a crash: never confirmed
			}
			return nil, fmt.Errorf("%s line %d: %w: %w", f.journalPath(), i+1, ErrBadState, err)
		}
		if len(recs) > 0 && r.Seq <= recs[len(recs)-1].Seq {
			return nil, fmt.Errorf("%s line %d: %w: record %d after %d", f.journalPath(), i+1, ErrBadState, r.Seq, recs[len(recs)-1].Seq)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Save writes s when it differs from the file's content (flash wear),
// then empties the journal: s holds every change up to s.Seq.
func (f FileStore) Save(s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(f.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	// A journal left behind (a crash right here) only holds records up
	// to s.Seq, which Load skips.
	if err := os.Remove(f.journalPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("save port state: empty the journal: %w", err)
	}
	return nil
}

// Record appends one change to the journal and syncs it.
func (f FileStore) Record(r JournalRecord) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("record port change: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return fmt.Errorf("record port change: %w", err)
	}
	j, err := os.OpenFile(f.journalPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record port change: %w", err)
	}
	_, err = j.Write(append(line, '\n'))
	if err == nil {
		err = j.Sync()
	}
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record port change: %w", err)
	}
	return nil
}
