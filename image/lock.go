package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Pin is one Debian package pinned in a lock file.
type Pin struct {
	Name    string
	Version string
	Arch    string
	Size    int64
	SHA256  string
}

// DebFile is the name apt-get download gives the package's file.
func (p Pin) DebFile() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

// key names the package's extraction directory and the manifest entry.
func (p Pin) key() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a")
}

// Lock is the content of a pin file. The format is one package per line,
// "name version arch size sha256", sorted by name; '#' starts a comment.
// Text rather than JSON so that a refresh reads as a plain diff.
type Lock struct {
	Pins []Pin
}

// ErrLockSyntax is wrapped by every ParseLock error.
var ErrLockSyntax = errors.New("lock syntax")

var (
	debName    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debVersion = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$`)
	debArch    = regexp.MustCompile(`^[a-z0-9-]+$`)
	sha256Hex  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ParseLock reads a pin file; errors name the line.
func ParseLock(r io.Reader) (Lock, error) {
	var l Lock
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		p, err := parsePin(f)
		if err != nil {
			return Lock{}, fmt.Errorf("%w: line %d: %w", ErrLockSyntax, n, err)
		}
		if prev, ok := seen[p.Name]; ok {
			return Lock{}, fmt.Errorf("%w: line %d: package %s already pinned on line %d", ErrLockSyntax, n, p.Name, prev)
		}
		seen[p.Name] = n
		l.Pins = append(l.Pins, p)
	}
	if err := sc.Err(); err != nil {
		return Lock{}, fmt.Errorf("read lock: %w", err)
	}
	if len(l.Pins) == 0 {
		return Lock{}, fmt.Errorf("%w: no packages", ErrLockSyntax)
	}
	return l, nil
}

func parsePin(f []string) (Pin, error) {
	if len(f) != 5 {
		return Pin{}, fmt.Errorf("want 5 fields (name version arch size sha256), got %d", len(f))
	}
	p := Pin{Name: f[0], Version: f[1], Arch: f[2], SHA256: f[4]}
	switch {
	case !debName.MatchString(p.Name):
		return Pin{}, fmt.Errorf("bad package name %q", p.Name)
	case !debVersion.MatchString(p.Version):
		return Pin{}, fmt.Errorf("bad version %q", p.Version)
	case !debArch.MatchString(p.Arch):
		return Pin{}, fmt.Errorf("bad architecture %q", p.Arch)
	case !sha256Hex.MatchString(p.SHA256):
		return Pin{}, fmt.Errorf("bad sha256 %q", p.SHA256)
	}
	size, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || size <= 0 {
		return Pin{}, fmt.Errorf("bad size %q", f[3])
	}
	p.Size = size
	return p, nil
}

// Format renders the lock in its file format, sorted by package name.
func (l Lock) Format(header string) []byte {
	pins := slices.Clone(l.Pins)
	slices.SortFunc(pins, func(a, b Pin) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
		fmt.Fprintf(&b, "# %s\n", line)
	}
	for _, p := range pins {
		fmt.Fprintf(&b, "%s %s %s %d %s\n", p.Name, p.Version, p.Arch, p.Size, p.SHA256)
	}
	return b.Bytes()
}
