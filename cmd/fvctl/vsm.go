package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/internal/cmdline"
)

// The distributed switch: deploying the VSM VM on a host, joining hosts to
// it, and its CLI. Two servers are involved: --host is a host's hostd,
// --vsm the VSM's own API (its management address; token and fingerprint
// like a host's).

// connectVSM connects to the VSM's API (global flags --vsm, --vsm-token,
// --vsm-fingerprint) with the same trust rules as a host: a pinned
// fingerprint, --insecure, or known_hosts on first use.
func (a *app) connectVSM(ctx context.Context) (*client.Client, error) {
	if a.g.vsm == "" {
		return nil, usagef("no VSM: use --vsm ADDR or FVCTL_VSM")
	}
	saved := a.g
	defer func() { a.g = saved }()
	a.g.host, a.g.token, a.g.fingerprint = a.g.vsm, a.g.vsmToken, a.g.vsmFingerprint
	return a.connect(ctx)
}

func (a *app) vsmCommand(ctx context.Context, rest []string) error {
	const want = "want deploy, join, leave, status or cli"
	if len(rest) == 0 {
		return usagef("vsm: %s", want)
	}
	switch rest[0] {
	case "deploy":
		return a.vsmDeploy(ctx, rest[1:])
	case "join":
		return a.vsmJoin(ctx, rest[1:])
	case "leave":
		return a.vsmLeave(ctx, rest[1:])
	case "status":
		return a.vsmStatus(ctx, rest[1:])
	case "cli":
		return a.vsmCLI(ctx, rest[1:])
	}
	return usagef("vsm %s: unknown (%s)", rest[0], want)
}

// uplinkFlags collects --uplink NIC=PROFILE.
type uplinkFlags []api.VSMUplink

func (u *uplinkFlags) String() string { return "" }
func (u *uplinkFlags) Set(s string) error {
	nic, prof, ok := strings.Cut(s, "=")
	if !ok || nic == "" || prof == "" {
		return fmt.Errorf("want NIC=PROFILE (eth1=system-uplink), got %q", s)
	}
	*u = append(*u, api.VSMUplink{Interface: nic, Profile: prof})
	return nil
}

// vsmJoin asks the VSM for this host's join bundle and hands it to the
// host, like adding a host to a distributed switch in vCenter.
func (a *app) vsmJoin(ctx context.Context, args []string) error {
	var uplinks uplinkFlags
	var asJSON bool
	if _, err := a.subArgs("vsm join", args, 0, func(fs *flag.FlagSet) {
		fs.Var(&uplinks, "uplink", "")
		jsonFlag(&asJSON)(fs)
	}); err != nil {
		return err
	}
	hc, err := a.connect(ctx)
	if err != nil {
		return err
	}
	h, err := hc.Host(ctx)
	if err != nil {
		return err
	}
	vc, err := a.connectVSM(ctx)
	if err != nil {
		return err
	}
	bundle, err := vc.VSMJoinBundle(ctx, api.VSMJoinRequest{HostUUID: h.UUID, Uplinks: uplinks})
	if err != nil {
		return fmt.Errorf("join bundle from the VSM: %w", err)
	}
	bundle.Uplinks = uplinks
	if err := hc.JoinVSM(ctx, bundle); err != nil {
		return fmt.Errorf("join: %w", a.explainNet(err))
	}
	st, err := hc.VSMStatus(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, st)
	}
	fmt.Fprintf(a.stdout, "Host %s (%s) joined switch %s, domain %d.\n", h.Hostname, h.UUID, bundle.Opaque.SwitchName, bundle.Opaque.DomainID)
	return a.printVSMStatus(st)
}

func (a *app) vsmLeave(ctx context.Context, args []string) error {
	if _, err := a.subArgs("vsm leave", args, 0, nil); err != nil {
		return err
	}
	hc, err := a.connect(ctx)
	if err != nil {
		return err
	}
	if err := hc.LeaveVSM(ctx); err != nil {
		return a.explainNet(err)
	}
	fmt.Fprintln(a.stdout, "Left the distributed switch; the host's own switch stays.")
	return nil
}

func (a *app) vsmStatus(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("vsm status", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	hc, err := a.connect(ctx)
	if err != nil {
		return err
	}
	st, err := hc.VSMStatus(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, st)
	}
	return a.printVSMStatus(st)
}

