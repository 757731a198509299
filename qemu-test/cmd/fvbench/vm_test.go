package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostdArgv is shaped like hostd's QEMU command (hostd/qemuargs goldens).
var hostdArgv = []string{
	"-name", "guest=b0,debug-threads=on", "-nodefaults", "-accel", "kvm", "-m", "256M",
	"-chardev", "socket,id=qmp,path=/run/flashvisor/vms/b0/qmp.sock,server=on,wait=off",
	"-mon", "chardev=qmp,mode=control",
	"-chardev", "socket,id=charserial0,path=/run/flashvisor/vms/b0/serial.sock,server=on,wait=off",
	"-device", "isa-serial,chardev=charserial0,id=serial0",
	"-kernel", "/vmfs/volumes/u1/guest/vmlinuz",
	"-append", "console=ttyS0 fvguest.name=b0 fvguest.ip=none",
	"-netdev", "tap,id=hostnet0,fd=3,vhost=on,vhostfd=4",
	"-device", "virtio-net-pci,netdev=hostnet0,id=ethernet0,mac=00:50:56:40:00:01",
	"-device", "pcie-root-port,id=hotplug0,bus=pcie.0,chassis=10",
	"-pidfile", "/run/flashvisor/vms/b0/qemu.pid",
}

func TestByHandArgs(t *testing.T) {
	got, dropped, err := byHandArgs(hostdArgv, "b0", "/run/x")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got, " ")
	for _, want := range []string{
		"-chardev socket,id=qmp,path=/run/x/qmp.sock,server=on,wait=off",
		"-chardev file,id=charserial0,path=/run/x/serial-" + namePlaceholder + ".log -device isa-serial,chardev=charserial0",
		"-append console=ttyS0 fvguest.name=" + namePlaceholder + " fvguest.ip=none",
		"-device pcie-root-port,id=hotplug0",
		"-pidfile /run/x/qemu.pid",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("byHandArgs() = %q, want it to contain %q", joined, want)
		}
	}
	if strings.Contains(joined, "netdev") || strings.Contains(joined, "/run/flashvisor") {
		t.Errorf("byHandArgs() = %q, want no NIC and nothing in hostd's run folder", joined)
	}
	if len(dropped) != 4 {
		t.Errorf("dropped = %q, want the -netdev and its -device", dropped)
	}
	if _, _, err := byHandArgs(hostdArgv, "other", "/run/x"); err == nil {
		t.Error("byHandArgs(name not in -append) succeeded, want an error")
	}
	if _, _, err := byHandArgs([]string{"-m", "1G"}, "b0", "/run/x"); err == nil {
		t.Error("byHandArgs(no serial) succeeded, want an error")
	}
}

// TestByHandShell runs the by-hand script with a fake QEMU that writes the
// guest's marker, as named by its -append, to the serial file.
func TestByHandShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if _, err := exec.LookPath("usleep"); err != nil {
		t.Skip("no usleep (busybox has it)")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "qemu")
	// Prints the argument after -append with its fvguest.name, then waits.
	os.WriteFile(fake, []byte(`#!/bin/sh
while [ $# -gt 0 ]; do
	case "$1" in -append) app=$2 ;; -chardev) case "$2" in file,*) f=${2##*path=} ;; esac ;; esac
	shift
done
sleep 0.2
for w in $app; do case $w in fvguest.name=*) echo "FVGUEST READY name=${w#fvguest.name=} mac=none ip=none" >> $f ;; esac; done
exec sleep 60
`), 0o755)
	args, _, err := byHandArgs(hostdArgv, "b0", byHandDir)
	if err != nil {
		t.Fatal(err)
	}
	// The script's folder is fixed; use a private one for the test.
	script := strings.ReplaceAll(byHandShell(fake, dir, args), byHandDir, filepath.Join(dir, "run"))
	p := filepath.Join(dir, "byhand.sh")
	os.WriteFile(p, []byte(script), 0o644)
	cmd := exec.Command(sh, p, "7")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("by-hand script did not end")
	}
	if err != nil || !strings.Contains(string(out), "FVGUEST READY name=bh7 mac=none") || !strings.HasSuffix(string(out), "FVB-BYHAND-END-7\n") {
		t.Errorf("by-hand script: %v, output:\n%s\nscript:\n%s", err, out, script)
	}
}

func TestShellQuote(t *testing.T) {
	if got, want := shellQuote("a'b"+namePlaceholder+"c"), `'a'\''b'"bh$1"'c'`; got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}

func TestMetricValue(t *testing.T) {
	text := "# HELP process_resident_memory_bytes x\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 2.5e+07\nprocess_resident_memory_bytes_other 1\n"
	if v, err := metricValue(text, "process_resident_memory_bytes"); err != nil || v != 25e6 {
		t.Errorf("metricValue = %v, %v; want 2.5e7", v, err)
	}
	if _, err := metricValue(text, "missing"); err == nil {
		t.Error("metricValue(missing) succeeded")
	}
}
