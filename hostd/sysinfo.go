package hostd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// SysPaths are the kernel files host facts come from; tests point them at
// fixtures.
type SysPaths struct {
	Uptime    string // /proc/uptime
	CPUInfo   string // /proc/cpuinfo
	MemInfo   string // /proc/meminfo
	OSRelease string // /proc/sys/kernel/osrelease (what uname -r prints)
	KVM       string // /dev/kvm
}

// DefaultSysPaths are the real files.
var DefaultSysPaths = SysPaths{
	Uptime:    "/proc/uptime",
	CPUInfo:   "/proc/cpuinfo",
	MemInfo:   "/proc/meminfo",
	OSRelease: "/proc/sys/kernel/osrelease",
	KVM:       "/dev/kvm",
}

func (p SysPaths) withDefaults() SysPaths {
	d := DefaultSysPaths
	for _, f := range []struct {
		dst *string
		def string
	}{
		{&p.Uptime, d.Uptime}, {&p.CPUInfo, d.CPUInfo}, {&p.MemInfo, d.MemInfo},
		{&p.OSRelease, d.OSRelease}, {&p.KVM, d.KVM},
	} {
		if *f.dst == "" {
			*f.dst = f.def
		}
	}
	return p
}

// uptime returns the first field of /proc/uptime, in seconds.
func uptime(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("uptime: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("uptime: %s is empty", path)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("uptime: %w", err)
	}
	return v, nil
}

// cpuInfo returns the first "model name" and the number of "processor"
// entries of /proc/cpuinfo.
func cpuInfo(path string) (model string, cpus int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, fmt.Errorf("cpuinfo: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cpus++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	return model, cpus, sc.Err()
}

// memTotal returns MemTotal of /proc/meminfo in bytes.
func memTotal(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: MemTotal: %w", err)
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

// kvmUsable reports whether /dev/kvm opens read-write, which is what QEMU
// needs; its mere existence says nothing when the module could not load.
func kvmUsable(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func kernelRelease(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kernel release: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
