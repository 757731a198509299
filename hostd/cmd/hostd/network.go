package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd"
	"github.com/flashvisor/flashvisor/hostd/dvs"
	"github.com/flashvisor/flashvisor/hostd/events"
	"github.com/flashvisor/flashvisor/hostd/initclient"
	"github.com/flashvisor/flashvisor/hostd/vswitch"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/internal/layout"
	"github.com/flashvisor/flashvisor/vem/vemclient"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// network is the host's networking as hostd runs it: the standalone
// switch, handed to the VEM agent, and the vmknics.
type network struct {
	sw  *vswitch.Switch
	dvs *dvs.Ports
	vmk *vmknic.Manager
	log *slog.Logger
}

// openNetwork opens the standalone switch and the vmknic manager and
// starts handing the configuration to vemd. On a first boot the switch is
// ESXi's vSwitch0: the management NIC as uplink, "Management Network" and
// "VM Network", and vswif0 with the NIC's MAC and the boot's address mode;
// before it first reaches the kernel, init lets go of the NIC (the
// management handoff, see docs/design.md).
func openNetwork(ctx context.Context, stateDir string, boot api.BootInfo, ic *initclient.Client, vc *vemclient.Client, bus *events.Bus, log *slog.Logger) (*network, error) {
	n := &network{log: log}
	k, err := vmknic.NewNetlinkKernel()
	if err != nil {
		return nil, err
	}
	host := vmknic.Host{UUID: boot.HostUUID, UplinkMAC: boot.Management.MAC}
	if host.UUID == "" {
		return nil, errors.New("no host UUID in the boot info: vmknic MACs cannot be generated")
	}
	n.vmk, err = vmknic.New(vmknic.Options{Kernel: k, Host: host, Log: log.With("c", "vmknic")})
	if err != nil {
		return nil, err
	}
	marker := filepath.Join(stateDir, layout.VswifMarker)
	_, statErr := os.Stat(marker)
	onVswif := statErr == nil
	o := vswitch.Options{
		File:      filepath.Join(stateDir, layout.SwitchFile),
		Agent:     vc,
		IsInvalid: vemclient.IsInvalid,
		VMKNICs:   n.vmk,
		// The answer to a guarded change must leave before the change.
		ApplyDelay: time.Second,
		Host:       host,
		Default:    func() vswitch.Config { return defaultSwitch(boot.Management) },
		OnRollback: func(ch api.NetworkChange, reason string) {
			bus.Publish(hostd.EventNetworkRollback, "network", fmt.Sprintf("management network change %s (%s) rolled back: %s", ch.ID, ch.What, reason))
		},
		Taken: func() map[string]bool { return vsmVeths(vc, log) },
		Log:   log.With("c", "vswitch"),
	}
	if !onVswif {
		o.BeforeFirstSync = func(ctx context.Context, c vswitch.Config) error {
			if boot.Management.Mode == api.MgmtVswif || boot.Management.NIC == "" || !hasVswif(c) {
				// No vswif0 (a switch configured without one): init
				// keeps the management NIC.
				return nil
			}
			log.Info("handing the management network over to vswif0", "nic", boot.Management.NIC)
			return ic.ReleaseNetwork(ctx)
		}
		o.AfterFirstSync = func(c vswitch.Config) {
			if !hasVswif(c) {
				return
			}
			if err := atomicfile.WriteFile(marker, []byte("management is vswif0 on the switch\n"), 0o644); err != nil {
				log.Error("management handoff marker", "err", err)
			}
		}
	}
	n.sw, err = vswitch.Open(o)
	if err != nil {
		n.vmk.Close()
		return nil, err
	}
	go n.sw.SyncLoop(ctx, time.Minute)
	return n, nil
}

func hasVswif(c vswitch.Config) bool {
	return slices.ContainsFunc(c.VMKNICs, func(k api.VMKNIC) bool { return k.Name == vmknic.VswifName })
}

// defaultSwitch is a fresh host's switch, like ESXi's vSwitch0.
func defaultSwitch(m api.MgmtInfo) vswitch.Config {
	c := vswitch.Config{PortGroups: []api.PortGroup{
		{Name: "Management Network", VLAN: m.VLAN, System: true},
		{Name: "VM Network"},
	}}
	uplink := m.Uplink
	if uplink == "" {
		uplink = m.NIC
	}
	if uplink == "" || m.MAC == "" {
		return c // no management NIC found at boot: no uplink, no vswif0
	}
	c.Uplinks = []api.Uplink{{NIC: uplink, Port: fmt.Sprintf("Eth%d/1", vswitch.Module)}}
	v := api.VMKNIC{Name: vmknic.VswifName, PortGroup: "Management Network", MAC: m.MAC,
		IPv4: api.VMKIPv4{Mode: api.VMKIPv4DHCP}, Services: []string{api.VMKServiceManagement}}
	if m.Mode == "static" {
		v.IPv4 = api.VMKIPv4{Mode: api.VMKIPv4Static, Address: m.Address, Gateway: m.Gateway}
	}
	c.VMKNICs = []api.VMKNIC{v}
	return c
}

// managementAddrs lists the addresses hostd's API answers on: those of the
// vmknics tagged for management.
func (n *network) managementAddrs() []netip.Addr {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := n.vmk.Status(ctx)
	if err != nil {
		n.log.Warn("vmknic status", "err", err)
		return nil
	}
	var out []netip.Addr
	for _, s := range st {
		if !slices.Contains(s.Services, api.VMKServiceManagement) || s.Address == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s.Address); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

// vsmVeths are the vEths the VEM programs that the host's own switch did
// not ask for: the distributed switch's, numbered by the VSM. The host's
// switch must not hand out their numbers (the VSM skips the host's own in
// turn: they are in the VEM's hello).
func vsmVeths(vc *vemclient.Client, log *slog.Logger) map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	merged, err := vc.AppliedConfig(ctx)
	if err != nil {
		log.Warn("vEths of the distributed switch unknown", "err", err)
		return nil
	}
	local, err := vc.Config(ctx)
	if err != nil {
		log.Warn("vEths of the distributed switch unknown", "err", err)
		return nil
	}
	mine := map[string]bool{}
	for _, p := range local.Ports {
		mine[p.Name] = true
	}
	taken := map[string]bool{}
	for _, p := range merged.Ports {
		if p.Kind == api.PortVeth && !mine[p.Name] {
			taken[p.Name] = true
		}
	}
	return taken
}
