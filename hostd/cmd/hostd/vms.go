package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd"
	"github.com/flashvisor/flashvisor/hostd/qmp"
	"github.com/flashvisor/flashvisor/hostd/vm"
)

// vmOptions are hostd's VM settings from its flags.
type vmOptions struct {
	qemu, qemuImg      string
	ovmfCode, ovmfVars string
	allowEmulation     bool
	overcommit         float64
	reserveMiB         int64
	runDir, cgroupRoot string
	// net is the host's switch and vmknics (nil: they could not be
	// opened).
	net *network
}

// accel decides the accelerator (HOSTD-3): KVM when /dev/kvm opens,
// software emulation only when the operator allowed it, else none (hostd
// says so and refuses power-on).
func accel(log *slog.Logger, allowEmulation bool) string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return "kvm"
	}
	if allowEmulation {
		log.Warn("no KVM: VMs run under software emulation (slow), as allowed by --allow-emulation", "err", err)
		return "tcg"
	}
	log.Error("no KVM: /dev/kvm cannot be opened; VMs will not power on", "err", err)
	return ""
}

// memTotalMiB reads the host's memory.
func memTotalMiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb / 1024
		}
	}
	return 0
}

func (vo vmOptions) open(log *slog.Logger) hostd.OpenVMs {
	return func(stateDir string, ds hostd.Datastores, publish func(kind, target, msg string)) (hostd.VMs, hostd.PortGroups, error) {
		if vo.net == nil {
			return nil, nil, fmt.Errorf("no switch: VMs unavailable (see the switch error above)")
		}
		ports := vo.net.sw
		var vmPorts vm.Ports = ports
		if vo.net.dvs != nil {
			vmPorts = vo.net.dvs
		}
		if ds == nil {
			return nil, ports, fmt.Errorf("no datastores: VMs unavailable")
		}
		resolve := func(name string) (string, error) {
			d, err := ds.Get(name)
			if err != nil {
				return "", err
			}
			if d.Status != api.DatastoreMounted || d.MountPoint == "" {
				return "", fmt.Errorf("datastore %s is %s", name, d.Status)
			}
			return d.MountPoint, nil
		}
		host := memTotalMiB() - vo.reserveMiB
		m, err := vm.New(vm.Config{
			Log:           log.With("c", "vm"),
			InventoryFile: filepath.Join(stateDir, "inventory.json"),
			RunDir:        vo.runDir,
			Datastore:     resolve,
			Ports:         vmPorts,
			Launcher:      &vm.QEMULauncher{Log: log, Binary: vo.qemu, CgroupRoot: vo.cgroupRoot},
			Disks:         vm.QEMUImg{Binary: vo.qemuImg},
			Dial: func(ctx context.Context, p string) (*qmp.Client, error) {
				return qmp.Dial(ctx, p, qmp.WithLogger(log.With("c", "qmp")))
			},
			Accel:    accel(log, vo.allowEmulation),
			OVMFCode: vo.ovmfCode, OVMFVars: vo.ovmfVars,
			HostMemoryMiB: host, OvercommitRatio: vo.overcommit,
			Publish: publish,
			Random:  rand.Reader,
		})
		if err != nil {
			return nil, ports, err
		}
		return m, ports, nil
	}
}

// openDisks runs the disk operations with qemu-img.
func (vo vmOptions) openDisks(datastore func(string) (string, error), inUse func(string) (string, bool)) hostd.Disks {
	return &vm.DiskOps{Tool: vm.QEMUImg{Binary: vo.qemuImg}, Datastore: datastore, InUse: inUse}
}
