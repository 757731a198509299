package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	boot "github.com/flashvisor/flashvisor/init"
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/flashvisor/flashvisor/internal/layout"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ModulesLoadFile is where the image builder lists the guest's drivers
// (image.ModulesLoadFile; not imported, the builder is no guest code).
const ModulesLoadFile = layout.EtcDir + "/modules.load"

// Timeouts of the boot. Under software emulation the drivers bind within a
// second; DHCP gets long enough for a slow server but not forever: a guest
// without an address still comes up and says ip=none.
const (
	nicWait     = 10 * time.Second
	dhcpTimeout = 60 * time.Second
	diskWait    = 5 * time.Second
	syncCap     = 5 * time.Second
)

// pid1 is the state of the running guest.
type pid1 struct {
	log     *slog.Logger
	out     *LineWriter
	cfg     Config
	g       *Guest
	modules *boot.Modules
	ready   Ready
	in      *os.File
	groups  Memberships
}

// Ready is what the READY marker reports.
type Ready struct {
	Name, MAC, IP string
}

// String is the marker line.
func (r Ready) String() string {
	return fmt.Sprintf("%s READY name=%s mac=%s ip=%s", Marker, r.Name, r.MAC, r.IP)
}

// Run is the guest's PID 1: boot, print the READY marker, then serve
// console commands until a power-off. stdout is the kernel's /dev/console,
// used until the configured console is open. Run returns only when it could
// neither serve nor power off.
func Run(ctx context.Context, stdout io.Writer) (err error) {
	p := &pid1{out: NewLineWriter(stdout)}
	p.log = slog.New(slog.NewTextHandler(p.out, nil)).With("c", "fvguest")
	p.g = &Guest{Log: p.log, Out: p.out, FindDisk: p.findDisk, Addrs: InterfaceAddrs, MemTotal: memTotal, PowerOff: powerOff,
		Echo: func(a netip.Addr) (time.Duration, error) { return ICMPEcho(a, 3, time.Second) }, Join: p.groups.Join}
	// A panic anywhere in the main goroutine ends in a clean power-off,
	// never in a hung VM (the goroutines below guard themselves).
	defer func() {
		if r := recover(); r != nil {
			p.out.Println(fmt.Sprintf("%s PANIC %v", Marker, r))
			p.out.Println(string(debug.Stack()))
			p.g.Shutdown("panic")
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if os.Getpid() != 1 {
		return errors.New("must run as PID 1 (the guest image's /init)")
	}
	p.out.Println("fvguest: starting")
	res := boot.RunSteps(p.steps(ctx), p.log, p.out)
	if f := boot.Failed(res); len(f) > 0 {
		p.log.Warn("boot steps failed", "steps", strings.Join(f, " "))
	}
	p.out.Println(p.ready.String())
	if up, err := uptime(); err == nil {
		p.log.Info("ready", "since_kernel_start", up.Round(time.Millisecond))
	}
	in := p.consoleIn()
	for {
		err := p.g.Serve(in)
		// A terminal does not end; if reading fails anyway, try again
		// rather than leave PID 1 (a kernel panic).
		p.log.Error("console read", "err", err)
		time.Sleep(time.Second)
	}
}

// steps is the guest's boot, as data like the host's (boot.Step).
func (p *pid1) steps(ctx context.Context) []boot.Step {
	return []boot.Step{
		{Name: "mount", Critical: true, Do: func() error { return boot.MountAll(boot.EarlyMounts()) }},
		{Name: "cmdline", Do: p.cmdline},
		{Name: "console", Do: p.console},
		{Name: "sysctl", Do: func() error { return boot.ApplySysctls("/proc/sys", sysctls()) }},
		{Name: "signals", Do: p.signals},
		{Name: "modules", Do: p.loadModules},
		{Name: "power-button", Do: p.powerButton},
		{Name: "network", Do: func() error { return p.network(ctx) }},
	}
}

// sysctls: a kernel panic reboots after a second (with QEMU's -no-reboot
// the VM ends) instead of hanging the test; kernel messages below warning
// stay off the console the commands share.
func sysctls() map[string]string {
	return map[string]string{
		"kernel/panic":         "1",
		"kernel/panic_on_oops": "1",
		"kernel/printk":        "4 4 1 7",
		"kernel/modprobe":      "/sbin/modprobe",
	}
}

func (p *pid1) cmdline() error {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		p.cfg, _ = ParseConfig("")
		return err
	}
	p.cfg, err = ParseConfig(string(b))
	p.ready.Name = p.cfg.Name
	if err != nil {
		p.out.Println(errReply(err))
	}
	if herr := unix.Sethostname([]byte(p.cfg.Name)); herr != nil {
		err = errors.Join(err, fmt.Errorf("hostname: %w", herr))
	}
	return err
}

// console switches output to the configured serial port and sets its line
// discipline for a machine protocol: whole lines (canonical mode), no echo
// of the commands, no signals or end-of-file from control characters.
func (p *pid1) console() error {
	f, err := os.OpenFile(p.cfg.Console, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("console %s (staying on /dev/console): %w", p.cfg.Console, err)
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		f.Close()
		return fmt.Errorf("console %s: %w", p.cfg.Console, err)
	}
	t.Lflag |= unix.ICANON
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ISIG | unix.IEXTEN
	t.Iflag |= unix.ICRNL
	t.Iflag &^= unix.IXON | unix.IXOFF
	t.Oflag |= unix.OPOST | unix.ONLCR
	t.Cc[unix.VEOF] = 0 // _POSIX_VDISABLE: ^D is text, never end of file
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		f.Close()
		return fmt.Errorf("console %s: %w", p.cfg.Console, err)
	}
	p.out.Redirect(f)
	p.in = f
	return nil
}

