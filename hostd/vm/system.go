package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// QEMULauncher starts QEMU for real: its own session (so hostd's restart
// does not signal it), its own cgroup under CgroupRoot with a memory limit,
// output to the VM's log file.
type QEMULauncher struct {
	Log        *slog.Logger
	Binary     string // qemu-system-x86_64
	CgroupRoot string // e.g. /sys/fs/cgroup/flashvisor/vms; "" = no cgroups
}

// memoryOverheadMiB is QEMU's own use beyond guest RAM (device models,
// vhost, caches), added to the cgroup limit so the guest is not killed for
// using the memory it was given.
const memoryOverheadMiB = 256

type qemuProc struct {
	pid  int
	done chan struct{}
	exit string // set before done is closed
}

func (p *qemuProc) Pid() int              { return p.pid }
func (p *qemuProc) Done() <-chan struct{} { return p.done }
func (p *qemuProc) ExitStatus() string    { <-p.done; return p.exit }
func (p *qemuProc) Kill() error           { return unix.Kill(p.pid, unix.SIGKILL) }

// Launch starts QEMU.
func (l *QEMULauncher) Launch(ctx context.Context, ls LaunchSpec) (Process, error) {
	log, err := os.OpenFile(ls.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	fmt.Fprintf(log, "=== %s starting %s\n", time.Now().UTC().Format(time.RFC3339), ls.Name)
	cmd := exec.Command(l.Binary, ls.Args...)
	cmd.Dir = ls.Dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if fd, err := l.cgroup(ls); err != nil {
		l.Log.Warn("VM cgroup not used", "vm", ls.Name, "err", err)
	} else if fd != nil {
		defer fd.Close()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(fd.Fd())
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &qemuProc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.exit = "exit status 0"
		if err != nil {
			p.exit = err.Error()
		}
		close(p.done)
	}()
	return p, nil
}

// cgroup prepares the VM's cgroup and returns it open for CLONE_INTO_CGROUP.
func (l *QEMULauncher) cgroup(ls LaunchSpec) (*os.File, error) {
	if l.CgroupRoot == "" {
		return nil, nil
	}
	// Controllers must be enabled on every level above the VM's group.
	top := "/sys/fs/cgroup"
	rel, err := filepath.Rel(top, l.CgroupRoot)
	if err != nil {
		return nil, err
	}
	dir := top
	for _, part := range splitPath(rel) {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
		dir = filepath.Join(dir, part)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
	vm := filepath.Join(dir, ls.Name)
	if err := os.MkdirAll(vm, 0o755); err != nil {
		return nil, err
	}
	limit := int64(ls.MemoryMiB+memoryOverheadMiB) << 20
	if err := os.WriteFile(filepath.Join(vm, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		return nil, fmt.Errorf("memory.max: %w", err)
	}
	return os.Open(vm)
}

// SetMemory sets the memory limit of a running VM's cgroup for memoryMiB
// of guest memory (after a memory hot-add).
func (l *QEMULauncher) SetMemory(name string, memoryMiB int) error {
	if l.CgroupRoot == "" {
		return nil
	}
	limit := int64(memoryMiB+memoryOverheadMiB) << 20
	if err := os.WriteFile(filepath.Join(l.CgroupRoot, name, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		return fmt.Errorf("memory.max: %w", err)
	}
	return nil
}

func splitPath(p string) []string {
	var out []string
	for p != "." && p != "/" && p != "" {
		out = append([]string{filepath.Base(p)}, out...)
		p = filepath.Dir(p)
	}
	return out
}

// Adopt follows a QEMU started by an earlier hostd. It is not our child,
// so its exit is noticed by polling.
func (l *QEMULauncher) Adopt(pid int) (Process, error) {
	if err := unix.Kill(pid, 0); err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if len(comm) > 0 && string(comm[:min(4, len(comm))]) != "qemu" {
		return nil, fmt.Errorf("pid %d is %q, not QEMU", pid, comm)
	}
	p := &qemuProc{pid: pid, done: make(chan struct{})}
	go func() {
		for unix.Kill(pid, 0) == nil {
			time.Sleep(500 * time.Millisecond)
		}
		p.exit = "exited (status unknown: adopted process)"
		close(p.done)
	}()
	return p, nil
}

// QEMUImg creates, snapshots, converts, resizes and inspects images with
// qemu-img.
type QEMUImg struct {
	Binary string
	// Exec runs qemu-img with args and returns its standard output (tests
	// fake it); nil runs Binary.
	Exec func(ctx context.Context, args []string) ([]byte, error)
}

// Create makes a new image: qcow2 grows on demand, raw is fully allocated.
func (q QEMUImg) Create(ctx context.Context, path, format string, sizeMiB int64) error {
	args := []string{"create", "-q", "-f", format}
	if format == "raw" {
		args = append(args, "-o", "preallocation=falloc")
	}
	args = append(args, path, strconv.FormatInt(sizeMiB, 10)+"M")
	return q.run(ctx, args...)
}

// Snapshot creates, applies or deletes an internal snapshot.
func (q QEMUImg) Snapshot(ctx context.Context, op, path, name string) error {
	flag := map[string]string{"create": "-c", "apply": "-a", "delete": "-d"}[op]
	if flag == "" {
		return errors.New("unknown snapshot operation " + op)
	}
	return q.run(ctx, "snapshot", "-q", flag, name, path)
}

func (q QEMUImg) run(ctx context.Context, args ...string) error {
	_, err := q.output(ctx, args...)
	return err
}

// output runs qemu-img and returns its standard output; its standard error
// (warnings) goes into the error only, so JSON answers stay parseable.
func (q QEMUImg) output(ctx context.Context, args ...string) ([]byte, error) {
	if q.Exec != nil {
		return q.Exec(ctx, args)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, q.Binary, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("qemu-img %v: %w: %s", args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}
