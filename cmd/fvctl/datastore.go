package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// storageCommand runs "storage ...", "datastore ..." and "task ...";
// "datastore upload|browse" are in vm.go.
func (a *app) storageCommand(ctx context.Context, cmd string, rest []string) error {
	sub := "list"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	switch cmd + " " + sub {
	case "storage disks", "storage list":
		return a.disks(ctx, "storage disks", rest, (*client.Client).Disks)
	case "storage rescan":
		return a.disks(ctx, "storage rescan", rest, (*client.Client).Rescan)
	case "datastore list":
		return a.datastoreList(ctx, rest)
	case "datastore create":
		return a.datastoreCreate(ctx, rest)
	case "datastore remove", "datastore rm":
		return a.datastoreRemove(ctx, rest)
	case "datastore mount", "datastore unmount":
		return a.datastoreMount(ctx, sub, rest)
	case "datastore upload", "datastore browse", "datastore ls":
		return a.datastoreFiles(ctx, sub, rest)
	case "task list":
		return a.taskList(ctx, rest)
	case "task show", "task wait":
		return a.taskShow(ctx, sub, rest)
	}
	return usagef("%s %s: unknown command", cmd, sub)
}

func jsonFlag(v *bool) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) { fs.BoolVar(v, "json", false, "") }
}

func (a *app) disks(ctx context.Context, name string, args []string, call func(*client.Client, context.Context) ([]api.Disk, error)) error {
	var asJSON bool
	if _, err := a.subArgs(name, args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	disks, err := call(c, ctx)
	if err != nil {
		return a.explainDS(err)
	}
	if asJSON {
		return writeJSON(a.stdout, disks)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSIZE\tMODEL\tSERIAL\tIN-USE/CONTENT")
	for _, d := range disks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Path, humanSize(d.SizeBytes), orDash(d.Model), orDash(d.Serial), contentOf(d.BlockDevice))
		for _, p := range d.Partitions {
			fmt.Fprintf(tw, "  %s\t%s\t\t\t%s\n", p.Path, humanSize(p.SizeBytes), contentOf(p))
		}
	}
	return tw.Flush()
}

// contentOf says what a disk or partition holds and whether it is in use:
// `datastore ds1, ext4 "ds1", mounted at /vmfs/volumes/...`.
func contentOf(b api.BlockDevice) string {
	var parts []string
	if b.Datastore != "" {
		parts = append(parts, "datastore "+b.Datastore)
	}
	c := b.Content
	switch {
	case c == api.ContentEmpty:
		c = "empty"
	case c == api.ContentOther && b.ContentDetail != "":
		c = b.ContentDetail
	}
	if b.Label != "" {
		c += fmt.Sprintf(" %q", b.Label)
	}
	parts = append(parts, c)
	if len(b.MountPoints) > 0 {
		parts = append(parts, "mounted at "+strings.Join(b.MountPoints, ", "))
	}
	if b.ReadOnly {
		parts = append(parts, "read-only")
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanSize renders bytes in binary units with one decimal: "931.5 GiB".
func humanSize(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func (a *app) datastoreList(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("datastore list", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	list, err := c.Datastores(ctx)
	if err != nil {
		return a.explainDS(err)
	}
	if asJSON {
		return writeJSON(a.stdout, list)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUUID\tDEVICE\tCAPACITY\tFREE\tSTATUS")
	for _, d := range list {
		capacity, free := "-", "-"
		if d.Status == api.DatastoreMounted {
			capacity, free = humanSize(d.CapacityBytes), humanSize(d.FreeBytes)
		}
		status := d.Status
		if d.Message != "" {
			status += ": " + d.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.UUID, orDash(d.Device), capacity, free, status)
	}
	return tw.Flush()
}

func (a *app) datastoreCreate(ctx context.Context, args []string) error {
	var req api.DatastoreCreateRequest
	var noWait, asJSON bool
	pos, err := a.subArgsRange("datastore create", args, 1, 2, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Device, "device", "", "")
		fs.BoolVar(&req.Force, "force", false, "")
		fs.BoolVar(&noWait, "no-wait", false, "")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil {
		return err
	}
	req.Name = pos[0]
	if len(pos) == 2 { // "create NAME DEVICE" reads naturally too
		if req.Device != "" && req.Device != pos[1] {
			return usagef("datastore create: device given twice (%s and --device %s)", pos[1], req.Device)
		}
		req.Device = pos[1]
	}
	if req.Device == "" {
		return usagef("datastore create: want --device DEVICE (see fvctl storage disks)")
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	t, err := c.CreateDatastore(ctx, req)
	if err != nil {
		return a.explainDS(err)
	}
	if noWait {
		return a.started(t, asJSON)
	}
	fmt.Fprintf(a.stderr, "Formatting %s as datastore %s (task %s)...\n", req.Device, req.Name, t.ID)
	t, err = a.wait(ctx, c, t.ID)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, t)
	}
	var d api.Datastore
	if err := json.Unmarshal(t.Result, &d); err != nil {
		return fmt.Errorf("task %s succeeded but its result is unreadable: %w", t.ID, err)
	}
	fmt.Fprintf(a.stdout, "Datastore %s created on %s: UUID %s, %s, mounted at %s.\n",
		d.Name, d.Device, d.UUID, humanSize(d.CapacityBytes), d.Path)
	return nil
}

func (a *app) datastoreRemove(ctx context.Context, args []string) error {
	var force, noWait, asJSON bool
	pos, err := a.subArgs("datastore remove", args, 1, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "")
		fs.BoolVar(&noWait, "no-wait", false, "")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	t, err := c.RemoveDatastore(ctx, pos[0], force)
	if err != nil {
		return a.explainDS(err)
	}
	if noWait {
		return a.started(t, asJSON)
	}
	if t, err = a.wait(ctx, c, t.ID); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, t)
	}
	fmt.Fprintf(a.stdout, "Datastore %s removed.\n", pos[0])
	return nil
}

func (a *app) datastoreMount(ctx context.Context, what string, args []string) error {
	var asJSON bool
	pos, err := a.subArgs("datastore "+what, args, 1, jsonFlag(&asJSON))
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	call := c.MountDatastore
	if what == "unmount" {
		call = c.UnmountDatastore
	}
	d, err := call(ctx, pos[0])
	if err != nil {
		return a.explainDS(err)
	}
	if asJSON {
		return writeJSON(a.stdout, d)
	}
	fmt.Fprintf(a.stdout, "Datastore %s %sed (status %s).\n", d.Name, what, d.Status)
	return nil
}

// started reports a task the user chose not to wait for.
func (a *app) started(t api.Task, asJSON bool) error {
	if asJSON {
		return writeJSON(a.stdout, t)
	}
	fmt.Fprintf(a.stdout, "Task %s started (%s %s). Follow it with: fvctl task wait %s\n", t.ID, t.Kind, t.Target, t.ID)
	return nil
}

// errTaskFailed is wrapped by the error of a wait whose task failed.
var errTaskFailed = errors.New("task failed")

// wait follows a task to its end; a failed task is an error.
func (a *app) wait(ctx context.Context, c *client.Client, id string) (api.Task, error) {
	t, err := c.WaitTask(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return t, fmt.Errorf("stopped waiting for task %s (it goes on; see fvctl task show %s): %w", id, id, err)
		}
		return t, a.explainDS(err)
	}
	if t.State == api.TaskError {
		return t, taskFailure(t)
	}
	return t, nil
}

func taskFailure(t api.Task) error {
	msg, code := "unknown error", api.ErrInternal
	if t.Error != nil {
		msg, code = t.Error.Message, t.Error.Code
	}
	return fmt.Errorf("%w: %s %s (%s): %s%s", errTaskFailed, t.Kind, t.Target, code, msg, hint(code))
}

// hint is the CLI's advice for the datastore error codes.
func hint(code string) string {
	switch code {
	case api.ErrForceRequired:
		return "\nAdd --force to override; whatever is on the device is lost."
	case api.ErrInUse:
		return "\n--force does not override this."
	}
	return ""
}

func (a *app) explainDS(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		if h := hint(ae.Code); h != "" {
			return fmt.Errorf("host refused (%d %s): %s%s", ae.Status, ae.Code, ae.Message, h)
		}
	}
	return a.explain(err)
}

