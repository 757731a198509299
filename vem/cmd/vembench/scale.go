package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vemclient"
	"github.com/vishvananda/netlink"
)

// scaleConfig is n vEth ports as n VMs' vNICs get them: a tap each (the
// VEM creates it), one MAC, all of the VEM's policy (access VLAN, static
// entry, port security, ingress policer, BPDU filter). Port moved (1-based;
// 0: none) is on profile vm-b, access VLAN 200, the others on vm-a, 100;
// port remac (0: none) has another MAC.
func scaleConfig(n, moved, remac int) api.SwitchConfig {
	prof := func(name string, vlan int) api.PortProfile {
		return api.PortProfile{Name: name, Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: vlan, Enabled: true,
			Ingress: &api.RateLimit{BitsPerSecond: benchRate}, PortSecurity: &api.PortSecurity{MaxMACs: 1}}
	}
	sc := api.SwitchConfig{Module: 3, Profiles: []api.PortProfile{prof("vm-a", 100), prof("vm-b", 200)}}
	for i := 1; i <= n; i++ {
		mac := fmt.Sprintf("02:10:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
		if i == remac {
			mac = fmt.Sprintf("02:20:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
		}
		p := api.Port{Name: "Veth" + strconv.Itoa(i), Kind: api.PortVeth, Profile: "vm-a", MACs: []string{mac}, Owner: fmt.Sprintf("vm%d nic 0", i)}
		if i == moved {
			p.Profile = "vm-b"
		}
		sc.Ports = append(sc.Ports, p)
	}
	return sc
}

// runReconcile is `vembench reconcile`: the agent's SetConfig times with
// -ports ports, in the current network namespace (nsexec puts it in a fresh
// one), printed as a ReconcileResult.
func runReconcile(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vembench reconcile", flag.ContinueOnError)
	ports := fs.Int("ports", 1000, "vEth ports")
	runs := fs.Int("runs", 3, "repetitions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := measureReconcile(ctx, *ports, *runs, os.Stderr)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(r)
}

func measureReconcile(ctx context.Context, ports, runs int, progress io.Writer) (ReconcileResult, error) {
	r := ReconcileResult{Ports: ports}
	half := ports / 2
	full, remac, moved := scaleConfig(ports, 0, 0), scaleConfig(ports, 0, half), scaleConfig(ports, half, half)
	empty := api.SwitchConfig{Module: 3}
	for run := 1; run <= runs; run++ {
		// A fresh agent and no switch: from scratch.
		k, err := vem.NewNetlinkKernel()
		if err != nil {
			return r, err
		}
		a, err := vem.New(vem.Options{Kernel: k})
		if err != nil {
			return r, err
		}
		step := func(what string, sc api.SwitchConfig, into *[]float64) (int, error) {
			before := a.Card().Changes
			start := time.Now()
			err := a.SetConfig(ctx, sc)
			d := time.Since(start)
			*into = append(*into, d.Seconds())
			n := int(a.Card().Changes - before)
			fmt.Fprintf(progress, "vembench: reconcile run %d: %s: %.2fs, %d kernel changes (%v)\n", run, what, d.Seconds(), n, err)
			if err != nil {
				return n, fmt.Errorf("run %d, %s: %w", run, what, err)
			}
			return n, nil
		}
		n, err := step("create", full, &r.Create)
		if err != nil {
			return r, err
		}
		if run == 1 {
			r.KernelChanges = n
		}
		if n, err := step("no-op", full, &r.Noop); err != nil {
			return r, err
		} else if n != 0 {
			return r, fmt.Errorf("run %d: the unchanged config applied %d changes, want none", run, n)
		}
		if n, err = step("change one port's MAC", remac, &r.ChangeMAC); err != nil {
			return r, err
		}
		if run == 1 {
			r.ChangeMACChanges = n
		}
		// A failure here is reported with the time, not fatal: it is a
		// finding of the benchmark.
		n, err = step("change one port's VLAN", moved, &r.Change)
		if run == 1 {
			r.ChangeChanges = n
		}
		if err != nil && r.ChangeError == "" {
			r.ChangeError = err.Error()
		}
		if _, err := step("delete all", empty, &r.Delete); err != nil {
			return r, err
		}
		k.Close()
		// The bridge stays with an empty config; the next run starts
		// without it.
		if br, err := netlink.LinkByName(vem.BridgeName); err == nil {
			if err := netlink.LinkDel(br); err != nil {
				return r, fmt.Errorf("delete %s: %w", vem.BridgeName, err)
			}
		}
	}
	return r, nil
}

// measureMemory runs the real vemd in ns, PUTs ports ports through
// vemclient and reads its memory from /proc/PID/status.
func (w *world) measureMemory(ctx context.Context, ns *netNS, vemd string, ports int, interval, sampleFor, sampleEvery time.Duration) (MemoryResult, error) {
	m := MemoryResult{Ports: ports, SampleEvery: sampleEvery.Seconds(), SampleFor: sampleFor.Seconds(), Interval: interval.Seconds()}
	c, p, err := w.startVemd(ctx, ns, vemd, "vemd-memory", interval)
	if err != nil {
		return m, err
	}
	defer p.stop()
	pid := p.cmd.Process.Pid // nsexec execs vemd in place: same PID
	status := func() (rss, hwm int, err error) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, 0, err
		}
		return procStatus(string(st))
	}
	time.Sleep(2 * time.Second) // settle after start
	if m.IdleRSS, _, err = status(); err != nil {
		return m, err
	}
	start := time.Now()
	if _, err := c.SetConfig(ctx, scaleConfig(ports, 0, 0)); err != nil {
		var ae *vemclient.Error
		if errors.As(err, &ae) || ctx.Err() != nil {
			return m, fmt.Errorf("vemd: put %d ports: %w", ports, err)
		}
		// The client gave up (its timeout): wait for the agent, whose
		// card answers once the config is applied (it shares the
		// config's lock).
		m.PutError = err.Error()
		w.logf("vemd: put %d ports: %v; waiting for the agent", ports, err)
		for {
			card, cerr := c.Card(ctx)
			if cerr == nil && card.Programmed && card.LastReconcile != "" {
				break
			}
			if perr := p.exited(); perr != nil {
				return m, perr
			}
			if time.Since(start) > 30*time.Minute {
				return m, fmt.Errorf("vemd: %d ports not applied after 30 minutes: %v", ports, cerr)
			}
			time.Sleep(time.Second)
		}
	}
	m.PutSeconds = time.Since(start).Seconds()
	if m.AfterPutRSS, _, err = status(); err != nil {
		return m, err
	}
	w.logf("vemd: %d ports PUT in %.1fs; VmRSS %d KiB (idle %d KiB); sampling for %s", ports, m.PutSeconds, m.AfterPutRSS, m.IdleRSS, sampleFor)
	m.MinRSS, m.MaxRSS = m.AfterPutRSS, m.AfterPutRSS
	for end := time.Now().Add(sampleFor); time.Now().Before(end); {
		select {
		case <-time.After(sampleEvery):
		case <-ctx.Done():
			return m, ctx.Err()
		}
		rss, _, err := status()
		if err != nil {
			return m, err
		}
		m.MinRSS, m.MaxRSS = min(m.MinRSS, rss), max(m.MaxRSS, rss)
	}
	if _, m.HWM, err = status(); err != nil {
		return m, err
	}
	if fi, err := os.Stat(w.logDir + "/vemd-memory-state.json"); err == nil {
		m.StateFileKiB = int(fi.Size() >> 10)
	}
	// The ports go with the namespace.
	return m, nil
}

// procStatus reads VmRSS and VmHWM (KiB) from /proc/PID/status.
func procStatus(s string) (rss, hwm int, err error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("no VmRSS/VmHWM in /proc/PID/status")
	}
	return rss, hwm, nil
}
