package hostd

import (
	"io"
	"log/slog"
	"path/filepath"

	"github.com/flashvisor/flashvisor/internal/apitoken"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// TokenLinePrefix starts the console line that shows a generated API token.
const TokenLinePrefix = "API token (shown once): "

// tokenHash is the SHA-256 of the API bearer token: hostd keeps only the
// hash (internal/apitoken).
type tokenHash = apitoken.Hash

// resolveToken decides which token the API accepts: the kernel command
// line's flashvisor.token, the stored hash, or a new random token printed
// once on console (apitoken.Resolve).
func resolveToken(stateDir, cmdlineToken string, console io.Writer, log *slog.Logger) (tokenHash, error) {
	return apitoken.Resolve(filepath.Join(stateDir, layout.TokenHashFile), cmdlineToken, "kernel command line", TokenLinePrefix, console, log)
}
