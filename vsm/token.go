package vsm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/flashvisor/flashvisor/internal/apitoken"
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// TokenLinePrefix starts the console line that shows a generated token.
const TokenLinePrefix = "VSM API token (shown once): "

// tokenHash is the SHA-256 of the bearer token, which is also the SSH
// password of "admin". Like hostd, the VSM keeps only the hash
// (internal/apitoken).
type tokenHash = apitoken.Hash

// resolveToken decides which token the VSM accepts, like hostd: an
// explicit token (Options.Token, from -token-file), else the kernel
// command line's flashvisor.token, else the stored hash, else a new random
// token printed once on console and never logged.
func resolveToken(stateDir, explicit, cmdlineFile string, console io.Writer, log *slog.Logger) (tokenHash, error) {
	tok, src := explicit, "explicit token"
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
	return apitoken.Resolve(filepath.Join(stateDir, layout.TokenHashFile), tok, src, TokenLinePrefix, console, log)
}
