package fvtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// script writes an executable shell script standing in for a test binary.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", MaxPayload+10)
	spec := Spec{RunID: "abc", Tests: []Test{
		{Name: "ok", Binary: script(t, dir, "ok", `echo "args: $*"; echo "in $(pwd)"; echo to stderr >&2; printf '`+long+`\nno newline'`), Dir: dir, Args: []string{"-test.v=test2json", "-x"}},
		{Name: "fails", Binary: script(t, dir, "fails", "echo FAIL; echo \"env $FVX\"; exit 3"), Env: []string{"FVX=1"}},
		{Name: "missing", Binary: filepath.Join(dir, "missing")},
	}}
	var frames, echo bytes.Buffer
	if err := Run(context.Background(), spec, NewSender(&frames, spec.RunID), &echo); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	c := NewCollector("abc")
	for _, l := range strings.Split(frames.String(), "\n") {
		if l == "" {
			continue
		}
		if !strings.HasPrefix(l, Prefix) {
			t.Errorf("frame line %q lacks the prefix", l)
		}
		c.Add(l)
	}
	if len(c.Errors) != 0 || !c.Done {
		t.Fatalf("Errors %q, Done %v", c.Errors, c.Done)
	}
	wantOut := "args: -test.v=test2json -x\nin " + dir + "\nto stderr\n" + long + "\nno newline"
	if diff := cmp.Diff(wantOut, string(c.Stream(0).Output)); diff != "" {
		t.Errorf("stream 0 output (-want +got):\n%s", diff)
	}
	if s := c.Stream(0); !s.Ended || s.ExitCode != 0 {
		t.Errorf("stream 0 = ended %v code %d, want 0", s.Ended, s.ExitCode)
	}
	if s := c.Stream(1); !s.Ended || s.ExitCode != 3 || string(s.Output) != "FAIL\nenv 1\n" {
		t.Errorf("stream 1 = %+v, want exit 3 with its output", s)
	}
	if s := c.Stream(2); !s.Ended || s.ExitCode != -1 || len(s.Errors) != 1 {
		t.Errorf("stream 2 = %+v, want exit -1 and an error", s)
	}
	if !strings.Contains(echo.String(), "running ok") || !strings.Contains(echo.String(), "FAIL\n") {
		t.Errorf("echo = %q, want the runner's messages and the output lines", echo.String())
	}
}

func TestParseSpec(t *testing.T) {
	good := `{"run_id":"r1","port":"p","tests":[{"name":"a","binary":"/fvtest/0/pkg.test","args":["-test.v"]}],"power_off":true}`
	s, err := ParseSpec([]byte(good))
	if err != nil || s.RunID != "r1" || len(s.Tests) != 1 || !s.PowerOff {
		t.Errorf("ParseSpec(good) = %+v, %v", s, err)
	}
	for _, bad := range []string{
		`{"run_id":"","tests":[]}`,
		`{"run_id":"a b","tests":[]}`,
		`{"run_id":"r","tests":[{"binary":"rel/pkg.test"}]}`,
		`{"run_id":"r","tests":[],"unknown":1}`,
		`not json`,
	} {
		if _, err := ParseSpec([]byte(bad)); err == nil {
			t.Errorf("ParseSpec(%s) = nil error, want one", bad)
		}
	}
}

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{"vport1p1": "org.qemu.guest_agent.0", "vport2p1": PortName} {
		os.MkdirAll(filepath.Join(sys, port), 0o755)
		os.WriteFile(filepath.Join(sys, port, "name"), []byte(name+"\n"), 0o644)
	}
	got, err := FindPort(sys, "/dev", PortName)
	if err != nil || got != "/dev/vport2p1" {
		t.Errorf("FindPort() = %q, %v; want /dev/vport2p1", got, err)
	}
	if _, err := FindPort(sys, "/dev", "absent"); err == nil {
		t.Error("FindPort(absent) = nil error")
	}
}
