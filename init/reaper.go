package boot

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reaper owns wait4(-1): it reaps orphans (zombie reaping, INIT-1) and
// delivers the exit status of processes started through it.
type Reaper struct {
	log     *slog.Logger
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
	sigs    chan os.Signal
}

// NewReaper starts reaping on SIGCHLD.
func NewReaper(log *slog.Logger) *Reaper {
	r := &Reaper{log: log, waiters: map[int]chan syscall.WaitStatus{}, sigs: make(chan os.Signal, 16)}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r
}

func (r *Reaper) loop() {
	for range r.sigs {
		r.reapAll()
	}
}

func (r *Reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		// Start holds mu from fork until the pid is registered, so a child
		// that exits at once is still delivered to its owner.
		r.mu.Lock()
		ch, ok := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if ok {
			ch <- ws
			continue
		}
		r.log.Debug("reaped orphan", "pid", pid, "status", ws)
	}
}

// Start starts cmd and returns a channel that receives its wait status. cmd's
// Stdin/Stdout/Stderr must be nil or *os.File: exec's copying goroutines
// would need cmd.Wait, which the reaper replaces.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		switch f.(type) {
		case nil, *os.File:
		default:
			return nil, fmt.Errorf("start %s: stdio must be *os.File under the reaper", cmd.Path)
		}
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	r.waiters[cmd.Process.Pid] = ch
	// A SIGCHLD may have been consumed before registration; reap again
	// after we release the lock.
	go func() { r.sigs <- unix.SIGCHLD }()
	return ch, nil
}

// Output runs cmd to completion and returns its combined output, and an
// error if it did not exit 0.
func (r *Reaper) Output(cmd *exec.Cmd) ([]byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	ch, err := r.Start(cmd)
	pw.Close()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, _ = io.Copy(&out, pr)
	ws := <-ch
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return out.Bytes(), fmt.Errorf("%s: %s: %s", cmd.Path, describeStatus(ws), bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// describeStatus renders a wait status the way operators read it.
func describeStatus(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "signal: " + unix.SignalName(ws.Signal())
	default:
		return fmt.Sprintf("status %#x", uint32(ws))
	}
}
