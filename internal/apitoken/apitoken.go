// Package apitoken keeps an API bearer token the way hostd and the VSM
// both do: only its SHA-256, in memory and in the state directory, so
// neither a state partition dump nor a core file reveals the token.
package apitoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Hash is the SHA-256 of a token.
type Hash [sha256.Size]byte

// Of hashes tok.
func Of(tok string) Hash { return sha256.Sum256([]byte(tok)) }

// Matches compares in constant time. Hashing first makes the comparison
// length-independent as well.
func (h Hash) Matches(tok string) bool {
	got := Of(tok)
	return subtle.ConstantTimeCompare(got[:], h[:]) == 1
}

// Parse reads a stored hash (hex, surrounding space ignored).
func Parse(b []byte) (Hash, error) {
	var h Hash
	d, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(d) != len(h) {
		return h, errors.New("not a hex SHA-256")
	}
	copy(h[:], d)
	return h, nil
}

// Resolve decides which token is accepted, in this order: tok, when given
// (from source, e.g. the kernel command line; its hash is stored so it
// stays valid after tok is no longer given), the hash stored at path, or
// a new random token. A new token is printed once on console after
// shownPrefix and never logged: after this, only its hash exists.
func Resolve(path, tok, source, shownPrefix string, console io.Writer, log *slog.Logger) (Hash, error) {
	if tok != "" {
		h := Of(tok)
		wrote, err := atomicfile.WriteIfChanged(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600)
		if err != nil {
			return Hash{}, fmt.Errorf("store API token hash: %w", err)
		}
		log.Info("API token from "+source, "hash_stored", wrote)
		return h, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		h, err := Parse(b)
		if err != nil {
			return Hash{}, fmt.Errorf("%s: %w (remove it to generate a new token, or boot with flashvisor.token=)", path, err)
		}
		log.Info("API token hash loaded", "path", path)
		return h, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Hash{}, fmt.Errorf("read API token hash: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Hash{}, fmt.Errorf("generate API token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(raw[:])
	h := Of(tok)
	// Store before showing: a token shown but not stored would not work.
	if err := atomicfile.WriteFile(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
		return Hash{}, fmt.Errorf("store API token hash: %w", err)
	}
	if _, err := fmt.Fprintf(console, "%s%s\n", shownPrefix, tok); err != nil {
		return Hash{}, fmt.Errorf("print API token: %w", err)
	}
	log.Info("generated a new API token; it was printed once on the console", "hash_path", path)
	return h, nil
}
