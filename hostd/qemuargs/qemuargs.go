// Package qemuargs turns a VM spec plus the host-side facts of one power-on
// into the argument list of qemu-system-x86_64 (QEMU 7.2 syntax). It is pure:
// it opens nothing and starts nothing, so every device combination is tested
// with golden files and the exact command can be shown to an operator.
//
// Choices, and why:
//
//   - -nodefaults and -no-user-config: the VM gets exactly the devices of its
//     spec, whatever QEMU's defaults or a host-wide qemu.conf say.
//   - q35 with every device on the PCIe root bus; IDE/SATA comes from the
//     chipset's built-in AHCI controller, where the CD-ROM sits.
//   - -blockdev with separate protocol (file) and format nodes, and the
//     format always named: QEMU never probes a guest-writable raw image,
//     which would let a guest turn its raw disk into a qcow2 pointing at
//     host files.
//   - QEMU device ids repeat the parameter file's device names ("scsi0",
//     "scsi0-0" for scsi0:0, "ethernet1", "sata0-0"), so QMP events and
//     errors name devices the way the operator does. See DeviceID.
//   - "lsilogic" controllers are QEMU's megasas (LSI MegaRAID SAS 1078): it
//     takes the 15 units per controller the parameter file allows, and Linux
//     (megaraid_sas) and Windows have in-box drivers for it. QEMU's
//     lsi53c895a was not chosen: it has 7 targets and no driver in current
//     Windows.
//   - Every VM gets a standard VGA adapter (as every ESXi VM has an SVGA):
//     installers expect one, and QMP screendump needs one even without VNC.
//     -display none keeps QEMU from opening windows; VNC, when on, listens
//     only on a unix socket that hostd proxies (no TCP port on the host).
//   - A VM with memory hot-add gets "-m size=M,slots=S,maxmem=X": hostd
//     plugs pc-dimm devices into the S slots while it runs (see
//     MemorySlots). Without hot-add, and once memory has reached maxmem,
//     it is plain "-m M" (QEMU refuses slots without room to fill them).
//     A VM resumed from a suspend file is started with the DIMMs it had
//     (Runtime.DIMMs), as the saved state needs the same memory layout.
package qemuargs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/macaddr"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
)

// Firmware files of Debian's ovmf package, which the host image ships.
// OVMF_CODE_4M.fd needs no SMM (no Secure Boot); each VM gets its own copy of
// the variable store template as <vm>.nvram in its directory, made by hostd
// when the VM is created.
const (
	DefaultOVMFCode     = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVarsTmpl = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	NVRAMExtension      = ".nvram"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg" // software emulation: only when an operator asked for it
)

// maxSocketPath is the size of sun_path minus its NUL: QEMU refuses longer
// unix socket paths, and saying so here is clearer than QEMU's message.
const maxSocketPath = 107

// Tap is the host end of one vNIC, set up by hostd before Build. QEMU either
// opens the tap by name or receives an open file descriptor.
type Tap struct {
	// Name is the tap interface, opened by QEMU (ifname=) when FD is 0.
	Name string
	// FD is an open tap descriptor passed to QEMU (e.g. exec.Cmd.ExtraFiles:
	// the first extra file is 3). 0 means "open Name".
	FD int
	// VhostFD is an open /dev/vhost-net descriptor for virtio vNICs when
	// QEMU cannot open it itself; 0 lets QEMU open it.
	VhostFD int
}

