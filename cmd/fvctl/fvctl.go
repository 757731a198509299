package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

const usageText = `Usage: fvctl [global flags] COMMAND [ARGS]

Commands:
  host info [--json]                 show the host's facts
  host shutdown                      power the host off cleanly
  host reboot                        reboot the host cleanly
  services [--json]                  list the services init supervises
  services log NAME                  show a service's recent output
  services restart NAME              restart a service
  services kill NAME [--signal SIG]  signal a service: TERM (default), KILL, HUP, INT, USR1, USR2
  storage disks [--json]             disks and partitions: size, model, serial, what they hold
  storage rescan [--json]            look for new disks and mount the datastores found
  datastore list [--json]            datastores: name, UUID, device, capacity, free, status
  datastore create NAME --device DEV [--force] [--no-wait] [--json]
                                     format DEV (sdb, /dev/nvme0n1p3) as datastore NAME;
                                     --force formats a device that holds data
  datastore remove NAME [--force] [--no-wait] [--json]
                                     unmount and wipe; --force also deletes VM directories
  datastore mount NAME               mount an unmounted datastore
  datastore unmount NAME             unmount; it stays unmounted across reboots
  datastore upload DS LOCAL REMOTE   copy a local file (ISO, kernel, disk image) to
                                     REMOTE on datastore DS, e.g. iso/debian.iso
  datastore browse DS [DIR] [--json] list a datastore directory (its root by default)
  vm list [--json]                   VMs: name, state, vCPUs, memory, parameter file
  vm show NAME                       one VM's spec and status (JSON)
  vm create NAME --datastore DS [--cpus N] [--memory MIB] [--firmware bios|uefi]
            [--disk SIZE[M|G][,thin|thick]] [--nic PORTGROUP[,MODEL]]...
            [--nic-model virtio|e1000|vmxnet3] [--kernel F [--initrd F] [--cmdline S]]
            [--serial=false] [--vnc] [--autostart ORDER] [--spec FILE.json]
            [--no-wait] [--json]
                                     create a VM (files as "[datastore] path")
  vm reconfigure NAME --memory MIB   change a VM's memory; a running VM with memory
                                     hot-add grows by a hot-add
  vm register DS PATH                add an existing VM (its .fvx file) to the inventory
  vm unregister NAME                 remove a VM from the inventory, keeping its files
  vm destroy NAME [--no-wait] [--json]
                                     delete a powered-off VM and its files
  vm power on|off|reset|suspend NAME [--no-wait] [--json]
  vm power shutdown NAME [--timeout 2m] [--no-wait] [--json]
                                     change the power state; shutdown asks the guest,
                                     then powers off after the timeout
  vm snapshot list NAME [--json]     a VM's snapshots
  vm snapshot create NAME SNAP [--description TEXT] [--no-wait] [--json]
  vm snapshot revert|delete NAME SNAP [--no-wait] [--json]
  vm screenshot NAME FILE.png        save a PNG of the VM's display
  vm console NAME [--read-only]      attach to the serial console; Ctrl-] detaches
  vm vnc NAME [--listen ADDR]        a local VNC port (127.0.0.1:5900) for the display
  disk import SRC DST [--thick] [--no-wait] [--json]
                                     convert an image (vmdk, vhdx, qcow2, raw, vdi, vpc)
                                     into a new disk: thin qcow2, or --thick raw
  disk clone SRC DST [--thick] [--no-wait] [--json]
                                     copy a qcow2 or raw disk into a new, independent one
  disk grow DISK SIZE [--no-wait] [--json]
                                     enlarge a disk of a powered-off VM to SIZE (20G,
                                     512M, 2T) or by +SIZE; disks never shrink
  disk info DISK [--json]            format, size, space used, backing file, snapshots
                                     (disks as one argument: "[datastore] path")
  network show [--json]              the host's switch: uplinks, port-channels, port
                                     groups, vEths (VM and NIC) and port states
  network portgroup list [--json]    port groups: VLAN, port security, rate limits, flags
  network portgroup add NAME [--vlan N | --trunk [--allowed-vlans 10-20,30] [--native-vlan N]]
            [--max-macs N [--violation shutdown|protect]] [--ingress-rate RATE]
            [--egress-rate RATE] [--shutdown] [--system]
                                     add a port group (VLAN 0 = untagged); RATE in bit/s:
                                     500k, 100M, 1G (none = no limit)
  network portgroup set NAME [the flags of add]
                                     change the settings given, keep the others
                                     (--trunk=false, --shutdown=false, --max-macs 0)
  network portgroup remove NAME      remove an unused port group
  network uplink add|remove NIC      put a physical NIC on the switch (as Eth3/N) or take it off
  network portchannel add PoN [--mode lacp|active-backup|mac-pinning] NIC...
                                     bundle NICs into a port-channel (default active-backup)
  network portchannel remove PoN     dissolve a port-channel; its NICs stay uplinks
  network vmknic list [--json]       vmknics: port group, IP address, netmask, MAC, MTU,
                                     enabled, type, services
  network vmknic add NAME --portgroup PG (--dhcp | --ip CIDR [--gateway GW] | --ip none)
            [--mtu N] [--mac MAC] [--services management,nfs,iscsi,migration,vsm-control]
                                     add a vmknic (vswif0, vmk1-vmk255)
  network vmknic set NAME [the flags of add]
                                     change the settings given, keep the others
  network vmknic remove NAME         remove a vmknic
            vmknic add|set|remove, portgroup set, uplink remove and portchannel add|remove
            also take [--new-server HOST[:PORT]] [--no-confirm]: the host rolls back a
            change that touches the management network unless it is confirmed within
            60 s; fvctl confirms it through --new-server (the new management address)
            or else --host, unless --no-confirm
  network confirm ID                 keep a management change made with --no-confirm
  vem show card|ports|mac|counters [--json]
                                     the VEM agent's view: its card, ports and states, MAC
                                     table, per-port counters (vemcmd show ...)
  vsm deploy --datastore DS --domain N --vsm-token T [--ip CIDR[,GW]] [--name vsm]
            [--role standalone|primary|secondary] [--peer HOST:PORT] [--advertise HOST:PORT,...]
            [--control-portgroup PG] [--mgmt-portgroup PG] [--packet-portgroup PG]
            [--memory MIB] [--image out/vsm] [--no-start]
                                     create and power on the VSM VM on --host from the VSM
                                     image: 1 vCPU, vNICs control, management, packet
  vsm join --vsm ADDR [--uplink NIC=PROFILE]...
                                     join --host to the VSM's switch, handing it NICs as
                                     uplinks with an ethernet (capability uplink) profile
  vsm leave                          take --host off the distributed switch
  vsm status [--json]                --host's link to its VSM: slot, connected/headless
  vsm cli --vsm ADDR [LINE]...       run NX-OS lines on the VSM (stdin when none), e.g.
                                     fvctl vsm cli "show module"
            the VSM's API: --vsm ADDR ($FVCTL_VSM), --vsm-token ($FVCTL_VSM_TOKEN),
            --vsm-fingerprint ($FVCTL_VSM_FINGERPRINT); trusted like a host
  task list [--json]                 recent and running tasks
  task show ID [--json]              one task
  task wait ID [--json]              wait for a task to end; exit 1 if it failed

Long operations (datastore create and remove, vm create, destroy, power and
snapshot, disk import, clone and grow) run as tasks; fvctl waits for them
unless --no-wait, and stops waiting (the task goes on) on Ctrl-C.

Global flags (may also follow the command):
  --host HOST[:PORT]   host to manage; port 443 by default      ($FVCTL_HOST)
  --token TOKEN        API bearer token                         ($FVCTL_TOKEN)
  --fingerprint FP     pin the host certificate's SHA-256       ($FVCTL_FINGERPRINT)
  --insecure           do not check the host certificate at all
  --config DIR         directory of known_hosts (default $XDG_CONFIG_HOME/flashvisor
                       or ~/.config/flashvisor)

Without --fingerprint, the fingerprint a host presents the first time is
stored in known_hosts (trust on first use) and required from then on.
`

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// exitCode maps run's error to the process exit status.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := &app{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	err := a.run(ctx, args)
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fvctl: %v\n\n%s", err, usageText)
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usageText)
	}
	return err
}

