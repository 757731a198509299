package vsmlink

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem/cdp"
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

// capture is one NIC's running capture.
type capture struct {
	cancel context.CancelFunc
	done   chan struct{}
	// port is the NIC's EthM/P (it changes with the module).
	port atomic.Pointer[string]
}

// kickFrames tells the relay the programming changed (its uplinks may
// have).
func (l *Link) kickFrames() {
	select {
	case l.framesKick <- struct{}{}:
	default:
	}
}

// uplinkNICs maps the kernel NIC of every Eth port of the programming the
// agent runs to the port's name.
func (l *Link) uplinkNICs() map[string]string {
	out := map[string]string{}
	sc, ok := l.agent.Config()
	if !ok {
		return out
	}
	for _, p := range sc.Ports {
		if p.Kind == api.PortEth && p.Interface != "" {
			out[p.Interface] = p.Name
		}
	}
	return out
}

// relay runs while s is the live session (until ctx ends): it captures
// the CDP frames received on the uplinks with the FrameSource and sends
// each to the VSM as a frame message, at most one per port per
// FrameInterval. A capture that fails is logged (once per NIC), retried
// later, and never disturbs the link.
func (l *Link) relay(ctx context.Context, s *session) {
	if l.o.Frames == nil {
		return
	}
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
		want := l.uplinkNICs()
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
	var last time.Time
	err := l.o.Frames.Run(ctx, nic, func(frame []byte) {
		if !cdp.Match(frame) || len(frame) > cdp.MaxFrame {
			return
		}
		now := time.Now()
		if !last.IsZero() && now.Sub(last) < l.o.FrameInterval {
			return
		}
		last = now
		port := *c.port.Load()
		if err := s.send(api.VSMMessage{Type: api.VSMFrame, Frame: &api.VSMFrameBody{Port: port, Data: frame}}); err != nil {
			l.log.Debug("CDP frame not relayed", "port", port, "err", err)
		}
	})
	if err == nil || ctx.Err() != nil {
		return
	}
	lvl := slog.LevelDebug
	l.mu.Lock()
	if !l.captureLogged[nic] {
		l.captureLogged[nic] = true
		lvl = slog.LevelWarn
	}
	l.mu.Unlock()
	l.log.Log(ctx, lvl, "CDP capture failed: CDP frames of this uplink are not relayed to the VSM", "nic", nic, "err", err)
}
