package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// vmCommand runs "vm ...".
func (a *app) vmCommand(ctx context.Context, rest []string) error {
	sub := "list"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	switch sub {
	case "list", "ls":
		return a.vmList(ctx, rest)
	case "show", "info":
		return a.vmShow(ctx, rest)
	case "create":
		return a.vmCreate(ctx, rest)
	case "reconfigure":
		return a.vmReconfigure(ctx, rest)
	case "register":
		return a.vmRegister(ctx, rest)
	case "unregister":
		return a.vmSimple(ctx, "vm unregister", rest, func(c *client.Client, n string) error { return c.UnregisterVM(ctx, n) })
	case "destroy":
		return a.vmTask(ctx, "vm destroy", rest, func(c *client.Client, n string) (api.Task, error) { return c.DestroyVM(ctx, n) })
	case "power":
		if len(rest) == 0 {
			return usagef("vm power: want on, off, shutdown, reset or suspend")
		}
		op := rest[0]
		switch op {
		case "on", "off", "shutdown", "reset", "suspend":
		default:
			return usagef("vm power %s: want on, off, shutdown, reset or suspend, then the VM's name", op)
		}
		var timeout string
		return a.vmTaskFlags(ctx, "vm power "+op, rest[1:], func(fs *flag.FlagSet) {
			if op == "shutdown" {
				fs.StringVar(&timeout, "timeout", "", "force a power off after this long (e.g. 2m)")
			}
		}, func(c *client.Client, n string) (api.Task, error) { return c.PowerVM(ctx, n, op, timeout) })
	case "snapshot":
		return a.vmSnapshot(ctx, rest)
	case "screenshot":
		return a.vmScreenshot(ctx, rest)
	case "console":
		return a.vmConsole(ctx, rest)
	case "vnc":
		return a.vmVNC(ctx, rest)
	}
	return usagef("vm %s: unknown command", sub)
}

