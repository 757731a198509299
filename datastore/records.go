package datastore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// DescriptorFile is the datastore descriptor at the root of the filesystem.
const DescriptorFile = ".flashvisor-datastore.json"

// descriptorVersion and stateVersion are the formats this code writes and
// the newest it reads.
const (
	descriptorVersion = 1
	stateVersion      = 1
	maxRecordSize     = 1 << 20
)

// Descriptor identifies a datastore; it travels with the disk.
type Descriptor struct {
	Version int       `json:"version"`
	Name    string    `json:"name"`
	UUID    string    `json:"uuid"`
	Kind    string    `json:"kind"`
	Created time.Time `json:"created"`
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// ValidName checks a datastore name: 1-64 letters, digits, '.', '_' or '-',
// starting with a letter or digit, and not shaped like a UUID (those are the
// mount point directories next to the name links).
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidName, name)
	}
	if uuidRE.MatchString(name) {
		return fmt.Errorf("%w: %q looks like a datastore UUID", ErrInvalidName, name)
	}
	return nil
}

func validUUID(u string) error {
	if !uuidRE.MatchString(u) {
		return fmt.Errorf("uuid %q is not a lower-case 8-4-4-4-12 UUID", u)
	}
	return nil
}

// decodeStrict decodes exactly one JSON value of at most maxRecordSize bytes.
func decodeStrict(b []byte, v any) error {
	if len(b) > maxRecordSize {
		return fmt.Errorf("%d bytes, more than %d", len(b), maxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// ParseDescriptor decodes and validates a descriptor.
func ParseDescriptor(b []byte) (Descriptor, error) {
	var d Descriptor
	if err := decodeStrict(b, &d); err != nil {
		return Descriptor{}, fmt.Errorf("datastore descriptor: %w", err)
	}
	if err := d.validate(); err != nil {
		return Descriptor{}, fmt.Errorf("datastore descriptor: %w", err)
	}
	return d, nil
}

func (d Descriptor) validate() error {
	switch {
	case d.Version < 1:
		return fmt.Errorf("version %d: missing or invalid", d.Version)
	case d.Version > descriptorVersion:
		return fmt.Errorf("version %d is newer than this host understands (%d)", d.Version, descriptorVersion)
	case d.Kind != api.DatastoreLocal:
		return fmt.Errorf("kind %q: want %q", d.Kind, api.DatastoreLocal)
	}
	if err := ValidName(d.Name); err != nil {
		return err
	}
	return validUUID(d.UUID)
}

// Marshal renders the descriptor (indented, newline-terminated).
func (d Descriptor) Marshal() []byte {
	b, _ := json.MarshalIndent(d, "", "  ")
	return append(b, '\n')
}

// stateEntry is one known datastore in the state file.
type stateEntry struct {
	Name    string    `json:"name"`
	UUID    string    `json:"uuid"`
	Kind    string    `json:"kind"`
	Device  string    `json:"device,omitempty"` // where it was last seen (informational)
	Created time.Time `json:"created"`
	// Unmounted records an operator's unmount: MountAll leaves it alone.
	Unmounted bool `json:"unmounted,omitempty"`
}

type stateFile struct {
	Version    int          `json:"version"`
	Datastores []stateEntry `json:"datastores"`
}

// parseState decodes and validates the state file's content.
func parseState(b []byte) ([]stateEntry, error) {
	var s stateFile
	if err := decodeStrict(b, &s); err != nil {
		return nil, err
	}
	switch {
	case s.Version < 1:
		return nil, fmt.Errorf("version %d: missing or invalid", s.Version)
	case s.Version > stateVersion:
		return nil, fmt.Errorf("version %d is newer than this host understands (%d)", s.Version, stateVersion)
	}
	names, uuids := map[string]bool{}, map[string]bool{}
	for i, e := range s.Datastores {
		if err := ValidName(e.Name); err != nil {
			return nil, fmt.Errorf("datastores[%d]: %w", i, err)
		}
		if err := validUUID(e.UUID); err != nil {
			return nil, fmt.Errorf("datastores[%d]: %w", i, err)
		}
		if e.Kind != api.DatastoreLocal {
			return nil, fmt.Errorf("datastores[%d]: kind %q: want %q", i, e.Kind, api.DatastoreLocal)
		}
		if names[e.Name] || uuids[e.UUID] {
			return nil, fmt.Errorf("datastores[%d]: name %q or uuid %s listed twice", i, e.Name, e.UUID)
		}
		names[e.Name], uuids[e.UUID] = true, true
	}
	return s.Datastores, nil
}

// loadState reads the state file; a missing file is an empty state. A file
// that does not parse is an error wrapping ErrCorruptState and is left as
// it is for the operator to look at.
func loadState(path string) ([]stateEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("datastore state %s: %w", path, err)
	}
	entries, err := parseState(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (file left untouched; fix or remove it)", ErrCorruptState, path, err)
	}
	return entries, nil
}

func saveState(path string, entries []stateEntry) error {
	if entries == nil {
		entries = []stateEntry{}
	}
	b, _ := json.MarshalIndent(stateFile{Version: stateVersion, Datastores: entries}, "", "  ")
	if _, err := atomicfile.WriteIfChanged(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("datastore state: %w", err)
	}
	return nil
}
