package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsFD is the descriptor number at which a child started by world.command
// finds its network namespace.
const nsFD = 3

// nsexec joins the network namespace open as fd 3, unshares the mount
// namespace and mounts a sysfs of that network namespace on /sys (as ip
// netns exec does: programs that read /sys/class/net, OVS among them, see
// the namespace's interfaces), then execs args[0] with args. A Go program
// can only switch one thread's namespaces; exec makes the whole new process
// live in them.
func nsexec(args []string) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return errors.New("nsexec: no program")
	}
	runtime.LockOSThread() // never unlocked: this thread execs or the process exits
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("nsexec: join the network namespace (fd %d): %w", nsFD, err)
	}
	unix.Close(nsFD)
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("nsexec: unshare the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("nsexec: make / a slave mount: %w", err)
	}
	unix.Unmount("/sys", unix.MNT_DETACH) // absent is fine
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("nsexec: mount sysfs: %w", err)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("nsexec: %w", err)
	}
	return unix.Exec(path, args, os.Environ())
}

// netNS is a network namespace of the benchmark: an open descriptor (for
// children, through nsexec) and a netlink handle in it.
type netNS struct {
	name string
	f    *os.File
	h    *netlink.Handle
}

func (n *netNS) handle() netns.NsHandle { return netns.NsHandle(n.f.Fd()) }

// world holds the benchmark's namespaces and background processes, and
// removes them at the end.
type world struct {
	self   string    // this program, for nsexec
	logDir string    // background processes' output
	out    io.Writer // progress
	nss    []*netNS
	mu     sync.Mutex
	procs  []*proc
}

// proc is a background process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func newWorld(logDir string, out io.Writer) (*world, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	return &world{self: self, logDir: logDir, out: out}, nil
}

func (w *world) logf(format string, args ...any) {
	fmt.Fprintf(w.out, "vembench: "+format+"\n", args...)
}

// newNS creates a network namespace with its loopback up.
func (w *world) newNS(name string) (*netNS, error) {
	h, err := func() (netns.NsHandle, error) {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return -1, err
		}
		defer orig.Close()
		ns, err := netns.New() // switches this thread
		if serr := netns.Set(orig); serr != nil {
			return -1, fmt.Errorf("back to the original namespace: %w", serr) // thread stays locked and dies
		}
		runtime.UnlockOSThread()
		return ns, err
	}()
	if err != nil {
		return nil, fmt.Errorf("new network namespace %s: %w", name, err)
	}
	n := &netNS{name: name, f: os.NewFile(uintptr(h), "netns-"+name)}
	if n.h, err = netlink.NewHandleAt(n.handle(), unix.NETLINK_ROUTE); err != nil {
		n.f.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	w.nss = append(w.nss, n)
	lo, err := n.h.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	return n, n.h.LinkSetUp(lo)
}

// command runs a program in ns (nil: this namespace).
func (w *world) command(ctx context.Context, ns *netNS, name string, args ...string) *exec.Cmd {
	if ns == nil {
		return exec.CommandContext(ctx, name, args...)
	}
	cmd := exec.CommandContext(ctx, w.self, append([]string{"nsexec", "--", name}, args...)...)
	cmd.ExtraFiles = []*os.File{ns.f} // fd 3 (nsFD)
	return cmd
}

// output runs a program in ns and returns its stdout; stderr goes into the
// error.
func (w *world) output(ctx context.Context, ns *netNS, name string, args ...string) ([]byte, error) {
	cmd := w.command(ctx, ns, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		where := "here"
		if ns != nil {
			where = "in " + ns.name
		}
		return out, fmt.Errorf("%s %s (%s): %w: %s", name, strings.Join(args, " "), where, err, tail(stderr.String(), 10))
	}
	return out, nil
}

// start runs a program in ns in the background, its output in a log file
// logName.log.
func (w *world) start(ns *netNS, logName, name string, args ...string) (*proc, error) {
	return w.startEnv(ns, logName, nil, name, args...)
}

// startEnv is start with an environment (nil: this process's).
func (w *world) startEnv(ns *netNS, logName string, env []string, name string, args ...string) (*proc, error) {
	p := &proc{name: logName, log: filepath.Join(w.logDir, logName+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = w.command(context.Background(), ns, name, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	return p, nil
}

// exited reports an early exit of p, with its log's end.
func (p *proc) exited() error {
	select {
	case <-p.done:
		b, _ := os.ReadFile(p.log)
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, tail(string(b), 15))
	default:
		return nil
	}
}

// stop ends p: SIGTERM, then SIGKILL after a grace period.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// close stops the background processes (last started first) and deletes
// the namespaces' links that hold them together.
func (w *world) close() {
	w.mu.Lock()
	procs := w.procs
	w.procs = nil
	w.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	for _, n := range w.nss {
		n.h.Close()
		n.f.Close()
	}
	w.nss = nil
}

// vmPort connects a "VM" namespace to a switch namespace with a veth pair:
// swIf in sw (left down for the switch to configure), eth0 in vm with mac
// and ip/24, up.
func vmPort(sw *netNS, swIf string, vm *netNS, mac, ip string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: swIf, MTU: 1500}, PeerName: "eth0",
		PeerHardwareAddr: hw, PeerNamespace: netlink.NsFd(int(vm.f.Fd()))}
	if err := sw.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s (%s) - eth0 (%s): %w", swIf, sw.name, vm.name, err)
	}
	eth, err := vm.h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 in %s: %w", vm.name, err)
	}
	if err := vm.h.LinkSetMTU(eth, 1500); err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(ip + "/24")
	if err != nil {
		return err
	}
	if err := vm.h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address %s in %s: %w", ip, vm.name, err)
	}
	return vm.h.LinkSetUp(eth)
}

func setUp(n *netNS, names ...string) error {
	for _, name := range names {
		l, err := n.h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", name, n.name, err)
		}
		if err := n.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up in %s: %w", name, n.name, err)
		}
	}
	return nil
}

func rxPackets(n *netNS, name string) (uint64, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("%s in %s: %w", name, n.name, err)
	}
	if s := l.Attrs().Statistics; s != nil {
		return s.RxPackets, nil
	}
	return 0, fmt.Errorf("%s in %s: no statistics", name, n.name)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
