// Package image builds Flashvisor's bootable images from pinned Debian
// packages and the repository's Go programs, without root, mounts or loop
// devices: the kernel is copied out of its .deb, and everything else goes into
// a deterministic zstd-compressed newc initramfs.
//
// What goes into an image is data (a Profile). Lock resolves a profile's
// package roots against the current apt metadata into a pin file; Build uses
// only that pin file, so the same lock, repository and Go toolchain give the
// same bytes.
package image

import (
	"slices"

	"github.com/flashvisor/flashvisor/api"
)

// Profile declares the contents of one image. Everything a second image (the
// VSM) needs to differ in is a field here, so adding it is a new func
// returning a Profile plus its own lock file.
type Profile struct {
	// Name is recorded in the manifest ("host", later "vsm").
	Name string
	// Lock is the pin file, relative to the repository root.
	Lock string
	// Kernel is the kernel metapackage (linux-image-amd64); Lock pins the
	// concrete linux-image-<abi>-amd64 it depends on, without its Depends
	// (initramfs-tools, kmod: the image needs neither).
	Kernel string
	// Packages are the other root packages; Lock follows their Depends and
	// Pre-Depends recursively and keeps those that contribute files.
	Packages []string
	// Modules are kernel modules to ship with their modules.dep closure.
	// Modules built into the kernel are skipped quietly.
	Modules []string
	// OptionalModules are shipped when the kernel has them.
	OptionalModules []string
	// ModulesLoad is written to /etc/flashvisor/modules.load: modules init
	// loads at boot whatever the hardware.
	ModulesLoad []string
	// Services is written to /etc/flashvisor/services.json.
	Services []api.ServiceSpec
	// Programs are Go main packages of this repository, built into the image.
	Programs []Program
	// Paths are globs (path.Match syntax, merged-/usr spelling or the
	// package's own) selecting files from the packages. Directories are
	// taken recursively, symlinks with their targets, ELF files with their
	// shared-library closure. Each must match something.
	Paths []string
	// Exclude drops matches of Paths (and of directories taken
	// recursively): a glob without '/' matches the base name, otherwise the
	// whole path. ELF dependencies are never excluded.
	Exclude []string
	// Firmware are paths under /lib/firmware to ship (none yet: Debian's
	// firmware packages are in non-free-firmware, which the build machines
	// do not reach).
	Firmware []string
}

// Program is a Go main package built into the image.
type Program struct {
	Pkg  string // e.g. "./hostd/cmd/hostd", relative to the repository root
	Dest string // absolute path in the image
}

// Profiles returns the known profiles by name.
func Profiles() map[string]Profile {
	return map[string]Profile{"host": HostProfile(), "guest": GuestProfile(), "bench": BenchProfile(), "vsm": VSMProfile()}
}

// GuestProfile is the test guest that the end-to-end tests run as a VM: the
// host's kernel and a Go PID 1 (testguest/) that reports on its serial
// console, configures its NIC and answers a few console commands. It ships
// the drivers of every device model a Flashvisor VM can have, and no Debian
// userland, so its initramfs stays a few MiB and boots fast under emulation.
func GuestProfile() Profile {
	drivers := []string{
		// virtio-net, e1000 and vmxnet3 NICs (virtio_pci binds the virtio
		// devices; it is a module in Debian's kernel).
		"virtio_pci", "virtio_net", "e1000", "vmxnet3",
		// Disks: virtio-blk, virtio-scsi, the LSI controller
		// (lsi53c895a -> sym53c8xx) and NVMe.
		"virtio_blk", "virtio_scsi", "sym53c8xx", "sd_mod", "nvme",
		"virtio_console",
		// The ACPI power button (system_powerdown) as an evdev device.
		"button", "evdev",
	}
	return Profile{
		Name: "guest",
		// Its own lock with the kernel only: the host lock would pull every
		// QEMU dependency into the guest's manifest. TestGuestKernelMatchesHost
		// keeps the two kernels the same.
		Lock:   "image/guest.lock",
		Kernel: "linux-image-amd64",
		// Everything is loaded by name at boot: the guest has no coldplug
		// and its devices are whatever the VM was given.
		Modules:     drivers,
		ModulesLoad: drivers,
		Services:    []api.ServiceSpec{},
		Programs:    []Program{{Pkg: "./testguest/cmd/fvguest", Dest: "/init"}},
	}
}