// app is one fvctl invocation.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	g              globals
	src            trustSource // set by connect
}

type globals struct {
	host, token, fingerprint, config string
	insecure                         bool
	// The VSM's API, for the vsm commands that talk to it.
	vsm, vsmToken, vsmFingerprint string
}

func (a *app) defineGlobals(fs *flag.FlagSet) {
	// Each definition takes the current value as default, so flags given
	// before the command survive the subcommand's flag set.
	fs.StringVar(&a.g.host, "host", a.g.host, "")
	fs.StringVar(&a.g.token, "token", a.g.token, "")
	fs.StringVar(&a.g.fingerprint, "fingerprint", a.g.fingerprint, "")
	fs.StringVar(&a.g.config, "config", a.g.config, "")
	fs.BoolVar(&a.g.insecure, "insecure", a.g.insecure, "")
	fs.StringVar(&a.g.vsm, "vsm", a.g.vsm, "")
	fs.StringVar(&a.g.vsmToken, "vsm-token", a.g.vsmToken, "")
	fs.StringVar(&a.g.vsmFingerprint, "vsm-fingerprint", a.g.vsmFingerprint, "")
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints the usage once
	fs.Usage = func() {}
	return fs
}

// parse parses flags anywhere among the arguments and returns the others.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (a *app) run(ctx context.Context, args []string) error {
	a.g = globals{
		host:           a.getenv("FVCTL_HOST"),
		token:          a.getenv("FVCTL_TOKEN"),
		fingerprint:    a.getenv("FVCTL_FINGERPRINT"),
		vsm:            a.getenv("FVCTL_VSM"),
		vsmToken:       a.getenv("FVCTL_VSM_TOKEN"),
		vsmFingerprint: a.getenv("FVCTL_VSM_FINGERPRINT"),
	}
	top := newFlagSet("fvctl")
	a.defineGlobals(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	args = top.Args()
	if len(args) == 0 {
		return usagef("no command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help":
		return flag.ErrHelp
	case "host":
		if len(rest) == 0 {
			return usagef("host: want info, shutdown or reboot")
		}
		switch rest[0] {
		case "info":
			return a.hostInfo(ctx, rest[1:])
		case "shutdown", "reboot":
			return a.power(ctx, rest[0], rest[1:])
		}
		return usagef("host %s: unknown command", rest[0])
	case "services", "service":
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") || rest[0] == "list" {
			if len(rest) > 0 && rest[0] == "list" {
				rest = rest[1:]
			}
			return a.services(ctx, rest)
		}
		switch rest[0] {
		case "log", "restart", "kill":
			return a.serviceAction(ctx, rest[0], rest[1:])
		}
		return usagef("services %s: unknown command", rest[0])
	case "storage", "datastore", "task":
		return a.storageCommand(ctx, cmd, rest)
	case "vm", "vms":
		return a.vmCommand(ctx, rest)
	case "network", "net":
		return a.networkCommand(ctx, rest)
	case "vem":
		return a.vemCommand(ctx, rest)
	case "vsm":
		return a.vsmCommand(ctx, rest)
	case "disk", "disks":
		return a.diskCommand(ctx, rest)
	}
	return usagef("unknown command %q", cmd)
}

