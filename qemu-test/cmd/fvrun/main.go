// Command fvrun boots one Flashvisor host from the built image under QEMU in
// the foreground: the program behind `make run`. The serial console is on
// the terminal (keys typed go to it), the host's API is forwarded to
// 127.0.0.1:8443, and a persistent state disk in out/run keeps the host's
// identity, certificate and token across runs.
//
// Ctrl-C presses the virtual power button so the host shuts down cleanly;
// a second Ctrl-C (or no shutdown within -powerdown-timeout) quits QEMU.
//
// Environment: FV_TOKEN (API token; default: generated once and kept in
// out/run/token), FV_HOSTNAME (default fv-run-1), FV_API_PORT (default
// 8443), FV_IMAGE_DIR (default out/host).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	restore := noEcho(os.Stdin)
	err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, sigs)
	restore()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fvrun:", err)
		os.Exit(1)
	}
}