// HostProfile is the Flashvisor host: KVM, QEMU and the host's Go userland.
func HostProfile() Profile {
	return Profile{
		Name:   "host",
		Lock:   "image/debian.lock",
		Kernel: "linux-image-amd64",
		Packages: []string{
			"libc6", "qemu-system-x86", "qemu-system-data", "qemu-utils",
			"e2fsprogs", "seabios", "ovmf", "ipxe-qemu",
			// The emergency shell (flashvisor.shell=true only).
			"busybox-static",
			// Network throughput checks (ESXi ships iperf3 too); the VEM's
			// in-host rate-limit tests measure with it.
			"iperf3",
		},
		Modules: []string{
			// Virtualisation.
			"kvm", "kvm_amd", "kvm_intel", "tun", "vhost", "vhost_net",
			// Running as a guest (the e2e harness) and paravirtual devices.
			"virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi",
			"virtio_console", "virtio_rng", "virtio_balloon",
			// Switching: bridge, VLANs, bonds, nftables (inet and bridge families).
			"bridge", "8021q", "bonding", "nf_tables", "nf_conntrack", "nft_ct",
			"nft_reject_inet", "nf_reject_ipv4", "nf_reject_ipv6", "nft_fib_inet",
			"nft_limit",
			// Traffic control for port rate limits and filters (VEM-5): ingress
			// policing (tc police on an ingress/clsact qdisc with matchall,
			// u32 or flower filters), egress shaping, drop/redirect actions.
			"sch_ingress", "sch_tbf", "sch_htb", "cls_matchall", "cls_u32",
			"cls_flower", "act_police", "act_gact", "act_mirred",
			// Virtual links: the VEM's root tests wire namespaces together.
			"veth", "dummy",
			// Filesystems and network storage.
			"ext4", "xfs", "nfs", "nfsv3", "nfsv4", "sunrpc",
			"iscsi_tcp", "libiscsi", "scsi_transport_iscsi",
			// Local storage.
			"sd_mod", "sr_mod", "sg", "ahci", "nvme", "usb_storage", "uas",
			"xhci_pci", "xhci_hcd", "ehci_pci",
			// Console and ACPI power button (init watches KEY_POWER).
			"button", "evdev",
			// Server NICs.
			"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "mlx5_core",
		},
		OptionalModules: []string{"nft_reject_bridge"},
		ModulesLoad: []string{
			"kvm_amd", "kvm_intel", "tun", "vhost_net", "bridge", "8021q",
			"bonding", "nf_tables", "button", "evdev", "virtio_rng", "ext4",
		},
		// hostd gets three minutes at host shutdown: it shuts its VMs
		// down (ACPI, then forced) before it exits.
		// vemd comes first: it restores the switch's last programming
		// before hostd (or anything else) talks to the switch (VEM-8).
		Services: []api.ServiceSpec{
			{Name: "vemd", Path: "/usr/lib/flashvisor/vemd"},
			{Name: "hostd", Path: "/usr/lib/flashvisor/hostd", StopTimeoutSeconds: 180},
		},
		Programs: []Program{
			{Pkg: "./init/cmd/init", Dest: "/init"},
			{Pkg: "./vem/cmd/vemd", Dest: "/usr/lib/flashvisor/vemd"},
			{Pkg: "./hostd/cmd/hostd", Dest: "/usr/lib/flashvisor/hostd"},
			{Pkg: "./cmd/fvctl", Dest: "/usr/bin/fvctl"},
		},
		Paths: []string{
			"/usr/bin/qemu-system-x86_64",
			"/usr/bin/qemu-img",
			"/sbin/mke2fs", "/sbin/mkfs.ext4", "/sbin/e2fsck",
			"/bin/busybox",
			"/usr/bin/iperf3",
			// QEMU's dlopen'd modules for a headless hypervisor.
			"/usr/lib/x86_64-linux-gnu/qemu/accel-*.so",
			"/usr/lib/x86_64-linux-gnu/qemu/hw-usb-host.so",
			"/usr/lib/x86_64-linux-gnu/qemu/hw-usb-redirect.so",
			"/usr/lib/x86_64-linux-gnu/qemu/hw-display-virtio-gpu.so",
			"/usr/lib/x86_64-linux-gnu/qemu/hw-display-virtio-gpu-pci.so",
			"/usr/lib/x86_64-linux-gnu/qemu/hw-display-virtio-vga.so",
			// Firmware, option ROMs, keymaps, firmware descriptors.
			"/usr/share/qemu",
			// Debian's QEMU searches /usr/share/qemu, /usr/share/seabios and
			// /usr/lib/ipxe/qemu for firmware (--firmwarepath). Current
			// machine types use the efi-* option ROMs.
			"/usr/share/seabios",
			"/usr/lib/ipxe/qemu/efi-*.rom",
			"/usr/share/OVMF/OVMF_CODE_4M*.fd",
			"/usr/share/OVMF/OVMF_VARS_4M*.fd",
		},
		Exclude: []string{
			// Other architectures' firmware in qemu-system-data.
			"openbios-*", "*.dtb", "hppa-firmware.img", "opensbi-*",
			"palcode-*", "s390-*", "skiboot.lid", "slof.bin", "vof.bin",
			"QEMU,cgthree.bin", "QEMU,tcx.bin", "npcm7xx_bootrom.bin",
			"u-boot*", "edk2-*",
			// 2 MiB flash images; the 4M variants are the ones QEMU's
			// descriptors prefer.
			"/usr/share/qemu/OVMF.fd",
		},
	}
}