// subArgs parses a subcommand's flags and checks its positional arguments.
func (a *app) subArgs(name string, args []string, npos int, define func(*flag.FlagSet)) ([]string, error) {
	fs := newFlagSet(name)
	a.defineGlobals(fs)
	if define != nil {
		define(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != npos {
		if npos == 0 {
			return nil, usagef("%s: unexpected argument %q", name, pos[0])
		}
		return nil, usagef("%s: want %d argument(s), got %d", name, npos, len(pos))
	}
	return pos, nil
}

func (a *app) hostInfo(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("host info", args, 0, func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "") }); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	h, err := c.Host(ctx)
	if err != nil {
		return a.explain(err)
	}
	if asJSON {
		return writeJSON(a.stdout, h)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	cpu := h.CPUModel
	if cpu == "" {
		cpu = "unknown model"
	}
	for _, kv := range [][2]string{
		{"Hostname:", h.Hostname},
		{"UUID:", h.UUID},
		{"Version:", h.Version},
		{"Kernel:", h.Kernel},
		{"CPU:", fmt.Sprintf("%s (%d CPUs)", cpu, h.CPUs)},
		{"Memory:", fmt.Sprintf("%.1f GiB", float64(h.MemoryBytes)/(1<<30))},
		{"KVM:", yesNo(h.KVM)},
		{"Uptime:", formatUptime(h.UptimeSeconds)},
		{"Persistent state:", yesNo(h.PersistentState)},
		{"Management address:", h.ManagementAddress},
		{"Fingerprint:", h.Fingerprint},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// formatUptime renders seconds as "3d 4h 5m", dropping leading zero units.
func formatUptime(sec float64) string {
	d := time.Duration(sec) * time.Second
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	days := int(d / (24 * time.Hour))
	h := int(d/time.Hour) % 24
	m := int(d/time.Minute) % 60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh %dm", days, h, m)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	}
	return fmt.Sprintf("%dm", m)
}

func (a *app) power(ctx context.Context, what string, args []string) error {
	if _, err := a.subArgs("host "+what, args, 0, nil); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	call := c.Shutdown
	if what == "reboot" {
		call = c.Reboot
	}
	if err := call(ctx); err != nil {
		return a.explain(err)
	}
	fmt.Fprintf(a.stdout, "Host %s: %s accepted.\n", a.g.host, what)
	return nil
}

func (a *app) services(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("services", args, 0, func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "") }); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	svcs, err := c.Services(ctx)
	if err != nil {
		return a.explain(err)
	}
	if asJSON {
		return writeJSON(a.stdout, svcs)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tRESTARTS")
	for _, s := range svcs {
		pid := "-"
		if s.PID > 0 {
			pid = strconv.Itoa(s.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", s.Name, s.State, pid, s.Restarts)
	}
	return tw.Flush()
}

func (a *app) serviceAction(ctx context.Context, action string, args []string) error {
	sig := "TERM"
	var define func(*flag.FlagSet)
	if action == "kill" {
		define = func(fs *flag.FlagSet) { fs.StringVar(&sig, "signal", sig, "") }
	}
	pos, err := a.subArgs("services "+action, args, 1, define)
	if err != nil {
		return err
	}
	name := pos[0]
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	switch action {
	case "log":
		l, err := c.ServiceLog(ctx, name)
		if err != nil {
			return a.explain(err)
		}
		for _, line := range l.Lines {
			fmt.Fprintln(a.stdout, line)
		}
		return nil
	case "restart":
		if err := c.RestartService(ctx, name); err != nil {
			return a.explain(err)
		}
		fmt.Fprintf(a.stdout, "Service %s restarted.\n", name)
		return nil
	}
	// kill(1) habits: "kill", "-9"-less names, with or without SIG.
	sig = strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	if err := c.SignalService(ctx, name, sig); err != nil {
		return a.explain(err)
	}
	fmt.Fprintf(a.stdout, "Sent SIG%s to service %s.\n", sig, name)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// explain turns API errors into advice.
func (a *app) explain(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.ErrUnauthorized:
			if a.g.token == "" {
				return fmt.Errorf("%s: no API token given: use --token or FVCTL_TOKEN (the host printed it on its console at first boot)", ae.Message)
			}
			return fmt.Errorf("%s: the host rejected the API token", ae.Message)
		case api.ErrNotFound:
			return fmt.Errorf("not found: %s", ae.Message)
		}
		return fmt.Errorf("host refused (%d %s): %s", ae.Status, ae.Code, ae.Message)
	}
	if errors.Is(err, client.ErrFingerprintMismatch) {
		return a.mismatch(err)
	}
	return err
}

// configDir is --config, else $XDG_CONFIG_HOME/flashvisor, else
// ~/.config/flashvisor.
func (a *app) configDir() (string, error) {
	if a.g.config != "" {
		return a.g.config, nil
	}
	if x := a.getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "flashvisor"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		return "", errors.New("cannot find the configuration directory: set --config, XDG_CONFIG_HOME or HOME")
	}
	return filepath.Join(home, ".config", "flashvisor"), nil
}
