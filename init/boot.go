package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/flashvisor/flashvisor/internal/layout"
	"golang.org/x/sys/unix"
)

// Machine is PID 1's state. Paths are fields so tests can point them away
// from the real system.
type Machine struct {
	Log     *slog.Logger
	Console io.Writer
	Reaper  *Reaper

	Cmdline string // text of /proc/cmdline
	Cfg     cmdline.Config
	Info    api.BootInfo
	Net     *Network
	Modules *Modules
	Sup     *Supervisor

	power     chan PowerAction
	powerOnce sync.Once
	// stopRenew ends the management DHCP renew loop (release-network).
	stopRenew context.CancelFunc
	ctx       context.Context
	cancel    context.CancelFunc
}

// Steps is the boot sequence as data (INIT-2). Order matters: modules
// before disks and NICs, the state partition before the identity that
// lives on it, the network before the services that listen on it.
func (m *Machine) Steps() []Step {
	return []Step{
		{Name: "mount", Critical: true, Do: func() error { return MountAll(EarlyMounts()) }},
		{Name: "console", Do: m.console},
		{Name: "sysctl", Do: func() error { return ApplySysctls("/proc/sys", Sysctls()) }},
		{Name: "cmdline", Do: m.parseCmdline},
		{Name: "modules", Do: m.loadModules},
		{Name: "entropy", Do: func() error { return SeedEntropy("/dev/urandom", []byte(m.Cmdline)) }},
		{Name: "state", Do: m.state},
		{Name: "identity", Do: m.identity},
		{Name: "hostname", Do: m.hostname},
		{Name: "network", Do: m.network},
		{Name: "power-button", Do: m.powerButton},
	}
}

// console points init's own stdio at /dev/console now that devtmpfs is up,
// and has the kernel send Ctrl-Alt-Del to us (SIGINT) instead of rebooting.
func (m *Machine) console() error {
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		return fmt.Errorf("ctrl-alt-del to init: %w", err)
	}
	return nil
}

func (m *Machine) parseCmdline() error {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	m.Cmdline = strings.TrimSpace(string(b))
	// Parse reports every bad key but still returns the good ones: a typo
	// in one key must not cost the operator the others.
	m.Cfg, err = cmdline.Parse(m.Cmdline)
	return err
}

func (m *Machine) loadModules() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	mods, err := NewModules(m.Log, dir)
	if err != nil {
		return err
	}
	mods.Params = ModuleParams(m.Cmdline)
	m.Modules = mods
	var errs []error
	loaded, err := mods.Coldplug("/sys/bus")
	if err != nil {
		errs = append(errs, err)
	}
	m.Log.Info("coldplug", "loaded", strings.Join(loaded, " "))
	if err := mods.LoadList(layout.ModulesLoadFile); err != nil {
		errs = append(errs, err)
	}
	// Modules from the list can create devices that need drivers in turn.
	if more, err := mods.Coldplug("/sys/bus"); err != nil {
		errs = append(errs, err)
	} else if len(more) > 0 {
		m.Log.Info("coldplug", "loaded", strings.Join(more, " "))
	}
	return errors.Join(errs...)
}

// state mounts the state partition (FLASH-4), initialising a blank one when
// the command line asks for it; without one the host runs with state in RAM.
func (m *Machine) state() error {
	dir := layout.StateDir
	m.Info.StateDir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dev, err := m.findState()
	if err != nil {
		_ = unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
		return fmt.Errorf("no state partition, configuration is kept in RAM only: %w", err)
	}
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOATIME|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		_ = unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
		return fmt.Errorf("mount state partition %s: %w", dev, err)
	}
	m.Info.PersistentState = true
	m.Log.Info("state partition mounted", "device", dev, "at", dir)
	return nil
}

