package vmconfig

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/macaddr"
)

// Validate checks spec against every rule of the parameter file: limits,
// allowed values, device addresses, file references, MAC rules. Problems
// are named by their parameter file key and joined into one error.
func Validate(spec api.VMSpec) error {
	return joinErrors(validate(spec))
}

type checker struct{ errs []*Error }

func (c *checker) add(key, value, reason string) {
	c.errs = append(c.errs, &Error{Key: key, Value: value, Reason: reason})
}

// text checks a free-text value: printable, bounded.
func (c *checker) text(key, v string, max int) {
	switch {
	case len(v) > max:
		c.add(key, v, fmt.Sprintf("longer than %d bytes", max))
	case strings.ContainsFunc(v, isControl):
		c.add(key, v, "control character in value")
	}
}

func (c *checker) intRange(key string, v, min, max int) {
	if v < min || v > max {
		c.add(key, strconv.Itoa(v), fmt.Sprintf("must be %d-%d", min, max))
	}
}

func (c *checker) required(key, v string) bool {
	if v == "" {
		c.add(key, "", "missing")
		return false
	}
	return true
}

func (c *checker) enum(key, v string, allowed ...string) {
	if !c.required(key, v) {
		return
	}
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.add(key, v, "want "+oneOf(allowed...))
}

// file checks a file reference: relative to the VM directory or
// "[datastore] path", never a host path, so that the VM directory works
// on every host that mounts its datastore.
func (c *checker) file(key, v string) {
	if !c.required(key, v) {
		return
	}
	c.text(key, v, MaxPathLen)
	if err := CheckFileRef(v); err != nil {
		c.add(key, v, err.Error())
	}
}

// uuidRE is an SMBIOS UUID in its usual text form.
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// guestOSRE matches ESXi-style guest ids ("ubuntu-64") and API ones
// ("ubuntu64Guest").
var guestOSRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validate(s api.VMSpec) []*Error {
	c := &checker{}
	if c.required("displayName", s.Name) {
		if err := CheckName(s.Name); err != nil {
			c.add("displayName", s.Name, err.Error())
		}
	}
	if s.GuestOS != "" && !guestOSRE.MatchString(s.GuestOS) {
		c.add("guestOS", s.GuestOS, "want letters, digits, '.', '_' or '-' (at most 64)")
	}
	if s.UUID != "" && !uuidRE.MatchString(s.UUID) {
		c.add("uuid.bios", s.UUID, "want a UUID like 564d137a-a932-1e82-0cce-859cd6ef243c")
	}
	c.intRange("numvcpus", s.VCPUs, 1, MaxVCPUs)
	c.intRange("memSize", s.MemoryMiB, MinMemoryMiB, MaxMemoryMiB)
	c.memoryHotAdd(s)
	c.enum("firmware", s.Firmware, api.FirmwareBIOS, api.FirmwareUEFI)
	if k := s.KernelBoot; k != nil {
		c.file("directBoot.kernel", k.Kernel)
		if k.Initrd != "" {
			c.file("directBoot.initrd", k.Initrd)
		}
		c.text("directBoot.cmdline", k.Cmdline, MaxCmdlineLen)
	}
	if len(s.SCSIControllers) > MaxSCSIControllers {
		c.add(controllerName(MaxSCSIControllers), "", fmt.Sprintf("at most %d SCSI controllers", MaxSCSIControllers))
	}
	for i, ctrl := range s.SCSIControllers {
		c.enum(controllerName(i)+".virtualDev", ctrl.Model, api.SCSIVirtio, api.SCSILSILogic)
	}
	c.disks(s)
	if s.CDROM != nil {
		if s.CDROM.File != "" {
			c.file(cdromName+".fileName", s.CDROM.File)
		} else if s.CDROM.StartConnected {
			c.add(cdromName+".startConnected", boolTrue, "no ISO image to connect: set "+cdromName+".fileName")
		}
	}
	c.nics(s.NICs)
	if s.Autostart.Order < 0 || s.Autostart.Order > MaxAutostartOrder {
		c.add("autostart.order", strconv.Itoa(s.Autostart.Order), fmt.Sprintf("must be 0 (any order) or 1-%d", MaxAutostartOrder))
	}
	c.intRange("autostart.delay", s.Autostart.DelaySeconds, 0, MaxAutostartDelay)
	seen := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(s.Extra)) {
		v := s.Extra[k]
		if !validKey(k) || !isUserKey(k) {
			c.add(k, v, `user keys start with "x-" or "guestinfo." and use letters, digits and . : _ -`)
		}
		// Keys are read without regard to case: these two would be one.
		if other, dup := seen[strings.ToLower(k)]; dup {
			c.add(k, v, "same key as "+other+" (keys ignore case)")
		}
		seen[strings.ToLower(k)] = k
		c.text(k, v, MaxValueLen)
	}
	return c.errs
}