func (a *app) printVSMStatus(st api.VSMLinkStatus) error {
	w := tabwriter.NewWriter(a.stdout, 0, 0, 1, ' ', 0)
	if !st.Joined {
		fmt.Fprintln(w, "Joined:\tno (standalone switch only)")
		return w.Flush()
	}
	fmt.Fprintf(w, "Joined:\tyes\nSwitch:\t%s\nDomain:\t%d\nVSM:\t%s\n", orDash(st.SwitchName), st.DomainID, orDash(st.VSM))
	if st.ControlMode == api.SVSModeL2 {
		fmt.Fprintf(w, "Control mode:\tL2 (control VLAN %d)\n", st.ControlVLAN)
	} else if st.ControlMode != "" {
		fmt.Fprintf(w, "Control mode:\t%s\n", st.ControlMode)
	}
	fmt.Fprintf(w, "Connected:\t%s\nHeadless:\t%s\nModule:\t%d\nEpoch:\t%d\nGeneration:\t%d\n",
		yesNoCap(st.Connected), yesNoCap(st.Headless), st.Module, st.Epoch, st.Generation)
	if st.PacketChannel != "" {
		fmt.Fprintf(w, "Packet channel:\t%s (%d frames on the packet VLAN)\n", st.PacketChannel, st.PacketFrames)
	}
	fmt.Fprintf(w, "Foreign-domain messages:\t%d\nStale-epoch programming:\t%d\n", st.ForeignDomain, st.StaleEpoch)
	var names []string
	for _, p := range st.Profiles {
		names = append(names, p.Name)
	}
	fmt.Fprintf(w, "Port groups from the VSM:\t%s\n", orDash(strings.Join(names, ", ")))
	if st.LastError != "" {
		fmt.Fprintf(w, "Last error:\t%s\n", st.LastError)
	}
	return w.Flush()
}

// vsmCLI runs NX-OS lines on the VSM: the arguments (each one line), or
// standard input when there are none (a pasted configuration).
func (a *app) vsmCLI(ctx context.Context, args []string) error {
	pos, err := a.subArgsRange("vsm cli", args, 0, 1<<16, func(fs *flag.FlagSet) {})
	if err != nil {
		return err
	}
	lines := pos
	if len(lines) == 0 {
		sc := bufio.NewScanner(a.stdin())
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}
	vc, err := a.connectVSM(ctx)
	if err != nil {
		return err
	}
	r, err := vc.VSMCLI(ctx, lines...)
	if err != nil {
		return err
	}
	io.WriteString(a.stdout, r.Output)
	if r.Error != "" {
		return fmt.Errorf("line %d (%q): %s", r.FailedLine+1, lines[max(0, min(r.FailedLine, len(lines)-1))], r.Error)
	}
	return nil
}

func (a *app) stdin() io.Reader { return os.Stdin }

