// Command vemd is the VEM agent, run by init as a supervised service before
// hostd. It restores the last applied switch programming from the state
// partition (VEM-8), starts the link to the VSM if the host has joined a
// switch (vem/vsmlink; headless until connected; while connected it relays
// the CDP frames its uplinks receive, vem/cdp), then serves its local
// API on a unix socket and reconciles periodically. Forwarding is the
// kernel's: vemd exiting or being killed leaves every port as it is.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/layout"
	"github.com/flashvisor/flashvisor/internal/pktchan"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/ctlframe"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vemd:", err)
		os.Exit(1) // init restarts us with backoff
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("vemd", flag.ContinueOnError)
	socket := fs.String("socket", layout.VEMSocket, "local API socket")
	bootInfo := fs.String("boot-info", layout.BootInfoFile, "boot facts written by init (state dir, host UUID)")
	manifest := fs.String("manifest", layout.ManifestFile, "image manifest (version)")
	stateFile := fs.String("state", "", "last applied programming (default: <state dir>/"+layout.VEMStateFile+")")
	joinFile := fs.String("vsm-join", "", "VSM join data (default: <state dir>/"+layout.VEMJoinFile+")")
	linkFile := fs.String("vsm-state", "", "VSM link state (default: <state dir>/"+layout.VEMLinkStateFile+")")
	interval := fs.Duration("interval", 30*time.Second, "reconcile period (repairs what someone changed by hand)")
	debug := fs.Bool("debug", false, "debug logging")
	igmpVeths := fs.Bool("igmp-veths", true, "also relay the IGMP frames the VSM's vEths receive (a capture on each VM's tap)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *debug {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	var bi api.BootInfo
	if data, err := os.ReadFile(*bootInfo); err != nil {
		log.Warn("no boot info", "err", err)
	} else if err := json.Unmarshal(data, &bi); err != nil {
		log.Warn("boot info unreadable", "err", err)
	}
	dir := bi.StateDir
	if dir == "" {
		dir = layout.StateDir
	}
	for _, f := range []struct {
		p   *string
		rel string
	}{{stateFile, layout.VEMStateFile}, {joinFile, layout.VEMJoinFile}, {linkFile, layout.VEMLinkStateFile}} {
		if *f.p == "" {
			*f.p = filepath.Join(dir, f.rel)
		}
	}
	var mf api.Manifest
	if data, err := os.ReadFile(*manifest); err == nil {
		json.Unmarshal(data, &mf) // version only: best effort
	}

	k, err := vem.NewNetlinkKernel()
	if err != nil {
		return err
	}
	defer k.Close()
	agent, err := vem.New(vem.Options{Kernel: k, Store: &vem.Store{Path: *stateFile}, Log: log})
	if err != nil {
		return err
	}
	// Restore before the socket exists: nothing else can talk to the
	// switch until the stored programming is back (VEM-8).
	switch err := agent.Restore(ctx); {
	case errors.Is(err, vem.ErrNoState):
		log.Info("no stored switch programming (first boot): waiting for a configuration")
	case errors.Is(err, vem.ErrCorruptState):
		log.Error("stored switch programming unusable: left as is, waiting for a configuration", "file", *stateFile, "err", err)
	case err != nil:
		log.Error("stored switch programming restored with errors", "err", err)
	default:
		log.Info("switch programming restored", "file", *stateFile)
	}

	// The link comes up in the background: the restored programming
	// already forwards (headless until the VSM answers).
	link, err := vsmlink.New(vsmlink.Options{Agent: agent, JoinFile: *joinFile, StateFile: *linkFile,
		HostUUID: bi.HostUUID, Hostname: bi.Hostname, Version: mf.Version, Log: log.With("component", "vsmlink"),
		Frames: ctlframe.Capture{}, CaptureVeths: *igmpVeths,
		Packet:      func(ifname string) (vsmlink.PacketSender, error) { return pktchan.Listen(ifname) },
		IfaceExists: func(name string) bool { _, err := net.InterfaceByName(name); return err == nil }})
	if err != nil {
		return err
	}
	if st := link.Status(); st.Joined {
		log.Info("joined to a VSM: connecting in the background", "domain", st.DomainID, "module", st.Module)
	}
	go link.Run(ctx)

	if err := os.MkdirAll(filepath.Dir(*socket), 0o755); err != nil {
		return err
	}
	os.Remove(*socket) // a stale socket of a previous run
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(*socket, 0o600); err != nil {
		return err
	}
	srv := &http.Server{
		Handler: (&vem.Server{Agent: agent, Local: link, VSM: link,
			HostUUID: bi.HostUUID, Hostname: bi.Hostname, Version: mf.Version, Log: log}).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go agent.Run(ctx, *interval)
	log.Info("vem agent ready", "socket", *socket)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
