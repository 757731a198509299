package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

// Disk sizes: the state partition is small (identity, certificate, config);
// the spare disk is for datastores later and costs nothing until written.
const (
	stateDiskMiB = 64
	spareDiskMiB = 8 << 10
)

type options struct {
	imageDir, kernel, initrd string
	runDir                   string
	memoryMiB, cpus          int
	apiPort                  int
	hostname                 string
	extraAppend              string
	accel, qemu              string
	powerdownTimeout         time.Duration
}

func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fvrun", flag.ContinueOnError)
	fs.SetOutput(stdout)
	port := 8443
	if p := getenv("FV_API_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return o, fmt.Errorf("FV_API_PORT=%q: not a port", p)
		}
		port = n
	}
	hostname := "fv-run-1"
	if h := getenv("FV_HOSTNAME"); h != "" {
		hostname = h
	}
	fs.StringVar(&o.imageDir, "image", "", "host image folder (default $FV_IMAGE_DIR or out/host)")
	fs.StringVar(&o.kernel, "kernel", "", "kernel to boot instead of the image's")
	fs.StringVar(&o.initrd, "initrd", "", "initramfs to boot instead of the image's")
	fs.StringVar(&o.runDir, "run-dir", "", "folder for the disks, token and log (default out/run)")
	fs.IntVar(&o.memoryMiB, "memory", 4096, "guest RAM in MiB")
	fs.IntVar(&o.cpus, "cpus", 2, "vCPUs")
	fs.IntVar(&o.apiPort, "api-port", port, "127.0.0.1 port forwarded to the API ($FV_API_PORT)")
	fs.StringVar(&o.hostname, "hostname", hostname, "host name ($FV_HOSTNAME)")
	fs.StringVar(&o.extraAppend, "append", "", "more kernel parameters, space-separated")
	fs.StringVar(&o.accel, "accel", "", "kvm or tcg (default: kvm when /dev/kvm is usable)")
	fs.StringVar(&o.qemu, "qemu", qemutest.DefaultQEMU, "QEMU binary")
	fs.DurationVar(&o.powerdownTimeout, "powerdown-timeout", time.Minute, "after Ctrl-C, how long the host gets to power off before QEMU quits")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, sigs <-chan os.Signal) error {
	o, err := parseFlags(args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	root, rootErr := qemutest.RepoRoot(".")
	if o.runDir == "" {
		if rootErr != nil {
			return fmt.Errorf("no -run-dir and %w", rootErr)
		}
		o.runDir = filepath.Join(root, "out", "run")
	}
	kernel, initrd, err := imageFiles(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.runDir, 0o755); err != nil {
		return err
	}
	statePath := filepath.Join(o.runDir, "state.img")
	sparePath := filepath.Join(o.runDir, "spare.img")
	for _, d := range []struct {
		path string
		mib  int
	}{{statePath, stateDiskMiB}, {sparePath, spareDiskMiB}} {
		if err := ensureDisk(d.path, d.mib); err != nil {
			return err
		}
	}
	token, tokenFile, err := loadToken(o.runDir, os.Getenv("FV_TOKEN"))
	if err != nil {
		return err
	}
	if err := portFree(o.apiPort); err != nil {
		return err
	}

	var outMu sync.Mutex // console bytes and our own messages share stdout
	say := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(stdout, "fvrun: "+format+"\n", a...)
	}
	params := []string{
		"flashvisor.token=" + token,
		"flashvisor.hostname=" + o.hostname,
		"flashvisor.initstate=/dev/vda",
	}
	params = append(params, strings.Fields(o.extraAppend)...)
	opts := []qemutest.Option{
		qemutest.WithQEMU(o.qemu),
		qemutest.WithKernel(kernel),
		qemutest.WithAppend(params...),
		qemutest.WithMemory(o.memoryMiB),
		qemutest.WithCPUs(o.cpus),
		// The state disk first, so it is /dev/vda as initstate says.
		qemutest.WithDisk(statePath, "state"),
		qemutest.WithDisk(sparePath, "spare"),
		qemutest.WithForwardPort(o.apiPort, 443),
		qemutest.WithStateDir(o.runDir),
		qemutest.WithAccel(o.accel),
		qemutest.WithLogf(say),
		qemutest.WithConsoleOutput(lockedWriter{&outMu, stdout}),
		qemutest.WithConsoleInput(stdin),
	}
	if initrd != "" {
		opts = append(opts, qemutest.WithInitrd(initrd))
	}
	vm, err := qemutest.Boot("fvrun", opts...)
	if err != nil {
		return err
	}
	defer vm.Close()
	say("booting %s (accelerator %s); log in %s; Ctrl-C powers off", o.hostname, vm.Accel(), vm.LogPath())

	apiCtx, cancelAPI := context.WithCancel(ctx)
	apiDone := make(chan struct{})
	defer func() {
		cancelAPI()
		<-apiDone
	}()
	go func() {
		defer close(apiDone)
		_, fp, err := vm.WaitAPI(apiCtx, 443, token)
		if err != nil {
			if apiCtx.Err() == nil && !exited(vm) {
				say("API not ready: %v", err)
			}
			return
		}
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprint(stdout, readyBanner(o.hostname, vm.HostAddr(443), token, tokenFile, fp, fvctlBinary(root)))
	}()

	select {
	case <-vm.Exited():
	case <-ctx.Done():
		stop(vm, sigs, 0, say)
	case s := <-sigs:
		say("%v: pressing the power button; Ctrl-C again quits QEMU at once", s)
		stop(vm, sigs, o.powerdownTimeout, say)
	}
	err = vm.Wait(context.Background())
	if err != nil {
		return err
	}
	say("QEMU exited")
	return nil
}

