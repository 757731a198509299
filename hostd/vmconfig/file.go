package vmconfig

import (
	"fmt"
	"os"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Extension is the parameter file's extension: a VM named web01 has
// web01/web01.fvx on its datastore.
const Extension = ".fvx"

// FileName is the parameter file's name inside the VM directory.
func FileName(vm string) string { return vm + Extension }

// Load reads and parses the parameter file at path.
func Load(path string) (api.VMSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return api.VMSpec{}, fmt.Errorf("load VM parameter file: %w", err)
	}
	spec, err := Parse(data)
	if err != nil {
		return api.VMSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

// Save validates spec and writes it to path atomically (temp file, fsync,
// rename), so a crash leaves the old file or the new one, never a mix. An
// unchanged file is not rewritten.
func Save(path string, spec api.VMSpec) error {
	if err := Validate(spec); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if _, err := atomicfile.WriteIfChanged(path, Format(spec), 0o644); err != nil {
		return fmt.Errorf("save VM parameter file: %w", err)
	}
	return nil
}
