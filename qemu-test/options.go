package qemutest

import (
	"io"
	"time"
)

// Defaults of a VM when no option says otherwise.
const (
	DefaultMemoryMiB = 2048
	DefaultCPUs      = 2
	DefaultQEMU      = "qemu-system-x86_64"
	DefaultNICModel  = "virtio-net-pci"
)

// DefaultAppend returns the parameters every kernel command line starts
// with: the console on the first serial port (the one the harness reads), a
// reboot right after a panic, so that with WithNoReboot a panic makes QEMU
// exit at once instead of hanging until the timeout, and no transparent
// huge pages: nested VMs then run on 4 KiB nested page tables, which QEMU's
// nested-SVM emulation under TCG handles more reliably (docs/design.md).
func DefaultAppend() []string {
	return []string{"console=ttyS0,115200", "panic=-1", "transparent_hugepage=never"}
}

// TCGAppend returns what a kernel command line gets when the machine is
// emulated (TCG): no nested paging in the host's KVM (kvm_amd.npt=0: it
// shadows its VMs' page tables itself), which keeps nested VMs off QEMU's
// emulation of nested paging, where the emulated hosts' kernels died most
// (docs/design.md). Under a real KVM nested paging stays on.
func TCGAppend() []string { return []string{"kvm_amd.npt=0"} }

// Option configures a VM started by Start or Boot.
type Option func(*config)

// disk is one virtio-blk disk; blank disks are created in the state folder.
type disk struct {
	path      string // empty for a blank disk until Start creates it
	serial    string
	blankName string
	blankMiB  int
}

// forward is one user-mode networking host forward. hostPort 0 means "pick a
// free port at start".
type forward struct {
	hostPort, guestPort int
	guestIP             string // "" for the VM's own DHCP address
}

type config struct {
	qemu      string
	kernel    string
	initrd    string
	appendArg []string
	memoryMiB int
	cpus      int
	disks     []disk
	forwards  []forward
	nicModel  string
	hubAddrs  []string // one more NIC per address, on a Hub
	timeout   time.Duration
	extraArgs []string
	stateDir  string
	noReboot  bool
	accel     string // "", "kvm" or "tcg"
	kvmDevice string
	testLeft  time.Duration // time left before the test binary's -timeout

	logf       func(format string, args ...any)
	consoleOut io.Writer
	consoleIn  io.Reader
}

func defaultConfig() config {
	return config{
		qemu:      DefaultQEMU,
		appendArg: DefaultAppend(),
		memoryMiB: DefaultMemoryMiB,
		cpus:      DefaultCPUs,
		nicModel:  DefaultNICModel,
		kvmDevice: "/dev/kvm",
	}
}

// WithKernel boots this kernel (bzImage) directly with -kernel.
func WithKernel(path string) Option { return func(c *config) { c.kernel = path } }

// WithInitrd passes this initramfs with -initrd.
func WithInitrd(path string) Option { return func(c *config) { c.initrd = path } }

// WithAppend adds parameters to the kernel command line, after the defaults
// (DefaultAppend). Later options add to earlier ones.
func WithAppend(params ...string) Option {
	return func(c *config) { c.appendArg = append(c.appendArg, params...) }
}

// WithMemory sets the guest RAM in MiB (default 2048).
func WithMemory(mib int) Option { return func(c *config) { c.memoryMiB = mib } }

// WithCPUs sets the number of vCPUs (default 2).
func WithCPUs(n int) Option { return func(c *config) { c.cpus = n } }

// WithDisk attaches a raw image as a virtio-blk disk. Disks appear in the
// guest in the order of the options (vda, vdb, ...); serial (at most 20
// bytes) is visible as /sys/block/vdX/serial.
func WithDisk(path, serial string) Option {
	return func(c *config) { c.disks = append(c.disks, disk{path: path, serial: serial}) }
}

