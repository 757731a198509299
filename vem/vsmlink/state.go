package vsmlink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

const stateVersion = 1

// State is what the link persists (StateFile), written before a config is
// acked: the VSM's part of the programming and where it stands, and the
// local part it is merged with.
type State struct {
	Version int `json:"version"`
	Domain  int `json:"domain"`
	// Generation is the VSM config generation applied, Epoch the highest
	// VSM epoch seen, Module the slot the VSM part was made for (0: never
	// welcomed).
	Generation uint64 `json:"generation"`
	Epoch      uint64 `json:"epoch"`
	Module     int    `json:"module"`
	// VSM is the VSM's part of the programming.
	VSM Part `json:"vsm"`
	// Opaque is the domain's opaque data of the last snapshot.
	Opaque *api.VSMOpaque `json:"opaque,omitempty"`
	// Local is the local part as hostd gave it (nil: none yet).
	Local *api.SwitchConfig `json:"local,omitempty"`
}

// LoadState reads the state file: os.ErrNotExist (wrapped) when there is
// none.
func LoadState(path string) (State, error) {
	var st State
	data, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("load vsm link state: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("%s: %w", path, err)
	}
	if st.Version != stateVersion {
		return State{}, fmt.Errorf("%s: version %d, want %d", path, st.Version, stateVersion)
	}
	return st, nil
}

// SaveState writes the state file atomically (0600), only when it changed
// (flash media).
func SaveState(path string, st State) error {
	st.Version = stateVersion
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save vsm link state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save vsm link state: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save vsm link state: %w", err)
	}
	return nil
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
