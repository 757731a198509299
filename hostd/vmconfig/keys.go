package vmconfig

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// Version is the parameter file version this package reads and writes.
const Version = 1

// VersionKey is the mandatory first key of every parameter file.
const VersionKey = "config.version"

// A scalar is one VM-wide key. The same table drives Parse and Format, so
// the two cannot drift apart.
type scalar struct {
	key string
	// get returns the value to write and whether to write it at all.
	get func(s *api.VMSpec) (string, bool)
	// set stores a value read from a file; its error is the reason only.
	set func(s *api.VMSpec, v string) error
}

func scalars() []scalar {
	return []scalar{
		{"displayName",
			func(s *api.VMSpec) (string, bool) { return s.Name, true },
			func(s *api.VMSpec, v string) error { s.Name = v; return nil }},
		{"guestOS",
			func(s *api.VMSpec) (string, bool) { return s.GuestOS, s.GuestOS != "" },
			func(s *api.VMSpec, v string) error { s.GuestOS = v; return nil }},
		{"uuid.bios",
			func(s *api.VMSpec) (string, bool) { return s.UUID, s.UUID != "" },
			func(s *api.VMSpec, v string) error { s.UUID = v; return nil }},
		{"numvcpus",
			func(s *api.VMSpec) (string, bool) { return strconv.Itoa(s.VCPUs), true },
			func(s *api.VMSpec, v string) error { return setInt(&s.VCPUs, v) }},
		{"memSize",
			func(s *api.VMSpec) (string, bool) { return strconv.Itoa(s.MemoryMiB), true },
			func(s *api.VMSpec, v string) error { return setInt(&s.MemoryMiB, v) }},
		{"mem.hotadd",
			func(s *api.VMSpec) (string, bool) { return formatBool(s.MemoryHotAdd), s.MemoryHotAdd },
			func(s *api.VMSpec, v string) error { return setBool(&s.MemoryHotAdd, v) }},
		{"mem.maxSize",
			func(s *api.VMSpec) (string, bool) { return strconv.Itoa(s.MaxMemoryMiB), s.MaxMemoryMiB != 0 },
			func(s *api.VMSpec, v string) error { return setInt(&s.MaxMemoryMiB, v) }},
		{"firmware",
			func(s *api.VMSpec) (string, bool) { return s.Firmware, true },
			func(s *api.VMSpec, v string) error {
				// ESXi spells UEFI "efi"; accept it so copied lines work.
				if strings.EqualFold(v, "efi") {
					v = api.FirmwareUEFI
				}
				s.Firmware = enum(v, api.FirmwareBIOS, api.FirmwareUEFI)
				return nil
			}},
		{"directBoot.kernel",
			func(s *api.VMSpec) (string, bool) {
				if s.KernelBoot == nil {
					return "", false
				}
				return s.KernelBoot.Kernel, true
			},
			func(s *api.VMSpec, v string) error { kernelBoot(s).Kernel = v; return nil }},
		{"directBoot.initrd",
			func(s *api.VMSpec) (string, bool) {
				if s.KernelBoot == nil {
					return "", false
				}
				return s.KernelBoot.Initrd, s.KernelBoot.Initrd != ""
			},
			func(s *api.VMSpec, v string) error { kernelBoot(s).Initrd = v; return nil }},
		{"directBoot.cmdline",
			func(s *api.VMSpec) (string, bool) {
				if s.KernelBoot == nil {
					return "", false
				}
				return s.KernelBoot.Cmdline, s.KernelBoot.Cmdline != ""
			},
			func(s *api.VMSpec, v string) error { kernelBoot(s).Cmdline = v; return nil }},
	}
}

// trailers are the VM-wide keys written after the devices.
func trailers() []scalar {
	return []scalar{
		{"serial0.present",
			func(s *api.VMSpec) (string, bool) { return formatBool(s.SerialConsole), true },
			func(s *api.VMSpec, v string) error { return setBool(&s.SerialConsole, v) }},
		{"vnc.enabled",
			func(s *api.VMSpec) (string, bool) { return formatBool(s.VNCConsole), true },
			func(s *api.VMSpec, v string) error { return setBool(&s.VNCConsole, v) }},
		{"autostart.enabled",
			func(s *api.VMSpec) (string, bool) { return formatBool(s.Autostart.Enabled), true },
			func(s *api.VMSpec, v string) error { return setBool(&s.Autostart.Enabled, v) }},
		{"autostart.order",
			func(s *api.VMSpec) (string, bool) { return strconv.Itoa(s.Autostart.Order), s.Autostart.Order != 0 },
			func(s *api.VMSpec, v string) error { return setInt(&s.Autostart.Order, v) }},
		{"autostart.delay",
			func(s *api.VMSpec) (string, bool) {
				return strconv.Itoa(s.Autostart.DelaySeconds), s.Autostart.DelaySeconds != 0
			},
			func(s *api.VMSpec, v string) error { return setInt(&s.Autostart.DelaySeconds, v) }},
	}
}

