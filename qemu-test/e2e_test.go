//go:build e2e

package qemutest

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// These run real QEMU (make e2e). Without KVM they use software emulation;
// budgets below are for that case on 2 cores.

// TestSerialConsoleRealQEMU boots the host kernel alone: its lines must
// arrive on the harness's console, and with no root to mount it panics,
// which panic=-1 and -no-reboot turn into a QEMU exit.
func TestSerialConsoleRealQEMU(t *testing.T) {
	kernel, _ := HostImage(t)
	vm := Start(t, "kernel-only", WithKernel(kernel), WithMemory(512), WithCPUs(1),
		WithNoReboot(), WithTimeout(5*time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := vm.WaitConsole(ctx, regexp.MustCompile(`Linux version \d`)); err != nil {
		t.Fatalf("no kernel banner on the console: %v", err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait() = %v, want QEMU to exit 0 after the panic (-no-reboot)", err)
	}
	if !strings.Contains(strings.Join(vm.Console(), "\n"), "Kernel panic") {
		t.Errorf("console shows no kernel panic; last lines:\n%s", strings.Join(vm.tail(10), "\n"))
	}
}

// TestTimeoutKillsRealQEMU lets the kernel hang after its panic (panic=0,
// the last value wins) and checks that the deadline kills QEMU and reports.
func TestTimeoutKillsRealQEMU(t *testing.T) {
	kernel, _ := HostImage(t)
	rec := newRecordingTB(t)
	vm := Start(rec, "hang", WithKernel(kernel), WithMemory(512), WithCPUs(1),
		WithAppend("panic=0"), WithTimeout(20*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := vm.Wait(ctx); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait() = %v, want ErrTimeout", err)
	}
	rec.runCleanups()
	if _, errs, _ := rec.recorded(); len(errs) != 1 || !strings.Contains(errs[0], "deadline") {
		t.Errorf("Errorf calls = %q, want one timeout report", errs)
	}
	if len(vm.Console()) == 0 {
		t.Error("no console lines before the deadline")
	}
}
