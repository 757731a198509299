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
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ResultPort is the virtio serial port the results go to with -service
// (fvbench adds it to the host's QEMU).
const ResultPort = "org.flashvisor.vembench"

type benchOptions struct {
	runs, seconds, ports int
	reconcileRuns        int
	vemd                 string
	dir                  string
	service              bool
	only                 string
	switches             string
	memFor, memEvery     time.Duration
	memInterval          time.Duration
}

func runBench(ctx context.Context, args []string, stdout io.Writer) (err error) {
	var o benchOptions
	fs := flag.NewFlagSet("vembench run", flag.ContinueOnError)
	fs.IntVar(&o.runs, "runs", 5, "repetitions of each forwarding measurement (medians are taken of them)")
	fs.IntVar(&o.seconds, "seconds", 3, "iperf3 test length (-t)")
	fs.IntVar(&o.ports, "ports", 1000, "vEth ports for the reconcile and memory measurements")
	fs.IntVar(&o.reconcileRuns, "reconcile-runs", 3, "repetitions of the reconcile measurement")
	fs.StringVar(&o.vemd, "vemd", "/usr/lib/flashvisor/vemd", "the VEM agent")
	fs.StringVar(&o.dir, "dir", "/run/vembench", "working folder: sockets, state files, logs")
	fs.BoolVar(&o.service, "service", false, "run as the host's only service: results to the "+ResultPort+" port, then power off")
	fs.StringVar(&o.only, "only", "forward,reconcile,memory", "measurements to run (comma-separated)")
	fs.StringVar(&o.switches, "switches", "bridge,vem,ovs", "switches of the forwarding measurement (comma-separated)")
	fs.DurationVar(&o.memFor, "mem-for", 65*time.Second, "how long vemd's memory is sampled with the ports programmed")
	fs.DurationVar(&o.memEvery, "mem-every", 5*time.Second, "memory sampling period")
	fs.DurationVar(&o.memInterval, "mem-interval", 30*time.Second, "vemd's reconcile period during the memory measurement (its default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.runs < 1 || o.seconds < 1 || o.ports < 2 || o.reconcileRuns < 1 {
		return errors.New("-runs, -reconcile-runs and -seconds must be at least 1, -ports at least 2")
	}
	start := time.Now()
	res := &Result{Runs: o.runs, Seconds: o.seconds, Ports: o.ports}
	if o.service {
		defer func() {
			res.WallSeconds = time.Since(start).Seconds()
			if err != nil {
				res.Error = err.Error()
			}
			if werr := writeResult(res, stdout); werr != nil && err == nil {
				err = werr
			}
			fmt.Fprintln(stdout, "vembench: done; powering off")
			unix.Kill(1, unix.SIGUSR2) // init powers off on SIGUSR2
		}()
		// Kernel messages (links coming and going) would flood the
		// emulated serial console.
		os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0o644)
	}
	w, err := newWorld(o.dir, stdout)
	if err != nil {
		return err
	}
	defer w.close()
	res.Host = w.hostInfo(ctx)
	w.logf("host: %+v", res.Host)
	only := map[string]bool{}
	for _, s := range strings.Split(o.only, ",") {
		only[strings.TrimSpace(s)] = true
	}
	if only["forward"] {
		if err := w.forward(ctx, o, res); err != nil {
			return fmt.Errorf("forwarding: %w", err)
		}
	}
	if only["reconcile"] {
		ns, err := w.newNS("scale")
		if err != nil {
			return err
		}
		w.logf("reconcile: %d ports, %d runs", o.ports, o.reconcileRuns)
		cmd := w.command(ctx, ns, w.self, "reconcile", "-ports", fmt.Sprint(o.ports), "-runs", fmt.Sprint(o.reconcileRuns))
		cmd.Stderr = stdout // progress
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		if err := json.Unmarshal(out, &res.Reconcile); err != nil {
			return fmt.Errorf("reconcile output %q: %w", out, err)
		}
	}
	if only["memory"] {
		ns, err := w.newNS("memory")
		if err != nil {
			return err
		}
		w.logf("memory: vemd with %d ports", o.ports)
		if res.Memory, err = w.measureMemory(ctx, ns, o.vemd, o.ports, o.memInterval, o.memFor, o.memEvery); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		w.logf("memory: %+v", res.Memory)
	}
	res.WallSeconds = time.Since(start).Seconds()
	if !o.service {
		return writeResult(res, stdout)
	}
	return nil
}