// WithBlankDisk creates a sparse raw file NAME.img of sizeMiB in the VM's
// state folder at start and attaches it like WithDisk, with NAME as serial.
// vm.DiskPath(name) returns its path.
func WithBlankDisk(name string, sizeMiB int) Option {
	return func(c *config) {
		c.disks = append(c.disks, disk{serial: name, blankName: name, blankMiB: sizeMiB})
	}
}

// WithForward forwards a free 127.0.0.1 port on the machine running the test
// to guestPort on the VM's user-mode NIC; vm.HostAddr(guestPort) tells which.
func WithForward(guestPort int) Option {
	return func(c *config) { c.forwards = append(c.forwards, forward{guestPort: guestPort}) }
}

// WithForwardTo forwards a free 127.0.0.1 port to guestIP:guestPort on the
// user-mode network: another machine behind the VM's NIC, such as a nested
// VM bridged onto it (the VSM). vm.HostAddrTo(guestIP, guestPort) tells
// which port; from inside any emulated machine it is 10.0.2.2:that port.
func WithForwardTo(guestIP string, guestPort int) Option {
	return func(c *config) {
		c.forwards = append(c.forwards, forward{guestIP: guestIP, guestPort: guestPort})
	}
}

// WithForwardPort forwards the fixed 127.0.0.1:hostPort to guestPort (for
// fvrun, whose users want a stable address).
func WithForwardPort(hostPort, guestPort int) Option {
	return func(c *config) {
		c.forwards = append(c.forwards, forward{hostPort: hostPort, guestPort: guestPort})
	}
}

// WithNICModel sets the QEMU device model of the NIC (default virtio-net-pci).
func WithNICModel(model string) Option { return func(c *config) { c.nicModel = model } }

// WithHubNIC gives the VM one more NIC (after the user-mode one, so the
// first is eth0 in a Linux guest and this one eth1, the next eth2...) on
// the virtual Ethernet segment of h, shared with every other VM that
// joined it: a virtio-net NIC whose QEMU backend connects to the hub
// ("-netdev socket,connect="). Its MAC is derived from the VM's name and
// the NIC's index, so hosts on one segment never collide; vm.MAC(i)
// tells it.
func WithHubNIC(h *Hub) Option {
	return func(c *config) { c.hubAddrs = append(c.hubAddrs, h.Addr()) }
}

// WithTimeout sets the whole-VM deadline: when it passes, QEMU is killed and
// the test fails with the last console lines. Zero means no deadline other
// than the test binary's own.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithQEMU runs this binary instead of qemu-system-x86_64 (the self-tests use
// a fake).
func WithQEMU(binary string) Option { return func(c *config) { c.qemu = binary } }

// WithExtraArgs appends raw QEMU arguments after the generated ones.
func WithExtraArgs(args ...string) Option {
	return func(c *config) { c.extraArgs = append(c.extraArgs, args...) }
}

// WithStateDir keeps the VM's log, QMP socket and blank disks in dir instead
// of the default state folder.
func WithStateDir(dir string) Option { return func(c *config) { c.stateDir = dir } }

// WithNoReboot passes -no-reboot: a guest reboot (or a panic, with the default
// panic=-1) makes QEMU exit.
func WithNoReboot() Option { return func(c *config) { c.noReboot = true } }

// WithAccel forces the accelerator: "kvm", "tcg", or "" to choose (KVM when
// /dev/kvm opens read-write). Start fails when "kvm" is forced but unusable.
func WithAccel(accel string) Option { return func(c *config) { c.accel = accel } }

// WithLogf sends the harness's own messages and, unless WithConsoleOutput is
// given, every console line to logf. Start uses t.Logf.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *config) { c.logf = logf }
}

// WithConsoleOutput copies the raw console bytes to w as they arrive (for an
// interactive terminal: prompts have no newline). Console lines then no
// longer go to logf; they are still kept and written to the log file.
func WithConsoleOutput(w io.Writer) Option { return func(c *config) { c.consoleOut = w } }

// WithConsoleInput sends r to the serial console (keyboard input). Without it
// the console's input is empty.
func WithConsoleInput(r io.Reader) Option { return func(c *config) { c.consoleIn = r } }
