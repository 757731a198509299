package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/vsm"
)

// benchDomain is the svs-domain id of every benchmark VSM.
const benchDomain = 100

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100
// on every Linux architecture Go supports without cgo to ask sysconf).
const userHZ = 100

// vsmProc is the VSM daemon under test, in its own process so that its
// memory and CPU are its own.
type vsmProc struct {
	bin, dir, state, token string
	control, api, ssh      string // loopback listen addresses, fixed across restarts
	maxSlot                int
	extra                  []string // more daemon flags (HA roles)
	cmd                    *exec.Cmd
	exited                 chan error
	log                    *os.File
	c                      *client.Client
}

// buildVSM builds ./vsm/cmd/vsm of the module at root into dir.
func buildVSM(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "vsm")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./vsm/cmd/vsm")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./vsm/cmd/vsm: %w\n%s", err, out)
	}
	return bin, nil
}

// newVSM prepares a VSM with a fresh state directory under dir (not
// started yet).
func newVSM(bin, dir string, maxSlot int) (*vsmProc, error) {
	p := &vsmProc{bin: bin, dir: dir, state: filepath.Join(dir, "state"), maxSlot: maxSlot}
	if err := os.MkdirAll(p.state, 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	rand.Read(b)
	p.token = hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(p.token+"\n"), 0o600); err != nil {
		return nil, err
	}
	for _, a := range []*string{&p.control, &p.api, &p.ssh} {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		*a = addr
	}
	return p, nil
}

// useToken makes p use token (an HA pair shares one).
func (p *vsmProc) useToken(token string) error {
	p.token = token
	return os.WriteFile(filepath.Join(p.dir, "token"), []byte(token+"\n"), 0o600)
}

// freePort returns a loopback address with a free port below the
// kernel's ephemeral range: the simulated VEMs' hundreds of outgoing
// connections (and the secondary's peer link) take ephemeral ports, and
// one of them must not sit on a port a VSM is about to listen on again.
func freePort() (string, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				lo = n
			}
		}
	}
	base := max(1024, lo/2)
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+mrand.IntN(lo-base)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("no free port in %d-%d", base, lo-1)
}

// start runs the daemon and waits until its API answers.
func (p *vsmProc) start(ctx context.Context) error {
	args := []string{
		"-state", p.state, "-control", p.control, "-advertise", p.control, "-api", p.api, "-ssh", p.ssh,
		"-domain", strconv.Itoa(benchDomain), "-token-file", filepath.Join(p.dir, "token"),
		"-cmdline", filepath.Join(p.dir, "no-cmdline"),
	}
	if p.maxSlot > 0 {
		args = append(args, "-max-slot", strconv.Itoa(p.maxSlot))
	}
	args = append(args, p.extra...)
	log, err := os.OpenFile(filepath.Join(p.dir, "vsm.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.log = log
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// The daemon dies with the benchmark, also when it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start vsm: %w", err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case e := <-p.exited:
			p.exited <- e
			return fmt.Errorf("vsm exited at start (%v):\n%s", e, p.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vsm API not ready in 30s: %v\n%s", err, p.logTail(20))
		}
	}
}

// ready makes the API client (pinned to the VSM's certificate) and asks
// for the modules once.
func (p *vsmProc) ready(ctx context.Context) error {
	if p.c == nil {
		b, err := os.ReadFile(filepath.Join(p.state, vsm.ServerCertFile))
		if err != nil {
			return err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return errors.New("no server certificate yet")
		}
		c, err := client.New(client.Options{Addr: p.api, Token: p.token, Fingerprint: client.Fingerprint(blk.Bytes), Timeout: 2 * time.Minute})
		if err != nil {
			return err
		}
		p.c = c
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := p.c.VSMModules(cctx)
	return err
}

// stop ends the daemon: SIGTERM, then SIGKILL after 10 s.
func (p *vsmProc) stop() error {
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd = nil; p.log.Close() }()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return errors.New("vsm did not stop on SIGTERM in 10s")
	}
}

// kill ends the daemon at once (a crash).
func (p *vsmProc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
	p.log.Close()
}

func (p *vsmProc) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "vsm.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cli runs lines through POST /api/v1/cli; a failing line is an error.
func (p *vsmProc) cli(ctx context.Context, lines ...string) error {
	r, err := p.c.VSMCLI(ctx, lines...)
	if err != nil {
		return fmt.Errorf("VSM CLI: %w", err)
	}
	if r.Error != "" {
		return fmt.Errorf("VSM CLI line %d %q: %s\n%s", r.FailedLine, lines[r.FailedLine], r.Error, r.Output)
	}
	return nil
}

// joinBundle asks POST /api/v1/join for a host's bundle.
func (p *vsmProc) joinBundle(ctx context.Context, uuid string, uplinks []api.VSMUplink) (api.VSMJoin, error) {
	return p.c.VSMJoinBundle(ctx, api.VSMJoinRequest{HostUUID: uuid, Uplinks: uplinks})
}

// procUsage is one reading of the daemon's /proc files.
type procUsage struct {
	RSSKiB, HWMKiB int64
	CPU            time.Duration // utime + stime
	Threads        int
	At             time.Time
}

func (p *vsmProc) usage() (procUsage, error) {
	if p.cmd == nil {
		return procUsage{}, errors.New("vsm not running")
	}
	return readUsage(fmt.Sprintf("/proc/%d", p.cmd.Process.Pid))
}

// readUsage reads VmRSS, VmHWM and Threads of dir/status and utime +
// stime of dir/stat.
func readUsage(dir string) (procUsage, error) {
	u := procUsage{At: time.Now()}
	st, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return u, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			u.RSSKiB = n
		case "VmHWM":
			u.HWMKiB = n
		case "Threads":
			u.Threads = int(n)
		}
	}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return u, err
	}
	cpu, err := parseStatCPU(stat)
	u.CPU = cpu
	return u, err
}

// parseStatCPU returns utime + stime of a /proc/PID/stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}
