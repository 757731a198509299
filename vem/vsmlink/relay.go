package vsmlink

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/ctlframe"
)

// FrameSource captures the frames received on a host NIC (the packet
// channel's source, VEM-9): Run calls fn with each one, from one goroutine
// at a time, until ctx ends (then it returns nil) or the capture fails. fn
// does not keep frame. cdp.Capture is the real one (AF_PACKET);
// vsmlinktest.Frames a fake.
type FrameSource interface {
	Run(ctx context.Context, ifname string, fn func(frame []byte)) error
}

// captureRetry is how often a capture that failed is tried again (a NIC
// that is not there yet, no CAP_NET_RAW).
const captureRetry = 30 * time.Second

// capture is one interface's running capture.
type capture struct {
	cancel context.CancelFunc
	done   chan struct{}
	// port is the interface's EthM/P or VethN (an Eth's changes with the
	// module).
	port atomic.Pointer[string]
}

// igmpBurst is how many IGMP frames a port may relay at once; after that,
// igmpPerInterval per FrameInterval. A VM joining a few groups sends a
// report for each at once; a flood of them stays bounded.
const (
	igmpBurst       = 16
	igmpPerInterval = 8
)

// kickFrames tells the relay the programming changed (its uplinks may
// have).
func (l *Link) kickFrames() {
	select {
	case l.framesKick <- struct{}{}:
	default:
	}
}

// captureIfaces maps the kernel interface of every Eth port (CDP and
// IGMP) and, with CaptureVeths, every vEth port of the VSM (IGMP) of the
// programming the agent runs to the port's name. An interface that is not there (a powered-off VM's
// tap) is left out until it is.
func (l *Link) captureIfaces() map[string]string {
	out := map[string]string{}
	sc, ok := l.agent.Config()
	if !ok {
		return out
	}
	// The host's own vEths (vmknics, VMs on its own port groups) are
	// not the VSM's ports: it would drop their frames.
	local := map[string]bool{}
	if lc, ok := l.Local(); ok {
		for _, p := range lc.Ports {
			if p.Kind == api.PortVeth {
				local[p.Name] = true
			}
		}
	}
	for _, p := range sc.Ports {
		if p.Kind == api.PortVeth && (local[p.Name] || !l.o.CaptureVeths) {
			continue
		}
		iface := p.Interface
		if iface == "" && p.Kind == api.PortVeth {
			// The VEM's own tap, which the VM's QEMU opens.
			if n, err := strconv.Atoi(strings.TrimPrefix(p.Name, "Veth")); err == nil {
				iface = vem.TapName(n)
			}
		}
		if iface == "" || (p.Kind != api.PortEth && p.Kind != api.PortVeth) {
			continue
		}
		if p.Kind == api.PortVeth && l.o.IfaceExists != nil && !l.o.IfaceExists(iface) {
			continue
		}
		out[iface] = p.Name
	}
	return out
}

// relay runs while s is the live session (until ctx ends): it captures
// the CDP frames received on the uplinks and the IGMP frames received on
// every port with the FrameSource and sends each to the VSM as a frame
// message: CDP at most one per port per FrameInterval, IGMP igmpBurst at
// once and igmpPerInterval per FrameInterval after that. A capture that
// fails is logged (once per interface; at debug level for vEths, whose
// taps come and go), retried later, and never disturbs the link.
func (l *Link) relay(ctx context.Context, s *session) {
	if l.o.Frames == nil {
		return
	}
	// Closed last: the captures that send through it have stopped.
	defer func() {
		if p := s.pkt.Swap(nil); p != nil {
			p.close()
		}
	}()
	running := map[string]*capture{}
	var wg sync.WaitGroup
	defer func() {
		for _, c := range running {
			c.cancel()
		}
		wg.Wait()
	}()
	retry := time.NewTicker(captureRetry)
	defer retry.Stop()
	for {
		l.updatePacket(s)
		want := l.captureIfaces()
		for nic, c := range running {
			ended := false
			select {
			case <-c.done:
				ended = true
			default:
			}
			if _, ok := want[nic]; !ok || ended {
				c.cancel()
				<-c.done
				delete(running, nic)
			}
		}
		for _, nic := range slices.Sorted(maps.Keys(want)) {
			port := want[nic]
			if c, ok := running[nic]; ok {
				c.port.Store(&port)
				continue
			}
			cctx, cancel := context.WithCancel(ctx)
			c := &capture{cancel: cancel, done: make(chan struct{})}
			c.port.Store(&port)
			running[nic] = c
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(c.done)
				l.capture(cctx, s, nic, c)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-l.framesKick:
		case <-retry.C:
		}
	}
}

// capture runs the FrameSource on nic until ctx ends or it fails.
func (l *Link) capture(ctx context.Context, s *session, nic string, c *capture) {
	var lastCDP, lastIGMP time.Time
	tokens := float64(igmpBurst)
	err := l.o.Frames.Run(ctx, nic, func(frame []byte) {
		port := *c.port.Load()
		uplink := strings.HasPrefix(port, "Eth")
		now := time.Now()
		switch {
		case len(frame) > ctlframe.MaxFrame:
			return
		case uplink && ctlframe.MatchCDP(frame):
			if !lastCDP.IsZero() && now.Sub(lastCDP) < l.o.FrameInterval {
				return
			}
			lastCDP = now
		case ctlframe.MatchIGMP(frame):
			if !lastIGMP.IsZero() {
				tokens = min(igmpBurst, tokens+float64(igmpPerInterval)*float64(now.Sub(lastIGMP))/float64(l.o.FrameInterval))
			}
			lastIGMP = now
			if tokens < 1 {
				return
			}
			tokens--
		default:
			return
		}
		if err := l.relayFrame(s, port, frame); err != nil {
			l.log.Debug("frame not relayed", "port", port, "err", err)
		}
	})
	if err == nil || ctx.Err() != nil {
		return
	}
	lvl := slog.LevelDebug
	l.mu.Lock()
	if !l.captureLogged[nic] && strings.HasPrefix(*c.port.Load(), "Eth") {
		l.captureLogged[nic] = true
		lvl = slog.LevelWarn
	}
	l.mu.Unlock()
	l.log.Log(ctx, lvl, "frame capture failed: CDP and IGMP frames of this port are not relayed to the VSM", "nic", nic, "port", *c.port.Load(), "err", err)
}
