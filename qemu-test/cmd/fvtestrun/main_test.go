package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/qemu-test/fvtest"
)

// Without a port the frames go to stdout, where the harness finds them on
// the console.
func TestRunFramesOnStdout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pkg.test")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"ran $1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := fvtest.Spec{RunID: "r", Tests: []fvtest.Test{{Name: "p", Binary: bin, Args: []string{"-test.v=test2json"}}}}
	b, _ := json.Marshal(spec)
	specPath := filepath.Join(dir, "spec.json")
	os.WriteFile(specPath, b, 0o644)
	var out bytes.Buffer
	if err := run(context.Background(), []string{specPath}, &out); err != nil {
		t.Fatalf("run() = %v", err)
	}
	c := fvtest.NewCollector("r")
	for _, l := range strings.Split(out.String(), "\n") {
		c.Add(l)
	}
	if s := c.Stream(0); !c.Done || len(c.Errors) > 0 || string(s.Output) != "ran -test.v=test2json\n" || !s.Ended || s.ExitCode != 0 {
		t.Errorf("frames on stdout = done %v errors %q stream %+v; output:\n%s", c.Done, c.Errors, s, out.String())
	}
	if err := run(context.Background(), []string{filepath.Join(dir, "absent.json")}, &out); err == nil {
		t.Error("run(missing spec) = nil error")
	}
}