// vsmDeploy creates the VSM VM on a host from the VSM image and powers it
// on (VSM-1): 1 vCPU, three vNICs in the order control, management,
// packet, a small disk for its state, the image's kernel booted directly.
func (a *app) vsmDeploy(ctx context.Context, args []string) error {
	var (
		name, ds, image, ip, role, advertise, peer string
		pgControl, pgMgmt, pgPacket                string
		domain, memory                             int
		noStart                                    bool
	)
	_, err := a.subArgs("vsm deploy", args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "vsm", "")
		fs.StringVar(&ds, "datastore", "", "")
		fs.StringVar(&image, "image", "out/vsm", "")
		fs.StringVar(&ip, "ip", "", "")
		fs.StringVar(&role, "role", "standalone", "")
		fs.StringVar(&advertise, "advertise", "", "")
		fs.StringVar(&peer, "peer", "", "")
		fs.StringVar(&pgControl, "control-portgroup", "VM Network", "")
		fs.StringVar(&pgMgmt, "mgmt-portgroup", "VM Network", "")
		fs.StringVar(&pgPacket, "packet-portgroup", "VM Network", "")
		fs.IntVar(&domain, "domain", 0, "")
		fs.IntVar(&memory, "memory", 384, "")
		fs.BoolVar(&noStart, "no-start", false, "")
	})
	if err != nil {
		return err
	}
	token := a.g.vsmToken
	switch {
	case ds == "":
		return usagef("vsm deploy: --datastore is required")
	case domain < 1 || domain > api.VSMDomainIDMax:
		return usagef("vsm deploy: --domain must be 1-%d", api.VSMDomainIDMax)
	case a.g.vsmToken == "":
		return usagef("vsm deploy: --vsm-token is required (the VSM's API token and the admin password over SSH)")
	case memory < 256 || memory > 512:
		return usagef("vsm deploy: --memory must be 256-512 MiB (VSM-1)")
	}
	// The command line is validated here by the same parser the VSM's
	// init uses, so a typo fails now rather than in a VM that never comes up.
	// The vNICs are control (eth0), management (eth1), packet (eth2).
	cl := fmt.Sprintf("console=ttyS0 flashvisor.hostname=%s flashvisor.mgmtnic=eth1 flashvisor.mgmt=%s flashvisor.token=%s flashvisor.initstate=/dev/vda flashvisor.vsm.domain=%d flashvisor.vsm.role=%s flashvisor.vsm.controlnic=eth0 flashvisor.vsm.packetnic=eth2",
		name, orDefault(ip, "dhcp"), token, domain, role)
	if advertise != "" {
		cl += " flashvisor.vsm.advertise=" + advertise
	}
	if peer != "" {
		cl += " flashvisor.vsm.peer=" + peer
	}
	if _, err := cmdline.Parse(cl); err != nil {
		return usagef("vsm deploy: %v", errors.Unwrap(err))
	}
	if ip != "" {
		if _, err := netip.ParsePrefix(strings.Split(ip, ",")[0]); err != nil {
			return usagef("vsm deploy: --ip: want ADDR/PREFIX[,GATEWAY]")
		}
	}
	kernel, initrd := filepath.Join(image, "vmlinuz"), filepath.Join(image, "initrd.img")
	hc, err := a.connect(ctx)
	if err != nil {
		return err
	}
	dir := "vsm-image/" + name
	for _, f := range []struct{ local, remote string }{{kernel, dir + "/vmlinuz"}, {initrd, dir + "/initrd.img"}} {
		fh, err := os.Open(f.local)
		if err != nil {
			return fmt.Errorf("VSM image (make image builds out/vsm): %w", err)
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			return err
		}
		err = hc.Upload(ctx, ds, f.remote, fh, st.Size())
		fh.Close()
		if err != nil {
			return fmt.Errorf("upload %s: %w", f.local, a.explainDS(err))
		}
	}
	spec := VSMSpec(name, ds, dir, cl, memory, [3]string{pgControl, pgMgmt, pgPacket})
	t, err := hc.CreateVM(ctx, api.VMCreateRequest{Datastore: ds, Spec: spec})
	if err != nil {
		return a.explainDS(err)
	}
	if _, err := a.wait(ctx, hc, t.ID); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "VSM VM %s created on datastore %s (domain %d, role %s).\n", name, ds, domain, role)
	if noStart {
		return nil
	}
	t, err = hc.PowerVM(ctx, name, "on", "")
	if err != nil {
		return err
	}
	if _, err := a.wait(ctx, hc, t.ID); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Powered on. Its CLI: ssh admin@ADDR (password: the token) or fvctl vsm cli --vsm ADDR.\n")
	return nil
}

// VSMSpec is the VSM VM (VSM-1).
func VSMSpec(name, ds, dir, cmdline string, memoryMiB int, pgs [3]string) api.VMSpec {
	nics := make([]api.NIC, 3)
	for i, pg := range pgs {
		nics[i] = api.NIC{Model: api.NICVirtio, PortGroup: pg, AddressType: api.MACGenerated}
	}
	ref := func(f string) string { return "[" + ds + "] " + dir + "/" + f }
	return api.VMSpec{
		Name: name, VCPUs: 1, MemoryMiB: memoryMiB, Firmware: api.FirmwareBIOS,
		KernelBoot:    &api.KernelBoot{Kernel: ref("vmlinuz"), Initrd: ref("initrd.img"), Cmdline: cmdline},
		Disks:         []api.VirtualDisk{{Bus: api.DiskBusVirtio, File: name + "-state.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 64}},
		NICs:          nics,
		SerialConsole: true,
		// The switch's control plane comes back with its host.
		Autostart: api.Autostart{Enabled: true, Order: 1},
	}
}
