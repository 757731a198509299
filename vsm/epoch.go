package vsm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// EpochFile holds the activation epoch (VSM-7) in the state directory.
const EpochFile = "epoch"

// readEpoch returns the stored epoch, 0 when none was stored.
func readEpoch(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read epoch: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// nextEpoch raises the stored epoch to max(stored, floor)+1 and returns
// it. It is called each time this VSM becomes active; the epoch is written
// before the VSM sends anything with it, so no two activations share one.
func nextEpoch(path string, floor uint64) (uint64, error) {
	return nextEpochFor(path, floor, epochAny)
}

// Epoch parities (VSM-7). The primary of an HA pair activates with odd
// epochs, the secondary with even ones, so two activations of the pair
// never share an epoch even when neither saw the other's (a partition):
// the VEMs' "highest epoch wins" then always names one VSM.
const (
	epochAny = iota
	epochOdd
	epochEven
)

// nextEpochFor is nextEpoch with the epoch rounded up to parity.
func nextEpochFor(path string, floor uint64, parity int) (uint64, error) {
	cur, err := readEpoch(path)
	if err != nil {
		return 0, err
	}
	e := max(cur, floor) + 1
	if (parity == epochOdd && e%2 == 0) || (parity == epochEven && e%2 == 1) {
		e++
	}
	if err := atomicfile.WriteFile(path, []byte(strconv.FormatUint(e, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("store epoch: %w", err)
	}
	return e, nil
}
