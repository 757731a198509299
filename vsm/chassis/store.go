package chassis

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
var ErrBadState = errors.New("bad chassis state")

// State is the persistent chassis: which host owns which VEM slot.
type State struct {
	Version  int       `json:"version"`
	Bindings []Binding `json:"bindings,omitempty"`
}

// Binding ties a host UUID to a VEM slot. Pinned bindings come from the
// operator ("host <uuid> module N") and may exist before the host joins;
// the others were assigned at the host's first join.
type Binding struct {
	Slot     int    `json:"slot"`
	HostUUID string `json:"host_uuid"`
	Pinned   bool   `json:"pinned,omitempty"`
	// Hostname and Address are the last ones the host reported, so that
	// `show module` names an offline module after a VSM restart.
	Hostname string `json:"hostname,omitempty"`
	Address  string `json:"address,omitempty"`
}

// Validate checks a State for a chassis whose highest VEM slot is maxSlot:
// known version, slots in range, no slot or host twice.
func (s State) Validate(maxSlot int) error {
	if s.Version == 0 && len(s.Bindings) == 0 {
		return nil // nothing stored yet
	}
	if s.Version != StateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadState, s.Version, StateVersion)
	}
	slots := map[int]string{}
	hosts := map[string]int{}
	for i, b := range s.Bindings {
		if b.Slot < api.VSMFirstVEMSlot || b.Slot > maxSlot {
			return fmt.Errorf("%w: binding %d: slot %d out of range %d-%d", ErrBadState, i, b.Slot, api.VSMFirstVEMSlot, maxSlot)
		}
		if !api.ValidHostUUID(b.HostUUID) {
			return fmt.Errorf("%w: binding %d (slot %d): host uuid %q is not a UUID", ErrBadState, i, b.Slot, b.HostUUID)
		}
		if o, dup := slots[b.Slot]; dup {
			return fmt.Errorf("%w: slot %d bound twice (hosts %s and %s)", ErrBadState, b.Slot, o, b.HostUUID)
		}
		if o, dup := hosts[b.HostUUID]; dup {
			return fmt.Errorf("%w: host %s bound twice (slots %d and %d)", ErrBadState, b.HostUUID, o, b.Slot)
		}
		slots[b.Slot], hosts[b.HostUUID] = b.HostUUID, b.Slot
	}
	return nil
}

// FileStore keeps the State as JSON in one file, replaced atomically so a
// crash leaves the old or the new bindings, never a mix.
type FileStore struct {
	Path string
}

// Load reads the file; a missing file is the zero State (first boot).
// Unknown JSON fields are ignored so that a VSM rolled back to the other
// flash bank can still read what a newer version wrote; everything else
// that does not parse is an error, never a panic. Validation of slots
// happens in New, which knows the chassis size.
func (f FileStore) Load() (State, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("load chassis state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("%s: %w: %w", f.Path, ErrBadState, err)
	}
	return s, nil
}

// Save writes s, only when it differs from what the file holds (flash
// media wear, FLASH-4).
func (f FileStore) Save(s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save chassis state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return fmt.Errorf("save chassis state: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(f.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save chassis state: %w", err)
	}
	return nil
}
