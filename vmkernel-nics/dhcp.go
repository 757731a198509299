package vmknic

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrNAK is wrapped by a DHCPClient's error when the server answered
// DHCPNAK: the lease (or the requested address) is refused.
var ErrNAK = errors.New("DHCP server refused (NAK)")

// DHCP opens a DHCP client on a vmknic. NClient4 is the real one;
// vmknictest.DHCP a scripted one.
type DHCP interface {
	Open(ifname string, mac net.HardwareAddr) (DHCPClient, error)
}

// DHCPClient is one vmknic's DHCP exchange. Its lease is the last one
// Request or Renew returned.
type DHCPClient interface {
	// Request runs a full exchange (DISCOVER ... ACK), asking for want
	// when it is valid (the address the vmknic already has).
	Request(ctx context.Context, want netip.Addr) (Lease, error)
	// Renew extends the current lease.
	Renew(ctx context.Context) (Lease, error)
	// Release gives the current lease back.
	Release() error
	Close() error
}

// Retry intervals of the DHCP clients: they double from minBackoff to
// maxBackoff while the server does not answer.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// dhcpRunner keeps one vmknic's lease: it requests one, renews it at T1
// (half the lease unless the server says otherwise), retries with backoff,
// and drops it when it expires. Every change of lease calls kick, after
// which the manager reconciles the address and route (state gives the
// lease). The runner never waits for the manager.
type dhcpRunner struct {
	name string
	mac  net.HardwareAddr
	dhcp DHCP
	clk  Clock
	log  *slog.Logger
	kick func()

	cancel context.CancelFunc
	done   chan struct{}
	client DHCPClient // set by run; read by stop once run has ended

	mu    sync.Mutex
	hint  netip.Addr // asked for in Request
	lease Lease
	bound bool
	keep  bool // no answer yet: the vmknic keeps the address it has
}

func newDHCPRunner(name string, mac net.HardwareAddr, hint netip.Addr, keep bool, m *Manager) *dhcpRunner {
	return &dhcpRunner{
		name: name, mac: mac, dhcp: m.dhcp, clk: m.clk, log: m.log.With("vmknic", name), kick: m.kick,
		hint: hint, keep: keep, done: make(chan struct{}),
	}
}

// state is the runner's entry for Runtime.Leases: ok is false while the
// vmknic should keep what it has.
func (r *dhcpRunner) state() (l Lease, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound {
		return r.lease, true
	}
	return Lease{}, !r.keep
}

func (r *dhcpRunner) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	go r.run(ctx)
}

// stop ends the runner; with release, the lease goes back to the server
// (the vmknic is removed, or changes MAC or mode); without, it stays with
// the kernel, which drops the address when it expires.
func (r *dhcpRunner) stop(release bool) {
	r.cancel()
	<-r.done
	if r.client == nil {
		return
	}
	if release && r.isBound() {
		if err := r.client.Release(); err != nil {
			r.log.Warn("dhcp release", "err", err)
		} else {
			r.log.Info("dhcp lease released")
		}
	}
	if err := r.client.Close(); err != nil {
		r.log.Warn("dhcp close", "err", err)
	}
}

// lastHint is the address the runner would ask for next.
func (r *dhcpRunner) lastHint() netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hint
}

func (r *dhcpRunner) isBound() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bound
}

func (r *dhcpRunner) run(ctx context.Context) {
	defer close(r.done)
	backoff := minBackoff
	wait := func() bool {
		ok := sleepUntil(ctx, r.clk, r.clk.Now().Add(backoff))
		backoff = min(2*backoff, maxBackoff)
		return ok
	}
	for {
		c, err := r.dhcp.Open(r.name, r.mac)
		if err == nil {
			r.client = c
			break
		}
		r.log.Warn("dhcp client", "err", err)
		if !wait() {
			return
		}
	}
	backoff = minBackoff
	var next time.Time // when to renew (or retry renewing)
	for {
		r.mu.Lock()
		lease, bound, hint := r.lease, r.bound, r.hint
		r.mu.Unlock()
		if !bound {
			l, err := r.client.Request(ctx, hint)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				r.log.Warn("dhcp request", "asked", hint, "err", err, "retry", backoff)
				if errors.Is(err, ErrNAK) {
					r.mu.Lock()
					r.hint = netip.Addr{}
					r.mu.Unlock()
				}
				if !wait() {
					return
				}
				continue
			}
			next, backoff = r.bind(l, "acquired").RenewAt(), minBackoff
			continue
		}
		if !sleepUntil(ctx, r.clk, next) {
			return
		}
		if !r.clk.Now().Before(lease.Expires()) {
			r.lose("lease expired")
			continue
		}
		l, err := r.client.Renew(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			next, backoff = r.bind(l, "renewed").RenewAt(), minBackoff
		case errors.Is(err, ErrNAK):
			r.lose("renewal refused")
		default:
			r.log.Warn("dhcp renew", "err", err, "retry", backoff, "expires", lease.Expires())
			next = r.clk.Now().Add(backoff)
			if e := lease.Expires(); next.After(e) {
				next = e
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

func (r *dhcpRunner) bind(l Lease, what string) Lease {
	l.Acquired = r.clk.Now()
	r.mu.Lock()
	r.lease, r.bound, r.keep, r.hint = l, true, false, l.Address.Addr()
	r.mu.Unlock()
	r.log.Info("dhcp lease "+what, "address", l.Address, "router", l.Router, "server", l.Server, "lease", l.Duration)
	r.kick()
	return l
}

func (r *dhcpRunner) lose(why string) {
	r.mu.Lock()
	r.lease, r.bound, r.keep = Lease{}, false, false
	r.mu.Unlock()
	r.log.Warn("dhcp lease lost: " + why)
	r.kick()
}
