package boot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"golang.org/x/sys/unix"
)

// ErrNoService is returned for a name that is not supervised.
var ErrNoService = errors.New("no such service")

// Backoff is the restart delay policy: Min doubling up to Max; a service that
// ran at least Reset is considered healthy again and restarts after Min.
type Backoff struct {
	Min, Max, Reset time.Duration
}

// DefaultBackoff restarts quickly once, then backs off to 30 s.
func DefaultBackoff() Backoff {
	return Backoff{Min: time.Second, Max: 30 * time.Second, Reset: 60 * time.Second}
}

// next returns the delay after a run of length ran, given the previous delay.
func (b Backoff) next(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= b.Reset {
		return b.Min
	}
	d := prev * 2
	if d > b.Max {
		d = b.Max
	}
	return d
}

// SupervisorOptions configures a Supervisor.
type SupervisorOptions struct {
	Log     *slog.Logger
	Reaper  *Reaper
	Console io.Writer // service output is copied here, prefixed by the name
	Backoff Backoff
	// StopTimeout is how long a service gets between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	LogLines    int
	Env         []string
	// ConsoleDevice is the terminal of Console services (/dev/console).
	ConsoleDevice string
}

// Supervisor runs services, each in its own process group, restarting them
// with backoff (INIT-3).
type Supervisor struct {
	opt      SupervisorOptions
	services []*service
}

type service struct {
	spec api.ServiceSpec
	sup  *Supervisor
	ring *ring
	cmds chan string // "restart", "stop"

	mu       sync.Mutex
	state    string
	pid      int
	restarts int
	started  time.Time
	lastExit string
	done     chan struct{} // closed when the run loop has ended
}

// NewSupervisor prepares the services; Start runs them.
func NewSupervisor(specs []api.ServiceSpec, opt SupervisorOptions) *Supervisor {
	if opt.Backoff == (Backoff{}) {
		opt.Backoff = DefaultBackoff()
	}
	if opt.StopTimeout == 0 {
		opt.StopTimeout = 10 * time.Second
	}
	if opt.LogLines == 0 {
		opt.LogLines = 1000
	}
	if opt.Console == nil {
		opt.Console = io.Discard
	}
	s := &Supervisor{opt: opt}
	for _, sp := range specs {
		s.services = append(s.services, &service{
			spec: sp, sup: s, ring: newRing(opt.LogLines),
			cmds: make(chan string, 1), state: api.ServiceStopped, done: make(chan struct{}),
		})
	}
	return s
}

// Start launches every service in list order (the order is the start order:
// network before datastores before VMs).
func (s *Supervisor) Start() {
	for _, sv := range s.services {
		go sv.run()
	}
}

