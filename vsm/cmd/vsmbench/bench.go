package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// window is the VSM's usage over a measured stretch of steady state.
type window struct {
	Dur            time.Duration
	CPU            time.Duration
	RSSKiB, HWMKiB int64
	Threads        int
	HBSent, HBRecv uint64 // VEM -> VSM and VSM -> VEM heartbeats in the window
	Reports        uint64
	Drops          uint64 // VEM connections lost in the window
}

// CPUPercent is the VSM's CPU time over wall time, in % of one core.
func (w window) CPUPercent() float64 {
	if w.Dur <= 0 {
		return 0
	}
	return 100 * w.CPU.Seconds() / w.Dur.Seconds()
}

// PerHeartbeat is CPU time per heartbeat handled (received or sent).
func (w window) PerHeartbeat() time.Duration {
	if n := w.HBSent + w.HBRecv; n > 0 {
		return w.CPU / time.Duration(n)
	}
	return 0
}

// attachStep is one attach of the attach phase.
type attachStep struct {
	Done    time.Duration // since the phase started
	Latency time.Duration // attach sent -> attach-result
}

// attachResult is the attach phase of the chassis run.
type attachResult struct {
	Wanted, Done int
	Budget       time.Duration
	Elapsed      time.Duration // first attach -> last attach-result
	Programmed   time.Duration // first attach -> every attached port in its VEM's programming
	Steps        []attachStep  // in completion order
	Errors       int
	FirstError   string
}

// propResult is one port-profile change.
type propResult struct {
	What                string
	Ports, VEMs         int
	CLI                 time.Duration // the CLI request's round trip
	First, Median, Last time.Duration // change sent -> a VEM acked a config with it
	Drops               uint64        // VEM connections lost meanwhile
}

// chassisResult is the run at the chassis limit.
type chassisResult struct {
	VEMs, Veths, Profiles int
	IdleRSSKiB            int64         // configured, no VEM
	Join                  time.Duration // VEMs started -> all welcomed with their snapshot acked
	JoinedRSSKiB          int64
	Attach                attachResult
	AttachedRSSKiB        int64
	Seeded                int           // ports bound in the state file instead
	APIReady              time.Duration // restart: process start -> API answers
	Restart               time.Duration // restart: process start -> every VEM resynced with all its ports
	Heartbeats, Reports   window
	Props                 []propResult
	FinalRSSKiB, HWMKiB   int64
}

// sweepPoint is one size of the scale sweep.
type sweepPoint struct {
	VEMs, Veths int
	IdleRSSKiB  int64
	Bundles     time.Duration // issuing the join bundles
	Join        time.Duration // VEMs started -> all resynced
	Steady      window
	Attach      time.Duration // one attach -> the port in its VEM's programming
	AttachBusy  time.Duration // one attach -> the VSM answers a CLI show again (its push done)
	AttachDrops uint64        // VEM connections lost during it
	AttachErr   string
	// After a VSM restart every VEM redials at once: Storm is until the
	// last one resynced (0: not within StormTimeout), StormIn how many
	// did, StormWelcomes the admissions it took (VEMs give up a welcome
	// that takes over 10 s and redial).
	Storm, StormTimeout time.Duration
	StormIn             int
	StormWelcomes       uint64
	StopNote            string // the VSM did not stop on SIGTERM in time
	HWMKiB              int64
	JoinErr, Failed     string
}

// results is everything the report shows.
type results struct {
	Start, End         time.Time
	Machine            string
	Cores              int
	LoadStart, LoadEnd string
	QEMUStart, QEMUEnd int // qemu-system processes of other work running
	Opts               options
	Chassis            *chassisResult
	Sweep              []sweepPoint
	Failover           failoverResult
}