func (a *app) vmList(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("vm list", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	vms, err := c.VMs(ctx)
	if err != nil {
		return a.explainDS(err)
	}
	if asJSON {
		return writeJSON(a.stdout, vms)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCPUS\tMEMORY\tFILE\tNOTE")
	for _, v := range vms {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d MiB\t[%s] %s\t%s\n", v.Spec.Name, v.Status.State, v.Spec.VCPUs, v.Spec.MemoryMiB, v.Datastore, v.Path, v.Status.Reason)
	}
	return tw.Flush()
}

func (a *app) vmShow(ctx context.Context, args []string) error {
	pos, err := a.subArgs("vm show", args, 1, nil)
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	v, err := c.VM(ctx, pos[0])
	if err != nil {
		return a.explainDS(err)
	}
	return writeJSON(a.stdout, v)
}

// vmCreate builds a spec from flags (or takes a JSON spec file).
func (a *app) vmCreate(ctx context.Context, args []string) error {
	var (
		ds, specFile, firmware, kernel, initrd, cmdline, nicModel string
		cpus, mem, autostart                                      int
		disk                                                      string
		nics                                                      stringList
		serial, vnc, noWait, asJSON                               bool
	)
	pos, err := a.subArgs("vm create", args, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&ds, "datastore", "", "datastore for the VM's directory (required)")
		fs.StringVar(&specFile, "spec", "", "JSON VM spec file (instead of the flags below)")
		fs.IntVar(&cpus, "cpus", 1, "vCPUs")
		fs.IntVar(&mem, "memory", 1024, "memory in MiB")
		fs.StringVar(&firmware, "firmware", api.FirmwareBIOS, "bios or uefi")
		fs.StringVar(&disk, "disk", "", "new disk: SIZE[M|G][,thin|thick] (thin qcow2 by default)")
		fs.Var(&nics, "nic", "vNIC on a port group: PORTGROUP[,virtio|e1000|vmxnet3] (repeatable)")
		fs.StringVar(&nicModel, "nic-model", api.NICVirtio, "default vNIC model")
		fs.StringVar(&kernel, "kernel", "", "direct kernel boot: [datastore] path of the kernel")
		fs.StringVar(&initrd, "initrd", "", "[datastore] path of the initrd")
		fs.StringVar(&cmdline, "cmdline", "", "kernel command line")
		fs.BoolVar(&serial, "serial", true, "serial console")
		fs.BoolVar(&vnc, "vnc", false, "VNC console")
		fs.IntVar(&autostart, "autostart", -1, "power on at host boot, in this order (0 = after the ordered ones)")
		fs.BoolVar(&noWait, "no-wait", false, "return once the task started")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil {
		return err
	}
	if ds == "" {
		return usagef("vm create: --datastore is required")
	}
	spec := api.VMSpec{Name: pos[0], VCPUs: cpus, MemoryMiB: mem, Firmware: firmware, SerialConsole: serial, VNCConsole: vnc}
	if specFile != "" {
		b, err := os.ReadFile(specFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			return fmt.Errorf("%s: %w", specFile, err)
		}
		spec.Name = pos[0]
	} else {
		if disk != "" {
			d, err := parseDiskFlag(pos[0], disk)
			if err != nil {
				return usagef("vm create --disk: %v", err)
			}
			spec.SCSIControllers = []api.SCSIController{{Model: api.SCSIVirtio}}
			spec.Disks = []api.VirtualDisk{d}
		}
		for _, n := range nics {
			pg, model, _ := strings.Cut(n, ",")
			if model == "" {
				model = nicModel
			}
			spec.NICs = append(spec.NICs, api.NIC{Model: model, PortGroup: pg, AddressType: api.MACGenerated})
		}
		if kernel != "" {
			spec.KernelBoot = &api.KernelBoot{Kernel: kernel, Initrd: initrd, Cmdline: cmdline}
		}
		if autostart >= 0 {
			spec.Autostart = api.Autostart{Enabled: true, Order: autostart}
		}
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	t, err := c.CreateVM(ctx, api.VMCreateRequest{Datastore: ds, Spec: spec})
	if err != nil {
		return a.explainDS(err)
	}
	return a.finish(ctx, c, t, noWait, asJSON)
}

// parseDiskFlag reads SIZE[M|G][,thin|thick].
func parseDiskFlag(vm, v string) (api.VirtualDisk, error) {
	size, prov, _ := strings.Cut(v, ",")
	if prov == "" {
		prov = api.ProvisionThin
	}
	if prov != api.ProvisionThin && prov != api.ProvisionThick {
		return api.VirtualDisk{}, fmt.Errorf("provisioning %q: want thin or thick", prov)
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(size, "G"):
		mult, size = 1024, strings.TrimSuffix(size, "G")
	case strings.HasSuffix(size, "M"):
		size = strings.TrimSuffix(size, "M")
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return api.VirtualDisk{}, fmt.Errorf("size %q: want e.g. 512M or 20G", v)
	}
	ext := ".qcow2"
	if prov == api.ProvisionThick {
		ext = ".img"
	}
	return api.VirtualDisk{Bus: api.DiskBusSCSI, File: vm + ext, Provisioning: prov, SizeMiB: n * mult}, nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// finish waits for a task unless told not to, and prints the outcome.
func (a *app) finish(ctx context.Context, c *client.Client, t api.Task, noWait, asJSON bool) error {
	if noWait {
		return a.started(t, asJSON)
	}
	done, err := a.wait(ctx, c, t.ID)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, done)
	}
	fmt.Fprintf(a.stdout, "%s %s: %s\n", done.Kind, done.Target, done.State)
	return nil
}

// vmReconfigure changes a VM's memory: powered off, to any size; running,
// it grows by a memory hot-add (the VM needs memory_hot_add).
func (a *app) vmReconfigure(ctx context.Context, args []string) error {
	var mem int
	pos, err := a.subArgs("vm reconfigure", args, 1, func(fs *flag.FlagSet) {
		fs.IntVar(&mem, "memory", 0, "memory in MiB (a running VM with memory hot-add grows to it)")
	})
	if err != nil {
		return err
	}
	if mem <= 0 {
		return usagef("vm reconfigure: --memory MIB is required")
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	v, err := c.VM(ctx, pos[0])
	if err != nil {
		return a.explainDS(err)
	}
	v.Spec.MemoryMiB = mem
	if v, err = c.ReconfigureVM(ctx, pos[0], v.Spec); err != nil {
		return a.explainDS(err)
	}
	fmt.Fprintf(a.stdout, "%s reconfigured: %d MiB of memory", v.Spec.Name, v.Spec.MemoryMiB)
	if v.Status.HotAddedMemoryMiB > 0 {
		fmt.Fprintf(a.stdout, " (%d MiB hot-added since power-on)", v.Status.HotAddedMemoryMiB)
	}
	fmt.Fprintln(a.stdout)
	return nil
}

func (a *app) vmRegister(ctx context.Context, args []string) error {
	pos, err := a.subArgs("vm register", args, 2, nil)
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	v, err := c.RegisterVM(ctx, pos[0], pos[1])
	if err != nil {
		return a.explainDS(err)
	}
	fmt.Fprintf(a.stdout, "registered %s from [%s] %s\n", v.Spec.Name, v.Datastore, v.Path)
	return nil
}

func (a *app) vmSimple(ctx context.Context, name string, args []string, do func(*client.Client, string) error) error {
	pos, err := a.subArgs(name, args, 1, nil)
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	if err := do(c, pos[0]); err != nil {
		return a.explainDS(err)
	}
	fmt.Fprintf(a.stdout, "%s %s: done\n", name, pos[0])
	return nil
}

func (a *app) vmTask(ctx context.Context, name string, args []string, start func(*client.Client, string) (api.Task, error)) error {
	return a.vmTaskFlags(ctx, name, args, nil, start)
}

func (a *app) vmTaskFlags(ctx context.Context, name string, args []string, define func(*flag.FlagSet), start func(*client.Client, string) (api.Task, error)) error {
	var noWait, asJSON bool
	pos, err := a.subArgs(name, args, 1, func(fs *flag.FlagSet) {
		fs.BoolVar(&noWait, "no-wait", false, "return once the task started")
		fs.BoolVar(&asJSON, "json", false, "")
		if define != nil {
			define(fs)
		}
	})
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	t, err := start(c, pos[0])
	if err != nil {
		return a.explainDS(err)
	}
	return a.finish(ctx, c, t, noWait, asJSON)
}

func (a *app) vmSnapshot(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("vm snapshot: want list, create, revert or delete")
	}
	op, args := args[0], args[1:]
	switch op {
	case "list":
		var asJSON bool
		pos, err := a.subArgs("vm snapshot list", args, 1, jsonFlag(&asJSON))
		if err != nil {
			return err
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		list, err := c.Snapshots(ctx, pos[0])
		if err != nil {
			return a.explainDS(err)
		}
		if asJSON {
			return writeJSON(a.stdout, list)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED\tMEMORY\tPARENT\tDESCRIPTION")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Created.Format("2006-01-02 15:04:05"), yesNo(s.Memory), orDash(s.Parent), s.Description)
		}
		return tw.Flush()
	case "create", "revert", "delete":
		var noWait, asJSON bool
		var desc string
		pos, err := a.subArgs("vm snapshot "+op, args, 2, func(fs *flag.FlagSet) {
			fs.BoolVar(&noWait, "no-wait", false, "return once the task started")
			fs.BoolVar(&asJSON, "json", false, "")
			if op == "create" {
				fs.StringVar(&desc, "description", "", "")
			}
		})
		if err != nil {
			return err
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		var t api.Task
		switch op {
		case "create":
			t, err = c.CreateSnapshot(ctx, pos[0], api.SnapshotRequest{Name: pos[1], Description: desc})
		case "revert":
			t, err = c.RevertSnapshot(ctx, pos[0], pos[1])
		default:
			t, err = c.DeleteSnapshot(ctx, pos[0], pos[1])
		}
		if err != nil {
			return a.explainDS(err)
		}
		return a.finish(ctx, c, t, noWait, asJSON)
	}
	return usagef("vm snapshot %s: unknown command", op)
}

func (a *app) vmScreenshot(ctx context.Context, args []string) error {
	pos, err := a.subArgs("vm screenshot", args, 2, nil)
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	png, err := c.Screenshot(ctx, pos[0])
	if err != nil {
		return a.explainDS(err)
	}
	if err := os.WriteFile(pos[1], png, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "wrote %s (%d bytes)\n", pos[1], len(png))
	return nil
}

// datastoreFiles runs "datastore upload|browse".
func (a *app) datastoreFiles(ctx context.Context, op string, args []string) error {
	switch op {
	case "upload":
		pos, err := a.subArgs("datastore upload", args, 3, nil)
		if err != nil {
			return err
		}
		f, err := os.Open(pos[1])
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		if err := c.Upload(ctx, pos[0], pos[2], f, st.Size()); err != nil {
			return a.explainDS(err)
		}
		fmt.Fprintf(a.stdout, "uploaded %s to [%s] %s (%d bytes)\n", pos[1], pos[0], pos[2], st.Size())
		return nil
	case "browse", "ls":
		var asJSON bool
		pos, err := a.subArgsRange("datastore browse", args, 1, 2, jsonFlag(&asJSON))
		if err != nil {
			return err
		}
		dir := ""
		if len(pos) == 2 {
			dir = pos[1]
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		list, err := c.Browse(ctx, pos[0], dir)
		if err != nil {
			return a.explainDS(err)
		}
		if asJSON {
			return writeJSON(a.stdout, list)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSIZE\tMODIFIED")
		for _, e := range list {
			name := e.Name
			if e.Dir {
				name += "/"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", name, humanSize(uint64(e.Size)), e.Modified.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	}
	return usagef("datastore %s: unknown command", op)
}