func (p *pid1) consoleIn() io.Reader {
	if p.in != nil {
		return p.in
	}
	return os.Stdin
}

// signals: Ctrl-Alt-Del becomes SIGINT to PID 1 instead of a hard reboot;
// it, SIGTERM and SIGPWR power off cleanly.
func (p *pid1) signals() error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGPWR)
	go p.guard(func() {
		s := <-sigs
		p.g.Shutdown("signal " + s.String())
	})
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		return fmt.Errorf("ctrl-alt-del to init: %w", err)
	}
	return nil
}

// guard runs f and turns its panic into a power-off.
func (p *pid1) guard(f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.out.Println(fmt.Sprintf("%s PANIC %v", Marker, r))
			p.g.Shutdown("panic")
		}
	}()
	f()
}

func (p *pid1) loadModules() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	m, err := boot.NewModules(p.log, filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:])))
	if err != nil {
		return err
	}
	p.modules = m
	return m.LoadList(ModulesLoadFile)
}

func (p *pid1) powerButton() error {
	w := boot.WatchPowerButton(p.log, "/sys/class/input", "/dev/input", func() {
		p.guard(func() { p.g.Shutdown("ACPI power button") })
	})
	if len(w) == 0 {
		return errors.New("no power button (button and evdev loaded?)")
	}
	p.log.Info("watching the power button", "devices", strings.Join(w, " "))
	return nil
}

// network configures the first NIC (boot.Network, as the host's management
// NIC) and fills in the READY marker; without a NIC or an address it still
// lets the guest come up.
func (p *pid1) network(ctx context.Context) error {
	p.ready.MAC, p.ready.IP = "none", "none"
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if p.cfg.IP == nil {
		if nics, err := boot.ListNICs("/sys/class/net"); err == nil {
			if nic, err := boot.PickMgmtNIC(nics, ""); err == nil {
				p.ready.MAC = nic.MAC
			}
		}
		return nil
	}
	n := &boot.Network{Log: p.log, SysNet: "/sys/class/net", NICWait: nicWait}
	dctx, cancel := context.WithTimeout(ctx, dhcpTimeout)
	defer cancel()
	info, err := n.Up(dctx, cmdline.Config{Mgmt: p.cfg.IP})
	if info.MAC != "" {
		p.ready.MAC = info.MAC
	}
	if errors.Is(err, boot.ErrNoNIC) {
		p.log.Info("no NIC")
		return nil
	}
	if err != nil {
		return err
	}
	if a, perr := netip.ParsePrefix(info.Address); perr == nil {
		p.ready.IP = a.Addr().String()
	}
	if p.cfg.IP.DHCP {
		go p.guard(func() { n.RenewLoop(ctx, info.NIC, n.Lease) })
	}
	return nil
}

// findDisk is the configured disk or the first one; disks behind a SCSI
// controller are scanned asynchronously, so it waits a little for one.
func (p *pid1) findDisk() (string, error) {
	if p.cfg.Disk != "" {
		return p.cfg.Disk, nil
	}
	deadline := time.Now().Add(diskWait)
	for {
		var names []string
		if ents, err := os.ReadDir("/sys/block"); err == nil {
			for _, e := range ents {
				names = append(names, e.Name())
			}
		}
		dev, err := FirstDisk(names)
		if err == nil || time.Now().After(deadline) {
			return dev, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// powerOff flushes (with a cap: a dead disk must not keep the VM up) and
// powers off. Nothing is mounted but API filesystems, so there is nothing
// to unmount.
func powerOff() error {
	boot.SyncWithCap(syncCap)
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// memTotal is MemTotal of /proc/meminfo, in KiB: it grows when hot-added
// memory is onlined (memhp_default_state=online on the kernel command
// line does that as the memory arrives).
func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return ParseMemTotal(string(b))
}

// uptime is the time since the kernel started (/proc/uptime), for the boot
// time log line.
func uptime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	var secs float64
	if _, err := fmt.Sscanf(string(b), "%f", &secs); err != nil {
		return 0, err
	}
	return time.Duration(secs * float64(time.Second)), nil
}