// forward sets the three switches up and alternates between them: per
// repetition, a TCP test through each, then a UDP test through each, the
// order rotating so a drift of the machine hits all alike.
func (w *world) forward(ctx context.Context, o benchOptions, res *Result) error {
	var sws []*switchUnderTest
	for _, name := range strings.Split(o.switches, ",") {
		var s *switchUnderTest
		var err error
		switch strings.TrimSpace(name) {
		case "bridge":
			s, err = w.setupBridge()
		case "vem":
			s, err = w.setupVEM(ctx, o.vemd)
		case "ovs":
			s, _, err = w.setupOVS(ctx)
		default:
			err = errors.New("unknown switch (want bridge, vem or ovs)")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		sws = append(sws, s)
	}
	for _, s := range sws {
		if err := w.iperfServer(ctx, s); err != nil {
			return err
		}
		w.logf("%s: VMs reach each other", s.name)
	}
	results := make([]SwitchResult, len(sws))
	for i, s := range sws {
		results[i] = SwitchResult{Name: s.name, Config: s.config}
	}
	for rep := 0; rep < o.runs; rep++ {
		for j := range sws {
			i := (j + rep) % len(sws)
			bps, err := w.measureTCP(ctx, sws[i], o.seconds)
			if err != nil {
				return fmt.Errorf("%s TCP: %w", sws[i].name, err)
			}
			results[i].TCPBitsPerSecond = append(results[i].TCPBitsPerSecond, bps)
			w.logf("run %d: %s TCP %.0f Mbit/s", rep+1, sws[i].name, bps/1e6)
		}
		for j := range sws {
			i := (j + rep) % len(sws)
			sent, deliv, err := w.measurePktgen(ctx, sws[i], o.seconds)
			if err != nil {
				return fmt.Errorf("%s pktgen: %w", sws[i].name, err)
			}
			r := &results[i]
			r.PktgenSentPPS, r.PktgenDeliveredPPS = append(r.PktgenSentPPS, sent), append(r.PktgenDeliveredPPS, deliv)
			w.logf("run %d: %s pktgen 64 B: sent %.0f, delivered %.0f frames/s", rep+1, sws[i].name, sent, deliv)
		}
		for j := range sws {
			i := (j + rep) % len(sws)
			sent, recv, deliv, err := w.measureUDP(ctx, sws[i], o.seconds)
			if err != nil {
				return fmt.Errorf("%s UDP: %w", sws[i].name, err)
			}
			r := &results[i]
			r.UDPSentPPS, r.UDPReceivedPPS, r.UDPDeliveredPPS = append(r.UDPSentPPS, sent), append(r.UDPReceivedPPS, recv), append(r.UDPDeliveredPPS, deliv)
			w.logf("run %d: %s UDP 64 B: sent %.0f, delivered %.0f, received %.0f packets/s", rep+1, sws[i].name, sent, deliv, recv)
		}
	}
	for i, s := range sws {
		if s.counters == nil {
			continue
		}
		m, err := s.counters(ctx)
		if err != nil {
			return fmt.Errorf("%s counters: %w", s.name, err)
		}
		results[i].Counters = m
		w.logf("%s counters: %v", s.name, m)
	}
	res.Switches = results
	return nil
}

func (w *world) hostInfo(ctx context.Context) HostInfo {
	h := HostInfo{CPUs: runtime.NumCPU(), IPerf3: w.version(ctx, "iperf3"), OVS: w.version(ctx, ovsVswitchd)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		h.MemMiB = kb >> 10
	}
	return h
}

// writeResult writes res to the results port, or as one line on out when
// there is none (a run by hand).
func writeResult(res *Result, out io.Writer) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	dev, err := findPort("/sys/class/virtio-ports", "/dev", ResultPort)
	if err != nil {
		_, err := fmt.Fprintf(out, "VEMBENCH-RESULT %s\n", b)
		return err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// findPort returns the device of the virtio serial port called name.
func findPort(sysDir, devDir, name string) (string, error) {
	ents, err := os.ReadDir(sysDir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("virtio serial port %q: %w", name, os.ErrNotExist)
}