// Runtime holds the host-side facts of one power-on: where things are on
// this host, which the spec deliberately does not say.
type Runtime struct {
	// VMDir is the VM's directory (absolute); relative file names in the spec
	// are relative to it.
	VMDir string
	// ResolveDatastore maps "[datastore] path" to a host path; needed only
	// when the spec uses datastore paths.
	ResolveDatastore func(datastore, path string) (string, error)
	// Accel is AccelKVM or AccelTCG. Deciding whether TCG is allowed is the
	// caller's business (HOSTD-3); Build only builds.
	Accel string
	// Machine is the QEMU machine type; "" means "q35".
	Machine string
	// QMPSocket is the unix socket hostd talks QMP on (required).
	QMPSocket string
	// SerialSocket is the unix socket of the serial console (required when
	// the spec has one). SerialLog, if set, also records its output.
	SerialSocket string
	SerialLog    string
	// VNCSocket is the unix socket of the VNC server (required when the
	// spec has VNC on).
	VNCSocket string
	// PIDFile, if set, is written by QEMU with its PID.
	PIDFile string
	// Taps[i] is the host end of vNIC ethernet<i>.
	Taps []Tap
	// OVMFCode and NVRAM are the UEFI firmware and the VM's variable store
	// (both required for UEFI VMs; see DefaultOVMFCode and NVRAMExtension).
	OVMFCode string
	NVRAM    string
	// Sandbox turns on QEMU's seccomp filter; set it when the QEMU binary
	// was built with seccomp support (Debian's is).
	Sandbox bool
	// DIMMs are the DIMMs hot-added to the VM before it was suspended,
	// in the order they were plugged; DIMM i has the ids DIMMID(i) and
	// DIMMMemdevID(i). They are part of the spec's memory: QEMU starts
	// with the rest. Empty for a fresh power-on, which starts with all of
	// the spec's memory.
	DIMMs []DIMM
}

// DIMM is one hot-added memory device.
type DIMM struct {
	SizeMiB int
	// Addr is the guest-physical address QEMU gave it; 0 lets QEMU place
	// it (the next free address: the same, when DIMMs come in order).
	Addr uint64
}

// MemorySlots is how many DIMMs a VM with memory hot-add can take. Each
// one is a KVM memory slot and a vhost memory region (vhost-net allows 64
// by default, shared with the VM's RAM and ROMs), and reserves 1 GiB of
// guest-physical address space for alignment.
const MemorySlots = 16

// DIMMID is the device id of hot-added DIMM i (in plug order).
func DIMMID(i int) string { return fmt.Sprintf("dimm%d", i) }

// DIMMMemdevID is the id of the memory backend of DIMM i.
func DIMMMemdevID(i int) string { return fmt.Sprintf("mem-dimm%d", i) }

// ErrRuntime is wrapped by errors about missing or wrong Runtime facts, as
// opposed to an invalid spec.
var ErrRuntime = errors.New("cannot build QEMU command")

// DeviceID is the QEMU device id of a parameter file device name: "scsi0:1"
// becomes "scsi0-1" (QEMU ids cannot hold ':').
func DeviceID(name string) string { return strings.ReplaceAll(name, ":", "-") }

// Build returns QEMU's arguments (without the program name) for spec on
// this host. It refuses an invalid spec (vmconfig.Validate) and missing or
// inconsistent runtime facts, listing every problem.
func Build(spec api.VMSpec, rt Runtime) ([]string, error) {
	if err := vmconfig.Validate(spec); err != nil {
		return nil, fmt.Errorf("VM %s: %w", spec.Name, err)
	}
	b := builder{spec: spec, rt: rt}
	b.checkRuntime()
	if len(b.errs) > 0 {
		return nil, fmt.Errorf("VM %s: %w: %w", spec.Name, ErrRuntime, errors.Join(b.errs...))
	}
	b.build()
	if len(b.errs) > 0 {
		return nil, fmt.Errorf("VM %s: %w: %w", spec.Name, ErrRuntime, errors.Join(b.errs...))
	}
	return b.args, nil
}

type builder struct {
	spec api.VMSpec
	rt   Runtime
	args []string
	errs []error
}

func (b *builder) add(args ...string) { b.args = append(b.args, args...) }

func (b *builder) fail(format string, a ...any) { b.errs = append(b.errs, fmt.Errorf(format, a...)) }

