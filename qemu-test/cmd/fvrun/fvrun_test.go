package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

// fakeQEMU writes a script that saves its arguments to DIR/argv, prints a
// console line and exits.
func fakeQEMU(t *testing.T) (binary, argvFile string) {
	t.Helper()
	dir := t.TempDir()
	argvFile = filepath.Join(dir, "argv")
	binary = filepath.Join(dir, "qemu")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argvFile + "\necho 'Linux version fake'\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, argvFile
}

func TestRunCreatesDisksAndReusesToken(t *testing.T) {
	t.Setenv("FV_TOKEN", "")
	qemu, argvFile := fakeQEMU(t)
	runDir := filepath.Join(t.TempDir(), "run")
	args := []string{"-qemu", qemu, "-run-dir", runDir, "-kernel", "/k", "-api-port", "0", "-append", "quiet x=1"}
	var out bytes.Buffer
	if err := run(context.Background(), args, strings.NewReader(""), &out, nil); err != nil {
		t.Fatalf("run = %v\n%s", err, &out)
	}
	if !strings.Contains(out.String(), "Linux version fake") {
		t.Errorf("console not shown on stdout:\n%s", &out)
	}
	for name, size := range map[string]int64{"state.img": 64 << 20, "spare.img": 8 << 30} {
		fi, err := os.Stat(filepath.Join(runDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != size || fi.Sys().(*syscall.Stat_t).Blocks != 0 {
			t.Errorf("%s: size %d, %d blocks; want %d bytes, sparse", name, fi.Size(), fi.Sys().(*syscall.Stat_t).Blocks, size)
		}
	}
	tok, err := os.ReadFile(filepath.Join(runDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	if !regexp.MustCompile(`^[A-Za-z0-9]{32,}$`).MatchString(token) {
		t.Errorf("saved token %q, want 32+ of [A-Za-z0-9]", token)
	}
	argv, _ := os.ReadFile(argvFile)
	a := string(argv)
	wantAppend := strings.Join(qemutest.DefaultAppend(), " ") + " flashvisor.token=" + token + " flashvisor.hostname=fv-run-1 flashvisor.initstate=/dev/vda quiet x=1"
	// Under TCG (no usable KVM here) the harness adds its TCG parameters.
	if !strings.Contains(a, "\n"+wantAppend+"\n") && !strings.Contains(a, "\n"+wantAppend+" "+strings.Join(qemutest.TCGAppend(), " ")+"\n") {
		t.Errorf("QEMU arguments lack the kernel command line %q (+ the TCG parameters):\n%s", wantAppend, a)
	}
	for _, want := range []string{
		"file=" + filepath.Join(runDir, "state.img") + ",format=raw,if=none,id=disk0",
		"file=" + filepath.Join(runDir, "spare.img") + ",format=raw,if=none,id=disk1",
		"hostfwd=tcp:127.0.0.1:",
		"\n4096\n",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, a)
		}
	}

	// A second run keeps the disks and the token.
	os.WriteFile(filepath.Join(runDir, "state.img"), []byte("formatted"), 0o644)
	out.Reset()
	if err := run(context.Background(), args, strings.NewReader(""), &out, nil); err != nil {
		t.Fatalf("second run = %v\n%s", err, &out)
	}
	if b, _ := os.ReadFile(filepath.Join(runDir, "state.img")); string(b) != "formatted" {
		t.Error("second run replaced the state disk")
	}
	argv, _ = os.ReadFile(argvFile)
	if !strings.Contains(string(argv), "flashvisor.token="+token+" ") {
		t.Errorf("second run did not reuse token %s:\n%s", token, argv)
	}
}

func TestRunFailsWithoutImage(t *testing.T) {
	err := run(context.Background(), []string{"-image", t.TempDir(), "-run-dir", t.TempDir()}, strings.NewReader(""), &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "make image") {
		t.Errorf("run without an image = %v, want a hint to run make image", err)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	if tok, file, err := loadToken(dir, "from-env-0123456789"); err != nil || tok != "from-env-0123456789" || file != "" {
		t.Errorf("loadToken(env) = %q, %q, %v, want the env token and no file", tok, file, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "token")); !os.IsNotExist(err) {
		t.Errorf("loadToken(env) wrote a token file (%v)", err)
	}
	first, file, err := loadToken(dir, "")
	if err != nil || file != filepath.Join(dir, "token") {
		t.Fatalf("loadToken() = %q, %q, %v", first, file, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if again, _, _ := loadToken(dir, ""); again != first {
		t.Errorf("loadToken() again = %q, want the saved %q", again, first)
	}
}

func TestParseFlagsEnv(t *testing.T) {
	env := map[string]string{"FV_API_PORT": "9443", "FV_HOSTNAME": "lab7"}
	o, err := parseFlags(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.apiPort != 9443 || o.hostname != "lab7" || o.memoryMiB != 4096 || o.cpus != 2 {
		t.Errorf("parseFlags = %+v, want port 9443, hostname lab7, 4096 MiB, 2 CPUs", o)
	}
	if _, err := parseFlags(nil, func(k string) string { return map[string]string{"FV_API_PORT": "x"}[k] }, &bytes.Buffer{}); err == nil {
		t.Error("parseFlags with FV_API_PORT=x succeeded, want an error")
	}
}

func TestReadyBanner(t *testing.T) {
	got := readyBanner("fv-run-1", "127.0.0.1:8443", "TOK", "/r/token", "AB:CD", "/repo/out/bin/fvctl")
	for _, want := range []string{
		"https://127.0.0.1:8443",
		"TOK   (kept in /r/token)",
		"fingerprint: AB:CD",
		"FVCTL_HOST=127.0.0.1:8443 FVCTL_TOKEN=TOK go run ./cmd/fvctl --fingerprint AB:CD host info",
		"FVCTL_HOST=127.0.0.1:8443 FVCTL_TOKEN=TOK /repo/out/bin/fvctl --fingerprint AB:CD host info",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("banner lacks %q:\n%s", want, got)
		}
	}
	if d := cmp.Diff(1, strings.Count(readyBanner("h", "a", "t", "", "f", ""), "fvctl --fingerprint")); d != "" {
		t.Errorf("banner without a built fvctl: fvctl lines (-want +got):\n%s", d)
	}
}
