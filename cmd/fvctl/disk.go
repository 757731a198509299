package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// diskCommand runs "disk ..." (vmkfstools -i / -X on ESXi).
func (a *app) diskCommand(ctx context.Context, rest []string) error {
	if len(rest) == 0 {
		return usagef("disk: want import, clone, grow or info")
	}
	switch sub, args := rest[0], rest[1:]; sub {
	case "import", "clone":
		return a.diskCopy(ctx, sub, args)
	case "grow":
		return a.diskGrow(ctx, args)
	case "info", "show":
		return a.diskInfo(ctx, args)
	default:
		return usagef("disk %s: unknown command", sub)
	}
}

// checkRef refuses what is not "[datastore] path" before asking the host.
func checkRef(cmd, ref string) error {
	if !strings.HasPrefix(ref, "[") || !strings.Contains(ref, "]") {
		return usagef(`%s: %q: want "[datastore] path", quoted as one argument`, cmd, ref)
	}
	return nil
}

func (a *app) diskCopy(ctx context.Context, op string, args []string) error {
	var thick, noWait, asJSON bool
	name := "disk " + op
	pos, err := a.subArgs(name, args, 2, func(fs *flag.FlagSet) {
		fs.BoolVar(&thick, "thick", false, "a fully allocated raw disk (default: thin qcow2)")
		fs.BoolVar(&noWait, "no-wait", false, "return once the task started")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil {
		return err
	}
	for _, ref := range pos {
		if err := checkRef(name, ref); err != nil {
			return err
		}
	}
	req := api.DiskCopyRequest{Source: pos[0], Destination: pos[1], Provisioning: api.ProvisionThin}
	if thick {
		req.Provisioning = api.ProvisionThick
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	start := c.ImportDisk
	if op == "clone" {
		start = c.CloneDisk
	}
	t, err := start(ctx, req)
	if err != nil {
		return a.explainDS(err)
	}
	return a.diskFinish(ctx, c, t, noWait, asJSON)
}

func (a *app) diskGrow(ctx context.Context, args []string) error {
	var noWait, asJSON bool
	pos, err := a.subArgs("disk grow", args, 2, func(fs *flag.FlagSet) {
		fs.BoolVar(&noWait, "no-wait", false, "return once the task started")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil {
		return err
	}
	if err := checkRef("disk grow", pos[0]); err != nil {
		return err
	}
	size, relative := strings.CutPrefix(pos[1], "+")
	mib, err := parseSizeMiB(size)
	if err != nil {
		return usagef("disk grow: %v", err)
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	if relative {
		info, err := c.DiskInfo(ctx, pos[0])
		if err != nil {
			return a.explainDS(err)
		}
		cur := (info.VirtualSizeBytes + 1<<20 - 1) >> 20
		if mib > math.MaxInt64-cur {
			return usagef("disk grow: size %q is too large", pos[1])
		}
		mib += cur
	}
	t, err := c.GrowDisk(ctx, pos[0], mib)
	if err != nil {
		return a.explainDS(err)
	}
	return a.diskFinish(ctx, c, t, noWait, asJSON)
}

// parseSizeMiB reads N[M|G|T] (MiB, GiB, TiB; MiB without a unit).
func parseSizeMiB(v string) (int64, error) {
	s := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(v), "B"), "I")
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "T"):
		mult, s = 1<<20, strings.TrimSuffix(s, "T")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<10, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		s = strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want e.g. 512M, 20G, 2T or +10G", v)
	}
	return n * mult, nil
}

// diskFinish waits for a disk task and prints the disk it made or grew.
func (a *app) diskFinish(ctx context.Context, c *client.Client, t api.Task, noWait, asJSON bool) error {
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
	var d api.DiskInfo
	if json.Unmarshal(done.Result, &d) != nil || d.Path == "" {
		fmt.Fprintf(a.stdout, "%s %s: %s\n", done.Kind, done.Target, done.State)
		return nil
	}
	fmt.Fprintf(a.stdout, "%s %s: %s (%s, %s, %s used)\n", done.Kind, done.Target, done.State,
		d.Format, humanSize(uint64(d.VirtualSizeBytes)), humanSize(uint64(d.ActualSizeBytes)))
	return nil
}

func (a *app) diskInfo(ctx context.Context, args []string) error {
	var asJSON bool
	pos, err := a.subArgs("disk info", args, 1, jsonFlag(&asJSON))
	if err != nil {
		return err
	}
	if err := checkRef("disk info", pos[0]); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	d, err := c.DiskInfo(ctx, pos[0])
	if err != nil {
		return a.explainDS(err)
	}
	if asJSON {
		return writeJSON(a.stdout, d)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"Disk:", d.Path},
		{"Format:", d.Format},
		{"Size:", fmt.Sprintf("%s (%d bytes)", humanSize(uint64(d.VirtualSizeBytes)), d.VirtualSizeBytes)},
		{"Used:", humanSize(uint64(d.ActualSizeBytes))},
		{"Backing file:", orDash(d.BackingFile)},
		{"Snapshots:", strconv.Itoa(d.Snapshots)},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}
