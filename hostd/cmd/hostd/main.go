// Command hostd is the Flashvisor host daemon, run by init as a supervised
// service. It serves the management API on the management address.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/datastore"
	"github.com/flashvisor/flashvisor/hostd"
	"github.com/flashvisor/flashvisor/hostd/dvs"
	"github.com/flashvisor/flashvisor/hostd/events"
	"github.com/flashvisor/flashvisor/hostd/initclient"
	"github.com/flashvisor/flashvisor/hostd/task"
	"github.com/flashvisor/flashvisor/internal/layout"
	"github.com/flashvisor/flashvisor/vem/vemclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostd:", err)
		os.Exit(1) // init restarts us with backoff
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hostd", flag.ContinueOnError)
	var o hostd.Options
	fs.StringVar(&o.BootInfoFile, "boot-info", layout.BootInfoFile, "boot facts written by init (api.BootInfo)")
	fs.StringVar(&o.ManifestFile, "manifest", layout.ManifestFile, "image manifest (api.Manifest)")
	fs.StringVar(&o.CmdlineFile, "cmdline", "/proc/cmdline", "kernel command line (flashvisor.token)")
	fs.StringVar(&o.StateDir, "state-dir", "", "state directory (default: boot info's state_dir, else "+layout.StateDir+")")
	fs.StringVar(&o.Listen, "listen", "", "listen address host:port (default: management address, port 443)")
	fs.StringVar(&o.ServiceName, "service-name", "hostd", "this service's name in init")
	socket := fs.String("init-socket", layout.InitSocket, "init's control socket")
	vemSocket := fs.String("vem-socket", layout.VEMSocket, "the VEM agent's socket")
	var vo vmOptions
	fs.StringVar(&vo.qemu, "qemu", "/usr/bin/qemu-system-x86_64", "QEMU binary")
	fs.StringVar(&vo.qemuImg, "qemu-img", "/usr/bin/qemu-img", "qemu-img binary")
	fs.StringVar(&vo.ovmfCode, "ovmf-code", "/usr/share/OVMF/OVMF_CODE_4M.fd", "UEFI firmware for VMs")
	fs.StringVar(&vo.ovmfVars, "ovmf-vars", "/usr/share/OVMF/OVMF_VARS_4M.fd", "UEFI variable store template")
	fs.BoolVar(&vo.allowEmulation, "allow-emulation", false, "run VMs under software emulation when KVM is absent (slow)")
	fs.Float64Var(&vo.overcommit, "memory-overcommit", 1.0, "VM memory admission: running VMs may use host memory times this")
	fs.Int64Var(&vo.reserveMiB, "memory-reserve", 512, "host memory (MiB) kept out of VM admission for the host itself")
	fs.StringVar(&vo.runDir, "vm-run-dir", layout.RunDir+"/vms", "runtime sockets of VMs")
	fs.StringVar(&vo.cgroupRoot, "vm-cgroup", "/sys/fs/cgroup/flashvisor/vms", "cgroup parent of VMs (empty: none)")
	debug := fs.Bool("debug", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *debug {
		lvl = slog.LevelDebug
	}
	// stderr: init copies it to the console and the service's log ring.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ic := initclient.New(*socket)
	o.Services, o.Power = ic, ic
	o.Logger = log
	o.Console = stdout
	o.OpenDatastores = func(stateDir string) hostd.Datastores {
		return openDatastores(filepath.Join(stateDir, layout.DatastoresFile), log)
	}
	vc := vemclient.New(*vemSocket)
	o.VEM = vc
	o.Events = events.New(1000)
	var boot api.BootInfo
	if data, err := os.ReadFile(o.BootInfoFile); err == nil {
		json.Unmarshal(data, &boot) // hostd.New reports a bad file
	}
	stateDir := cmp.Or(o.StateDir, boot.StateDir, layout.StateDir)
	if n, err := openNetwork(ctx, stateDir, boot, ic, vc, o.Events, log); err != nil {
		log.Error("NETWORKING DISABLED: the switch could not be opened", "err", err)
	} else {
		vo.net = n
		o.ManagementAddrs = n.managementAddrs
		// VMs reach both switches: the host's own and, once joined, the
		// VSM's (hostd/dvs).
		n.dvs = &dvs.Ports{Local: n.sw, VEM: vc, IsInvalid: vemclient.IsInvalid, Log: log.With("c", "dvs")}
		if _, err := n.dvs.Refresh(ctx); err != nil {
			log.Warn("VSM link status unknown", "err", err)
		}
		o.VSM = n.dvs
	}
	o.OpenVMs = vo.open(log)
	o.OpenDisks = vo.openDisks
	o.AutostartMarker = layout.RunDir + "/hostd-autostart-done"
	if vo.net != nil {
		o.NetworkReady = vo.net.sw.Ready()
	}
	o.ShutdownMarker = layout.ShutdownMarker
	o.Tasks = task.New(100) // hostd.New publishes each task's end on o.Events

	s, err := hostd.New(o)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// openDatastores opens the datastore manager, or returns nil so hostd runs
// without datastores: a host whose datastore list cannot be read must stay
// reachable for repair. A corrupt list is kept as it is, never overwritten,
// since it is the only record of which datastores the operator unmounted.
func openDatastores(stateFile string, log *slog.Logger) hostd.Datastores {
	m, err := datastore.New(datastore.SystemConfig(stateFile, log))
	switch {
	case errors.Is(err, datastore.ErrCorruptState):
		log.Error("DATASTORES DISABLED: the datastore list is corrupt; fix or move it away and restart hostd",
			"file", stateFile, "err", err)
		return nil
	case err != nil:
		log.Error("datastores disabled", "err", err)
		return nil
	}
	return m
}