// stop powers the host off through ACPI and waits up to grace for QEMU to
// exit; a further signal or the end of grace quits QEMU, then kills it.
func stop(vm *qemutest.VM, sigs <-chan os.Signal, grace time.Duration, say func(string, ...any)) {
	if grace > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := vm.QMP(ctx, "system_powerdown", nil)
		cancel()
		if err == nil {
			select {
			case <-vm.Exited():
				return
			case <-sigs:
				say("quitting QEMU")
			case <-time.After(grace):
				say("host did not power off within %v; quitting QEMU", grace)
			}
		} else {
			say("power button: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	vm.QMP(ctx, "quit", nil)
	select {
	case <-vm.Exited():
	case <-time.After(5 * time.Second):
		vm.Kill()
	}
}

func exited(vm *qemutest.VM) bool {
	select {
	case <-vm.Exited():
		return true
	default:
		return false
	}
}

// imageFiles picks the kernel and initramfs: -kernel/-initrd, else the image.
// A -kernel without -initrd boots the kernel alone (smoke tests).
func imageFiles(o options) (kernel, initrd string, err error) {
	if o.kernel != "" {
		return o.kernel, o.initrd, nil
	}
	dir := o.imageDir
	if dir == "" {
		if dir, err = qemutest.ImageDir(); err != nil {
			return "", "", err
		}
	}
	kernel, initrd, err = qemutest.HostImageIn(dir)
	if err != nil {
		return "", "", fmt.Errorf("host image not built in %s: run make image (%w)", dir, err)
	}
	if o.initrd != "" {
		initrd = o.initrd
	}
	return kernel, initrd, nil
}

// ensureDisk creates a sparse raw disk unless it exists: the state disk
// keeps the host's identity between runs.
func ensureDisk(path string, mib int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create disk: %w", err)
	}
	if err := f.Truncate(int64(mib) << 20); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("size disk %s: %w", path, err)
	}
	return f.Close()
}

// loadToken returns the API token: env when set, else the one saved in
// runDir/token, else a new one saved there so later runs (and the state
// disk's stored hash) agree. file is where it is kept, "" for env.
func loadToken(runDir, env string) (token, file string, err error) {
	if env != "" {
		return env, "", nil
	}
	file = filepath.Join(runDir, "token")
	b, err := os.ReadFile(file)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, file, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("read token: %w", err)
	}
	token, err = qemutest.NewToken()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("save token: %w", err)
	}
	return token, file, nil
}

// portFree fails early with a hint when the API port is taken; QEMU's own
// message about a failed hostfwd is cryptic.
func portFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("127.0.0.1:%d is in use (another fvrun?); set FV_API_PORT or -api-port: %w", port, err)
	}
	return l.Close()
}

// fvctlBinary is out/bin/fvctl when it was built, else "".
func fvctlBinary(root string) string {
	if root == "" {
		return ""
	}
	p := filepath.Join(root, "out", "bin", "fvctl")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	return ""
}

// readyBanner tells the user how to reach the host.
func readyBanner(hostname, addr, token, tokenFile, fp, fvctl string) string {
	var b strings.Builder
	line := strings.Repeat("=", 78)
	fmt.Fprintf(&b, "\n%s\n", line)
	fmt.Fprintf(&b, "Flashvisor host %s is up\n", hostname)
	fmt.Fprintf(&b, "  API:         https://%s\n", addr)
	if tokenFile != "" {
		fmt.Fprintf(&b, "  token:       %s   (kept in %s)\n", token, tokenFile)
	} else {
		fmt.Fprintf(&b, "  token:       %s   (from FV_TOKEN)\n", token)
	}
	fmt.Fprintf(&b, "  fingerprint: %s\n", fp)
	env := fmt.Sprintf("FVCTL_HOST=%s FVCTL_TOKEN=%s", addr, token)
	fmt.Fprintf(&b, "Try:\n  %s go run ./cmd/fvctl --fingerprint %s host info\n", env, fp)
	if fvctl != "" {
		fmt.Fprintf(&b, "  %s %s --fingerprint %s host info\n", env, fvctl, fp)
	}
	fmt.Fprintf(&b, "Ctrl-C powers the host off; twice quits QEMU at once.\n%s\n", line)
	return b.String()
}

// lockedWriter serialises writes to a writer shared by goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
