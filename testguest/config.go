package guest

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/flashvisor/flashvisor/internal/cmdline"
)

// Kernel command line keys of the test guest.
const (
	KeyName    = "fvguest.name"
	KeyIP      = "fvguest.ip"
	KeyDisk    = "fvguest.disk"
	KeyConsole = "fvguest.console"
)

// Config is the guest's configuration from the kernel command line.
type Config struct {
	// Name is reported in the READY marker (default "fvguest").
	Name string
	// IP is how the NIC is configured: DHCP (the default, what QEMU's
	// user-mode network offers) or a static address; nil for
	// fvguest.ip=none, which leaves the NIC down.
	IP *cmdline.Mgmt
	// Disk is the device "write" and "read" use; empty means the first disk
	// (FirstDisk).
	Disk string
	// Console is the serial device the commands come in on.
	Console string
}

// DefaultConsole is the first serial port, where the harness, hostd's
// console API and a person at `fvctl vm console` all are.
const DefaultConsole = "/dev/ttyS0"

// nameRE keeps the name one token of the READY marker.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// devRE accepts a device name under /dev, not a path elsewhere.
var devRE = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

// ParseConfig reads the guest's keys from a kernel command line. A bad key
// is reported and left at its default, so that the guest still comes up and
// says what is wrong on its console.
func ParseConfig(line string) (Config, error) {
	kv := cmdline.Split(line)
	c := Config{Name: "fvguest", IP: &cmdline.Mgmt{DHCP: true}, Console: DefaultConsole}
	var errs []error
	if v, ok := kv[KeyName]; ok {
		if nameRE.MatchString(v) {
			c.Name = v
		} else {
			errs = append(errs, fmt.Errorf("%s=%q: want 1-64 of [A-Za-z0-9._-]", KeyName, v))
		}
	}
	if v, ok := kv[KeyIP]; ok {
		if v == "none" {
			c.IP = nil
		} else if m, err := cmdline.ParseMgmt(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w (or none)", KeyIP, v, err))
		} else {
			c.IP = &m
		}
	}
	dev := func(key string, dst *string) {
		v, ok := kv[key]
		if !ok {
			return
		}
		name := strings.TrimPrefix(v, "/dev/")
		if !devRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s=%q: want a device name such as vdb or /dev/vdb", key, v))
			return
		}
		*dst = filepath.Join("/dev", name)
	}
	dev(KeyDisk, &c.Disk)
	dev(KeyConsole, &c.Console)
	return c, errors.Join(errs...)
}