// memoryHotAdd checks mem.hotadd and mem.maxSize: the VM may grow from
// memSize to mem.maxSize while it runs, in whole MemoryBlockMiB blocks.
func (c *checker) memoryHotAdd(s api.VMSpec) {
	const key = "mem.maxSize"
	max := strconv.Itoa(s.MaxMemoryMiB)
	room := s.MaxMemoryMiB - s.MemoryMiB
	switch {
	case !s.MemoryHotAdd:
		if s.MaxMemoryMiB != 0 {
			c.add(key, max, `only with mem.hotadd = "TRUE"`)
		}
	case s.MaxMemoryMiB == 0:
		c.add(key, "", `missing: mem.hotadd = "TRUE" needs the most memory (MiB) the VM may grow to`)
	case s.MaxMemoryMiB < s.MemoryMiB || s.MaxMemoryMiB > MaxMemoryMiB:
		c.add(key, max, fmt.Sprintf("must be memSize (%d)-%d", s.MemoryMiB, MaxMemoryMiB))
	case room%MemoryBlockMiB != 0:
		low := s.MemoryMiB + room/MemoryBlockMiB*MemoryBlockMiB
		c.add(key, max, fmt.Sprintf("memory is hot-added in blocks of %d MiB: mem.maxSize - memSize must be a multiple of %d (e.g. %d or %d)",
			MemoryBlockMiB, MemoryBlockMiB, low, low+MemoryBlockMiB))
	}
}

func (c *checker) disks(s api.VMSpec) {
	seenAddr := map[string]bool{}
	seenFile := map[string]string{}
	for _, d := range s.Disks {
		dev := DiskName(d)
		switch d.Bus {
		case api.DiskBusSCSI:
			switch {
			case d.Controller < 0 || d.Controller >= len(s.SCSIControllers):
				c.add(dev, "", fmt.Sprintf("no SCSI controller scsi%d: add scsi%d.virtualDev", d.Controller, d.Controller))
			case d.Unit == SCSIControllerUnit:
				c.add(dev, "", fmt.Sprintf("unit %d is the controller's own", SCSIControllerUnit))
			case d.Unit < 0 || d.Unit >= MaxSCSIUnits:
				c.add(dev, "", fmt.Sprintf("SCSI units are 0-%d except %d", MaxSCSIUnits-1, SCSIControllerUnit))
			}
		case api.DiskBusNVMe:
			switch {
			case d.Controller < 0 || d.Controller >= MaxNVMeControllers:
				c.add(dev, "", fmt.Sprintf("NVMe controllers are nvme0-nvme%d", MaxNVMeControllers-1))
			case d.Unit < 0 || d.Unit >= MaxNVMeNamespaces:
				c.add(dev, "", fmt.Sprintf("NVMe namespaces are 0-%d", MaxNVMeNamespaces-1))
			}
		case api.DiskBusVirtio:
			switch {
			case d.Controller < 0 || d.Controller >= MaxVirtioDisks:
				c.add(dev, "", fmt.Sprintf("virtio-blk disks are virtioblk0-virtioblk%d", MaxVirtioDisks-1))
			case d.Unit != 0:
				c.add(dev, "", "virtio-blk disks have no unit number")
			}
		default:
			c.add(dev, "", fmt.Sprintf("unknown disk bus %q: want %s", d.Bus, oneOf(api.DiskBusSCSI, api.DiskBusNVMe, api.DiskBusVirtio)))
			continue
		}
		if seenAddr[dev] {
			c.add(dev, "", "two disks at the same address")
		}
		seenAddr[dev] = true
		c.file(dev+".fileName", d.File)
		if other, dup := seenFile[d.File]; dup && d.File != "" {
			c.add(dev+".fileName", d.File, "also used by "+other)
		} else {
			seenFile[d.File] = dev
		}
		c.enum(dev+".provisioning", d.Provisioning, api.ProvisionThin, api.ProvisionThick, api.ProvisionExisting)
		size := strconv.FormatInt(d.SizeMiB, 10)
		switch d.Provisioning {
		case api.ProvisionThin, api.ProvisionThick:
			want := map[string]string{api.ProvisionThin: api.DiskQcow2, api.ProvisionThick: api.DiskRaw}[d.Provisioning]
			if d.Format != "" && d.Format != want {
				c.add(dev+".format", d.Format, fmt.Sprintf("%s disks are %s", d.Provisioning, want))
			}
			if d.SizeMiB == 0 {
				c.add(dev+".sizeMiB", "", "missing: new disks need a size")
			} else if d.SizeMiB < 1 || d.SizeMiB > MaxDiskSizeMiB {
				c.add(dev+".sizeMiB", size, fmt.Sprintf("must be 1-%d", MaxDiskSizeMiB))
			}
		case api.ProvisionExisting:
			c.enum(dev+".format", d.Format, api.DiskQcow2, api.DiskRaw)
			if d.SizeMiB != 0 {
				c.add(dev+".sizeMiB", size, "only for new (thin or thick) disks; an existing image has its own size")
			}
		}
	}
}

