package guest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Console answers start with this word, so a test can tell them from
// kernel messages and logs on the same serial line.
const Marker = "FVGUEST"

// Guest answers console commands. Its OS access goes through the function
// fields, so that tests run it against a file instead of a disk and without
// powering anything off.
type Guest struct {
	Log *slog.Logger
	Out *LineWriter
	// FindDisk returns the device "write" and "read" use.
	FindDisk func() (string, error)
	// Addrs lists the guest's addresses (ADDR/PREFIX) for "ip".
	Addrs func() ([]string, error)
	// MemTotal is the memory the kernel manages, in KiB, for "mem".
	MemTotal func() (int64, error)
	// PowerOff turns the machine off; it returns only if that failed.
	PowerOff func() error
	// Echo sends ICMP echo requests to an address and returns the round
	// trip of the first reply, for "echo" (the guest's ping).
	Echo func(a netip.Addr) (time.Duration, error)
	// Join makes the guest a member of a multicast group on its NIC (its
	// kernel sends the IGMP reports) for as long as it runs.
	Join func(group netip.Addr) error

	off sync.Once
}

// Answer executes one console line and returns the reply line, or "" for
// no reply (blank lines; poweroff, which Shutdown announces).
func (g *Guest) Answer(line string) (reply string, powerOff bool) {
	c, err := ParseCommand(line)
	switch {
	case errors.Is(err, ErrEmpty):
		return "", false
	case err != nil:
		return errReply(err), false
	}
	switch c.Op {
	case OpPing:
		return Marker + " PONG", false
	case OpWrite:
		dev, err := g.FindDisk()
		if err != nil {
			return errReply(err), false
		}
		n, err := WriteRecord(dev, c.Text)
		if err != nil {
			return errReply(err), false
		}
		return fmt.Sprintf("%s WROTE %d", Marker, n), false
	case OpRead:
		dev, err := g.FindDisk()
		if err != nil {
			return errReply(err), false
		}
		text, err := ReadRecord(dev)
		if errors.Is(err, ErrNoRecord) {
			return Marker + " DATA <none>", false
		}
		if err != nil {
			return errReply(err), false
		}
		return Marker + " DATA " + text, false
	case OpIP:
		addrs, err := g.Addrs()
		if err != nil {
			return errReply(err), false
		}
		if len(addrs) == 0 {
			return Marker + " IP none", false
		}
		return Marker + " IP " + strings.Join(addrs, " "), false
	case OpMem:
		kib, err := g.MemTotal()
		if err != nil {
			return errReply(err), false
		}
		return fmt.Sprintf("%s MEM %d kB", Marker, kib), false
	case OpEcho:
		if g.Echo == nil {
			return errReply(errors.New("echo not available")), false
		}
		rtt, err := g.Echo(c.Addr)
		if err != nil {
			return fmt.Sprintf("%s ECHO %s fail %s", Marker, c.Addr, strings.Join(strings.Fields(err.Error()), " ")), false
		}
		return fmt.Sprintf("%s ECHO %s ok %dus", Marker, c.Addr, rtt.Microseconds()), false
	case OpJoin:
		if g.Join == nil {
			return errReply(errors.New("join not available")), false
		}
		if err := g.Join(c.Addr); err != nil {
			return errReply(err), false
		}
		return fmt.Sprintf("%s JOINED %s", Marker, c.Addr), false
	case OpPowerOff:
		return "", true
	}
	return errReply(fmt.Errorf("command %d not implemented", c.Op)), false
}

// errReply keeps an error on one line whatever it wraps.
func errReply(err error) string {
	return Marker + " ERR " + strings.Join(strings.Fields(err.Error()), " ")
}

// maxLine bounds what Serve buffers of one line; longer lines are answered
// with an error, not kept.
const maxLine = 8192

// Serve answers the lines read from r until r fails. A panic while
// answering one line is reported and the next line is served: bad input
// must not take the guest down.
func (g *Guest) Serve(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := readLine(br)
		switch {
		case errors.Is(err, errLineTooLong):
			g.Out.Println(errReply(err))
			continue
		case err != nil:
			return err
		}
		reply, off := g.safeAnswer(line)
		if reply != "" {
			g.Out.Println(reply)
		}
		if off {
			g.Shutdown("poweroff command")
		}
	}
}

func (g *Guest) safeAnswer(line string) (reply string, off bool) {
	defer func() {
		if r := recover(); r != nil {
			g.Log.Error("panic while answering", "line", line, "panic", r)
			reply, off = errReply(fmt.Errorf("internal error: %v", r)), false
		}
	}()
	return g.Answer(line)
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its end; a line longer than the
// reader's buffer is skipped up to its end and reported.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w (at most %d bytes)", errLineTooLong, maxLine)
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(b) > 0) {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Shutdown is the one way down: announce it on the console, then power
// off. Only the first call does anything; in PID 1 it does not return
// unless the power-off failed.
func (g *Guest) Shutdown(why string) {
	g.off.Do(func() {
		g.Log.Info("powering off", "why", why)
		g.Out.Println(Marker + " POWEROFF")
		if err := g.PowerOff(); err != nil {
			g.Log.Error("power off failed", "err", err)
		}
	})
}

// LineWriter serialises whole lines from several goroutines (command
// answers, the power button, logs) onto the console, so a marker is never
// cut by another line.
type LineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLineWriter writes to w.
func NewLineWriter(w io.Writer) *LineWriter { return &LineWriter{w: w} }

// Redirect sends later lines to w (the serial port once it is set up).
func (l *LineWriter) Redirect(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = w
}

// Write writes p in one piece (slog handlers write one record per call).
func (l *LineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Println writes s and a newline as one write.
func (l *LineWriter) Println(s string) {
	_, _ = l.Write([]byte(s + "\n"))
}

// ParseMemTotal reads MemTotal (KiB) from the text of /proc/meminfo.
func ParseMemTotal(meminfo string) (int64, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		var kib int64
		if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err != nil {
			return 0, fmt.Errorf("meminfo: MemTotal %q: %w", strings.TrimSpace(rest), err)
		}
		return kib, nil
	}
	return 0, errors.New("meminfo: no MemTotal")
}

// InterfaceAddrs lists the addresses of every interface but loopback, as
// ADDR/PREFIX.
func InterfaceAddrs() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			out = append(out, a.String())
		}
	}
	return out, nil
}
