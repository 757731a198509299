package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/benchdoc"
	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

type options struct {
	out      string // benchmarks.md to update
	only     string // image, vm, vem or all
	boots    int
	skipCold bool
	vmRuns   int // power-ons per side for the latency median
	vmMany   int // VMs powered on at once
	vem      vemOptions
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("fvbench", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "benchmarks file to update")
	fs.IntVar(&o.boots, "boots", 5, "boots for the boot-to-API median")
	fs.BoolVar(&o.skipCold, "skip-cold", false, "skip the cold image build (it downloads every package again)")
	fs.StringVar(&o.only, "only", "all", "benchmarks to run: image (build, sizes, boot), vm (power-on, hostd memory; uses out/host and out/guest), "+
		"vem (forwarding against a bridge and OVS, reconcile time and vemd memory with many ports; builds out/bench), "+
		"vsm (VSM memory, CPU, propagation and failover with simulated VEMs: runs vsm/cmd/vsmbench, no QEMU) or all")
	fs.IntVar(&o.vmRuns, "vm-runs", 5, "power-ons through hostd and by hand for the latency medians")
	fs.IntVar(&o.vmMany, "vm-many", 10, "VMs powered on at once")
	fs.IntVar(&o.vem.runs, "vem-runs", 5, "repetitions of each VEM forwarding measurement (medians; the machine's other work makes single runs swing)")
	fs.IntVar(&o.vem.seconds, "vem-seconds", 3, "length of each iperf3 test")
	fs.IntVar(&o.vem.ports, "vem-ports", 1000, "vEth ports for the VEM's reconcile and memory figures")
	fs.IntVar(&o.vem.reconcileRuns, "vem-reconcile-runs", 1, "repetitions of the VEM's reconcile measurement (medians); one takes about 6 minutes with 1,000 ports under emulation")
	fs.StringVar(&o.vem.only, "vem-only", "forward,reconcile,memory", "VEM measurements to run (a partial run still rewrites the whole section)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.only != "image" && o.only != "vm" && o.only != "vem" && o.only != "vsm" && o.only != "all" {
		return fmt.Errorf("-only %q: want image, vm, vem, vsm or all", o.only)
	}
	root, err := qemutest.RepoRoot(".")
	if err != nil {
		return err
	}
	if o.only == "image" || o.only == "all" {
		if err := runImage(ctx, root, o, stdout); err != nil {
			return err
		}
	}
	if o.only == "vm" || o.only == "all" {
		if err := runVM(ctx, root, o.out, o.vmRuns, o.vmMany, stdout); err != nil {
			return err
		}
	}
	if o.only == "vem" || o.only == "all" {
		if err := runVEM(ctx, root, o, stdout); err != nil {
			return err
		}
	}
	if o.only == "vsm" || o.only == "all" {
		return runVSM(ctx, root, o.out, stdout)
	}
	return nil
}

// runVSM runs vsm/cmd/vsmbench, which writes its own section ("VSM
// scale") of the same file. It gets SIGINT when ctx ends, so that it
// stops the VSM daemons it started.
func runVSM(ctx context.Context, root, out string, stdout io.Writer) error {
	work, err := os.MkdirTemp("", "fvbench-vsm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "vsmbench")
	if err := command(ctx, root, "go", "build", "-o", bin, "./vsm/cmd/vsmbench").Run(); err != nil {
		return fmt.Errorf("building vsmbench: %w", err)
	}
	cmd := command(ctx, root, bin, "-out", out)
	cmd.Stdout = stdout
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("vsmbench: %w", err)
	}
	return nil
}

