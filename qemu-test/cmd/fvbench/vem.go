package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	qemutest "github.com/flashvisor/flashvisor/qemu-test"
	"github.com/u-root/u-root/pkg/cpio"
)

// VEM benchmark (issue 4): forwarding through the VEM against a plain Linux
// bridge and Open vSwitch, the agent's reconcile time and vemd's memory
// with 1,000 ports. Everything runs inside one emulated host booted from
// the bench image (the host image plus OVS, image.BenchProfile), where
// vem/cmd/vembench is shipped in as the host's only service; it writes its
// results to a virtio serial port and powers the host off.

const (
	vemBenchHostMiB  = 3072
	vemBenchHostCPUs = 2
	vemBenchPort     = "org.flashvisor.vembench" // vembench's ResultPort
	vemBenchDest     = "/fvbench/vembench"
	vemBenchTimeout  = 2 * time.Hour // bounds a hang only
)

type vemOptions struct {
	runs, seconds, ports int
	reconcileRuns        int
	only                 string // vembench's -only: forward, reconcile, memory
}

// vemResult mirrors vembench's Result (vem/cmd/vembench/result.go).
type vemResult struct {
	Host struct {
		Kernel string `json:"kernel"`
		CPUs   int    `json:"cpus"`
		MemMiB int    `json:"mem_mib"`
		IPerf3 string `json:"iperf3"`
		OVS    string `json:"ovs"`
	} `json:"host"`
	Runs     int `json:"runs"`
	Seconds  int `json:"seconds"`
	Ports    int `json:"ports"`
	Switches []struct {
		Name         string            `json:"name"`
		Config       string            `json:"config"`
		TCP          []float64         `json:"tcp_bps"`
		PktgenSent   []float64         `json:"pktgen_sent_pps"`
		PktgenDeliv  []float64         `json:"pktgen_delivered_pps"`
		UDPSent      []float64         `json:"udp_sent_pps"`
		UDPReceived  []float64         `json:"udp_received_pps"`
		UDPDelivered []float64         `json:"udp_delivered_pps"`
		Counters     map[string]uint64 `json:"counters"`
	} `json:"switches"`
	Reconcile struct {
		Ports         int       `json:"ports"`
		Create        []float64 `json:"create"`
		Noop          []float64 `json:"noop"`
		ChangeMAC     []float64 `json:"change_mac"`
		Change        []float64 `json:"change"`
		ChangeError   string    `json:"change_error"`
		ChangeMACN    int       `json:"change_mac_changes"`
		Delete        []float64 `json:"delete"`
		KernelChanges int       `json:"kernel_changes"`
		ChangeChanges int       `json:"change_changes"`
	} `json:"reconcile"`
	Memory struct {
		Ports        int     `json:"ports"`
		IdleRSS      int     `json:"idle_rss_kib"`
		PutSeconds   float64 `json:"put_seconds"`
		PutError     string  `json:"put_error"`
		AfterPutRSS  int     `json:"after_put_rss_kib"`
		MinRSS       int     `json:"min_rss_kib"`
		MaxRSS       int     `json:"max_rss_kib"`
		HWM          int     `json:"hwm_kib"`
		SampleEvery  float64 `json:"sample_every_seconds"`
		SampleFor    float64 `json:"sample_for_seconds"`
		Interval     float64 `json:"reconcile_interval_seconds"`
		StateFileKiB int     `json:"state_file_kib"`
	} `json:"memory"`
	WallSeconds float64 `json:"wall_seconds"`
	Error       string  `json:"error"`
}

// vemRun is what the section reports besides vembench's results.
type vemRun struct {
	res        vemResult
	buildSecs  float64 // bench image build
	bootSecs   float64 // QEMU start to vembench's first line
	totalSecs  float64 // all of -only vem
	initrdMiB  float64 // bench image's initramfs
	hostMiB    float64 // host image's, 0 when not built
	hostAccel  string
	machine    string
	loadStart  string
	loadEnd    string
	consoleLog string
}

