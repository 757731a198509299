package hostd

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
	"path/filepath"
	"strings"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// TokenLinePrefix starts the console line that shows a generated API token.
const TokenLinePrefix = "API token (shown once): "

// tokenHash is the SHA-256 of the API bearer token. hostd keeps only the
// hash, in memory and on disk, so neither a state partition dump nor a core
// file reveals the token.
type tokenHash [sha256.Size]byte

func hashToken(tok string) tokenHash { return sha256.Sum256([]byte(tok)) }

// matches compares in constant time. Hashing first makes the comparison
// length-independent as well.
func (h tokenHash) matches(tok string) bool {
	got := hashToken(tok)
	return subtle.ConstantTimeCompare(got[:], h[:]) == 1
}

// resolveToken decides which token the API accepts, in this order: the
// kernel command line's flashvisor.token (its hash is stored, so it stays
// valid after the key is removed from the command line), the stored hash, or
// a new random token. A new token is printed once on console and never
// logged: after this, only its hash exists.
func resolveToken(stateDir, cmdlineToken string, console io.Writer, log *slog.Logger) (tokenHash, error) {
	path := filepath.Join(stateDir, layout.TokenHashFile)
	if cmdlineToken != "" {
		h := hashToken(cmdlineToken)
		wrote, err := atomicfile.WriteIfChanged(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600)
		if err != nil {
			return tokenHash{}, fmt.Errorf("store API token hash: %w", err)
		}
		log.Info("API token from kernel command line", "hash_stored", wrote)
		return h, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		h, err := parseTokenHash(b)
		if err != nil {
			return tokenHash{}, fmt.Errorf("%s: %w (remove it to generate a new token, or boot with flashvisor.token=)", path, err)
		}
		log.Info("API token hash loaded", "path", path)
		return h, nil
	case !errors.Is(err, fs.ErrNotExist):
		return tokenHash{}, fmt.Errorf("read API token hash: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return tokenHash{}, fmt.Errorf("generate API token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	h := hashToken(tok)
	// Store before showing: a token shown but not stored would not work.
	if err := atomicfile.WriteFile(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
		return tokenHash{}, fmt.Errorf("store API token hash: %w", err)
	}
	if _, err := fmt.Fprintf(console, "%s%s\n", TokenLinePrefix, tok); err != nil {
		return tokenHash{}, fmt.Errorf("print API token: %w", err)
	}
	log.Info("generated a new API token; it was printed once on the console", "hash_path", path)
	return h, nil
}

func parseTokenHash(b []byte) (tokenHash, error) {
	var h tokenHash
	s := strings.TrimSpace(string(b))
	d, err := hex.DecodeString(s)
	if err != nil || len(d) != len(h) {
		return h, errors.New("not a hex SHA-256")
	}
	copy(h[:], d)
	return h, nil
}
