package image

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// goEnv pins everything that changes a Go binary's bytes besides the source
// and the toolchain; the caller's GOFLAGS and CGO settings are overridden.
var goEnv = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "GOFLAGS=", "GOEXPERIMENT="}

// buildPrograms builds the Go programs into dir with one go build (the
// binaries are named after the package's last element) and returns the
// binaries by destination path and the toolchain version.
func buildPrograms(ctx context.Context, repo, dir string, progs []Program) (map[string]string, string, error) {
	env := append(os.Environ(), goEnv...)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", dir + "/"}
	bins := map[string]string{}
	for _, p := range progs {
		bin := filepath.Join(dir, path.Base(p.Pkg))
		if _, dup := bins[bin]; dup {
			return nil, "", fmt.Errorf("programs %s: two packages named %s", p.Pkg, path.Base(p.Pkg))
		}
		bins[bin] = p.Dest
		args = append(args, p.Pkg)
	}
	if _, err := goCommand(ctx, repo, env, args...); err != nil {
		return nil, "", err
	}
	ver, err := goCommand(ctx, repo, env, "env", "GOVERSION")
	if err != nil {
		return nil, "", err
	}
	out := map[string]string{}
	for bin, dest := range bins {
		out[dest] = bin
	}
	return out, strings.TrimSpace(string(ver)), nil
}

func goCommand(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	return commandEnv(ctx, dir, env, "go", args...)
}
