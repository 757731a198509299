package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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

func TestOpenDatastoresKeepsACorruptList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "datastores.json")
	const corrupt = "{not json"
	if err := os.WriteFile(path, []byte(corrupt), 0o644); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	if ds := openDatastores(path, log); ds != nil {
		t.Errorf("openDatastores(corrupt) = %v, want nil (run without datastores)", ds)
	}
	if b, _ := os.ReadFile(path); string(b) != corrupt {
		t.Errorf("datastores.json = %q, want it untouched", b)
	}
	if !strings.Contains(logBuf.String(), "DATASTORES DISABLED") {
		t.Errorf("log lacks a loud line:\n%s", logBuf.String())
	}

	// A missing list is a host without datastores yet.
	if ds := openDatastores(filepath.Join(t.TempDir(), "datastores.json"), log); ds == nil {
		t.Error("openDatastores(missing file) = nil, want a manager")
	}
}
