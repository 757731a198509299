// Command fvtestrun runs Go test binaries inside an emulated Flashvisor host
// for qemutest.RunGoTests. It is not part of the image: RunGoTests ships it
// in an extra initramfs with the binaries and a services.json that makes
// init start it as a service.
//
//	fvtestrun [/fvtest/spec.json]
//
// It runs every binary of the spec (fvtest.Spec) in order, frames their
// output onto the spec's virtio serial port (its stdout when the port is
// missing), echoes it as plain text on stdout (the console), and then asks
// init to power off. It always exits with api.DoNotRestart: tests run once.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/qemu-test/fvtest"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fvtestrun:", err)
	}
	os.Exit(api.DoNotRestart)
}

// portWait is how long the runner waits for the virtio serial port: its
// driver is loaded by init's coldplug before services start, so it is
// normally there at once.
const portWait = 10 * time.Second

func run(ctx context.Context, args []string, stdout io.Writer) error {
	path := fvtest.SpecFile
	if len(args) > 0 {
		path = args[0]
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	spec, err := fvtest.ParseSpec(b)
	if err != nil {
		return err
	}
	if spec.PowerOff {
		// init powers off on SIGUSR2 (busybox poweroff's signal).
		defer unix.Kill(1, unix.SIGUSR2)
	}
	out, echo := stdout, io.Writer(nil)
	if spec.Port != "" {
		port, err := openPort(spec.Port)
		if err != nil {
			fmt.Fprintf(stdout, "fvtestrun: %v; framing on stdout instead\n", err)
		} else {
			defer port.Close()
			out, echo = port, stdout
		}
	}
	s := fvtest.NewSender(out, spec.RunID)
	return fvtest.Run(ctx, spec, s, echo)
}

func openPort(name string) (*os.File, error) {
	deadline := time.Now().Add(portWait)
	for {
		dev, err := fvtest.FindPort("/sys/class/virtio-ports", "/dev", name)
		if err == nil {
			return os.OpenFile(dev, os.O_WRONLY|unix.O_NOCTTY, 0)
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