func (s *Supervisor) find(name string) (*service, error) {
	for _, sv := range s.services {
		if sv.spec.Name == name {
			return sv, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoService, name)
}

// Status lists all services.
func (s *Supervisor) Status() []api.Service {
	out := make([]api.Service, 0, len(s.services))
	for _, sv := range s.services {
		sv.mu.Lock()
		out = append(out, api.Service{Name: sv.spec.Name, State: sv.state, PID: sv.pid,
			Restarts: sv.restarts, Started: sv.started, LastExit: sv.lastExit})
		sv.mu.Unlock()
	}
	return out
}

// Log returns a service's log ring buffer.
func (s *Supervisor) Log(name string) ([]string, error) {
	sv, err := s.find(name)
	if err != nil {
		return nil, err
	}
	return sv.ring.snapshot(), nil
}

// Restart stops a service (TERM, then KILL) and starts it again; it also
// starts a service that exited with api.DoNotRestart.
func (s *Supervisor) Restart(name string) error {
	sv, err := s.find(name)
	if err != nil {
		return err
	}
	select {
	case sv.cmds <- "restart":
	default: // a command is already pending
	}
	return nil
}

// Signal sends sig to the service's process group.
func (s *Supervisor) Signal(name string, sig syscall.Signal) error {
	sv, err := s.find(name)
	if err != nil {
		return err
	}
	sv.mu.Lock()
	pid := sv.pid
	sv.mu.Unlock()
	if pid == 0 {
		return fmt.Errorf("service %q is not running", name)
	}
	if err := unix.Kill(-pid, sig); err != nil {
		return fmt.Errorf("signal %s to %q: %w", unix.SignalName(sig), name, err)
	}
	return nil
}

// StopAll stops every service in reverse start order and waits for each.
func (s *Supervisor) StopAll() {
	for i := len(s.services) - 1; i >= 0; i-- {
		sv := s.services[i]
		// A stop replaces any pending command.
		select {
		case <-sv.cmds:
		default:
		}
		sv.cmds <- "stop"
		select {
		case <-sv.done:
		case <-time.After(sv.stopTimeout() + 5*time.Second):
			s.opt.Log.Error("service did not stop", "service", sv.spec.Name)
		}
	}
}

func (sv *service) setState(state string) {
	sv.mu.Lock()
	sv.state = state
	sv.mu.Unlock()
}

// run is the service's supervision loop.
func (sv *service) run() {
	defer close(sv.done)
	log := sv.sup.opt.Log.With("service", sv.spec.Name)
	var delay time.Duration
	for {
		sv.setState(api.ServiceStarting)
		start := time.Now()
		exited, err := sv.start()
		if err != nil {
			log.Error("start failed", "err", err)
			sv.mu.Lock()
			sv.lastExit = err.Error()
			sv.mu.Unlock()
		}
		var cmd string
		var ws syscall.WaitStatus
		if err == nil {
			sv.setState(api.ServiceRunning)
			select {
			case ws = <-exited:
			case cmd = <-sv.cmds:
				ws = sv.stop(exited)
			}
		}
		ran := time.Since(start)
		sv.mu.Lock()
		sv.pid = 0
		if err == nil {
			sv.lastExit = describeStatus(ws)
		}
		last := sv.lastExit
		sv.mu.Unlock()
		if cmd == "stop" {
			sv.setState(api.ServiceStopped)
			log.Info("stopped", "exit", last)
			return
		}
		if cmd == "restart" {
			log.Info("restarting on request", "exit", last)
			sv.countRestart()
			delay = 0
			continue
		}
		if err == nil && ws.Exited() && ws.ExitStatus() == api.DoNotRestart {
			sv.setState(api.ServiceExited)
			log.Info("exited and asked not to be restarted")
			switch <-sv.cmds {
			case "stop":
				sv.setState(api.ServiceStopped)
				return
			default:
				sv.countRestart()
				continue
			}
		}
		delay = sv.sup.opt.Backoff.next(delay, ran)
		sv.setState(api.ServiceBackoff)
		log.Warn("exited unexpectedly; restarting", "exit", last, "after", delay)
		select {
		case <-time.After(delay):
			sv.countRestart()
		case c := <-sv.cmds:
			if c == "stop" {
				sv.setState(api.ServiceStopped)
				return
			}
			sv.countRestart()
			delay = 0
		}
	}
}

func (sv *service) countRestart() {
	sv.mu.Lock()
	sv.restarts++
	sv.mu.Unlock()
}

// start launches the process in its own process group with its output going
// to the ring buffer and the console.
func (sv *service) start() (<-chan syscall.WaitStatus, error) {
	if sv.spec.Console {
		return sv.startOnConsole()
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(sv.spec.Path, sv.spec.Args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Env = sv.sup.opt.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ch, err := sv.sup.opt.Reaper.Start(cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	sv.mu.Lock()
	sv.pid = cmd.Process.Pid
	sv.started = time.Now().UTC()
	sv.mu.Unlock()
	go sv.pump(pr)
	return ch, nil
}

// startOnConsole runs the service in its own session with the console as
// its controlling terminal, so job control and Ctrl-C work in a shell.
func (sv *service) startOnConsole() (<-chan syscall.WaitStatus, error) {
	tty, err := os.OpenFile(sv.sup.opt.ConsoleDevice, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open console: %w", err)
	}
	defer tty.Close()
	cmd := exec.Command(sv.spec.Path, sv.spec.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = sv.sup.opt.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	ch, err := sv.sup.opt.Reaper.Start(cmd)
	if err != nil {
		return nil, err
	}
	sv.mu.Lock()
	sv.pid = cmd.Process.Pid
	sv.started = time.Now().UTC()
	sv.mu.Unlock()
	sv.ring.add(time.Now().UTC().Format(time.RFC3339) + " (running on " + sv.sup.opt.ConsoleDevice + ")")
	return ch, nil
}

// pump copies output lines; it ends when every holder of the pipe (the
// whole process group) has exited.
func (sv *service) pump(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		sv.ring.add(time.Now().UTC().Format(time.RFC3339) + " " + line)
		fmt.Fprintf(sv.sup.opt.Console, "[%s] %s\n", sv.spec.Name, line)
	}
}

// stopTimeout is the service's own grace period, else the supervisor's.
func (sv *service) stopTimeout() time.Duration {
	if sv.spec.StopTimeoutSeconds > 0 {
		return time.Duration(sv.spec.StopTimeoutSeconds) * time.Second
	}
	return sv.sup.opt.StopTimeout
}

// stop sends SIGTERM to the process group, then SIGKILL after StopTimeout.
func (sv *service) stop(exited <-chan syscall.WaitStatus) syscall.WaitStatus {
	sv.mu.Lock()
	pid := sv.pid
	sv.mu.Unlock()
	_ = unix.Kill(-pid, unix.SIGTERM)
	select {
	case ws := <-exited:
		return ws
	case <-time.After(sv.stopTimeout()):
	}
	sv.sup.opt.Log.Warn("did not stop in time; killing", "service", sv.spec.Name)
	_ = unix.Kill(-pid, unix.SIGKILL)
	return <-exited
}