// runVEM builds the bench image into out/bench, boots it with vembench and
// writes the "vem" section of the benchmarks file.
func runVEM(ctx context.Context, root string, o options, stdout io.Writer) error {
	start := time.Now()
	vo := o.vem
	if vo.runs < 1 || vo.seconds < 1 || vo.ports < 2 || vo.reconcileRuns < 1 {
		return fmt.Errorf("vem bench: -vem-runs %d, -vem-reconcile-runs %d and -vem-seconds %d must be at least 1, -vem-ports %d at least 2",
			vo.runs, vo.reconcileRuns, vo.seconds, vo.ports)
	}
	work, err := os.MkdirTemp("", "fvbench-vem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r := vemRun{machine: machine(), loadStart: loadavg()}

	// The bench image: the host's plus OVS.
	mkimage := filepath.Join(work, "mkimage")
	if err := command(ctx, root, "go", "build", "-o", mkimage, "./image/cmd/mkimage").Run(); err != nil {
		return fmt.Errorf("building mkimage: %w", err)
	}
	imgDir := filepath.Join(root, "out", "bench")
	fmt.Fprintf(stdout, "vem bench: building the bench image into %s\n", imgDir)
	d, err := timed(ctx, root, mkimage, "build", "-profile", "bench", "-out", imgDir, "-cache", filepath.Join(root, "out", "cache"), "-version", gitVersion(ctx, root))
	if err != nil {
		return err
	}
	r.buildSecs = d.Seconds()
	kernel, initrd, err := qemutest.HostImageIn(imgDir)
	if err != nil {
		return err
	}
	r.initrdMiB = fileMiB(initrd)
	if dir, err := qemutest.ImageDir(); err == nil {
		r.hostMiB = fileMiB(filepath.Join(dir, qemutest.InitrdFile))
	}

	// vembench as the host's only service, in an initramfs appended to the
	// image's (the kernel unpacks both; later files win).
	bin := filepath.Join(work, "vembench")
	build := command(ctx, root, "go", "build", "-trimpath", "-o", bin, "./vem/cmd/vembench")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if err := build.Run(); err != nil {
		return fmt.Errorf("building vembench: %w", err)
	}
	svc, err := json.Marshal([]api.ServiceSpec{{Name: "vembench", Path: vemBenchDest, Args: []string{"run", "-service",
		"-runs", fmt.Sprint(vo.runs), "-seconds", fmt.Sprint(vo.seconds), "-ports", fmt.Sprint(vo.ports),
		"-reconcile-runs", fmt.Sprint(vo.reconcileRuns), "-only", vo.only}}})
	if err != nil {
		return err
	}
	combined := filepath.Join(work, "initrd.img")
	if err := appendCpio(combined, initrd, []cpioEntry{
		{name: "etc", mode: cpio.S_IFDIR | 0o755},
		{name: "etc/flashvisor", mode: cpio.S_IFDIR | 0o755},
		{name: "etc/flashvisor/services.json", mode: cpio.S_IFREG | 0o644, data: svc},
		{name: "fvbench", mode: cpio.S_IFDIR | 0o755},
		{name: strings.TrimPrefix(vemBenchDest, "/"), mode: cpio.S_IFREG | 0o755, src: bin},
	}); err != nil {
		return err
	}

	stateDir := filepath.Join(qemutest.DefaultStateRoot(), "fvbench-vem")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	results := filepath.Join(stateDir, "vembench.json")
	if err := os.WriteFile(results, nil, 0o644); err != nil {
		return err
	}
	r.consoleLog = filepath.Join(stateDir, "fvbench-vem.log")
	fmt.Fprintf(stdout, "vem bench: booting the bench host (%d MiB, %d vCPUs); its console log is %s\n", vemBenchHostMiB, vemBenchHostCPUs, r.consoleLog)
	boot := time.Now()
	vm, err := qemutest.Boot("fvbench-vem",
		qemutest.WithKernel(kernel), qemutest.WithInitrd(combined),
		qemutest.WithMemory(vemBenchHostMiB), qemutest.WithCPUs(vemBenchHostCPUs),
		qemutest.WithStateDir(stateDir), qemutest.WithTimeout(vemBenchTimeout), qemutest.WithNoReboot(),
		qemutest.WithLogf(func(format string, args ...any) {
			if line := fmt.Sprintf(format, args...); strings.Contains(line, "vembench") {
				fmt.Fprintln(stdout, line)
			}
		}),
		qemutest.WithExtraArgs(
			"-device", "virtio-serial-pci,id=fvbenchser",
			"-chardev", "file,id=fvbenchport,path="+results,
			"-device", "virtserialport,bus=fvbenchser.0,chardev=fvbenchport,name="+vemBenchPort))
	if err != nil {
		return fmt.Errorf("boot the bench host: %w", err)
	}
	defer vm.Close()
	r.hostAccel = vm.Accel()
	if err := vm.Wait(ctx); err != nil {
		// The results say more than QEMU's exit status, unless there are none.
		if errors.Is(err, qemutest.ErrTimeout) || ctx.Err() != nil {
			return fmt.Errorf("bench host: %w (console log %s)", err, r.consoleLog)
		}
		fmt.Fprintf(stdout, "vem bench: QEMU: %v\n", err)
	}
	b, err := os.ReadFile(results)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("vembench wrote no results (console log %s):\n%s", r.consoleLog, consoleTail(vm, 30))
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &r.res); err != nil {
		return fmt.Errorf("vembench results: %w", err)
	}
	if r.res.Error != "" {
		return fmt.Errorf("vembench: %s (console log %s)", r.res.Error, r.consoleLog)
	}
	r.totalSecs = time.Since(start).Seconds()
	r.bootSecs = time.Since(boot).Seconds() - r.res.WallSeconds
	r.loadEnd = loadavg()
	fmt.Fprintf(stdout, "vem bench: done in %.0fs (image %.0fs, host boot and power-off %.0fs, vembench %.0fs)\n",
		r.totalSecs, r.buildSecs, r.bootSecs, r.res.WallSeconds)
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	return updateSection(out, "vem", "VEM", r.section(time.Now()))
}

