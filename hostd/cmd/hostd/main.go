// Command hostd is the Flashvisor host daemon, run by init as a supervised
// service. It serves the management API on the management address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/flashvisor/flashvisor/hostd"
	"github.com/flashvisor/flashvisor/hostd/initclient"
	"github.com/flashvisor/flashvisor/internal/layout"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostd:", err)
		os.Exit(1) // init restarts us with backoff
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hostd", flag.ContinueOnError)
	var o hostd.Options
	fs.StringVar(&o.BootInfoFile, "boot-info", layout.BootInfoFile, "boot facts written by init (api.BootInfo)")
	fs.StringVar(&o.ManifestFile, "manifest", layout.ManifestFile, "image manifest (api.Manifest)")
	fs.StringVar(&o.CmdlineFile, "cmdline", "/proc/cmdline", "kernel command line (flashvisor.token)")
	fs.StringVar(&o.StateDir, "state-dir", "", "state directory (default: boot info's state_dir, else "+layout.StateDir+")")
	fs.StringVar(&o.Listen, "listen", "", "listen address host:port (default: management address, port 443)")
	fs.StringVar(&o.ServiceName, "service-name", "hostd", "this service's name in init")
	socket := fs.String("init-socket", layout.InitSocket, "init's control socket")
	debug := fs.Bool("debug", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *debug {
		lvl = slog.LevelDebug
	}
	// stderr: init copies it to the console and the service's log ring.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ic := initclient.New(*socket)
	o.Services, o.Power = ic, ic
	o.Logger = log
	o.Console = stdout

	s, err := hostd.New(o)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
