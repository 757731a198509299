//go:build e2e

package qemutest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

const apiPort = 443

var shellAnswer = regexp.MustCompile(`(^|\s)SHELL-42\s*$`)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// buildFvctl builds the operator CLI: the e2e tests drive hosts through it
// and the Go API client only, like an operator would.
func buildFvctl(t *testing.T) string {
	t.Helper()
	root, err := qemutest.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fvctl")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fvctl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build fvctl: %v\n%s", err, out)
	}
	return bin
}

// fvctl runs the CLI against a host and returns its output and error.
func fvctl(t *testing.T, bin, configDir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--config", configDir}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + configDir}
	out, err := cmd.CombinedOutput()
	t.Logf("fvctl %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

func bootHost(t *testing.T, name string, opts ...qemutest.Option) *qemutest.VM {
	kernel, initrd := qemutest.HostImage(t)
	base := []qemutest.Option{
		qemutest.WithKernel(kernel), qemutest.WithInitrd(initrd),
		qemutest.WithForward(apiPort), qemutest.WithTimeout(15 * time.Minute),
	}
	return qemutest.Start(t, name, append(base, opts...)...)
}

func waitAPI(t *testing.T, vm *qemutest.VM, token string) (*client.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, fp, err := vm.WaitAPI(ctx, apiPort, token)
	if err != nil {
		t.Fatalf("WaitAPI: %v", err)
	}
	return c, fp
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		if p := hostPanics(t); len(p) > 0 {
			t.Fatalf("%s: not reached: an emulated host failed (%s); last: %v", what, strings.Join(p, "; "), err)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: not reached after %s: %v", what, d, err)
}

// nestedStall fails the test for a nested VM that stayed stalled in early
// boot after its reset, noting it as the emulator fault it is (run-e2e
// runs the test again).
func nestedStall(t *testing.T, format string, args ...any) {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	msg := fmt.Sprintf(format, args...)
	if err := qemutest.NoteFault(filepath.Join(qemutest.DefaultStateRoot(), top), "nested VM stalled: "+msg); err != nil {
		t.Logf("noting the fault: %v", err)
	}
	t.Fatalf("%s (a nested VM stalled in early boot twice: an emulator fault)", msg)
}

// hostPanics are the kernel panics of this test's emulated hosts (a
// fault of QEMU's nested-SVM emulation under TCG, see docs/design.md):
// waiting on a dead host is pointless, and run-e2e runs such a test again.
func hostPanics(t *testing.T) []string {
	top, _, _ := strings.Cut(t.Name(), "/")
	return qemutest.PanicsSeen(filepath.Join(qemutest.DefaultStateRoot(), top))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func hostdService(c *client.Client, t *testing.T) (api.Service, error) {
	svcs, err := c.Services(ctx(t))
	if err != nil {
		return api.Service{}, err
	}
	for _, s := range svcs {
		if s.Name == "hostd" {
			return s, nil
		}
	}
	return api.Service{}, errors.New("hostd not listed")
}

// TestHostLifecycle boots a host with a blank state disk and walks the
// foundation: API over TLS with the token, KVM inside the emulated host,
// supervision, reboot with the same identity, shutdown, and a fresh boot of
// the same state disk.
func TestHostLifecycle(t *testing.T) {
	fv := buildFvctl(t)
	token := qemutest.RandomToken(t)
	keyboard, typing := io.Pipe()
	defer typing.Close()
	vm := bootHost(t, "host1", qemutest.WithConsoleInput(keyboard),
		qemutest.WithBlankDisk("state", 64),
		qemutest.WithAppend("flashvisor.initstate=/dev/vda", "flashvisor.token="+token, "flashvisor.hostname=e2e-host1"))
	c, fp := waitAPI(t, vm, token)

	// No shell unless asked for: what is typed on the console goes nowhere.
	if _, err := io.WriteString(typing, "echo SHELL-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for _, l := range vm.Console() {
		if shellAnswer.MatchString(l) {
			t.Errorf("a shell answered on the console without flashvisor.shell: %q", l)
		}
	}

	h, err := c.Host(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host: %+v", h)
	if h.Hostname != "e2e-host1" || !uuidRE.MatchString(h.UUID) || !h.PersistentState ||
		h.CPUs < 1 || h.MemoryBytes < 1<<30 || !strings.HasSuffix(h.Kernel, "-amd64") || h.Version == "" || h.Fingerprint != fp {
		t.Errorf("GET /api/v1/host = %+v; want hostname e2e-host1, a uuid, persistent state, cpus, memory, a Debian kernel, a version and fingerprint %s", h, fp)
	}
	if !h.KVM {
		t.Errorf("kvm = false inside the emulated host; want true (nested SVM on -cpu max)")
	}
	if s, err := hostdService(c, t); err != nil || s.State != api.ServiceRunning || s.PID == 0 {
		t.Errorf("hostd service = %+v, %v; want running", s, err)
	}

	t.Run("auth", func(t *testing.T) {
		addr := vm.HostAddr(apiPort)
		bad, err := client.New(client.Options{Addr: addr, Token: "wrong-token-0123456789", Fingerprint: fp})
		if err != nil {
			t.Fatal(err)
		}
		var ae *client.APIError
		if _, err := bad.Host(ctx(t)); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != api.ErrUnauthorized {
			t.Errorf("Host with a wrong token = %v, want 401 %s", err, api.ErrUnauthorized)
		}
		none, _ := client.New(client.Options{Addr: addr, Fingerprint: fp})
		if _, err := none.Services(ctx(t)); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("Services without a token = %v, want 401", err)
		}
		if err := none.Healthz(ctx(t)); err != nil {
			t.Errorf("healthz without a token = %v, want ok", err)
		}
		cfg := t.TempDir()
		wrongFP := strings.Repeat("AB:", 31) + "AB"
		out, err := fvctl(t, fv, cfg, "--host", addr, "--token", token, "--fingerprint", wrongFP, "host", "info")
		if err == nil || !strings.Contains(strings.ToLower(out), "fingerprint") {
			t.Errorf("fvctl with a wrong fingerprint: err=%v out=%q; want a refusal naming the fingerprint", err, out)
		}
		out, err = fvctl(t, fv, cfg, "--host", addr, "--token", token, "--fingerprint", fp, "host", "info")
		if err != nil || !strings.Contains(out, "e2e-host1") {
			t.Errorf("fvctl host info with the right fingerprint: err=%v out=%q", err, out)
		}
	})

	t.Run("supervision", func(t *testing.T) {
		before, err := hostdService(c, t)
		if err != nil {
			t.Fatal(err)
		}
		// hostd asks init to kill hostd itself: the answer may be lost.
		_ = c.SignalService(ctx(t), "hostd", "KILL")
		waitFor(t, "hostd restarted", 2*time.Minute, func() error {
			s, err := hostdService(c, t)
			if err != nil {
				return err
			}
			if s.State != api.ServiceRunning || s.PID == before.PID || s.Restarts != before.Restarts+1 {
				return errors.New("not yet: " + s.State)
			}
			if !strings.Contains(s.LastExit, "KILL") {
				t.Errorf("last exit = %q, want the SIGKILL", s.LastExit)
			}
			return nil
		})
		log, err := c.ServiceLog(ctx(t), "hostd")
		if err != nil || len(log.Lines) == 0 {
			t.Errorf("ServiceLog(hostd) = %d lines, %v; want the ring buffer", len(log.Lines), err)
		}
		for _, l := range log.Lines {
			if strings.Contains(l, token) {
				t.Errorf("hostd log contains the API token: %q", l)
			}
		}
		m, err := c.Metrics(ctx(t))
		if err != nil || !strings.Contains(m, "hostd") {
			t.Errorf("metrics = %v; want series naming hostd", err)
		}
	})

	// The management address moved from eth0 (init, at boot) to vswif0 on
	// the switch, by DHCP from the test network's server (QEMU's); a
	// change that cuts the API off comes back by itself (VMK-3).
	t.Run("management-network", func(t *testing.T) {
		nics, err := c.VMKNICs(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var vswif api.VMKNICStatus
		for _, n := range nics {
			if n.Name == "vswif0" {
				vswif = n
			}
		}
		if vswif.Mode != api.VMKIPv4DHCP || vswif.Address != "10.0.2.15/24" || !vswif.Up || vswif.LeaseExpires.IsZero() ||
			!slices.Contains(vswif.Services, api.VMKServiceManagement) || vswif.PortGroup != "Management Network" {
			t.Errorf("vswif0 = %+v; want up on Management Network, DHCP lease 10.0.2.15/24, tagged management", vswif)
		}
		card, err := c.VEMCard(ctx(t))
		if err != nil || !card.Programmed || card.Ports[api.PortEth] != 1 || card.Mode != api.SwitchStandalone {
			t.Errorf("vem card = %+v, %v; want programmed standalone with one uplink", card, err)
		}
		ports, err := c.VEMPorts(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p.State != api.PortUp {
				t.Errorf("port %s (%s) is %s (%s), want up", p.Name, p.Owner, p.State, p.Reason)
			}
		}
		evs, err := c.Events(ctx(t), 0)
		if err != nil {
			t.Fatal(err)
		}
		since := uint64(0)
		for _, e := range evs {
			since = max(since, e.Seq)
		}
		// A static address off the forwarded one: the API is cut off.
		ch, err := c.UpdateVMKNIC(ctx(t), api.VMKNIC{Name: "vswif0", PortGroup: "Management Network",
			IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.0.2.99/24", Gateway: "10.0.2.2"}, Services: []string{api.VMKServiceManagement}})
		if err != nil || ch == nil {
			t.Fatalf("change vswif0 = %+v, %v; want a guarded change", ch, err)
		}
		t.Logf("guarded change %s, rollback at %s", ch.ID, ch.RollbackAt)
		waitFor(t, "API cut off", time.Minute, func() error {
			if _, err := c.Host(ctx(t)); err == nil {
				return errors.New("still answering")
			}
			return nil
		})
		waitFor(t, "API back after the rollback", 3*time.Minute, func() error {
			_, err := c.Host(ctx(t))
			return err
		})
		evs, err = c.Events(ctx(t), since)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(evs, func(e api.Event) bool { return e.Kind == "network.rollback" && strings.Contains(e.Message, ch.ID) }) {
			t.Errorf("events after the rollback = %+v; want network.rollback for %s", evs, ch.ID)
		}
		if err := c.ConfirmNetworkChange(ctx(t), ch.ID); err == nil {
			t.Errorf("confirming a rolled-back change succeeded")
		}
	})

	t.Run("reboot", func(t *testing.T) {
		if err := c.Reboot(ctx(t)); err != nil {
			t.Fatal(err)
		}
		// The old host must go away before we judge the new one.
		waitFor(t, "host going down", 2*time.Minute, func() error {
			h2, err := c.Host(ctx(t))
			if err == nil && h2.UptimeSeconds >= h.UptimeSeconds {
				return errors.New("still up")
			}
			return nil
		})
		waitFor(t, "host back after reboot", 5*time.Minute, func() error {
			h2, err := c.Host(ctx(t)) // the pinned fingerprint must still work
			if err != nil {
				return err
			}
			if h2.UUID != h.UUID || h2.Fingerprint != fp {
				t.Fatalf("after reboot: uuid %s fingerprint %s; want %s %s", h2.UUID, h2.Fingerprint, h.UUID, fp)
			}
			return nil
		})
	})

	t.Run("shutdown", func(t *testing.T) {
		if _, err := fvctl(t, fv, t.TempDir(), "--host", vm.HostAddr(apiPort), "--token", token, "--fingerprint", fp, "host", "shutdown"); err != nil {
			t.Fatalf("fvctl host shutdown: %v", err)
		}
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := vm.Wait(wctx); err != nil {
			t.Fatalf("QEMU after shutdown: %v, want a clean exit", err)
		}
	})

	// A new machine with the same state disk is the same host.
	again := bootHost(t, "host1-again",
		qemutest.WithDisk(vm.DiskPath("state"), "state"),
		qemutest.WithAppend("flashvisor.initstate=/dev/vda", "flashvisor.token="+token))
	c2, fp2 := waitAPI(t, again, token)
	h2, err := c2.Host(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h2.UUID != h.UUID || fp2 != fp || !h2.PersistentState {
		t.Errorf("same state disk: uuid %s fingerprint %s persistent %v; want %s %s true", h2.UUID, fp2, h2.PersistentState, h.UUID, fp)
	}
}

// TestHostWithoutState boots with no state disk and a static management
// address and the emergency shell: the host runs with state in RAM and says
// so, the shell answers on the console; Ctrl-Alt-Del reboots it and the ACPI power button powers
// it off.
func TestHostWithoutState(t *testing.T) {
	token := qemutest.RandomToken(t)
	// A static management address (user-mode networking forwards to .15).
	keyboard, typing := io.Pipe()
	defer typing.Close()
	vm := bootHost(t, "nostate", qemutest.WithConsoleInput(keyboard),
		qemutest.WithAppend("flashvisor.token="+token, "flashvisor.mgmt=10.0.2.15/24,10.0.2.2", "flashvisor.shell=true"))
	c, _ := waitAPI(t, vm, token)

	// flashvisor.shell=true gives an emergency shell on the console.
	if _, err := io.WriteString(typing, "echo SHELL-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitConsole(ctx(t), shellAnswer); err != nil {
		t.Errorf("emergency shell did not answer on the console: %v", err)
	}
	// Module options on the kernel command line reach the module: init
	// loads kvm_amd by name, with the harness's kvm_amd.npt=0 under TCG.
	if vm.Accel() == "tcg" {
		if _, err := io.WriteString(typing, "echo NPT-$(cat /sys/module/kvm_amd/parameters/npt)\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitConsole(ctx(t), regexp.MustCompile(`(^|\s)NPT-N\s*$`)); err != nil {
			t.Errorf("kvm_amd's npt parameter is not N (kvm_amd.npt=0 on the command line): %v", err)
		}
	}
	// The harness's frozen-host probe (hostHung): a running host echoes;
	// one whose vCPUs QEMU stopped does not, and echoes again once resumed.
	if echoed, err := consoleEcho(vm, typing, time.Minute); !echoed || err != nil {
		t.Errorf("console echo of a running host = %v, %v; want true", echoed, err)
	}
	if _, err := vm.QMP(ctx(t), "stop", nil); err != nil {
		t.Fatal(err)
	}
	if echoed, err := consoleEcho(vm, typing, 15*time.Second); echoed || err != nil {
		t.Errorf("console echo of a stopped host = %v, %v; want false", echoed, err)
	}
	if _, err := vm.QMP(ctx(t), "cont", nil); err != nil {
		t.Fatal(err)
	}
	if echoed, err := consoleEcho(vm, typing, time.Minute); !echoed || err != nil {
		t.Errorf("console echo of a resumed host = %v, %v; want true", echoed, err)
	}
	h, err := c.Host(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.PersistentState || h.ManagementAddress != "10.0.2.15" {
		t.Errorf("host = %+v; want persistent_state false and the static address 10.0.2.15", h)
	}

	// Ctrl-Alt-Del on the console reboots through init's funnel (the kernel
	// sends init SIGINT), and with state in RAM the host gets a new identity.
	keys := map[string]any{"keys": []map[string]string{
		{"type": "qcode", "data": "ctrl"}, {"type": "qcode", "data": "alt"}, {"type": "qcode", "data": "delete"}}}
	if _, err := vm.QMP(ctx(t), "send-key", keys); err != nil {
		t.Fatal(err)
	}
	// The rebooted host has a new certificate: the old pin must refuse it.
	waitFor(t, "reboot after Ctrl-Alt-Del", 5*time.Minute, func() error {
		_, err := c.Host(ctx(t))
		if errors.Is(err, client.ErrFingerprintMismatch) {
			return nil
		}
		return fmt.Errorf("old identity still answering or host down: %v", err)
	})
	c2, _ := waitAPI(t, vm, token)
	h2, err := c2.Host(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h2.UUID == h.UUID || h2.PersistentState {
		t.Errorf("after reboot without state: uuid %s (before %s), persistent %v; want a new uuid, no persistence", h2.UUID, h.UUID, h2.PersistentState)
	}
	if _, err := vm.QMP(ctx(t), "system_powerdown", nil); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("QEMU after the power button: %v, want a clean exit", err)
	}
}

// hostHung checks, once a test has failed, that an emulated host's kernel
// still runs (consoleEcho). A host that shows nothing for 90 s froze
// whole: under TCG, QEMU's nested-SVM emulation sometimes stops the
// emulated host as a nested VM starts, with no panic and no reset (seen as
// host A powered on the VSM VM). That is noted as the emulator fault it
// is, like a panic, so run-e2e runs the test again; the caller skips its
// API diagnostics for a frozen host, which would only time out. A host
// that already left a fault marker is not probed.
func hostHung(t *testing.T, name string, vm *qemutest.VM, typing io.Writer) bool {
	t.Helper()
	if len(hostPanics(t)) > 0 || typing == nil {
		return false
	}
	echoed, err := consoleEcho(vm, typing, 90*time.Second)
	if err != nil {
		t.Logf("host %s: not probed: %v", name, err)
		return false
	}
	if echoed {
		return false
	}
	top, _, _ := strings.Cut(t.Name(), "/")
	msg := fmt.Sprintf("host %s hung: no echo on its console 90 s after typing on it", name)
	if err := qemutest.NoteFault(filepath.Join(qemutest.DefaultStateRoot(), top), msg); err != nil {
		t.Logf("noting the fault: %v", err)
	}
	t.Logf("%s (an emulator fault: the test will be run again)", msg)
	return true
}

// consoleEcho types a line on a host's emergency shell and tells whether
// any trace of it reached the console within d (the kernel's tty echoes a
// typed line even while a command runs, so only a frozen kernel shows
// nothing). err is set when it could not tell: the line could not be typed
// or QEMU is gone.
func consoleEcho(vm *qemutest.VM, typing io.Writer, d time.Duration) (bool, error) {
	probe := fmt.Sprintf("ALIVE-%d", time.Now().UnixNano())
	typed := make(chan error, 1)
	go func() {
		// A frozen guest stops reading its UART, and QEMU its stdin: the
		// write may block until the VM is closed.
		_, err := fmt.Fprintf(typing, "\necho %s\n", probe)
		typed <- err
	}()
	c, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := vm.WaitConsole(c, regexp.MustCompile(regexp.QuoteMeta(probe))); err == nil {
		return true, nil
	}
	select {
	case err := <-typed:
		if err != nil {
			return false, fmt.Errorf("typing on the console: %w", err)
		}
	default:
	}
	select {
	case <-vm.Exited():
		return false, errors.New("QEMU exited")
	default:
	}
	return false, nil
}
