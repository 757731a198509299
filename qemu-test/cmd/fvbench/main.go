// Command fvbench measures Flashvisor's tracked figures and writes them into
// docs/benchmarks.md (`make bench`): image build time cold and warm, image
// sizes, and boot-to-API-ready time; VM power-on latency through hostd and
// by hand, hostd memory per VM, and many VMs powered on at once; the VEM's
// forwarding, reconcile and memory; the VSM at scale (vsm/cmd/vsmbench).
// -only picks one.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGTERM too: the deferred cleanups kill the benchmark host's QEMU.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fvbench:", err)
		os.Exit(1)
	}
}
