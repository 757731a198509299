package ports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
}

func (u UplinkRecord) binding() UplinkBinding {
	return UplinkBinding{Port: fmt.Sprintf("Eth%d/%d", u.Module, u.Number), Module: u.Module, Interface: u.Interface, Profile: u.Profile}
}

// State is the persistent registry.
type State struct {
	Version int            `json:"version"`
	Veths   []Binding      `json:"veths,omitempty"`
	Uplinks []UplinkRecord `json:"uplinks,omitempty"`
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
		}
		ifaces[upKey{u.Module, u.Interface}], numbers[[2]int{u.Module, u.Number}] = true, true
	}
	return nil
}

// FileStore keeps the State as JSON in one file, replaced atomically.
type FileStore struct {
	Path string
}

// Load reads the file; a missing file is the zero State. Unknown fields
// are ignored (a newer version on the other flash bank wrote them);
// anything else that does not parse is an error. New validates.
func (f FileStore) Load() (State, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("load port state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("%s: %w: %w", f.Path, ErrBadState, err)
	}
	return s, nil
}

// Save writes s when it differs from the file's content (flash wear).
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
	return nil
}