func (b *builder) checkRuntime() {
	rt, spec := b.rt, b.spec
	if !filepath.IsAbs(rt.VMDir) {
		b.fail("VM directory %q is not an absolute path", rt.VMDir)
	}
	if rt.Accel != AccelKVM && rt.Accel != AccelTCG {
		b.fail("accelerator %q: want %q or %q", rt.Accel, AccelKVM, AccelTCG)
	}
	b.socket("QMP", rt.QMPSocket)
	if spec.SerialConsole {
		b.socket("serial console", rt.SerialSocket)
	}
	if spec.VNCConsole {
		b.socket("VNC", rt.VNCSocket)
	}
	if len(rt.Taps) != len(spec.NICs) {
		b.fail("%d taps for %d vNICs", len(rt.Taps), len(spec.NICs))
	}
	for i, t := range rt.Taps {
		if t.FD == 0 && t.Name == "" {
			b.fail("tap of ethernet%d: neither a name nor a file descriptor", i)
		}
	}
	for i, n := range spec.NICs {
		if n.MAC == "" {
			b.fail("ethernet%d has no MAC address yet (hostd assigns generated MACs before power-on)", i)
		}
	}
	if spec.Firmware == api.FirmwareUEFI {
		if rt.OVMFCode == "" || rt.NVRAM == "" {
			b.fail("UEFI firmware needs the OVMF code file and the VM's NVRAM file")
		}
	}
	if len(rt.DIMMs) > 0 {
		switch boot := b.bootMemoryMiB(); {
		case !spec.MemoryHotAdd:
			b.fail("%d hot-added DIMMs, but memory hot-add is off", len(rt.DIMMs))
		case len(rt.DIMMs) > MemorySlots:
			b.fail("%d hot-added DIMMs for %d memory slots", len(rt.DIMMs), MemorySlots)
		case boot < vmconfig.MinMemoryMiB:
			b.fail("hot-added DIMMs hold more than the VM's %d MiB of memory (%d MiB left to start with)", spec.MemoryMiB, boot)
		}
		for i, d := range rt.DIMMs {
			if d.SizeMiB <= 0 || d.SizeMiB%vmconfig.MemoryBlockMiB != 0 {
				b.fail("DIMM %s: %d MiB is not a whole number of %d MiB blocks", DIMMID(i), d.SizeMiB, vmconfig.MemoryBlockMiB)
			}
		}
	}
}

// bootMemoryMiB is the memory QEMU starts with: the spec's, less the DIMMs.
func (b *builder) bootMemoryMiB() int {
	m := b.spec.MemoryMiB
	for _, d := range b.rt.DIMMs {
		m -= d.SizeMiB
	}
	return m
}

func (b *builder) socket(what, path string) {
	switch {
	case path == "":
		b.fail("no %s socket path", what)
	case !filepath.IsAbs(path):
		b.fail("%s socket %q is not an absolute path", what, path)
	case len(path) > maxSocketPath:
		b.fail("%s socket %q is longer than %d bytes, the limit of unix sockets", what, path, maxSocketPath)
	}
}

// file turns a spec file reference into a host path.
func (b *builder) file(ref string) string {
	ds, p, ok := vmconfig.SplitDatastorePath(ref)
	if !ok {
		return filepath.Join(b.rt.VMDir, ref)
	}
	if b.rt.ResolveDatastore == nil {
		b.fail("%s: no datastore resolver", ref)
		return ""
	}
	host, err := b.rt.ResolveDatastore(ds, p)
	if err != nil {
		b.fail("%s: %w", ref, err)
		return ""
	}
	return host
}

// opts joins QEMU key=value options. Values are escaped: in QEMU's option
// syntax a ',' inside a value is written ",,".
func opts(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "" { // a bare value, e.g. the driver of -device
			parts = append(parts, esc(kv[i+1]))
			continue
		}
		parts = append(parts, kv[i]+"="+esc(kv[i+1]))
	}
	return strings.Join(parts, ",")
}