// runImage measures the image build, its sizes and boot-to-API time, and
// writes the "image-and-boot" section.
func runImage(ctx context.Context, root string, o options, stdout io.Writer) error {
	work, err := os.MkdirTemp("", "fvbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	mkimage := filepath.Join(work, "mkimage")
	if err := command(ctx, root, "go", "build", "-o", mkimage, "./image/cmd/mkimage").Run(); err != nil {
		return fmt.Errorf("building mkimage: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `make bench` on: %s.\n\n", time.Now().UTC().Format("2006-01-02"), machine())

	// Image build: cold = empty package cache (downloads and unpacks every
	// pinned .deb; the Go build cache stays warm), warm = everything cached.
	cache := filepath.Join(root, "out", "cache")
	outDir := filepath.Join(work, "host")
	b.WriteString("| image build | seconds |\n|---|---|\n")
	if !o.skipCold {
		d, err := timed(ctx, root, mkimage, "build", "-profile", "host", "-out", outDir, "-cache", filepath.Join(work, "cold-cache"))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "| cold (empty package cache: download + unpack + build) | %.1f |\n", d.Seconds())
		fmt.Fprintf(stdout, "cold build: %.1fs\n", d.Seconds())
	}
	if _, err := timed(ctx, root, mkimage, "build", "-profile", "host", "-out", outDir, "-cache", cache); err != nil {
		return err
	}
	var warm []time.Duration
	for i := 0; i < 3; i++ {
		d, err := timed(ctx, root, mkimage, "build", "-profile", "host", "-out", outDir, "-cache", cache)
		if err != nil {
			return err
		}
		warm = append(warm, d)
	}
	fmt.Fprintf(&b, "| warm (everything cached; median of 3) | %.1f |\n\n", median(warm).Seconds())
	fmt.Fprintf(stdout, "warm build: %.1fs\n", median(warm).Seconds())

	var m api.Manifest
	mb, err := os.ReadFile(filepath.Join(outDir, "manifest.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		return err
	}
	b.WriteString("| output | size |\n|---|---|\n")
	for _, f := range m.Outputs {
		fmt.Fprintf(&b, "| `%s` | %.1f MiB |\n", f.Name, float64(f.Size)/(1<<20))
	}
	fmt.Fprintf(&b, "\nKernel %s; target for the compressed host image: well under 100 MiB.\n\n", m.Kernel)

	// Boot to API ready: from QEMU start to the first authenticated 200 of
	// GET /api/v1/host, with a persistent state disk (not first boot).
	token, err := qemutest.NewToken()
	if err != nil {
		return err
	}
	stateDir := filepath.Join(work, "boot")
	statePath := ""
	boot := func(first bool) (time.Duration, string, error) {
		opts := []qemutest.Option{
			qemutest.WithKernel(filepath.Join(outDir, "vmlinuz")), qemutest.WithInitrd(filepath.Join(outDir, "initrd.img")),
			qemutest.WithForward(443), qemutest.WithTimeout(10 * time.Minute), qemutest.WithStateDir(stateDir),
			qemutest.WithAppend("flashvisor.token="+token, "flashvisor.initstate=/dev/vda"),
		}
		if first {
			opts = append(opts, qemutest.WithBlankDisk("state", 64))
		} else {
			opts = append(opts, qemutest.WithDisk(statePath, "state"))
		}
		start := time.Now()
		vm, err := qemutest.Boot("bench", opts...)
		if err != nil {
			return 0, "", err
		}
		defer vm.Close()
		if first {
			statePath = vm.DiskPath("state")
		}
		_, _, err = vm.WaitAPI(ctx, 443, token)
		return time.Since(start), vm.Accel(), err
	}
	// The first boot formats the state disk and makes the TLS identity: it
	// is not what an operator waits for on every boot, so it is not counted.
	if _, _, err := boot(true); err != nil {
		return err
	}
	var boots []time.Duration
	accel := ""
	for i := 0; i < o.boots; i++ {
		d, a, err := boot(false)
		if err != nil {
			return err
		}
		accel = a
		boots = append(boots, d)
		fmt.Fprintf(stdout, "boot %d: %.1fs\n", len(boots), d.Seconds())
	}
	if len(boots) > 0 {
		fmt.Fprintf(&b, "| boot to API ready (%s, state disk present) | seconds |\n|---|---|\n", accel)
		fmt.Fprintf(&b, "| median of %d | %.1f |\n| min / max | %.1f / %.1f |\n\n", len(boots), median(boots).Seconds(), minD(boots).Seconds(), maxD(boots).Seconds())
		b.WriteString("From QEMU start to the first authenticated `GET /api/v1/host`; the harness polls once a second, so figures have about 1 s resolution.\n\n")
	}
	return updateSection(filepath.Join(root, o.out), "image-and-boot", "Host image and boot", b.String())
}

func command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	return cmd
}

func timed(ctx context.Context, dir, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	cmd := command(ctx, dir, name, args...)
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return time.Since(start), nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func minD(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxD(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// machine describes where the figures come from.
func machine() string {
	kvm := "no usable /dev/kvm (QEMU emulation, TCG)"
	if qemutest.KVMUsable() {
		kvm = "KVM"
	}
	qemu := "QEMU ?"
	if out, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		qemu = strings.SplitN(string(out), "\n", 2)[0]
	}
	return fmt.Sprintf("%s, %s, %s, %s", benchdoc.Machine(), kvm, qemu, runtime.Version())
}

// updateSection writes one section of docs/benchmarks.md.
func updateSection(path, id, title, body string) error {
	return benchdoc.UpdateSection(path, id, title, body)
}