func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// benchChassis is the run at the chassis limit: o.vems VEMs with o.veths
// vEths each.
func benchChassis(ctx context.Context, bin, work string, o options, log io.Writer) (*chassisResult, error) {
	r := &chassisResult{VEMs: o.vems, Veths: o.veths, Profiles: o.profiles}
	p, err := newVSM(bin, filepath.Join(work, "chassis"), 0)
	if err != nil {
		return nil, err
	}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	defer p.stop()
	if err := p.cli(ctx, switchConfig(o.profiles)...); err != nil {
		return nil, err
	}
	f, err := newFleet(ctx, p, o.vems)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	u, err := p.usage()
	if err != nil {
		return nil, err
	}
	r.IdleRSSKiB = u.RSSKiB

	// Join: every VEM connects at once (a VSM coming up with its hosts).
	t0 := time.Now()
	f.start(ctx)
	last, err := f.resynced(ctx, t0, func(int) int { return 0 }, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	r.Join = last.Sub(t0)
	logf(log, "chassis: %d VEMs joined in %v", o.vems, r.Join.Round(time.Millisecond))
	if u, err = p.usage(); err != nil {
		return nil, err
	}
	r.JoinedRSSKiB = u.RSSKiB

	// Attach: every VEM asks for its vEths one after the other, all VEMs
	// at once, until done or the budget is spent.
	r.Attach = attachAll(ctx, f, o)
	logf(log, "chassis: %d of %d vEths attached in %v (%d errors)", r.Attach.Done, r.Attach.Wanted, r.Attach.Elapsed.Round(time.Millisecond), r.Attach.Errors)
	if u, err = p.usage(); err != nil {
		return nil, err
	}
	r.AttachedRSSKiB = u.RSSKiB

	// Restart the VSM with every vEth bound: those the attach phase did
	// not reach are written to its port bindings while it is down.
	if err := p.stop(); err != nil {
		return nil, err
	}
	if r.Seeded, err = seedState(p.state, o.vems, o.veths, o.profiles); err != nil {
		return nil, fmt.Errorf("seed the port bindings: %w", err)
	}
	t0 = time.Now()
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	r.APIReady = time.Since(t0)
	last, err = f.resynced(ctx, t0, func(int) int { return o.veths }, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	r.Restart = last.Sub(t0)
	logf(log, "chassis: restarted with %d vEths (%d seeded); every VEM resynced after %v", o.vems*o.veths, r.Seeded, r.Restart.Round(time.Millisecond))

	// Steady state: heartbeats only, then with port reports too.
	f.reports.Store(false)
	sleep(ctx, 3*time.Second)
	if r.Heartbeats, err = measure(ctx, p, f, o.steady); err != nil {
		return nil, err
	}
	logf(log, "chassis: heartbeats only: %.2f%% CPU, RSS %d KiB", r.Heartbeats.CPUPercent(), r.Heartbeats.RSSKiB)
	f.reports.Store(true)
	if r.Reports, err = measure(ctx, p, f, o.steady); err != nil {
		return nil, err
	}
	logf(log, "chassis: with port reports: %.2f%% CPU, RSS %d KiB", r.Reports.CPUPercent(), r.Reports.RSSKiB)

	// Profile changes.
	one := profileName(min(1, o.profiles-1))
	k1 := min(1, o.profiles-1)
	pr, err := propagate(ctx, p, f, fmt.Sprintf("`switchport access vlan` of one profile (%s)", one), o.vems*countOn(o.veths, o.profiles, k1),
		[]string{"configure terminal", "port-profile type vethernet " + one, fmt.Sprintf("switchport access vlan %d", changeVLAN+k1), "end"},
		func(pp map[string]api.PortProfile) bool { return pp[one].AccessVLAN == changeVLAN+k1 })
	if err != nil {
		return nil, err
	}
	r.Props = append(r.Props, pr)
	lines := []string{"configure terminal"}
	for k := range o.profiles {
		lines = append(lines, "port-profile type vethernet "+profileName(k), fmt.Sprintf("switchport access vlan %d", allVLAN+k))
	}
	pr, err = propagate(ctx, p, f, fmt.Sprintf("`switchport access vlan` of all %d profiles, one CLI request", o.profiles), o.vems*o.veths,
		append(lines, "end"),
		func(pp map[string]api.PortProfile) bool {
			for k := range o.profiles {
				if pp[profileName(k)].AccessVLAN != allVLAN+k {
					return false
				}
			}
			return true
		})
	if err != nil {
		return nil, err
	}
	r.Props = append(r.Props, pr)
	if u, err = p.usage(); err != nil {
		return nil, err
	}
	r.FinalRSSKiB, r.HWMKiB = u.RSSKiB, u.HWMKiB
	return r, nil
}

// countOn is how many of veths vEths use profile k (i mod profiles).
func countOn(veths, profiles, k int) int {
	n := veths / profiles
	if k < veths%profiles {
		n++
	}
	return n
}

// attachAll attaches o.veths vEths on every VEM within o.attachBudget.
// A failed attach (the VEM lost its connection, say) is retried after a
// second, up to five failures per VEM.
func attachAll(ctx context.Context, f *fleet, o options) attachResult {
	r := attachResult{Wanted: len(f.vems) * o.veths, Budget: o.attachBudget}
	var mu sync.Mutex
	var wg sync.WaitGroup
	attached := make([]int, len(f.vems))
	t0 := time.Now()
	stop := t0.Add(o.attachBudget)
	for _, v := range f.vems {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fails := 0
			for attached[v.idx] < o.veths && fails < 5 && time.Now().Before(stop) && ctx.Err() == nil {
				i := attached[v.idx]
				s := time.Now()
				_, err := v.attach(ctx, api.VSMAttachBody{
					Owner: owner(v.idx, i), Profile: profileName(i % o.profiles), MAC: mac(v.idx, i),
					Description: fmt.Sprintf("bench-%d-%d", v.idx, i),
				}, 5*time.Minute)
				mu.Lock()
				if err != nil {
					r.Errors++
					if r.FirstError == "" {
						r.FirstError = fmt.Sprintf("VEM %d vEth %d: %v", v.idx, i, err)
					}
				} else {
					r.Steps = append(r.Steps, attachStep{Done: time.Since(t0), Latency: time.Since(s)})
				}
				mu.Unlock()
				if err != nil {
					fails++
					sleep(ctx, time.Second)
					continue
				}
				attached[v.idx]++
			}
		}()
	}
	wg.Wait()
	r.Done = len(r.Steps)
	slices.SortFunc(r.Steps, func(a, b attachStep) int { return int(a.Done - b.Done) })
	if r.Done > 0 {
		r.Elapsed = r.Steps[r.Done-1].Done
	}
	// Programmed: every VEM's copy holds the ports it was given.
	if f.waitAll(ctx, 5*time.Minute, "attached ports programmed", func(v *simVEM, s vemState) bool { return s.ports >= attached[v.idx] }) == nil {
		r.Programmed = time.Since(t0)
	}
	return r
}

// measure samples the VSM's usage over d.
func measure(ctx context.Context, p *vsmProc, f *fleet, d time.Duration) (window, error) {
	u0, err := p.usage()
	if err != nil {
		return window{}, err
	}
	s0, r0, rep0, dr0 := f.stats.hbSent.Load(), f.stats.hbRecv.Load(), f.stats.reports.Load(), f.stats.dropped.Load()
	sleep(ctx, d)
	u1, err := p.usage()
	if err != nil {
		return window{}, err
	}
	return window{
		Dur: u1.At.Sub(u0.At), CPU: u1.CPU - u0.CPU, RSSKiB: u1.RSSKiB, HWMKiB: u1.HWMKiB, Threads: u1.Threads,
		HBSent: f.stats.hbSent.Load() - s0, HBRecv: f.stats.hbRecv.Load() - r0,
		Reports: f.stats.reports.Load() - rep0, Drops: f.stats.dropped.Load() - dr0,
	}, ctx.Err()
}

// cliRunner runs CLI lines on a VSM (*vsmProc through its API).
type cliRunner interface {
	cli(ctx context.Context, lines ...string) error
}

// propagate runs a CLI change and times it until every VEM acked a
// config for which ok holds.
func propagate(ctx context.Context, p cliRunner, f *fleet, what string, nports int, lines []string, ok func(map[string]api.PortProfile) bool) (propResult, error) {
	r := propResult{What: what, Ports: nports, VEMs: len(f.vems)}
	for _, v := range f.vems {
		v.setWatch(ok)
	}
	dr0 := f.stats.dropped.Load()
	t0 := time.Now()
	if err := p.cli(ctx, lines...); err != nil {
		return r, err
	}
	r.CLI = time.Since(t0)
	if err := f.waitAll(ctx, 3*time.Minute, what, func(_ *simVEM, s vemState) bool { return !s.watchAt.IsZero() }); err != nil {
		return r, err
	}
	var ds durations
	for _, v := range f.vems {
		ds = append(ds, v.state().watchAt.Sub(t0))
	}
	r.First, r.Median, r.Last = ds.pct(0), ds.pct(50), ds.pct(100)
	r.Drops = f.stats.dropped.Load() - dr0
	return r, nil
}

// benchSweep runs one size of the scale sweep: n VEMs with o.sweepVeths
// vEths each, bound in the state before the VSM starts. The VEMs join in
// waves of 64; then a steady-state window, one attach, and a VSM
// restart that brings every VEM back at once.
func benchSweep(ctx context.Context, bin, work string, n int, o options, log io.Writer) (sweepPoint, error) {
	parent := ctx
	r := sweepPoint{VEMs: n, Veths: o.sweepVeths}
	dir := filepath.Join(work, fmt.Sprintf("sweep-%d", n))
	p, err := newVSM(bin, dir, max(api.VSMSlots, api.VSMFirstVEMSlot+n-1))
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	// Profiles first (an uplink profile cannot become one while ports use
	// it), then the bindings while the VSM is down, then the real start.
	if err := p.start(ctx); err != nil {
		return r, err
	}
	defer p.stop()
	if err := p.cli(ctx, switchConfig(o.profiles)...); err != nil {
		return r, err
	}
	if err := p.stop(); err != nil {
		return r, err
	}
	if _, err := seedState(p.state, n, o.sweepVeths, o.profiles); err != nil {
		return r, err
	}
	if err := p.start(ctx); err != nil {
		return r, err
	}
	t0 := time.Now()
	f, err := newFleet(ctx, p, n)
	if err != nil {
		return r, err
	}
	defer f.stop()
	r.Bundles = time.Since(t0)
	u, err := p.usage()
	if err != nil {
		return r, err
	}
	r.IdleRSSKiB = u.RSSKiB

	extra := -1 // the VEM with one more vEth, after the attach
	want := func(m int) int {
		if m == extra {
			return o.sweepVeths + 1
		}
		return o.sweepVeths
	}
	t0 = time.Now()
	last, err := f.joinInWaves(ctx, joinWave, want, time.Minute)
	if err != nil {
		r.JoinErr = err.Error()
		u, _ := p.usage()
		r.HWMKiB = u.HWMKiB
		return r, nil
	}
	r.Join = last.Sub(t0)
	logf(log, "sweep %d: joined in %v", n, r.Join.Round(time.Millisecond))
	sleep(ctx, 2*time.Second)
	if r.Steady, err = measure(ctx, p, f, o.sweepSteady); err != nil {
		return r, err
	}
	logf(log, "sweep %d: %.2f%% CPU, RSS %d KiB", n, r.Steady.CPUPercent(), r.Steady.RSSKiB)

	// One more attach: until it is in its VEM's programming, and until
	// the VSM answers again (its push to every module done: a CLI show
	// needs the lock the push holds).
	if o.sweepAttach {
		ctx, cancel := context.WithTimeout(ctx, attachSampleTimeout)
		defer cancel()
		v := f.vems[n/2]
		dr0 := f.stats.dropped.Load()
		t0 = time.Now()
		before := v.state().ports
		_, err := v.attach(ctx, api.VSMAttachBody{Owner: owner(v.idx, o.sweepVeths), Profile: profileName(0), MAC: mac(v.idx, o.sweepVeths)}, attachSampleTimeout)
		if err == nil {
			extra = v.idx
			if err = p.cli(ctx, "show running-config"); err == nil {
				r.AttachBusy = time.Since(t0)
				err = waitFor(ctx, []*simVEM{v}, attachSampleTimeout, "attached port programmed", func(_ *simVEM, s vemState) bool { return s.ports > before })
			}
		}
		cancel()
		sleep(parent, 2*time.Second) // VEMs that gave up during the push have noticed
		r.AttachDrops = f.stats.dropped.Load() - dr0
		if err != nil {
			if parent.Err() != nil {
				return r, parent.Err()
			}
			r.AttachErr = fmt.Sprintf("not done after %s", fmtDur(time.Since(t0)))
			logf(log, "sweep %d: one attach: %v (%d VEM connections dropped)", n, err, r.AttachDrops)
		} else {
			r.Attach = v.state().lastPortAt.Sub(t0)
			logf(log, "sweep %d: one attach: VSM busy %v, programmed after %v (%d VEM connections dropped)", n,
				r.AttachBusy.Round(time.Millisecond), r.Attach.Round(time.Millisecond), r.AttachDrops)
		}
	}
	if u, err = p.usage(); err != nil {
		return r, err
	}
	r.HWMKiB = u.HWMKiB

	// Every VEM at once: the VSM restarts and they all redial.
	if err := p.stop(); err != nil {
		r.StopNote = err.Error() // killed after all: go on
	}
	w0 := f.stats.welcomes.Load()
	t0 = time.Now()
	if err := p.start(ctx); err != nil {
		return r, err
	}
	if last, err := f.resynced(ctx, t0, want, o.stormTimeout); err != nil {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.StormIn = f.countInSync(t0, want)
	} else {
		r.Storm, r.StormIn = last.Sub(t0), n
	}
	r.StormWelcomes = f.stats.welcomes.Load() - w0
	r.StormTimeout = o.stormTimeout
	logf(log, "sweep %d: after a VSM restart %d of %d VEMs back in %v (%d admissions)", n, r.StormIn, n, r.Storm.Round(time.Millisecond), r.StormWelcomes)
	return r, nil
}

// joinWave is how many VEMs of the sweep join at a time.
const joinWave = 64

// attachSampleTimeout bounds the sweep's one attach (until the VSM
// answers again and the VEM has the port).
const attachSampleTimeout = time.Minute

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