func kernelBoot(s *api.VMSpec) *api.KernelBoot {
	if s.KernelBoot == nil {
		s.KernelBoot = &api.KernelBoot{}
	}
	return s.KernelBoot
}

// Device keys are "<device>.<property>". props lists the properties each
// kind of device accepts.
func props(k devKind) []string {
	switch k {
	case devController:
		return []string{"present", "virtualDev"}
	case devDisk:
		return []string{"present", "fileName", "provisioning", "format", "sizeMiB"}
	case devCDROM:
		return []string{"present", "deviceType", "fileName", "startConnected"}
	case devNIC:
		return []string{"present", "virtualDev", "networkName", "addressType", "generatedAddress", "address"}
	}
	return nil
}

type devKind int

const (
	devController devKind = iota + 1
	devDisk
	devCDROM
	devNIC
)

// cdromDeviceType is the only deviceType sata0:0 takes for now; the key is
// there so SATA disks can be added later without a new file version.
const cdromDeviceType = "cdrom-image"

// User keys are kept verbatim and given no meaning: "x-" for anyone's
// tools, "guestinfo." for data meant for the guest (as on ESXi).
func isUserKey(k string) bool {
	l := strings.ToLower(k)
	for _, p := range []string{"x-", "guestinfo."} {
		if strings.HasPrefix(l, p) && len(l) > len(p) {
			return true
		}
	}
	return false
}

// Limits.
const (
	MaxVCPUs           = 64
	MinMemoryMiB       = 16
	MaxMemoryMiB       = 1 << 20 // 1 TiB
	MaxSCSIControllers = 4
	MaxSCSIUnits       = 16 // units 0-15, except SCSIControllerUnit
	SCSIControllerUnit = 7  // the HBA's own target id, as on ESXi
	MaxNVMeControllers = 4
	MaxNVMeNamespaces  = 15
	MaxVirtioDisks     = 8
	MaxNICs            = 10
	MaxDiskSizeMiB     = 64 << 20 // 64 TiB
	MaxNameLen         = 80
	MaxPathLen         = 1024
	MaxCmdlineLen      = 4096
	MaxAutostartDelay  = 3600
	MaxAutostartOrder  = 1000
	MaxValueLen        = 64 << 10 // guestinfo blobs (cloud-init data) can be large
	MaxFileSize        = 1 << 20
)

// MemoryBlockMiB is the unit of memory hot-add. Linux adds memory in
// blocks of 128 MiB on x86-64 (the sparsemem section, and the memory block
// size of VMs under 64 GiB) and refuses a DIMM whose start or size is not
// block-aligned; QEMU itself needs only page alignment. DIMMs of whole
// blocks, placed one after the other from the 1 GiB-aligned start of
// QEMU's hot-plug area, keep every DIMM's address aligned too.
const MemoryBlockMiB = 128

const (
	boolTrue  = "TRUE"
	boolFalse = "FALSE"
)

func formatBool(b bool) string {
	if b {
		return boolTrue
	}
	return boolFalse
}

type reasonError string

func (r reasonError) Error() string { return string(r) }

const (
	errNotNumber = reasonError("not a whole number")
	errNotBool   = reasonError(`not "TRUE" or "FALSE"`)
)

func setBool(dst *bool, v string) error {
	switch {
	case strings.EqualFold(v, "true"):
		*dst = true
	case strings.EqualFold(v, "false"):
		*dst = false
	default:
		return errNotBool
	}
	return nil
}

func setInt(dst *int, v string) error {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return errNotNumber
	}
	*dst = int(n)
	return nil
}

func setInt64(dst *int64, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return errNotNumber
	}
	*dst = n
	return nil
}

// enum returns the allowed value v matches case-insensitively, or v itself
// so that Validate reports it as written.
func enum(v string, allowed ...string) string {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a
		}
	}
	return v
}

// oneOf describes allowed values for messages: `"a", "b" or "c"`.
func oneOf(allowed ...string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// Device names.

func controllerName(n int) string { return fmt.Sprintf("scsi%d", n) }
func nicName(n int) string        { return fmt.Sprintf("ethernet%d", n) }

const cdromName = "sata0:0"

// DiskName is the device name of d in the parameter file: "scsi0:1",
// "nvme0:0", "virtioblk2".
func DiskName(d api.VirtualDisk) string {
	switch d.Bus {
	case api.DiskBusSCSI:
		return fmt.Sprintf("scsi%d:%d", d.Controller, d.Unit)
	case api.DiskBusNVMe:
		return fmt.Sprintf("nvme%d:%d", d.Controller, d.Unit)
	case api.DiskBusVirtio:
		return fmt.Sprintf("virtioblk%d", d.Controller)
	}
	return fmt.Sprintf("%s%d:%d", d.Bus, d.Controller, d.Unit)
}
