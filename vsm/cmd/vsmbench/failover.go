package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// failoverResult is kill-active -> every VEM on the standby.
type failoverResult struct {
	NotMeasured string // why, when not measured
	VEMs, Veths int
	Join        time.Duration // VEMs started -> all on the active with their ports
	Active      time.Duration // active killed -> the standby says it is active
	AllBack     time.Duration // active killed -> every VEM acked the new active's full snapshot with all its ports
	Median      time.Duration // ... the median VEM
}

// haAvailable reports whether the daemon has an HA pair (-role, -peer).
func haAvailable(ctx context.Context, bin string) bool {
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	return bytes.Contains(out, []byte("-peer")) && bytes.Contains(out, []byte("-role"))
}

// benchFailover runs a primary and a secondary VSM with o.vems VEMs of
// o.veths vEths each on the primary, kills the primary (SIGKILL) and
// times the VEMs' move to the secondary.
func benchFailover(ctx context.Context, bin, work string, o options, log io.Writer) failoverResult {
	if !haAvailable(ctx, bin) {
		return failoverResult{NotMeasured: "Not measured: HA not implemented yet (the `vsm` daemon has no -role/-peer flags)."}
	}
	r, err := failoverRun(ctx, bin, work, o, log)
	if err != nil {
		return failoverResult{NotMeasured: "Not measured: the HA pair did not get through the run: " + err.Error()}
	}
	return r
}

func failoverRun(ctx context.Context, bin, work string, o options, log io.Writer) (failoverResult, error) {
	r := failoverResult{VEMs: o.vems, Veths: o.veths}
	a, err := newVSM(bin, filepath.Join(work, "ha-primary"), 0)
	if err != nil {
		return r, err
	}
	b, err := newVSM(bin, filepath.Join(work, "ha-secondary"), 0)
	if err != nil {
		return r, err
	}
	if err := b.useToken(a.token); err != nil {
		return r, err
	}
	peerA, err := freePort()
	if err != nil {
		return r, err
	}
	peerB, err := freePort()
	if err != nil {
		return r, err
	}
	a.extra = []string{"-role", "primary", "-peer-listen", peerA}
	b.extra = []string{"-role", "secondary", "-peer", peerA, "-peer-listen", peerB}

	// The primary alone first: profiles, then the bindings while it is
	// down (as in the sweep), then the pair.
	if err := a.start(ctx); err != nil {
		return r, err
	}
	defer a.kill()
	if err := a.waitState(ctx, "Active", time.Minute); err != nil {
		return r, err
	}
	if err := a.cli(ctx, switchConfig(o.profiles)...); err != nil {
		return r, err
	}
	if err := a.stop(); err != nil {
		return r, err
	}
	if _, err := seedState(a.state, o.vems, o.veths, o.profiles); err != nil {
		return r, err
	}
	if err := a.start(ctx); err != nil {
		return r, err
	}
	if err := b.start(ctx); err != nil {
		return r, err
	}
	defer b.stop()
	if err := a.waitState(ctx, "Active", time.Minute); err != nil {
		return r, err
	}
	if err := a.waitSynced(ctx, time.Minute); err != nil {
		return r, err
	}
	f, err := newFleet(ctx, a, o.vems)
	if err != nil {
		return r, err
	}
	defer f.stop()
	if n := len(f.vems[0].join.Opaque.VSMs); n != 2 {
		return r, fmt.Errorf("the join bundle lists %d VSMs, want the pair's 2", n)
	}
	t0 := time.Now()
	f.start(ctx)
	last, err := f.resynced(ctx, t0, func(int) int { return o.veths }, 3*time.Minute)
	if err != nil {
		return r, err
	}
	r.Join = last.Sub(t0)
	if err := a.waitSynced(ctx, time.Minute); err != nil {
		return r, err
	}
	sleep(ctx, 3*time.Second) // steady: heartbeats both ways, the standby in sync
	logf(log, "failover: %d VEMs on the primary, standby in sync; killing the primary", o.vems)

	t0 = time.Now()
	a.kill()
	active := make(chan time.Duration, 1)
	go func() {
		if b.waitState(ctx, "Active", 2*time.Minute) == nil {
			active <- time.Since(t0)
		}
		close(active)
	}()
	if _, err := f.resynced(ctx, t0, func(int) int { return o.veths }, 2*time.Minute); err != nil {
		return r, err
	}
	var ds durations
	for _, v := range f.vems {
		ds = append(ds, v.state().fullAt.Sub(t0))
	}
	r.AllBack, r.Median = ds.pct(100), ds.pct(50)
	r.Active = <-active
	logf(log, "failover: standby active after %v, every VEM on it after %v", r.Active.Round(time.Millisecond), r.AllBack.Round(time.Millisecond))
	return r, nil
}

// redundancy is `show system redundancy status` through the CLI API.
func (p *vsmProc) redundancy(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := p.c.VSMCLI(cctx, "show system redundancy status")
	if err != nil {
		return "", err
	}
	if res.Error != "" {
		return "", fmt.Errorf("show system redundancy status: %s", res.Error)
	}
	return res.Output, nil
}

// waitState waits until this supervisor's "Redundancy state" is state
// (Active or Standby).
func (p *vsmProc) waitState(ctx context.Context, state string, timeout time.Duration) error {
	return p.waitRedundancy(ctx, timeout, "redundancy state "+state, func(out string) bool {
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Redundancy state" {
				return strings.TrimSpace(v) == state
			}
		}
		return false
	})
}

// waitSynced waits until the active says its standby has every state
// revision ("HA synchronized").
func (p *vsmProc) waitSynced(ctx context.Context, timeout time.Duration) error {
	return p.waitRedundancy(ctx, timeout, "HA synchronized", func(out string) bool {
		return strings.Contains(out, "HA synchronized")
	})
}

func (p *vsmProc) waitRedundancy(ctx context.Context, timeout time.Duration, what string, ok func(string) bool) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		out, err := p.redundancy(ctx)
		if err == nil && ok(out) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = out
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v: %s", p.dir, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r results) failoverSection(b *strings.Builder) {
	f := r.Failover
	b.WriteString("### Failover\n\n")
	if f.NotMeasured != "" {
		fmt.Fprintf(b, "%s\n\n", f.NotMeasured)
		return
	}
	fmt.Fprintf(b, "A primary and a secondary VSM (`-role primary|secondary`, `-peer`), in sync, with %d VEMs × %d vEths on the primary "+
		"(bindings written before its start, as in the sweep; the VEMs' join bundles list both VSMs). The primary is killed (SIGKILL); the VEMs redial as vsmlink does.\n\n",
		f.VEMs, f.Veths)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(b, "| %d VEMs connect to the pair → all on the active with their vEths | %s |\n", f.VEMs, fmtDur(f.Join))
	fmt.Fprintf(b, "| primary killed → the secondary says it is active | %s |\n", fmtDurOr(f.Active, "—"))
	fmt.Fprintf(b, "| primary killed → median VEM acked the new active's full snapshot | %s |\n", fmtDur(f.Median))
	fmt.Fprintf(b, "| **primary killed → every VEM on the secondary with all its vEths** | **%s** |\n\n", fmtDur(f.AllBack))
	b.WriteString("The takeover waits for the peer dead interval (6 s without the active); meanwhile the VEMs redial every second (the standby answers `not_active`), " +
		"and once it is active each VEM's next hello is admitted, one at a time, each with a full snapshot.\n\n")
}
