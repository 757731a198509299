// Command fvctl is the operator CLI of Flashvisor hosts: it talks to a
// host's management API over HTTPS, pinning the host certificate.
//
//	fvctl --host 10.0.2.15 host info
//	fvctl services
//	fvctl services kill vem --signal KILL
//
// Run "fvctl help" for every command and flag.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if exitCode(err) == 1 { // run printed usage errors with the usage
		fmt.Fprintln(os.Stderr, "fvctl:", err)
	}
	os.Exit(exitCode(err))
}
