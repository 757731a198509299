package boot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is one filesystem PID 1 mounts early.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// EarlyMounts is what every Flashvisor system mounts first (INIT-1).
func EarlyMounts() []Mount {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	return []Mount{
		{"proc", "/proc", "proc", nosuid | nodev | noexec, ""},
		{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""},
		{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", nosuid | noexec, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid | nodev | noexec, "nsdelegate"},
	}
}

// MountAll mounts ms in order, creating mount points; an already mounted
// target (EBUSY) is fine.
func MountAll(ms []Mount) error {
	var errs []error
	for _, m := range ms {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.FSType, m.Target, err))
		}
	}
	return errors.Join(errs...)
}

// Sysctls are the kernel settings PID 1 applies. kernel.panic makes a dead
// PID 1 (or any kernel panic) reboot instead of hanging (INIT-5).
func Sysctls() map[string]string {
	return map[string]string{
		"kernel/panic":            "10",
		"kernel/panic_on_oops":    "1",
		"kernel/printk":           "4 4 1 7",
		"kernel/modprobe":         "/sbin/modprobe",
		"net/ipv4/ip_forward":     "0",
		"vm/overcommit_memory":    "0",
		"kernel/kptr_restrict":    "1",
		"kernel/dmesg_restrict":   "1",
		"net/ipv4/tcp_syncookies": "1",
	}
}

// ApplySysctls writes each key under procSys (/proc/sys).
func ApplySysctls(procSys string, kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(procSys, k), []byte(kv[k]), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// SeedEntropy mixes machine-specific data into the pool without crediting
// it. Real entropy comes from virtio-rng/RDRAND and the kernel's jitter
// source; this only makes two identical VMs diverge early.
func SeedEntropy(urandom string, extra ...[]byte) error {
	f, err := os.OpenFile(urandom, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, uint64(time.Now().UnixNano()))
	for _, p := range []string{"/sys/class/dmi/id/product_uuid", "/sys/class/dmi/id/board_serial", "/proc/cmdline"} {
		x, _ := os.ReadFile(p)
		b = append(b, x...)
	}
	for _, x := range extra {
		b = append(b, x...)
	}
	_, err = f.Write(b)
	return err
}

// UnmountAll unmounts real filesystems (not the API filesystems) in reverse
// mount order, falling back to a lazy detach so shutdown never hangs here.
func UnmountAll(log *slog.Logger, mountinfo string) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return
	}
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch fields[2] {
		case "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup2", "rootfs", "ramfs", "securityfs", "debugfs", "tracefs", "bpf", "mqueue", "configfs", "fusectl", "hugetlbfs", "pstore", "efivarfs":
			continue
		}
		targets = append(targets, unescapeMount(fields[1]))
	}
	f.Close()
	for i := len(targets) - 1; i >= 0; i-- {
		t := targets[i]
		if err := unix.Unmount(t, 0); err != nil {
			log.Warn("unmount failed; detaching", "target", t, "err", err)
			_ = unix.Unmount(t, unix.MNT_DETACH)
			continue
		}
		log.Info("unmounted", "target", t)
	}
}

// unescapeMount undoes /proc/mounts' octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// SyncWithCap flushes filesystems but gives up waiting after d: a dead
// disk must not keep the machine from powering off (INIT-5).
func SyncWithCap(d time.Duration) bool {
	done := make(chan struct{})
	go func() { unix.Sync(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Power button: evdev key events (struct input_event on 64-bit: 16 bytes of
// time, u16 type, u16 code, s32 value).
const (
	evKey      = 1
	keyPower   = 116
	eventSize  = 24
	keyPressed = 1
)

// hasPowerKey reports whether an input device's key capability bitmap
// (/sys/class/input/eventN/device/capabilities/key: hex words, most
// significant first) has KEY_POWER.
func hasPowerKey(capKey string) bool {
	words := strings.Fields(capKey)
	bit := keyPower
	idx := len(words) - 1 - bit/64
	if idx < 0 {
		return false
	}
	w, err := strconv.ParseUint(words[idx], 16, 64)
	if err != nil {
		return false
	}
	return w&(1<<(bit%64)) != 0
}

// isPowerPress reports whether an input_event is a KEY_POWER press.
func isPowerPress(ev []byte) bool {
	if len(ev) != eventSize {
		return false
	}
	typ := binary.LittleEndian.Uint16(ev[16:])
	code := binary.LittleEndian.Uint16(ev[18:])
	val := int32(binary.LittleEndian.Uint32(ev[20:]))
	return typ == evKey && code == keyPower && val == keyPressed
}

// WatchPowerButton calls press when any input device with a power key
// reports a press (the ACPI power button: QEMU's system_powerdown, a real
// button, a BMC's soft-off). It returns the devices it watches.
func WatchPowerButton(log *slog.Logger, sysInput, devDir string, press func()) []string {
	ents, _ := os.ReadDir(sysInput)
	var watched []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "event") {
			continue
		}
		c, err := os.ReadFile(filepath.Join(sysInput, e.Name(), "device/capabilities/key"))
		if err != nil || !hasPowerKey(string(c)) {
			continue
		}
		f, err := os.Open(filepath.Join(devDir, e.Name()))
		if err != nil {
			log.Warn("power button device", "dev", e.Name(), "err", err)
			continue
		}
		watched = append(watched, e.Name())
		go func() {
			defer f.Close()
			ev := make([]byte, eventSize)
			for {
				if _, err := io.ReadFull(f, ev); err != nil {
					log.Warn("power button read", "err", err)
					return
				}
				if isPowerPress(ev) {
					press()
				}
			}
		}()
	}
	return watched
}
