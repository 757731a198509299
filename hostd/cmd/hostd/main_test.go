package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"testing"
)

func TestRunRefusesWithoutBootInfo(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--boot-info", filepath.Join(t.TempDir(), "none.json")}, &out)
	if err == nil {
		t.Fatal("run() without boot.json = nil, want error")
	}
	if out.Len() != 0 {
		t.Errorf("console = %q, want nothing before the checks pass", out.String())
	}
}

func TestRunFlags(t *testing.T) {
	if err := run(context.Background(), []string{"--nope"}, &bytes.Buffer{}); err == nil {
		t.Error("run(--nope) = nil, want error")
	}
	if err := run(context.Background(), []string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
}