func (c *checker) nics(nics []api.NIC) {
	if len(nics) > MaxNICs {
		c.add(nicName(MaxNICs), "", fmt.Sprintf("at most %d vNICs", MaxNICs))
	}
	macs := map[string]string{}
	for i, n := range nics {
		dev := nicName(i)
		c.enum(dev+".virtualDev", n.Model, api.NICVirtio, api.NICE1000, api.NICVmxnet3)
		if c.required(dev+".networkName", n.PortGroup) {
			c.text(dev+".networkName", n.PortGroup, MaxNameLen)
		}
		c.enum(dev+".addressType", n.AddressType, api.MACGenerated, api.MACStatic)
		key := dev + ".generatedAddress"
		switch n.AddressType {
		case api.MACStatic:
			key = dev + ".address"
			if c.required(key, n.MAC) {
				if err := macaddr.CheckStatic(n.MAC); err != nil {
					c.add(key, n.MAC, reason(err))
				}
			}
		case api.MACGenerated:
			if n.MAC != "" {
				if err := macaddr.CheckGenerated(n.MAC); err != nil {
					c.add(key, n.MAC, reason(err))
				}
			}
		}
		if m, err := macaddr.Canonical(n.MAC); err == nil {
			if other, dup := macs[m]; dup {
				c.add(key, n.MAC, "same MAC as "+other)
			}
			macs[m] = dev
		}
	}
}

// reason gives the rule a macaddr error broke without the address it
// repeats: the key = "value" part of Error already shows it.
func reason(err error) string {
	for _, rule := range []error{macaddr.ErrSyntax, macaddr.ErrMulticast, macaddr.ErrStaticRange} {
		if errors.Is(err, rule) {
			return rule.Error()
		}
	}
	return err.Error()
}

// CheckName accepts VM names that are safe as directory names on every
// datastore kind and readable in lists: 1-80 of letters, digits, space,
// '.', '_' and '-', starting with a letter or digit, not ending in a space
// or '.'.
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("must be 1-%d characters", MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("must start with a letter or digit")
		}
		if !alnum && strings.IndexByte(" ._-", c) < 0 {
			return fmt.Errorf("%q not allowed: use letters, digits, space, '.', '_' and '-'", string(rune(c)))
		}
	}
	if last := name[len(name)-1]; last == ' ' || last == '.' {
		return fmt.Errorf("must not end with a space or '.'")
	}
	return nil
}

// SplitDatastorePath splits "[datastore] dir/file" into its datastore and
// path. ok is false for anything else (then ref is relative to the VM
// directory).
func SplitDatastorePath(ref string) (datastore, p string, ok bool) {
	rest, found := strings.CutPrefix(ref, "[")
	if !found {
		return "", "", false
	}
	ds, p, found := strings.Cut(rest, "]")
	if !found {
		return "", "", false
	}
	return ds, strings.TrimLeft(p, " "), true
}

// CheckFileRef accepts "[datastore] dir/file" and "dir/file" (relative to
// the VM directory): clean relative paths only, so a file never escapes
// its datastore.
func CheckFileRef(ref string) error {
	p := ref
	if ds, rest, ok := SplitDatastorePath(ref); ok {
		if ds == "" || strings.ContainsAny(ds, "/[") {
			return fmt.Errorf(`bad datastore name in "[datastore] path"`)
		}
		p = rest
	} else if strings.HasPrefix(ref, "[") {
		return fmt.Errorf(`want "[datastore] path"`)
	}
	switch {
	case p == "":
		return fmt.Errorf("no file name")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf(`host paths are not allowed: use "[datastore] path" or a name relative to the VM directory`)
	case path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("not a clean relative path (no '..', '.', '//' or trailing '/')")
	}
	return nil
}
