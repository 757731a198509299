package vmconfig

import (
	"bytes"
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// header opens every file Format writes. Parse ignores comments, so
// comments an operator adds are lost at the next Save; the header says so.
const header = `# Flashvisor VM parameter file. Edit only while the VM is powered off;
# hostd rewrites this file and does not keep comments.
`

// Format writes spec as a parameter file: the version first, then the
// VM-wide keys, the devices in address order, the consoles and autostart,
// and the user keys sorted. The same spec always gives the same bytes.
// Format does not validate; Save does.
func Format(spec api.VMSpec) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	line := func(key, value string) {
		b.WriteString(key)
		b.WriteString(" = ")
		b.WriteString(quote(value))
		b.WriteByte('\n')
	}
	line(VersionKey, strconv.Itoa(Version))
	for _, f := range scalars() {
		if v, ok := f.get(&spec); ok {
			line(f.key, v)
		}
	}
	disks := SortDisks(spec.Disks)
	for i, c := range spec.SCSIControllers {
		dev := controllerName(i)
		line(dev+".present", boolTrue)
		line(dev+".virtualDev", c.Model)
		for _, d := range disks {
			if d.Bus == api.DiskBusSCSI && d.Controller == i {
				formatDisk(line, d)
			}
		}
	}
	for _, d := range disks {
		// SCSI disks on a controller that does not exist are invalid, but
		// Format must not drop them silently.
		if d.Bus != api.DiskBusSCSI || d.Controller < 0 || d.Controller >= len(spec.SCSIControllers) {
			formatDisk(line, d)
		}
	}
	if c := spec.CDROM; c != nil {
		line(cdromName+".present", boolTrue)
		line(cdromName+".deviceType", cdromDeviceType)
		if c.File != "" {
			line(cdromName+".fileName", c.File)
		}
		line(cdromName+".startConnected", formatBool(c.StartConnected))
	}
	for i, n := range spec.NICs {
		dev := nicName(i)
		line(dev+".present", boolTrue)
		line(dev+".virtualDev", n.Model)
		line(dev+".networkName", n.PortGroup)
		line(dev+".addressType", n.AddressType)
		if n.MAC != "" {
			if n.AddressType == api.MACStatic {
				line(dev+".address", n.MAC)
			} else {
				line(dev+".generatedAddress", n.MAC)
			}
		}
	}
	for _, f := range trailers() {
		if v, ok := f.get(&spec); ok {
			line(f.key, v)
		}
	}
	keys := make([]string, 0, len(spec.Extra))
	for k := range spec.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		line(k, spec.Extra[k])
	}
	return b.Bytes()
}

func formatDisk(line func(k, v string), d api.VirtualDisk) {
	dev := DiskName(d)
	line(dev+".present", boolTrue)
	line(dev+".fileName", d.File)
	line(dev+".provisioning", d.Provisioning)
	if d.Format != "" {
		line(dev+".format", d.Format)
	}
	if d.SizeMiB != 0 {
		line(dev+".sizeMiB", strconv.FormatInt(d.SizeMiB, 10))
	}
}

// busOrder is the order of disk buses in files and in the boot order.
func busOrder(bus string) int {
	switch bus {
	case api.DiskBusSCSI:
		return 0
	case api.DiskBusNVMe:
		return 1
	case api.DiskBusVirtio:
		return 2
	}
	return 3
}

// SortDisks returns disks in canonical order: SCSI, NVMe, virtio-blk, each
// by controller and unit. Parse returns disks in this order and the firmware
// tries them in this order.
func SortDisks(disks []api.VirtualDisk) []api.VirtualDisk {
	out := slices.Clone(disks)
	slices.SortStableFunc(out, func(a, b api.VirtualDisk) int {
		return cmp.Or(
			cmp.Compare(busOrder(a.Bus), busOrder(b.Bus)),
			strings.Compare(a.Bus, b.Bus),
			cmp.Compare(a.Controller, b.Controller),
			cmp.Compare(a.Unit, b.Unit))
	})
	return out
}

// quote writes v in double quotes, escaping only `"` and `\`.
func quote(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}
