package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
	for _, flag := range []string{"-advertise", "-role", "-peer", "-peer-listen"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("usage lacks %s:\n%s", flag, out.String())
		}
	}
}

func TestRunStartsAndStops(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("dev-token-0123456789\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-state", filepath.Join(dir, "state"), "-control", "127.0.0.1:0", "-api", "127.0.0.1:0",
		"-ssh", "127.0.0.1:0", "-domain", "42", "-token-file", tok, "-cmdline", "/nonexistent"}, &out)
	if err != nil {
		t.Fatalf("run = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "state", "running-config"))
	if err != nil || !strings.Contains(string(b), "domain id 42") {
		t.Errorf("running-config = %q, %v; want domain id 42", b, err)
	}
	if strings.Contains(out.String(), "dev-token") {
		t.Error("the token was printed")
	}
}
