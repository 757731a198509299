// Command vsm is the Virtual Supervisor Module daemon: the distributed
// switch's control plane (SPEC section 5). Inside the VSM VM, init runs it
// as the `vsm` service; on a development machine it runs as any user with
// a state directory in /tmp and unprivileged ports, for example:
//
//	vsm -state /tmp/vsm -api 127.0.0.1:8443 -ssh 127.0.0.1:2222 \
//	    -control 127.0.0.1:2001 -advertise 127.0.0.1:2001 -domain 100
//
// An HA pair (VSM-7) shares one token; the secondary knows the primary's
// peer port, pairs there on its first start and dials it from then on:
//
//	vsm -state /tmp/vsm1 -role primary -peer-listen 127.0.0.1:2002 ...
//	vsm -state /tmp/vsm2 -role secondary -peer 127.0.0.1:2002 \
//	    -peer-listen 127.0.0.1:2012 -control 127.0.0.1:2011 ...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/flashvisor/flashvisor/internal/layout"
	"github.com/flashvisor/flashvisor/vsm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsm:", err)
		os.Exit(1) // init restarts us with backoff
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vsm", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o vsm.Options
	fs.StringVar(&o.StateDir, "state", filepath.Join(layout.StateDir, "vsm"), "state directory (configs, bindings, keys, epoch)")
	fs.StringVar(&o.ControlAddr, "control", fmt.Sprintf(":%d", api.VSMDefaultPort), "VEM control channel listen address")
	fs.StringVar(&o.APIAddr, "api", vsm.DefaultAPIAddr, "management API (HTTPS) listen address")
	fs.StringVar(&o.SSHAddr, "ssh", vsm.DefaultSSHAddr, "SSH CLI listen address")
	advertise := fs.String("advertise", "", "comma-separated host:port addresses VEMs reach the control channel at")
	controlNIC := fs.String("control-nic", "", "the control NIC: brought up and advertised at its IPv6 link-local address (svs mode L2)")
	packetNIC := fs.String("packet-nic", "", "the packet NIC: brought up to receive the frames hosts relay on the packet VLAN (svs mode L2)")
	fs.IntVar(&o.DomainID, "domain", 0, "svs-domain id to preset on a fresh configuration (1-4095)")
	fs.StringVar(&o.Role, "role", "", "redundancy role: standalone, primary or secondary (default: the configuration's)")
	fs.StringVar(&o.PeerAddr, "peer", "", "HA: the other VSM's peer port host:port (the secondary pairs with and dials the primary there)")
	fs.StringVar(&o.PeerListenAddr, "peer-listen", fmt.Sprintf(":%d", vsm.DefaultPeerPort), "HA: peer port listen address (primary and secondary)")
	fs.StringVar(&o.CmdlineFile, "cmdline", "/proc/cmdline", "kernel command line (flashvisor.token, flashvisor.vsm.domain, .advertise, .role, .peer)")
	tokenFile := fs.String("token-file", "", "file holding the API token and SSH password (default: flashvisor.token, the stored hash, or a new one printed once)")
	debugLog := fs.Bool("debug", false, "debug logging")
	// Benchmarks only (vsm/cmd/vsmbench's scale sweep): a real chassis
	// has 66 slots, and the CLI, the VEM's port names and the wire
	// validation of hello/welcome assume it.
	fs.IntVar(&o.MaxSlot, "max-slot", 0, "benchmarks only: highest VEM slot (default 66, the chassis size)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	// Inside the VSM VM its settings come on the kernel command line
	// (fvctl vsm deploy writes them there); flags win.
	if b, err := os.ReadFile(o.CmdlineFile); err == nil {
		c, _ := cmdline.Parse(string(b)) // bad keys: init reports them; use the good ones
		if o.DomainID == 0 {
			o.DomainID = c.VSMDomain
		}
		if *advertise == "" {
			*advertise = strings.Join(c.VSMAdvertise, ",")
		}
		if o.Role == "" {
			o.Role = c.VSMRole
		}
		if o.PeerAddr == "" {
			o.PeerAddr = c.VSMPeer
		}
		if *controlNIC == "" {
			*controlNIC = c.VSMControlNIC
		}
		if *packetNIC == "" {
			*packetNIC = c.VSMPacketNIC
		}
	}
	for _, a := range strings.Split(*advertise, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.Advertise = append(o.Advertise, a)
		}
	}
	if len(o.Advertise) == 0 {
		o.Advertise = defaultAdvertise(o.ControlAddr)
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		if o.Token = strings.TrimSpace(string(b)); o.Token == "" {
			return fmt.Errorf("token file %s is empty", *tokenFile)
		}
	}
	lvl := slog.LevelInfo
	if *debugLog {
		lvl = slog.LevelDebug
	}
	// stderr: init copies it to the console and the service's log ring.
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if *controlNIC != "" {
		_, port, err := net.SplitHostPort(o.ControlAddr)
		if err != nil {
			return fmt.Errorf("control address %q: %w", o.ControlAddr, err)
		}
		// L3 keeps working without it: a failure is only logged.
		if a, err := controlAdvertise(ctx, *controlNIC, port, 10*time.Second); err != nil {
			o.Logger.Warn("svs mode L2 unavailable: no link-local address on the control NIC", "nic", *controlNIC, "err", err)
		} else {
			o.Advertise = append(o.Advertise, a)
			o.Logger.Info("control NIC up", "nic", *controlNIC, "advertise", a)
		}
	}
	if *packetNIC != "" {
		// Without it, hosts relay over the control connection: logged only.
		if pc, err := packetListen(*packetNIC); err != nil {
			o.Logger.Warn("packet channel unavailable: hosts relay frames over the control connection", "nic", *packetNIC, "err", err)
		} else {
			defer pc.Close()
			o.Packet, o.PacketMAC = pc, pc.MAC()
			o.Logger.Info("packet NIC up", "nic", *packetNIC, "mac", pc.MAC().String())
		}
	}
	o.Console = stdout
	o.Version = version()
	s, err := vsm.New(o)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// defaultAdvertise is the control port on every global unicast address
// of this machine (inside the VSM VM: mgmt0's), used when -advertise is
// not given. An explicit host in -control wins.
func defaultAdvertise(control string) []string {
	host, port, err := net.SplitHostPort(control)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return []string{control}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			out = append(out, net.JoinHostPort(n.IP.String(), port))
		}
	}
	return out
}

// version is the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
