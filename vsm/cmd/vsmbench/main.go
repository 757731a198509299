// Command vsmbench measures the VSM at scale and writes the "VSM scale"
// section of docs/benchmarks.md (`make bench`, or alone:
// `go run ./qemu-test/cmd/fvbench -only vsm`, or `go run ./vsm/cmd/vsmbench`).
//
// The VSM daemon (vsm/cmd/vsm, built by `go build`) runs in its own
// process on loopback ports with a temporary state directory, so that its
// memory (VmRSS, VmHWM) and CPU (utime + stime) are its own. The VEMs are
// simulated in this process: one goroutine set per VEM speaking the real
// control protocol over TLS with its own join bundle from POST
// /api/v1/join, timed like vem/vsmlink (heartbeats every 2 s, port
// reports every 10 s and after each applied config, acks, resyncs).
//
// Runs: the chassis limit (64 VEMs x 256 vEths: join, attach, restart,
// steady-state CPU and memory with heartbeats only and with port reports,
// port-profile change propagation), a scale sweep (64 .. 1,000 VEMs
// with fewer vEths each, the chassis raised with the daemon's
// benchmark-only -max-slot flag) and failover (an HA pair at the chassis
// limit: kill the active, time the VEMs' move to the standby).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsmbench:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	out          string // benchmarks file to update ("" or "-": print only)
	only         string // chassis, sweep or all
	vsmBin       string
	vems, veths  int
	profiles     int
	steady       time.Duration
	attachBudget time.Duration
	sweep        []int
	sweepVeths   int
	sweepSteady  time.Duration
	sweepAttach  bool
	stormTimeout time.Duration
}

func parseArgs(args []string, stdout io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("vsmbench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "benchmarks file whose \"VSM scale\" section is rewritten, relative to the repository root (\"-\": print the section only)")
	fs.StringVar(&o.only, "only", "all", "runs: chassis (64 VEMs x 256 vEths), sweep (the scale sweep), failover (an HA pair, the same size as chassis) or all")
	fs.StringVar(&o.vsmBin, "vsm", "", "vsm binary to run (default: go build ./vsm/cmd/vsm)")
	fs.IntVar(&o.vems, "vems", 64, "VEMs of the chassis run")
	fs.IntVar(&o.veths, "veths", 256, "vEths per VEM of the chassis run")
	fs.IntVar(&o.profiles, "profiles", 4, fmt.Sprintf("vethernet port profiles; vEth i uses profile i mod N (1-%d; max-ports caps a profile at 4,096 ports)", maxProfile))
	fs.DurationVar(&o.steady, "steady", 30*time.Second, "each steady-state window of the chassis run")
	fs.DurationVar(&o.attachBudget, "attach-budget", time.Minute, "time for the chassis run's attaches; vEths not attached by then are bound in the VSM's state before its restart")
	sweep := fs.String("sweep", "64,128,256,512,1000", "VEM counts of the scale sweep")
	fs.IntVar(&o.sweepVeths, "sweep-veths", 16, "vEths per VEM in the sweep")
	fs.DurationVar(&o.sweepSteady, "sweep-steady", 15*time.Second, "steady-state window of each sweep size")
	fs.DurationVar(&o.stormTimeout, "storm-timeout", time.Minute, "sweep: how long to wait for every VEM after the VSM restarts")
	fs.BoolVar(&o.sweepAttach, "sweep-attach", true, "time one attach at each sweep size")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if !slices.Contains([]string{"chassis", "sweep", "failover", "all"}, o.only) {
		return o, fmt.Errorf("-only %q: want chassis, sweep, failover or all", o.only)
	}
	var err error
	if o.sweep, err = parseCounts(*sweep); err != nil {
		return o, fmt.Errorf("-sweep: %w", err)
	}
	switch {
	case o.vems < 1 || o.vems > 64:
		return o, fmt.Errorf("-vems %d: want 1-64 (the chassis; the sweep goes past it)", o.vems)
	case o.veths < 1 || o.veths > 1024:
		return o, fmt.Errorf("-veths %d: want 1-1024", o.veths)
	case o.sweepVeths < 1 || o.sweepVeths > 1024:
		return o, fmt.Errorf("-sweep-veths %d: want 1-1024", o.sweepVeths)
	case o.profiles < 1 || o.profiles > maxProfile:
		return o, fmt.Errorf("-profiles %d: want 1-%d", o.profiles, maxProfile)
	case o.vems*o.veths > 4096*o.profiles:
		return o, fmt.Errorf("%d vEths over %d profiles: over max-ports 4096 a profile; add profiles", o.vems*o.veths, o.profiles)
	case slices.Max(o.sweep)*o.sweepVeths+1 > 4096*o.profiles:
		return o, fmt.Errorf("sweep: %d vEths over %d profiles: over max-ports 4096 a profile; add profiles", slices.Max(o.sweep)*o.sweepVeths+1, o.profiles)
	case o.steady <= 0 || o.sweepSteady <= 0 || o.stormTimeout <= 0 || o.attachBudget < 0:
		return o, errors.New("-steady, -sweep-steady and -storm-timeout must be positive, -attach-budget not negative")
	}
	return o, nil
}

// parseCounts parses "64,128,1000": positive, at most 4,000 (the VSM's
// vEth numbering and this machine's sockets are the practical limits).
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4000 {
			return nil, fmt.Errorf("%q: want VEM counts 1-4000 separated by commas", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseArgs(args, stdout)
	if err != nil {
		return err
	}
	root, err := repoRoot(".")
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "vsmbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := o.vsmBin
	if bin == "" {
		logf(stdout, "building ./vsm/cmd/vsm")
		if bin, err = buildVSM(ctx, root, work); err != nil {
			return err
		}
	}
	res := results{Start: time.Now(), Machine: machine(), Cores: runtime.NumCPU(), LoadStart: loadavg(), QEMUStart: qemuProcesses(), Opts: o}
	if o.only == "chassis" || o.only == "all" {
		if res.Chassis, err = benchChassis(ctx, bin, work, o, stdout); err != nil {
			return fmt.Errorf("chassis run: %w", err)
		}
	}
	if o.only == "sweep" || o.only == "all" {
		for _, n := range o.sweep {
			pt, err := benchSweep(ctx, bin, work, n, o, stdout)
			if err != nil {
				pt.Failed = err.Error()
				logf(stdout, "sweep %d: %v", n, err)
			}
			res.Sweep = append(res.Sweep, pt)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if o.only == "failover" || o.only == "all" {
		res.Failover = benchFailover(ctx, bin, work, o, stdout)
	}
	res.End, res.LoadEnd, res.QEMUEnd = time.Now(), loadavg(), qemuProcesses()
	section := res.section()
	if o.out == "" || o.out == "-" {
		fmt.Fprint(stdout, section)
		return nil
	}
	path := o.out
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	if err := updateSection(path, sectionID, sectionTitle, section); err != nil {
		return err
	}
	logf(stdout, "wrote the %q section of %s (%v)", sectionTitle, path, res.End.Sub(res.Start).Round(time.Second))
	return nil
}

// repoRoot is the nearest directory from dir up with a go.mod.
func repoRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("not inside the repository (no go.mod found upwards)")
		}
		d = up
	}
}