func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func (b *builder) build() {
	spec, rt := b.spec, b.rt
	b.add("-name", opts("guest", spec.Name, "debug-threads", "on"))
	if spec.UUID != "" {
		b.add("-uuid", strings.ToLower(spec.UUID))
	}
	if rt.PIDFile != "" {
		b.add("-pidfile", rt.PIDFile)
	}
	b.add("-no-user-config", "-nodefaults")
	if rt.Sandbox {
		// Deny what a VM process never needs: old syscalls, setuid, fork and
		// exec (taps come ready-made), and changing its own scheduling or
		// cgroup limits.
		b.add("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	machine := cmpOr(rt.Machine, "q35")
	if spec.Firmware == api.FirmwareUEFI {
		b.add("-machine", opts("", machine, "pflash0", "fw-code", "pflash1", "fw-vars"))
	} else {
		b.add("-machine", machine)
	}
	b.add("-accel", rt.Accel)
	if rt.Accel == AccelKVM {
		b.add("-cpu", "host")
	} else {
		b.add("-cpu", "max")
	}
	b.add("-smp", strconv.Itoa(spec.VCPUs))
	b.memory()
	b.add("-rtc", "base=utc")
	b.add("-msg", "timestamp=on")
	if spec.Firmware == api.FirmwareUEFI {
		b.add("-blockdev", opts("driver", "file", "node-name", "fw-code-file", "filename", rt.OVMFCode, "read-only", "on"))
		b.add("-blockdev", opts("driver", "raw", "node-name", "fw-code", "file", "fw-code-file", "read-only", "on"))
		b.add("-blockdev", opts("driver", "file", "node-name", "fw-vars-file", "filename", rt.NVRAM))
		b.add("-blockdev", opts("driver", "raw", "node-name", "fw-vars", "file", "fw-vars-file"))
	}
	b.add("-chardev", opts("", "socket", "id", "qmp", "path", rt.QMPSocket, "server", "on", "wait", "off"))
	b.add("-mon", "chardev=qmp,mode=control")
	b.add("-display", "none")
	if spec.VNCConsole {
		b.add("-vnc", "unix:"+esc(rt.VNCSocket))
	}
	b.add("-device", "VGA,id=video0")
	if spec.SerialConsole {
		kv := []string{"", "socket", "id", "charserial0", "path", rt.SerialSocket, "server", "on", "wait", "off"}
		if rt.SerialLog != "" {
			kv = append(kv, "logfile", rt.SerialLog, "logappend", "on")
		}
		b.add("-chardev", opts(kv...))
		b.add("-device", "isa-serial,chardev=charserial0,id=serial0")
	}
	if k := spec.KernelBoot; k != nil {
		b.add("-kernel", b.file(k.Kernel))
		if k.Initrd != "" {
			b.add("-initrd", b.file(k.Initrd))
		}
		if k.Cmdline != "" {
			b.add("-append", k.Cmdline)
		}
	}
	b.storage()
	b.nics()
	b.hotplugPorts()
}

// memory adds -m and, on a resume, the DIMMs hot-added before the suspend.
func (b *builder) memory() {
	spec := b.spec
	boot := b.bootMemoryMiB()
	if !spec.MemoryHotAdd || spec.MaxMemoryMiB <= boot {
		b.add("-m", strconv.Itoa(boot)+"M")
		return
	}
	b.add("-m", opts("size", strconv.Itoa(boot)+"M", "slots", strconv.Itoa(MemorySlots), "maxmem", strconv.Itoa(spec.MaxMemoryMiB)+"M"))
	for i, d := range b.rt.DIMMs {
		b.add("-object", opts("", "memory-backend-ram", "id", DIMMMemdevID(i), "size", strconv.Itoa(d.SizeMiB)+"M"))
		kv := []string{"", "pc-dimm", "id", DIMMID(i), "memdev", DIMMMemdevID(i), "slot", strconv.Itoa(i)}
		if d.Addr != 0 {
			kv = append(kv, "addr", strconv.FormatUint(d.Addr, 10))
		}
		b.add("-device", opts(kv...))
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// storage adds controllers, disks and the CD-ROM. Boot order: disks in
// parameter file order (SCSI, NVMe, virtio-blk), then the CD-ROM, so an
// empty new disk falls through to the installer ISO and an installed system
// boots from its disk with the ISO still inserted.
func (b *builder) storage() {
	spec := b.spec
	for i, c := range spec.SCSIControllers {
		model := "virtio-scsi-pci"
		if c.Model == api.SCSILSILogic {
			model = "megasas"
		}
		b.add("-device", opts("", model, "id", fmt.Sprintf("scsi%d", i)))
	}
	boot := 0
	nvme := map[int]bool{}
	for _, d := range vmconfig.SortDisks(spec.Disks) {
		id := DeviceID(vmconfig.DiskName(d))
		node := b.diskNodes(id, d)
		boot++
		switch d.Bus {
		case api.DiskBusSCSI:
			b.add("-device", opts("", "scsi-hd", "bus", fmt.Sprintf("scsi%d.0", d.Controller),
				"channel", "0", "scsi-id", strconv.Itoa(d.Unit), "lun", "0",
				"drive", node, "id", id, "bootindex", strconv.Itoa(boot)))
		case api.DiskBusNVMe:
			ctrl := fmt.Sprintf("nvme%d", d.Controller)
			if !nvme[d.Controller] {
				nvme[d.Controller] = true
				// The controller's serial is what guests list; it only has
				// to be unique within the VM.
				b.add("-device", opts("", "nvme", "id", ctrl, "serial", "FV-"+ctrl))
			}
			b.add("-device", opts("", "nvme-ns", "bus", ctrl, "nsid", strconv.Itoa(d.Unit+1),
				"drive", node, "id", id, "bootindex", strconv.Itoa(boot)))
		case api.DiskBusVirtio:
			b.add("-device", opts("", "virtio-blk-pci", "drive", node, "id", id, "bootindex", strconv.Itoa(boot)))
		}
	}
	if c := spec.CDROM; c != nil {
		const id = "sata0-0"
		kv := []string{"", "ide-cd", "bus", "ide.0", "id", id}
		if c.File != "" && c.StartConnected {
			file := b.file(c.File)
			b.add("-blockdev", opts("driver", "file", "node-name", id+"-file", "filename", file, "read-only", "on"))
			b.add("-blockdev", opts("driver", "raw", "node-name", id+"-fmt", "file", id+"-file", "read-only", "on"))
			kv = append(kv, "drive", id+"-fmt")
		}
		b.add("-device", opts(append(kv, "bootindex", strconv.Itoa(boot+1))...))
	}
}

// diskNodes adds the file and format nodes of a disk and returns the format
// node's name.
func (b *builder) diskNodes(id string, d api.VirtualDisk) string {
	format := d.Format
	switch d.Provisioning {
	case api.ProvisionThin:
		format = api.DiskQcow2
	case api.ProvisionThick:
		format = api.DiskRaw
	}
	file := []string{"driver", "file", "node-name", id + "-file", "filename", b.file(d.File)}
	fmtNode := []string{"driver", format, "node-name", id + "-fmt", "file", id + "-file"}
	if format == api.DiskQcow2 {
		// Guest TRIM frees space in thin disks; a thick raw disk stays
		// fully allocated, as its operator chose.
		file = append(file, "discard", "unmap")
		fmtNode = append(fmtNode, "discard", "unmap")
	}
	b.add("-blockdev", opts(file...))
	b.add("-blockdev", opts(fmtNode...))
	return id + "-fmt"
}

// HotplugPorts is how many empty PCIe root ports a VM gets: q35 devices on
// the root bus cannot be hot-plugged, so vNICs added while the VM runs go
// into these.
const HotplugPorts = 4

// HotplugPort is the id of spare root port i.
func HotplugPort(i int) string { return fmt.Sprintf("hotplug%d", i) }

func (b *builder) hotplugPorts() {
	for i := 0; i < HotplugPorts; i++ {
		// Chassis numbers must be unique per root port.
		b.add("-device", opts("", "pcie-root-port", "id", HotplugPort(i), "bus", "pcie.0", "chassis", strconv.Itoa(10+i)))
	}
}

func (b *builder) nics() {
	for i, n := range b.spec.NICs {
		id := fmt.Sprintf("ethernet%d", i)
		net := "hostnet" + strconv.Itoa(i)
		t := b.rt.Taps[i]
		kv := []string{"", "tap", "id", net}
		if t.FD != 0 {
			kv = append(kv, "fd", strconv.Itoa(t.FD))
		} else {
			// script=no: hostd creates and attaches the tap itself (HOSTD-6);
			// QEMU must not run /etc/qemu-ifup as root.
			kv = append(kv, "ifname", t.Name, "script", "no", "downscript", "no")
		}
		if n.Model == api.NICVirtio {
			// vhost-net moves the virtio data path into the kernel; it does
			// nothing for emulated e1000/vmxnet3.
			kv = append(kv, "vhost", "on")
			if t.VhostFD != 0 {
				kv = append(kv, "vhostfd", strconv.Itoa(t.VhostFD))
			}
		}
		b.add("-netdev", opts(kv...))
		model := map[string]string{api.NICVirtio: "virtio-net-pci", api.NICE1000: "e1000", api.NICVmxnet3: "vmxnet3"}[n.Model]
		mac, _ := macaddr.Canonical(n.MAC) // valid: Validate checked it
		b.add("-device", opts("", model, "netdev", net, "id", id, "mac", mac))
	}
}
