package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// knownHostsFile is the trust store in the configuration directory: one
// "host:port FINGERPRINT" per line, like ssh's known_hosts.
const knownHostsFile = "known_hosts"

// trustSource records where the pinned fingerprint came from, to explain a
// mismatch.
type trustSource struct {
	addr, pinned string
	path         string // known_hosts path, "" for --fingerprint
	line         int
}

// connect returns a client for --host, deciding how to trust it: a given
// fingerprint, --insecure, or known_hosts with trust on first use.
func (a *app) connect(ctx context.Context) (*client.Client, error) {
	if a.g.host == "" {
		return nil, usagef("no host: use --host or FVCTL_HOST")
	}
	addr, err := client.WithDefaultPort(strings.ToLower(a.g.host))
	if err != nil {
		return nil, usagef("--host: %v", err)
	}
	o := client.Options{Addr: addr, Token: a.g.token}
	src := trustSource{addr: addr}
	switch {
	case a.g.fingerprint != "":
		fp, err := client.NormalizeFingerprint(a.g.fingerprint)
		if err != nil {
			return nil, usagef("--fingerprint: %v", err)
		}
		o.Fingerprint, src.pinned = fp, fp
	case a.g.insecure:
		fmt.Fprintf(a.stderr, "WARNING: --insecure: the identity of %s is not checked.\n", addr)
		o.Insecure = true
	default:
		dir, err := a.configDir()
		if err != nil {
			return nil, err
		}
		src.path = filepath.Join(dir, knownHostsFile)
		kh, err := readKnownHosts(src.path)
		if err != nil {
			return nil, err
		}
		if e, ok := kh[addr]; ok {
			src.pinned, src.line = e.fp, e.line
		} else {
			fp, err := client.FetchFingerprint(ctx, addr)
			if err != nil {
				return nil, err
			}
			if err := addKnownHost(src.path, addr, fp); err != nil {
				return nil, err
			}
			fmt.Fprintf(a.stderr, "Trusting %s, certificate fingerprint %s (first use; stored in %s)\n", addr, fp, src.path)
			src.pinned = fp
		}
		o.Fingerprint = src.pinned
	}
	c, err := client.New(o)
	if err != nil {
		return nil, err
	}
	a.src = src
	return c, nil
}

// mismatch explains a fingerprint mismatch, ssh-style when the pin came
// from known_hosts. It never changes known_hosts: that is the operator's
// decision.
func (a *app) mismatch(err error) error {
	s := a.src
	presented := "(unknown)"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if fp, ferr := client.FetchFingerprint(ctx, s.addr); ferr == nil {
		presented = fp
	}
	if s.path == "" {
		return fmt.Errorf("refusing to connect: the certificate of %s has fingerprint %s, not the pinned %s", s.addr, presented, s.pinned)
	}
	fmt.Fprintf(a.stderr, `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be intercepting your connection to %s, or the host
was reinstalled or lost its state partition (a new certificate).
Stored fingerprint:    %s (%s line %d)
Presented fingerprint: %s
If the change is expected, remove line %d from %s and connect again.
`, s.addr, s.pinned, s.path, s.line, presented, s.line, s.path)
	return fmt.Errorf("host identification of %s has changed; refusing to connect", s.addr)
}

type knownHost struct {
	fp   string
	line int
}

// readKnownHosts reads the trust store; a missing file is empty. A
// malformed line is an error, not skipped: silently dropping a pin would
// turn a typo into trust on first use.
func readKnownHosts(path string) (map[string]knownHost, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]knownHost{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	return parseKnownHosts(b, path)
}

func parseKnownHosts(b []byte, path string) (map[string]knownHost, error) {
	out := map[string]knownHost{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s line %d: want \"HOST:PORT FINGERPRINT\"", path, n)
		}
		addr, err := client.WithDefaultPort(strings.ToLower(f[0]))
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		fp, err := client.NormalizeFingerprint(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if _, dup := out[addr]; !dup { // the first line wins, as in ssh
			out[addr] = knownHost{fp: fp, line: n}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// addKnownHost appends "addr fp" to the trust store, atomically.
func addKnownHost(path, addr, fp string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("known hosts: %w", err)
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	data := append(old, []byte(addr+" "+fp+"\n")...)
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	return nil
}