func (m *Machine) findState() (string, error) {
	// Disks show up while their drivers probe: give them a moment.
	var dev string
	var err error
	for i := 0; i < 10; i++ {
		dev, err = FindByLabel("/sys/class/block", "/dev", layout.StateLabel)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		if m.Cfg.InitState != "" {
			if _, serr := os.Stat(m.Cfg.InitState); serr == nil {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err == nil || !errors.Is(err, os.ErrNotExist) || m.Cfg.InitState == "" {
		return dev, err
	}
	target := m.Cfg.InitState
	if err := CheckBlank(target); err != nil {
		return "", fmt.Errorf("flashvisor.initstate=%s: %w", target, err)
	}
	fmt.Fprintf(m.Console, "flashvisor: initialising state partition on %s\n", target)
	out, err := m.Reaper.Output(exec.Command("/sbin/mke2fs", "-t", "ext4", "-q", "-F", "-m", "0", "-L", layout.StateLabel, target))
	if err != nil {
		return "", fmt.Errorf("mke2fs %s: %w (%s)", target, err, out)
	}
	return target, nil
}

func (m *Machine) identity() error {
	id, created, err := HostUUID(m.Info.StateDir, layout.HostUUIDFile)
	if err != nil {
		m.Info.HostUUID = NewUUID()
		return fmt.Errorf("host uuid (using a temporary one): %w", err)
	}
	m.Info.HostUUID = id
	if created {
		m.Log.Info("new host uuid", "uuid", id)
	}
	return nil
}

func (m *Machine) hostname() error {
	name := m.Cfg.Hostname
	if name == "" {
		name = "flashvisor-" + strings.SplitN(m.Info.HostUUID, "-", 2)[0]
	}
	m.Info.Hostname = name
	if err := unix.Sethostname([]byte(name)); err != nil {
		return err
	}
	return os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644)
}

func (m *Machine) network() error {
	ctx, cancel := context.WithTimeout(m.ctx, 60*time.Second)
	defer cancel()
	if m.Info.StateDir != "" {
		if _, err := os.Stat(filepath.Join(m.Info.StateDir, layout.VswifMarker)); err == nil {
			// The management address lives on vswif0, which hostd brings
			// up on the switch; the NIC is only an uplink.
			info, err := m.Net.Uplink(ctx, m.Cfg)
			m.Info.Management = info
			m.Log.Info("management network is vswif0 on the switch", "uplink", info.NIC)
			return err
		}
	}
	info, err := m.Net.Up(ctx, m.Cfg)
	m.Info.Management = info
	if err != nil {
		return err
	}
	if info.Mode == "dhcp" {
		rctx, stop := context.WithCancel(m.ctx)
		m.stopRenew = stop
		go m.Net.RenewLoop(rctx, info.NIC, m.Net.Lease)
	}
	return nil
}

// releaseNetwork hands the management NIC to the switch (the op
// release-network): no more DHCP renewals, no addresses or VLAN
// sub-interface of init's left on it.
func (m *Machine) releaseNetwork() error {
	if m.stopRenew != nil {
		m.stopRenew()
	}
	return m.Net.Release(m.Info.Management)
}

func (m *Machine) powerButton() error {
	var watched []string
	// The button driver registers its input device shortly after loading.
	for i := 0; i < 10 && len(watched) == 0; i++ {
		watched = WatchPowerButton(m.Log, "/sys/class/input", "/dev/input", func() {
			m.Log.Info("power button pressed")
			m.Power(PowerOff)
		})
		if len(watched) == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(watched) == 0 {
		return errors.New("no power button input device found")
	}
	m.Log.Info("watching power button", "devices", strings.Join(watched, " "))
	return nil
}

// Power starts the shutdown funnel once; later requests are ignored.
func (m *Machine) Power(a PowerAction) {
	select {
	case m.power <- a:
	default:
	}
}

// Main is PID 1. It never returns: every path ends in the shutdown funnel.
func Main() {
	console := io.Writer(os.Stdout)
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelInfo})).With("c", "init")
	m := &Machine{Log: log, Console: console, power: make(chan PowerAction, 1)}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(console, "flashvisor: PANIC in init: %v\n%s\n", r, debug.Stack())
			m.funnel(Reboot)
		}
	}()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "init: must run as PID 1")
		os.Exit(1)
	}
	fmt.Fprintln(console, "flashvisor: init starting")
	m.Reaper = NewReaper(log)
	m.Net = &Network{Log: log, SysNet: "/sys/class/net", Resolv: "/etc/resolv.conf", NICWait: 15 * time.Second}
	m.Info.BootTime = time.Now().UTC()

	// Signals before anything else: a Ctrl-Alt-Del during boot must work.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
	go func() {
		for s := range sigs {
			log.Info("signal", "signal", s)
			switch s {
			case unix.SIGINT, unix.SIGTERM: // Ctrl-Alt-Del; busybox's reboot convention
				m.Power(Reboot)
			default:
				m.Power(PowerOff)
			}
		}
	}()

	res := RunSteps(m.Steps(), log, console)
	m.Info.FailedSteps = Failed(res)
	if err := m.writeBootInfo(); err != nil {
		log.Error("boot info", "err", err)
	}

	specs, err := readServices(layout.ServicesFile)
	if err != nil {
		log.Error("services", "err", err)
		fmt.Fprintf(console, "flashvisor: cannot read %s: %v\n", layout.ServicesFile, err)
	}
	if m.Cfg.Shell {
		// Only when asked for on the command line (INIT-6): a root shell on
		// the console is a way around the API's authentication.
		fmt.Fprintln(console, "flashvisor: emergency shell enabled on the console (flashvisor.shell)")
		specs = append(specs, api.ServiceSpec{Name: "shell", Path: "/bin/busybox", Args: []string{"sh", "-l"}, Console: true})
	}
	m.Sup = NewSupervisor(specs, SupervisorOptions{Log: log, Reaper: m.Reaper, Console: console, ConsoleDevice: "/dev/console",
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux"}})
	m.Sup.Start()

	ctl := &Control{Sup: m.Sup, Power: m.Power, ReleaseNetwork: m.releaseNetwork, Log: log}
	l, err := Listen(layout.InitSocket)
	if err != nil {
		log.Error("control socket", "err", err)
	} else {
		go func() {
			if err := ctl.Serve(l); err != nil {
				log.Error("control socket", "err", err)
			}
		}()
	}
	go m.RunScreen("/dev/tty1", filepath.Join(m.Info.StateDir, layout.TLSCertFile), imageVersion(layout.ManifestFile))
	fmt.Fprintf(console, "flashvisor: host %s (%s) is up; %d boot step(s) failed\n", m.Info.Hostname, m.Info.HostUUID, len(m.Info.FailedSteps))
	m.funnel(<-m.power)
}

func (m *Machine) writeBootInfo() error {
	if err := os.MkdirAll(layout.RunDir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m.Info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(layout.BootInfoFile, b, 0o644)
}

// readServices reads the image's service list; a bad file is an error, not
// a silent empty list.
func readServices(path string) ([]api.ServiceSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseServices(b)
}

// ParseServices validates services.json.
func ParseServices(b []byte) ([]api.ServiceSpec, error) {
	var specs []api.ServiceSpec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	seen := map[string]bool{}
	for i, s := range specs {
		switch {
		case !serviceNameRE.MatchString(s.Name):
			return nil, fmt.Errorf("services[%d]: invalid name %q", i, s.Name)
		case seen[s.Name]:
			return nil, fmt.Errorf("services[%d]: duplicate name %q", i, s.Name)
		case !filepath.IsAbs(s.Path):
			return nil, fmt.Errorf("services[%d] (%s): path %q is not absolute", i, s.Name, s.Path)
		case s.StopTimeoutSeconds < 0 || s.StopTimeoutSeconds > 3600:
			return nil, fmt.Errorf("services[%d] (%s): stop_timeout_seconds %d out of range 0-3600", i, s.Name, s.StopTimeoutSeconds)
		}
		seen[s.Name] = true
	}
	return specs, nil
}

// funnel is the one way down (INIT-5): stop services in reverse order,
// unmount, sync with a cap, then power off or reboot. It never returns.
func (m *Machine) funnel(a PowerAction) {
	m.powerOnce.Do(func() {
		fmt.Fprintf(m.Console, "flashvisor: %s requested; stopping services\n", a)
		if m.cancel != nil {
			m.cancel()
		}
		if err := os.WriteFile(layout.ShutdownMarker, []byte(a.String()+"\n"), 0o644); err != nil {
			m.Log.Warn("shutdown marker", "err", err)
		}
		if m.Sup != nil {
			m.Sup.StopAll()
		}
		UnmountAll(m.Log, "/proc/self/mounts")
		if !SyncWithCap(10 * time.Second) {
			fmt.Fprintln(m.Console, "flashvisor: sync did not finish in 10 s; going down anyway")
		}
		fmt.Fprintf(m.Console, "flashvisor: %s now\n", a)
		cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
		if a == Reboot {
			cmd = unix.LINUX_REBOOT_CMD_RESTART
		}
		if err := unix.Reboot(cmd); err != nil {
			fmt.Fprintf(m.Console, "flashvisor: reboot syscall: %v\n", err)
		}
	})
	// PID 1 must never exit: that is a kernel panic.
	for {
		time.Sleep(time.Hour)
	}
}

// imageVersion reads the version from the image manifest.
func imageVersion(path string) string {
	var man api.Manifest
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &man) != nil || man.Version == "" {
		return "(unknown version)"
	}
	return man.Version
}