func (a *app) taskList(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("task list", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	tasks, err := c.Tasks(ctx)
	if err != nil {
		return a.explain(err)
	}
	if asJSON {
		return writeJSON(a.stdout, tasks)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tSTATE\tSTARTED\tDURATION")
	for _, t := range tasks {
		dur := "-"
		if t.Finished != nil {
			dur = t.Finished.Sub(t.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Target, t.State, t.Started.Format(time.RFC3339), dur)
	}
	return tw.Flush()
}

// taskShow prints a task now ("show") or once it ended ("wait"). wait
// fails (exit 1) when the task failed.
func (a *app) taskShow(ctx context.Context, what string, args []string) error {
	var asJSON bool
	pos, err := a.subArgs("task "+what, args, 1, jsonFlag(&asJSON))
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	var t api.Task
	var failed error
	if what == "wait" {
		t, failed = a.wait(ctx, c, pos[0])
		if failed != nil && !errors.Is(failed, errTaskFailed) {
			return failed
		}
	} else if t, err = c.Task(ctx, pos[0]); err != nil {
		return a.explain(err)
	}
	if asJSON {
		if err := writeJSON(a.stdout, t); err != nil {
			return err
		}
		return failed
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\nKind:\t%s\nTarget:\t%s\nState:\t%s\nStarted:\t%s\n", t.ID, t.Kind, t.Target, t.State, t.Started.Format(time.RFC3339))
	if t.Finished != nil {
		fmt.Fprintf(tw, "Finished:\t%s (%s)\n", t.Finished.Format(time.RFC3339), t.Finished.Sub(t.Started).Round(time.Millisecond))
	}
	if t.Error != nil {
		fmt.Fprintf(tw, "Error:\t%s: %s\n", t.Error.Code, t.Error.Message)
	}
	if len(t.Result) > 0 {
		fmt.Fprintf(tw, "Result:\t%s\n", t.Result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return failed
}

// subArgsRange is subArgs for commands taking min to max positional
// arguments.
func (a *app) subArgsRange(name string, args []string, lo, hi int, define func(*flag.FlagSet)) ([]string, error) {
	fs := newFlagSet(name)
	a.defineGlobals(fs)
	define(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) < lo || len(pos) > hi {
		return nil, usagef("%s: want %d to %d arguments, got %d", name, lo, hi, len(pos))
	}
	return pos, nil
}
