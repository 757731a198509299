//go:build e2e

package qemutest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	qemutest "github.com/flashvisor/flashvisor/qemu-test"
	guest "github.com/flashvisor/flashvisor/testguest"
)

// The test guest (testguest/, image profile "guest") booted directly under
// QEMU: the checks that later run through hostd in a nested VM, here without
// the host in between, so a failure there is known not to be the guest's.

var readyRE = regexp.MustCompile(`^FVGUEST READY name=(\S+) mac=(\S+) ip=(\S+)$`)

// console sends lines to a guest's serial console and reads its answers.
type console struct {
	t  *testing.T
	vm *qemutest.VM
	w  *io.PipeWriter
}

// startGuest boots the guest image with its console on a pipe and waits for
// the READY marker, returning its fields (name, mac, ip).
func startGuest(t *testing.T, name string, opts ...qemutest.Option) (*console, []string) {
	t.Helper()
	kernel, initrd := qemutest.GuestImage(t)
	r, w := io.Pipe()
	start := time.Now()
	vm := qemutest.Start(t, name, append([]qemutest.Option{
		qemutest.WithKernel(kernel), qemutest.WithInitrd(initrd),
		qemutest.WithAppend("fvguest.name=" + name),
		qemutest.WithMemory(256), qemutest.WithCPUs(1),
		qemutest.WithNoReboot(), qemutest.WithConsoleInput(r),
		qemutest.WithTimeout(5 * time.Minute)}, opts...)...)
	// Before the harness's cleanup (cleanups run last first): its copy of
	// the console input ends when the pipe does.
	t.Cleanup(func() { w.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := vm.WaitConsole(ctx, readyRE)
	if err != nil {
		t.Fatalf("no READY marker: %v", err)
	}
	t.Logf("%s: READY %.2fs after QEMU started (%s), initramfs %s", name, time.Since(start).Seconds(), vm.Accel(), fileSize(t, initrd))
	return &console{t: t, vm: vm, w: w}, readyRE.FindStringSubmatch(line)[1:]
}

func fileSize(t *testing.T, path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.2f MiB", float64(fi.Size())/(1<<20))
}

// ask sends one command line and returns the guest's answer: the first
// FVGUEST line after it.
func (c *console) ask(cmd string) string {
	c.t.Helper()
	seen := len(c.vm.Console())
	sent := time.Now()
	if _, err := io.WriteString(c.w, cmd+"\n"); err != nil {
		c.t.Fatalf("send %q: %v", cmd, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		lines := c.vm.Console()
		for _, l := range lines[seen:] {
			if strings.HasPrefix(l, guest.Marker+" ") {
				c.t.Logf("%q -> %q in %s", cmd, l, time.Since(sent).Round(time.Millisecond))
				return l
			}
		}
		seen = len(lines)
		select {
		case <-ctx.Done():
			c.t.Fatalf("no answer to %q: %v", cmd, ctx.Err())
		case <-c.vm.Exited():
			c.t.Fatalf("no answer to %q: QEMU exited", cmd)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitOff waits for QEMU to exit after the guest announced its power-off.
func (c *console) waitOff() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.vm.WaitConsole(ctx, regexp.MustCompile(`^FVGUEST POWEROFF$`)); err != nil {
		c.t.Errorf("no FVGUEST POWEROFF: %v", err)
	}
	if err := c.vm.Wait(ctx); err != nil {
		c.t.Errorf("QEMU after the power-off: %v, want a clean exit", err)
	}
}

// TestGuestConsoleDiskAndPowerButton: DHCP on virtio-net, the console
// commands, the disk record as the host sees it, and the ACPI button.
func TestGuestConsoleDiskAndPowerButton(t *testing.T) {
	c, ready := startGuest(t, "guest1", qemutest.WithBlankDisk("data", 16))
	if ready[0] != "guest1" || !regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`).MatchString(ready[1]) || ready[2] != "10.0.2.15" {
		t.Errorf("READY name, mac, ip = %q, want guest1, a 52:54:00 MAC, 10.0.2.15 (QEMU's DHCP)", ready)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"ping", "FVGUEST PONG"},
		{"read", "FVGUEST DATA <none>"},
		{"write hello", "FVGUEST WROTE 5"},
		{"read", "FVGUEST DATA hello"},
		{"bogus", "FVGUEST ERR unknown command"},
	} {
		if got := c.ask(tc.cmd); got != tc.want {
			t.Errorf("%q answered %q, want %q", tc.cmd, got, tc.want)
		}
	}
	if got := c.ask("ip"); !strings.HasPrefix(got, "FVGUEST IP 10.0.2.15/24") {
		t.Errorf("ip answered %q, want 10.0.2.15/24 first", got)
	}
	// WROTE comes after fsync: the record is in the disk file now.
	b, err := os.ReadFile(c.vm.DiskPath("data"))
	if err != nil {
		t.Fatal(err)
	}
	if text, err := guest.DecodeRecord(b[:guest.RecordMax]); err != nil || text != "hello" {
		t.Errorf("record in the disk file = %q, %v; want hello", text, err)
	}
	if _, err := c.vm.QMP(context.Background(), "system_powerdown", nil); err != nil {
		t.Fatal(err)
	}
	c.waitOff()
}

// TestGuestStaticIPOnE1000: a static address from the command line on an
// emulated e1000, no disk, and the poweroff command.
func TestGuestStaticIPOnE1000(t *testing.T) {
	c, ready := startGuest(t, "guest2", qemutest.WithNICModel("e1000"),
		qemutest.WithAppend("fvguest.ip=192.168.100.11/24"))
	if ready[2] != "192.168.100.11" {
		t.Errorf("READY ip = %q, want 192.168.100.11", ready[2])
	}
	if got := c.ask("ip"); !strings.HasPrefix(got, "FVGUEST IP 192.168.100.11/24") {
		t.Errorf("ip answered %q, want 192.168.100.11/24 first", got)
	}
	if got := c.ask("read"); got != "FVGUEST ERR no disk" {
		t.Errorf("read without a disk answered %q, want FVGUEST ERR no disk", got)
	}
	if _, err := io.WriteString(c.w, "poweroff\n"); err != nil {
		t.Fatal(err)
	}
	c.waitOff()
}
