package vsm

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
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// TokenLinePrefix starts the console line that shows a generated token.
const TokenLinePrefix = "VSM API token (shown once): "

// tokenHash is the SHA-256 of the bearer token, which is also the SSH
// password of "admin". Like hostd, the VSM keeps only the hash, in memory
// and in the state directory.
type tokenHash [sha256.Size]byte

func hashToken(tok string) tokenHash { return sha256.Sum256([]byte(tok)) }

// matches compares in constant time; hashing first makes it
// length-independent too.
func (h tokenHash) matches(tok string) bool {
	got := hashToken(tok)
	return subtle.ConstantTimeCompare(got[:], h[:]) == 1
}

// resolveToken decides which token the VSM accepts, mirroring hostd: an
// explicit token (Options.Token, from -token-file), else the kernel
// command line's flashvisor.token (its hash is stored so it stays valid
// after the key is removed), else the stored hash, else a new random
// token printed once on console and never logged.
func resolveToken(stateDir, explicit, cmdlineFile string, console io.Writer, log *slog.Logger) (tokenHash, error) {
	path := filepath.Join(stateDir, layout.TokenHashFile)
	tok := explicit
	src := "explicit token"
	if tok == "" && cmdlineFile != "" {
		b, err := os.ReadFile(cmdlineFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return tokenHash{}, fmt.Errorf("kernel command line: %w", err)
		}
		// Parse problems are init's to report: logging them could echo
		// a mistyped secret.
		c, _ := cmdline.Parse(string(b))
		tok, src = c.Token, "kernel command line"
	}
	if tok != "" {
		h := hashToken(tok)
		wrote, err := atomicfile.WriteIfChanged(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600)
		if err != nil {
			return tokenHash{}, fmt.Errorf("store API token hash: %w", err)
		}
		log.Info("API token", "source", src, "hash_stored", wrote)
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
	tok = base64.RawURLEncoding.EncodeToString(raw[:])
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
	d, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(d) != len(h) {
		return h, errors.New("not a hex SHA-256")
	}
	copy(h[:], d)
	return h, nil
}
