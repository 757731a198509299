// Command vembench is the VEM benchmark (issue 4). It runs inside an
// emulated host booted from the bench image (the host image plus Open
// vSwitch), where `fvbench -only vem` ships it in as the host's only
// service; it needs the image's kernel (bridge VLAN filtering, tc police,
// the openvswitch module), root, iperf3, vemd and OVS's programs.
//
//	vembench run [-runs 5] [-seconds 3] [-ports 1000] [-reconcile-runs 3] [-service]
//
// measures, in network namespaces of one host:
//
//   - VM-to-VM forwarding between two "VM" namespaces behind veth pairs,
//     through a plain Linux bridge, through the VEM (the real vemd,
//     configured through vemclient, with all its policy on) and through
//     Open vSwitch configured alike: iperf3 TCP throughput, the rate of
//     64-byte frames sent by the kernel's packet generator (pktgen) and of
//     iperf3 UDP with 64-byte payloads;
//   - the agent's reconcile time for -ports vEth ports from scratch, for
//     one port's change among them, for an unchanged config and for
//     removing them all (in-process agent on a real NetlinkKernel);
//   - vemd's resident memory with -ports ports programmed.
//
// With -service it writes the results (JSON, type Result) to the virtio
// serial port org.flashvisor.vembench, powers the host off and exits with
// api.DoNotRestart. Internal subcommands run in other namespaces: "nsexec"
// (join the network namespace passed as fd 3, with a sysfs of its own, and
// exec a program, like ip netns exec), "reconcile" (the in-process agent
// measurement) and "pktgen" (the small-packet sender, through the kernel's
// packet generator), both started through nsexec.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/flashvisor/flashvisor/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "vembench:", err)
	}
	if len(os.Args) > 1 && os.Args[1] == "run" && isService(os.Args[2:]) {
		os.Exit(api.DoNotRestart) // the benchmark runs once
	}
	if err != nil {
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: vembench run|reconcile|pktgen|nsexec [flags]")
	}
	switch args[0] {
	case "run":
		return runBench(ctx, args[1:], stdout)
	case "reconcile":
		return runReconcile(ctx, args[1:], stdout)
	case "pktgen":
		return runPktgen(ctx, args[1:], stdout)
	case "nsexec":
		return nsexec(args[1:])
	}
	return fmt.Errorf("unknown subcommand %q: want run, reconcile, pktgen or nsexec", args[0])
}

func isService(args []string) bool {
	for _, a := range args {
		if a == "-service" || a == "--service" || a == "-service=true" || a == "--service=true" {
			return true
		}
	}
	return false
}
