package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// ErrStalePin means a pinned package can no longer be fetched or no longer
// matches its pin: the lock must be regenerated.
var ErrStalePin = errors.New("pinned package unavailable or changed (refresh the pins with `make lock`)")

// command runs a program and returns its stdout; stderr goes into the error.
func command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	return commandEnv(ctx, dir, append(os.Environ(), "LC_ALL=C"), name, args...)
}

func commandEnv(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// aptShow returns the candidate version of each package from apt's metadata.
func aptShow(ctx context.Context, names []string) ([]Pin, error) {
	out, err := command(ctx, "", "apt-cache", append([]string{"show", "--no-all-versions"}, names...)...)
	if err != nil {
		return nil, err
	}
	return parseAptShow(out)
}

// parseAptShow reads deb822 stanzas as printed by apt-cache show.
func parseAptShow(out []byte) ([]Pin, error) {
	var pins []Pin
	for _, stanza := range strings.Split(string(out), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		if fields["Package"] == "" {
			continue
		}
		size, err := strconv.ParseInt(fields["Size"], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("apt-cache show %s: bad Size: %w", fields["Package"], err)
		}
		p := Pin{Name: fields["Package"], Version: fields["Version"], Arch: fields["Architecture"], Size: size, SHA256: fields["SHA256"]}
		if _, err := parsePin([]string{p.Name, p.Version, p.Arch, fields["Size"], p.SHA256}); err != nil {
			return nil, fmt.Errorf("apt-cache show %s: %w", p.Name, err)
		}
		pins = append(pins, p)
	}
	return pins, nil
}

// aptDepends lists roots and their recursive Depends and Pre-Depends (no
// Recommends), real packages only: virtual ones are represented by the
// providers apt lists after them, and the pin step keeps only packages that
// actually contribute files.
func aptDepends(ctx context.Context, roots []string) ([]string, error) {
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests",
		"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"}, roots...)
	out, err := command(ctx, "", "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '<' || seen[line] {
			continue
		}
		seen[line] = true
		names = append(names, line)
	}
	return names, nil
}

// aptMetaTarget returns the package a metapackage depends on, e.g.
// linux-image-amd64 -> linux-image-6.1.0-37-amd64.
func aptMetaTarget(ctx context.Context, meta string) (string, error) {
	out, err := command(ctx, "", "apt-cache", "depends", "--no-recommends", "--no-suggests",
		"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", meta)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok {
			return dep, nil
		}
	}
	return "", fmt.Errorf("metapackage %s depends on nothing", meta)
}

// Cache holds downloaded .debs (Dir/debs) and their extracted trees
// (Dir/extract/NAME_VERSION). Both are keyed by exact version and checked
// against the pins, so a cache can be shared between builds and kept.
type Cache struct {
	Dir string
	Log *slog.Logger
}

// Fetch downloads the pins that are missing and verifies every .deb.
func (c Cache) Fetch(ctx context.Context, pins []Pin) error {
	dir := filepath.Join(c.Dir, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var missing []string
	for _, p := range pins {
		if _, err := os.Stat(filepath.Join(dir, p.DebFile())); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, p.Name+"="+p.Version)
		}
	}
	if len(missing) > 0 {
		c.Log.Info("downloading packages", "count", len(missing))
		if _, err := command(ctx, dir, "apt-get", append([]string{"download", "-q"}, missing...)...); err != nil {
			return fmt.Errorf("%w: %w", ErrStalePin, err)
		}
	}
	for _, p := range pins {
		if err := verifyDeb(filepath.Join(dir, p.DebFile()), p); err != nil {
			return err
		}
	}
	return nil
}

func verifyDeb(file string, p Pin) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStalePin, p.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 || n != p.Size {
		return fmt.Errorf("%w: %s: sha256 %s size %d, pinned %s size %d (delete it to re-download)",
			ErrStalePin, file, got, n, p.SHA256, p.Size)
	}
	return nil
}

// Extract unpacks each pinned .deb once and returns the extracted roots by
// package name. dpkg-deb is on every Debian and Ubuntu machine (dpkg is
// Essential) and knows every compression a .deb may use.
func (c Cache) Extract(ctx context.Context, pins []Pin) (map[string]string, error) {
	roots := make(map[string]string, len(pins))
	var g errgroup.Group
	g.SetLimit(2)
	for _, p := range pins {
		dst := filepath.Join(c.Dir, "extract", p.key())
		roots[p.Name] = dst
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		g.Go(func() error {
			tmp := dst + ".tmp"
			if err := os.RemoveAll(tmp); err != nil {
				return err
			}
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return err
			}
			if _, err := command(ctx, "", "dpkg-deb", "-x", filepath.Join(c.Dir, "debs", p.DebFile()), tmp); err != nil {
				return err
			}
			return os.Rename(tmp, dst)
		})
	}
	return roots, g.Wait()
}