// BenchProfile is the host image plus Open vSwitch, for the VEM benchmark
// (qemu-test/cmd/fvbench -only vem), which compares the VEM with a plain
// bridge and with OVS inside one emulated host. OVS stays out of the host
// image (its size) and gets its own lock, image/bench.lock, refreshed by
// `make lock` with the others. Everything else is the host's: same kernel,
// same programs and services.
func BenchProfile() Profile {
	p := HostProfile()
	p.Name = "bench"
	p.Lock = "image/bench.lock"
	// ovsdb-server, ovsdb-tool, ovs-ofctl, ovs-appctl (common) and
	// ovs-vswitchd, ovs-vsctl, ovs-dpctl, the schema (switch). Their Python
	// and init-script dependencies contribute no file, so the lock leaves
	// them out.
	p.Packages = append(slices.Clone(p.Packages), "openvswitch-switch", "openvswitch-common")
	// OVS's kernel datapath (its closure brings nsh, nf_conncount, nf_nat,
	// nf_conntrack and the defrag modules), and the kernel's packet
	// generator for the small-packet test.
	p.Modules = append(slices.Clone(p.Modules), "openvswitch", "pktgen")
	p.ModulesLoad = append(slices.Clone(p.ModulesLoad), "openvswitch", "pktgen")
	p.Paths = append(slices.Clone(p.Paths),
		"/usr/lib/openvswitch-switch/ovs-vswitchd",
		"/usr/sbin/ovsdb-server",
		"/usr/bin/ovsdb-tool",
		"/usr/bin/ovs-vsctl",
		"/usr/bin/ovs-ofctl",
		"/usr/bin/ovs-appctl",
		"/usr/bin/ovs-dpctl",
		"/usr/share/openvswitch/vswitch.ovsschema",
	)
	return p
}

// VSMProfile is the distributed switch's control plane as a VM image
// (VSM-1): the host's kernel and init, the vsm service instead of hostd and
// vemd, and only the drivers a VM needs. hostd runs it like any VM (1 vCPU,
// at most 512 MiB, three virtio NICs: control, management, packet, and a
// small disk that init turns into the state partition). No Debian userland:
// the vsm program serves its CLI over SSH and HTTPS itself.
func VSMProfile() Profile {
	drivers := []string{
		"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "sd_mod",
		"virtio_console", "virtio_rng",
		// The state partition and the ACPI power button (hostd shuts the
		// VSM down like any guest).
		"ext4", "button", "evdev",
	}
	return Profile{
		Name: "vsm",
		// The host's kernel (TestGuestKernelMatchesHost checks the pins).
		Lock:   "image/vsm.lock",
		Kernel: "linux-image-amd64",
		// mke2fs for the state partition (init formats it at first
		// boot); busybox only for the emergency shell.
		Packages:    []string{"e2fsprogs", "busybox-static"},
		Modules:     drivers,
		ModulesLoad: drivers,
		Services: []api.ServiceSpec{
			{Name: "vsm", Path: "/usr/lib/flashvisor/vsm", StopTimeoutSeconds: 10},
		},
		Programs: []Program{
			{Pkg: "./init/cmd/init", Dest: "/init"},
			{Pkg: "./vsm/cmd/vsm", Dest: "/usr/lib/flashvisor/vsm"},
		},
		Paths: []string{"/bin/busybox", "/sbin/mke2fs", "/sbin/mkfs.ext4", "/sbin/e2fsck"},
	}
}
