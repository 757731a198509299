package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	"golang.org/x/term"

	"github.com/flashvisor/flashvisor/api/client"
)

// detachKey is Ctrl-], the escape of telnet and virsh console: a byte
// serial consoles rarely need, unlike Ctrl-C or Ctrl-D.
const detachKey = 0x1d

// consoleDialer opens a VM's serial console (*client.Client does).
type consoleDialer interface {
	Console(ctx context.Context, name string, write bool) (io.ReadWriteCloser, error)
}

// vncDialer opens a connection to a VM's VNC display (*client.Client does).
type vncDialer interface {
	VNC(ctx context.Context, name string) (io.ReadWriteCloser, error)
}

// vmConsole runs "vm console NAME [--read-only]".
func (a *app) vmConsole(ctx context.Context, args []string) error {
	var readOnly bool
	pos, err := a.subArgs("vm console", args, 1, func(fs *flag.FlagSet) {
		fs.BoolVar(&readOnly, "read-only", false, "")
	})
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	o := consoleOpts{readOnly: readOnly}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		// Raw, so Ctrl-C, Ctrl-D, arrows and tabs go to the guest as bytes
		// instead of being acted on by the local terminal.
		o.raw = func() (func(), error) {
			old, err := term.MakeRaw(fd)
			if err != nil {
				return nil, fmt.Errorf("put the terminal in raw mode: %w", err)
			}
			return func() { term.Restore(fd, old) }, nil
		}
	}
	err = runConsole(ctx, c, pos[0], o, os.Stdin, a.stdout, a.stderr)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict && !readOnly {
		return fmt.Errorf("%w (if another session is typing on this console, --read-only attaches without typing)", a.explain(err))
	}
	if err != nil {
		return a.explain(err)
	}
	return nil
}

// consoleOpts configure runConsole.
type consoleOpts struct {
	readOnly bool
	// raw, when stdin is a terminal, puts it in raw mode and returns how
	// to restore it.
	raw func() (restore func(), err error)
}

// runConsole attaches stdin and stdout to a VM's serial console until the
// user types Ctrl-], the console ends (VM powered off), or ctx ends. When
// stdin ends first (a pipe, /dev/null), the output keeps coming: so
// "fvctl vm console vm1 </dev/null | grep -m1 login:" follows the console.
// In read-only mode stdin is only watched for Ctrl-].
func runConsole(ctx context.Context, d consoleDialer, name string, o consoleOpts, stdin io.Reader, stdout, stderr io.Writer) error {
	con, err := d.Console(ctx, name, !o.readOnly)
	if err != nil {
		return err
	}
	defer con.Close()
	mode := ""
	if o.readOnly {
		mode = " (read-only)"
	}
	fmt.Fprintf(stderr, "Connected to %s's serial console%s; Ctrl-] to detach\n", name, mode)
	nl := "\n"
	if o.raw != nil {
		restore, err := o.raw()
		if err != nil {
			return err
		}
		defer restore()
		nl = "\r\n" // raw mode does not turn \n into \r\n
	}

	output := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, con)
		output <- err
	}()
	input := make(chan bool, 1) // true: the user detached
	go func() { input <- copyInput(con, stdin, o.readOnly) }()

	for {
		select {
		case err := <-output:
			if err != nil {
				return fmt.Errorf("console of %s: %w", name, err)
			}
			fmt.Fprintf(stderr, "%sConsole of %s closed by the host (VM powered off?).%s", nl, name, nl)
			return nil
		case detached := <-input:
			if !detached {
				input = nil // stdin ended: keep showing the output
				continue
			}
			fmt.Fprintf(stderr, "%sDetached from %s.%s", nl, name, nl)
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// copyInput sends stdin to the console until stdin ends or holds the
// detach key; it reports whether the user detached. A failed write ends
// it too: the output side then says why the console went away.
func copyInput(con io.Writer, stdin io.Reader, readOnly bool) bool {
	buf := make([]byte, 4096)
	for {
		n, err := stdin.Read(buf)
		p := buf[:n]
		i := bytes.IndexByte(p, detachKey)
		if i >= 0 {
			p = p[:i]
		}
		if len(p) > 0 && !readOnly {
			if _, werr := con.Write(p); werr != nil {
				return false
			}
		}
		if i >= 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// vmVNC runs "vm vnc NAME [--listen ADDR]": a local VNC port whose every
// connection is carried to the VM's display through the API, so any VNC
// viewer works without the display being exposed on the host's network.
func (a *app) vmVNC(ctx context.Context, args []string) error {
	listen := "127.0.0.1:5900"
	pos, err := a.subArgs("vm vnc", args, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&listen, "listen", listen, "")
	})
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	// Fail now, not at the viewer's first connection, if the VM has no
	// display or the token is wrong.
	probe, err := c.VNC(ctx, pos[0])
	if err != nil {
		return a.explain(err)
	}
	probe.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("vm vnc: %w", err)
	}
	fmt.Fprintf(a.stderr, "VNC display of %s on %s (e.g. vncviewer %s); Ctrl-C to stop\n", pos[0], ln.Addr(), ln.Addr())
	return serveVNC(ctx, c, pos[0], ln, a.stderr)
}

// serveVNC carries each connection accepted on ln to the VM's display
// until ctx ends; it closes ln.
func serveVNC(ctx context.Context, d vncDialer, name string, ln net.Listener, stderr io.Writer) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vm vnc: %w", err)
		}
		wg.Go(func() {
			defer conn.Close()
			v, err := d.VNC(ctx, name)
			if err != nil {
				fmt.Fprintf(stderr, "VNC connection from %s: %v\n", conn.RemoteAddr(), err)
				return
			}
			defer v.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(v, conn); done <- struct{}{} }()
			go func() { io.Copy(conn, v); done <- struct{}{} }()
			select {
			case <-done: // either side ended: closing both ends the other copy
			case <-ctx.Done():
			}
		})
	}
}
