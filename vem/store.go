package vem

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// ErrNoState means there is no stored programming yet (first boot).
var ErrNoState = errors.New("no stored switch programming")

// ErrCorruptState means the stored programming cannot be used: it does not
// parse, its checksum does not match, or it does not validate. The file is
// left as it is for inspection.
var ErrCorruptState = errors.New("stored switch programming is corrupt")

const storeVersion = 1

// Store keeps the last applied programming (VEM-8) in one file, replaced
// atomically, so a host that reboots while headless restores every port.
type Store struct {
	Path string
}

type storeFile struct {
	Version int             `json:"version"`
	SHA256  string          `json:"sha256"` // of Config as stored
	Config  json.RawMessage `json:"config"`
}

// Save records c as the last applied programming. The file is rewritten
// only when its content changes (flash media, FLASH-4).
func (s Store) Save(c *Config) error {
	cfg, err := json.Marshal(c.SwitchConfig())
	if err != nil {
		return fmt.Errorf("save switch programming: %w", err)
	}
	sum := sha256.Sum256(cfg)
	data, err := json.MarshalIndent(storeFile{Version: storeVersion, SHA256: hex.EncodeToString(sum[:]), Config: cfg}, "", "  ")
	if err != nil {
		return fmt.Errorf("save switch programming: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return fmt.Errorf("save switch programming: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(s.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save switch programming: %w", err)
	}
	return nil
}

// Load reads and validates the stored programming: ErrNoState if there is
// none, ErrCorruptState (with the reason) if it is unusable.
func (s Store) Load() (*Config, error) {
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", s.Path, ErrNoState)
	}
	if err != nil {
		return nil, fmt.Errorf("load switch programming: %w", err)
	}
	var f storeFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", s.Path, ErrCorruptState, err)
	}
	if f.Version != storeVersion {
		return nil, fmt.Errorf("%s: %w: version %d, want %d", s.Path, ErrCorruptState, f.Version, storeVersion)
	}
	// The checksum covers the config bytes exactly as written (compact).
	var compact bytes.Buffer
	if err := json.Compact(&compact, f.Config); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", s.Path, ErrCorruptState, err)
	}
	sum := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(sum[:]) != f.SHA256 {
		return nil, fmt.Errorf("%s: %w: checksum mismatch", s.Path, ErrCorruptState)
	}
	var sc api.SwitchConfig
	if err := json.Unmarshal(f.Config, &sc); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", s.Path, ErrCorruptState, err)
	}
	c, err := Validate(sc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", s.Path, ErrCorruptState, err)
	}
	return c, nil
}
