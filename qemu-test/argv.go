package qemutest

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// chooseAccel picks the accelerator: want is "" (automatic), "kvm" or "tcg";
// kvmUsable says whether /dev/kvm opened read-write.
func chooseAccel(want string, kvmUsable bool) (string, error) {
	switch want {
	case "":
		if kvmUsable {
			return AccelKVM, nil
		}
		return AccelTCG, nil
	case AccelKVM:
		if !kvmUsable {
			return "", fmt.Errorf("accelerator kvm requested but /dev/kvm is not usable")
		}
		return AccelKVM, nil
	case AccelTCG:
		return AccelTCG, nil
	default:
		return "", fmt.Errorf("unknown accelerator %q (want kvm or tcg)", want)
	}
}

// accelArgs returns the -accel and -cpu arguments. Under TCG the CPU model is
// "max" because it exposes SVM: kvm_amd loads in the emulated host and its
// own VMs run nested.
func accelArgs(accel string) []string {
	if accel == AccelKVM {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg", "-cpu", "max"}
}

// accelReason says which accelerator was chosen and why, for the log.
func accelReason(want, got string) string {
	switch {
	case want != "":
		return "accelerator " + got + " (requested)"
	case got == AccelKVM:
		return "accelerator kvm (/dev/kvm is usable)"
	}
	return "accelerator tcg (/dev/kvm not usable): software emulation, -cpu max exposes SVM for nested KVM"
}

// KVMUsable reports whether this machine's /dev/kvm can run the images
// (the rule Start uses to pick the accelerator).
func KVMUsable() bool { return kvmUsable("/dev/kvm", "/sys/module") }

// kvmUsable reports whether the KVM device can be opened read-write, which is
// what QEMU needs (existing but unreadable /dev/kvm is common in containers),
// and is backed by hardware virtualization: kvm_intel or kvm_amd in
// modules (/sys/module). Some cloud machines offer /dev/kvm through PVM
// (kvm_pvm), which runs only kernels built as PVM guests: Debian's stock
// kernel hangs in early boot there, so such a /dev/kvm does not count.
func kvmUsable(device, modules string) bool {
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat(filepath.Join(modules, m)); err == nil {
			return true
		}
	}
	return false
}

// netdev is a NIC backend: a QEMU -netdev type and its options without id.
// User-mode networking for the management NIC, "socket" (connect= a Hub)
// for NICs on a segment shared between hosts.
type netdev struct {
	Type string   // "user" or "socket"
	Opts []string // e.g. "hostfwd=tcp:127.0.0.1:40000-:443", "connect=127.0.0.1:40001"
}

// nic is one guest NIC and its backend.
type nic struct {
	ID      string
	Model   string
	MAC     string
	Backend netdev
}

// machine is everything the QEMU command line is made of, fully resolved
// (paths, ports, accelerator), so that args is a pure function.
type machine struct {
	Accel     string
	MemoryMiB int
	CPUs      int
	Kernel    string
	Initrd    string
	Append    []string
	Disks     []disk // path and serial resolved
	NICs      []nic
	QMPSocket string
	NoReboot  bool
	Extra     []string
}

// args builds QEMU's arguments (without the binary).
func (m machine) args() []string {
	a := []string{
		"-nodefaults", "-no-user-config",
		"-machine", "q35",
	}
	a = append(a, accelArgs(m.Accel)...)
	a = append(a,
		"-m", strconv.Itoa(m.MemoryMiB),
		"-smp", strconv.Itoa(m.CPUs),
		// Headless: no display, no VGA (-nodefaults), no human monitor.
		"-display", "none",
		"-monitor", "none",
		// The console: the harness reads QEMU's stdout line by line and may
		// feed its stdin. signal=off so that a terminal on stdin never turns
		// Ctrl-C into a QEMU exit behind the harness's back.
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-qmp", "unix:"+qemuEscape(m.QMPSocket)+",server=on,wait=off",
		// Entropy for first-boot key generation without waiting on jitter.
		"-device", "virtio-rng-pci",
	)
	if m.Kernel != "" {
		a = append(a, "-kernel", m.Kernel)
		if len(m.Append) > 0 {
			a = append(a, "-append", strings.Join(m.Append, " "))
		}
	}
	if m.Initrd != "" {
		a = append(a, "-initrd", m.Initrd)
	}
	for i, d := range m.Disks {
		id := fmt.Sprintf("disk%d", i)
		a = append(a,
			"-drive", "file="+qemuEscape(d.path)+",format=raw,if=none,id="+id,
			"-device", "virtio-blk-pci,drive="+id+",serial="+qemuEscape(d.serial))
	}
	for _, n := range m.NICs {
		nd := n.Backend.Type + ",id=" + n.ID
		if len(n.Backend.Opts) > 0 {
			nd += "," + strings.Join(n.Backend.Opts, ",")
		}
		a = append(a, "-netdev", nd, "-device", n.Model+",netdev="+n.ID+",mac="+n.MAC)
	}
	if m.NoReboot {
		a = append(a, "-no-reboot")
	}
	return append(a, m.Extra...)
}

// qemuEscape escapes a value inside a QEMU option list, where a comma
// separates options and ",," stands for a literal comma.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// macFor derives a stable, locally administered MAC (QEMU's 52:54:00 prefix)
// from the VM name and NIC index, so hosts sharing an L2 network never
// collide on QEMU's single default MAC.
func macFor(vmName string, index int) string {
	h := sha256.Sum256([]byte(vmName + "/" + strconv.Itoa(index)))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// shellQuote renders argv as a command a person can paste into a shell.
func shellQuote(argv []string) string {
	var b strings.Builder
	for i, s := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+:,./@%") == "" {
			b.WriteString(s)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(s, "'", `'\''`) + "'")
	}
	return b.String()
}
