package vmconfig

import (
	"errors"
	"fmt"
	"strings"
)

// ErrVersion is wrapped by the error for a parameter file whose
// config.version this host cannot read (missing, or from a newer Flashvisor).
var ErrVersion = errors.New("unsupported parameter file version")

// Error is one problem in a parameter file or a spec, named the way an
// operator sees it in the file: `line 7: numvcpus = "abc": not a number`.
// Parse and Validate return several of them joined with errors.Join.
type Error struct {
	// Line is 1-based; 0 when the problem is not tied to a line (Validate, or
	// a key that is missing).
	Line int
	// Key is the parameter file key (or device, e.g. "scsi0:1") concerned;
	// empty for problems of the file's syntax.
	Key string
	// Value is the offending value as written in the file; empty when there
	// is none (a missing key).
	Value  string
	Reason string
	// Err is a sentinel callers may test with errors.Is; usually nil.
	Err error
}

// maxShownValue keeps messages readable when a long kernel command line or
// guestinfo blob is wrong.
const maxShownValue = 64

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		if e.Value != "" {
			v := e.Value
			if len(v) > maxShownValue {
				v = v[:maxShownValue] + "..."
			}
			b.WriteString(" = ")
			b.WriteString(quote(v))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// joinErrors returns nil for no problems, else all of them joined.
func joinErrors(list []*Error) error {
	if len(list) == 0 {
		return nil
	}
	errs := make([]error, len(list))
	for i, e := range list {
		errs[i] = e
	}
	return errors.Join(errs...)
}