func consoleTail(vm *qemutest.VM, n int) string {
	l := vm.Console()
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func fileMiB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// gitVersion is what the Makefile records as the image version.
func gitVersion(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}

// cpioEntry is one file of the appended initramfs.
type cpioEntry struct {
	name string // relative to /
	mode uint64
	src  string // regular file: its content
	data []byte // regular file without src
}

// appendCpio writes base, zero padding to 512 bytes, and a newc archive of
// entries to dst: the kernel unpacks one archive after the other.
func appendCpio(dst, base string, entries []cpioEntry) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	in, err := os.Open(base)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	in.Close()
	if err != nil {
		return err
	}
	if pad := (512 - n%512) % 512; pad > 0 {
		if _, err := out.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	w := cpio.Newc.Writer(out)
	for i, e := range entries {
		info := cpio.Info{Ino: uint64(i + 1), Mode: e.mode, NLink: 1, Name: e.name}
		var rec cpio.Record
		switch {
		case e.mode&cpio.S_IFMT == cpio.S_IFDIR:
			info.NLink = 2
			rec = cpio.Record{Info: info}
		case e.src != "":
			data, err := os.ReadFile(e.src)
			if err != nil {
				return err
			}
			rec = cpio.StaticRecord(data, info)
		default:
			rec = cpio.StaticRecord(e.data, info)
		}
		if err := w.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio %s: %w", e.name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return err
	}
	return out.Close()
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func minMaxF(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi = v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// section is the benchmarks file's text for one run.
func (r vemRun) section(now time.Time) string {
	res := r.res
	var s bytes.Buffer
	fmt.Fprintf(&s, "Measured %s by `make bench` (this section alone: `go run ./qemu-test/cmd/fvbench -only vem`) on: %s.\n\n", now.UTC().Format("2006-01-02"), r.machine)
	fmt.Fprintf(&s, "Everything runs inside one emulated host (%s, %d MiB, %d vCPUs; kernel %s, %s, %s) booted from the bench image "+
		"(`mkimage build -profile bench`: the host image plus Debian's Open vSwitch and the `openvswitch` module; initramfs %.1f MiB",
		r.hostAccel, vemBenchHostMiB, res.Host.CPUs, res.Host.Kernel, res.Host.IPerf3, res.Host.OVS, r.initrdMiB)
	if r.hostMiB > 0 {
		fmt.Fprintf(&s, ", the host image's %.1f MiB", r.hostMiB)
	}
	fmt.Fprintf(&s, "), where `vem/cmd/vembench` runs as the only service. "+
		"Under software emulation every absolute figure is far below what the same kernel does on hardware: read the **ratios**, "+
		"which compare switches measured the same way, in the same host, in the same run. "+
		"The machine was shared with other work (1/5/15-minute load average %s at the start, %s at the end).\n\n", r.loadStart, r.loadEnd)

	// Forwarding (absent from a partial run).
	if len(res.Switches) > 0 {
		byName := map[string]int{}
		for i, sw := range res.Switches {
			byName[sw.Name] = i
		}
		fmt.Fprintf(&s, "### VM-to-VM forwarding\n\n")
		fmt.Fprintf(&s, "| switch (median of %d; min / max) | TCP, Mbit/s | 64-byte frames/s (pktgen), delivered | iperf3 UDP 64 B, packets/s delivered | received by iperf3 |\n|---|---|---|---|---|\n", res.Runs)
		for _, sw := range res.Switches {
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", switchLabel(sw.Name), spread(sw.TCP, 1e6), spread(sw.PktgenDeliv, 1), spread(sw.UDPDelivered, 1), spread(sw.UDPReceived, 1))
		}
		s.WriteString("\n")
		vi, okV := byName["vem"]
		if okV {
			fmt.Fprintf(&s, "| ratio of the medians | TCP | 64-byte frames (pktgen) | iperf3 UDP 64 B delivered |\n|---|---|---|---|\n")
			for _, other := range []string{"bridge", "ovs"} {
				oi, ok := byName[other]
				if !ok {
					continue
				}
				v, ot := res.Switches[vi], res.Switches[oi]
				fmt.Fprintf(&s, "| **VEM / %s** | **%.2f** | **%.2f** | %.2f |\n", switchLabel(other),
					ratio(medianF(v.TCP), medianF(ot.TCP)), ratio(medianF(v.PktgenDeliv), medianF(ot.PktgenDeliv)),
					ratio(medianF(v.UDPDelivered), medianF(ot.UDPDelivered)))
			}
			s.WriteString("\n")
		}
		s.WriteString("The min / max in parentheses show how far single repetitions swing on this shared, emulated machine: " +
			"a difference between two medians that is smaller than that spread is not a finding of one run.\n\n")
		fmt.Fprintf(&s, "Two \"VMs\" per switch: network namespaces with an `eth0` (MTU 1500, own MAC, 10.0.0.1 and 10.0.0.2/24), each the peer of a veth whose other end is the switch's port "+
			"in the switch's own namespace; the three switches and their six VMs exist side by side. "+
			"*TCP*: `iperf3 -c 10.0.0.2 -t %d -O 1` (one stream, the first second omitted; veth offloads as the kernel sets them, so TCP moves GSO-sized frames). "+
			"*64-byte frames*: the kernel's packet generator (`pktgen`, one thread, `clone_skb 0`) sends 64-byte UDP frames from the client VM's `eth0` to the server VM's MAC and IP for %d s; "+
			"the figure is the server VM's `eth0` rx_packets increase over pktgen's sending time, i.e. what the switch delivered. "+
			"pktgen hands frames to the veth from a kernel thread, and the switch's work runs in the softirq on that same vCPU, "+
			"so the rate is bounded by the generator plus the switch, not by a sender's system calls. "+
			"*iperf3 UDP*: `iperf3 -u -l 64 -b 0 -t %d` (64-byte payloads, 106-byte frames, as fast as iperf3 sends); delivered as above, *received* is what iperf3's server read "+
			"(it drops the rest from its socket buffer when it falls behind). Under emulation iperf3's own per-packet system calls dominate this one, so it says little about the switch; it is kept as the application-level view. "+
			"Each repetition runs TCP through the three switches, then pktgen, then iperf3 UDP, in an order that rotates per repetition. The switches:\n\n", res.Seconds, res.Seconds, res.Seconds)
		for _, sw := range res.Switches {
			fmt.Fprintf(&s, "- **%s**: %s.", switchLabel(sw.Name), sw.Config)
			if len(sw.Counters) > 0 {
				keys := make([]string, 0, len(sw.Counters))
				for k := range sw.Counters {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				var parts []string
				for _, k := range keys {
					parts = append(parts, fmt.Sprintf("%s %d", k, sw.Counters[k]))
				}
				fmt.Fprintf(&s, " Counters after the runs: %s.", strings.Join(parts, ", "))
				c := sw.Counters
				if c["tc_police_seen"] > 0 && c["ingress_policed"] == c["tc_police_seen"] && c["tc_police_dropped"] == 0 {
					s.WriteString(" (`ingress_policed` is the VEM's port counter; it equals the packets its policer *saw*, " +
						"while the kernel's own drop count for the policer, `tc_police_dropped`, is zero: the policer did not limit.)")
				}
			}
			s.WriteString("\n")
		}
		s.WriteString("\n")
	}
	// Reconcile.
	if res.Reconcile.Ports > 0 {
		rc := res.Reconcile
		fmt.Fprintf(&s, "### Reconcile with %d vEth ports\n\n", rc.Ports)
		runs := fmt.Sprintf("median of %d", len(rc.Create))
		if len(rc.Create) == 1 {
			runs = "one run"
		}
		fmt.Fprintf(&s, "| agent `SetConfig`, %d ports | seconds (%s) | min / max |\n|---|---|---|\n", rc.Ports, runs)
		row := func(what string, v []float64) {
			lo, hi := minMaxF(v)
			fmt.Fprintf(&s, "| %s | %.2f | %.2f / %.2f |\n", what, medianF(v), lo, hi)
		}
		row(fmt.Sprintf("**from scratch**: no switch → %d ports (%d kernel changes)", rc.Ports, rc.KernelChanges), rc.Create)
		row("same config again (nothing to change: the cost of every periodic reconcile)", rc.Noop)
		row(fmt.Sprintf("**one port's MAC changed** (%d kernel changes)", rc.ChangeMACN), rc.ChangeMAC)
		if rc.ChangeError != "" {
			row(fmt.Sprintf("**one port's VLAN changed** (%d kernel changes; **failed**, see below)", rc.ChangeChanges), rc.Change)
		} else {
			row(fmt.Sprintf("**one port's VLAN changed** (%d kernel changes)", rc.ChangeChanges), rc.Change)
		}
		row(fmt.Sprintf("all %d ports removed", rc.Ports), rc.Delete)
		fmt.Fprintf(&s, "\nThe agent (`vem.New` + `SetConfig`) runs in-process in a fresh network namespace on a real `NetlinkKernel`. "+
			"Each port is what a VM's vNIC gets: a tap the VEM creates, on access VLAN 100 of a profile with port security (one MAC), "+
			"an ingress policer, its MAC as a static sticky entry, learning and unicast flooding off, a BPDU filter: per port, a tap, "+
			"bridge membership and flags, VLAN, an ingress qdisc with four tc filters and an FDB entry. "+
			"The changes give the middle port another MAC (static entry and port-security filter), then move it to a second profile with access VLAN 200. Every `SetConfig` observes the whole switch first "+
			"(links, bridge-port flags, VLANs, qdiscs, tc filters and their counters, FDB) and plans a diff, so its cost with nothing to do "+
			"is the observation of %d ports, and a one-port change costs that plus the port's few changes. "+
			"Each repetition starts with a fresh agent and no bridge.", rc.Ports)
		if rc.ChangeError != "" {
			fmt.Fprintf(&s, " **The VLAN change failed**: `%s`.", rc.ChangeError)
		}
		noop := medianF(rc.Noop)
		fmt.Fprintf(&s, " Per port: %.0f ms to create, %.0f ms to observe.", medianF(rc.Create)/float64(rc.Ports)*1000, noop/float64(rc.Ports)*1000)
		if iv := res.Memory.Interval; iv > 0 && noop > iv {
			fmt.Fprintf(&s, " An unchanged reconcile (%.0f s) takes longer than vemd's reconcile period (%.0f s): with %d ports vemd reconciles without pause.", noop, iv, rc.Ports)
		}
		s.WriteString("\n\n")
	}
	// Memory.
	if res.Memory.Ports > 0 {
		m := res.Memory
		fmt.Fprintf(&s, "### vemd memory with %d ports\n\n", m.Ports)
		fmt.Fprintf(&s, "| vemd (the real agent, configured through `vemclient`) | MiB |\n|---|---|\n")
		fmt.Fprintf(&s, "| resident (VmRSS), started, no config | %.1f |\n", kib(m.IdleRSS))
		fmt.Fprintf(&s, "| resident right after `PUT /v1/config` with %d ports | %.1f |\n", m.Ports, kib(m.AfterPutRSS))
		fmt.Fprintf(&s, "| **resident with %d ports programmed** (smallest / largest of the samples over %.0f s) | **%.1f** / %.1f |\n", m.Ports, m.SampleFor, kib(m.MinRSS), kib(m.MaxRSS))
		fmt.Fprintf(&s, "| peak (VmHWM) | %.1f |\n\n", kib(m.HWM))
		fmt.Fprintf(&s, "vemd runs in its own network namespace (started through `vembench nsexec`, like `ip netns exec`) with its own socket and state file, "+
			"reconciling every %.0f s (its default). The bench PUTs the %d-port config through `vemclient` (%.1f s, answered with every port's status, "+
			"so one reconcile plus one more observation), then reads `/proc/PID/status` every %.0f s for %.0f s, spanning periodic reconciles; "+
			"the stored state file is %d KiB.", m.Interval, m.Ports, m.PutSeconds, m.SampleEvery, m.SampleFor, m.StateFileKiB)
		if m.PutError != "" {
			fmt.Fprintf(&s, " **The PUT failed on the client side** (`%s`: vemclient gives up after 2 minutes); the %.1f s run until the agent's card showed the config applied.", m.PutError, m.PutSeconds)
		}
		s.WriteString("\n\n")
	}
	fmt.Fprintf(&s, "Wall time of this section: %.0f s (bench image build %.0f s, host boot and power-off %.0f s, vembench %.0f s).\n\n",
		r.totalSecs, r.buildSecs, r.bootSecs, res.WallSeconds)
	return s.String()
}

func switchLabel(name string) string {
	switch name {
	case "bridge":
		return "Linux bridge"
	case "vem":
		return "VEM"
	case "ovs":
		return "Open vSwitch"
	}
	return name
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func kib(k int) float64 { return float64(k) / 1024 }

// spread is "median (min / max)" of v divided by unit.
func spread(v []float64, unit float64) string {
	lo, hi := minMaxF(v)
	return fmt.Sprintf("%.0f (%.0f / %.0f)", medianF(v)/unit, lo/unit, hi/unit)
}
