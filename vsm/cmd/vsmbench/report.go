package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/internal/benchdoc"
)

// The section of docs/benchmarks.md this command owns; the markers are
// internal/benchdoc's, as for fvbench's sections.
const (
	sectionID    = "vsm-scale"
	sectionTitle = "VSM scale"
)

// section renders the results as the body of the "VSM scale" section.
func (r results) section() string {
	var b strings.Builder
	o := r.Opts
	fmt.Fprintf(&b, "Measured %s by `make bench` (this section alone: `go run ./qemu-test/cmd/fvbench -only vsm`, or `go run ./vsm/cmd/vsmbench`) on: %s. ",
		r.Start.UTC().Format("2006-01-02"), r.Machine)
	fmt.Fprintf(&b, "1/5/15-minute load average %s at the start, %s at the end (%d cores)", r.LoadStart, r.LoadEnd, r.Cores)
	if r.QEMUStart+r.QEMUEnd > 0 {
		fmt.Fprintf(&b, "; %d QEMU processes of other work were running at the start, %d at the end", r.QEMUStart, r.QEMUEnd)
	}
	if loaded(r.LoadStart, r.Cores) || loaded(r.LoadEnd, r.Cores) || r.QEMUStart+r.QEMUEnd > 0 {
		b.WriteString(": the machine was shared with other work during the run, so CPU figures are upper bounds and times are longer than on an idle machine")
	}
	fmt.Fprintf(&b, ". The whole run took %s.\n\n", fmtDur(r.End.Sub(r.Start)))

	b.WriteString("Method. The VSM daemon (`vsm/cmd/vsm`, built with `go build`) runs alone in its own process, with a fresh state directory and loopback ports; " +
		"its memory is `VmRSS`/`VmHWM` of `/proc/PID/status` and its CPU `utime + stime` of `/proc/PID/stat`. " +
		"The VEMs are simulated in the benchmark process: each has its own join bundle (client certificate) from `POST /api/v1/join` and speaks the real control protocol over TLS " +
		"as `vem/vsmlink` does: hello, heartbeats every 2 s on its own timer, every config applied to an in-memory copy and acked (or a resync asked for), " +
		"a port report (every port with counters, the vEths' MACs) every 10 s and after each applied config, attach requests; no kernel is programmed. " +
		"Like vsmlink, a simulated VEM drops its connection when the VSM is silent for 8 s, gives up a welcome after 10 s, and redials the VSMs of its opaque data in turn " +
		"(the one it just lost last) after 1 s, doubling to 10 s (staying at 1 s while a standby answers `not_active`). " +
		fmt.Sprintf("Port profiles come from the CLI API (`POST /api/v1/cli`): an uplink profile (each VEM gives it eth1) and %d vethernet profiles with `max-ports 4096` "+
			"(the most the VSM allows; the default is 32); vEth *i* uses profile *i* mod %d; owners are `vm:bench-<m>-<i>/nic0`.\n\n", o.profiles, o.profiles))

	if c := r.Chassis; c != nil {
		r.chassisSection(&b, c)
	}
	if len(r.Sweep) > 0 {
		r.sweepSection(&b)
	}
	if o.only == "failover" || o.only == "all" {
		r.failoverSection(&b)
	}
	if c := r.Chassis; c != nil || len(r.Sweep) > 0 {
		b.WriteString(findings)
	}
	fmt.Fprintf(&b, "Rerun: `make bench` (everything), `go run ./qemu-test/cmd/fvbench -only vsm` or `go run ./vsm/cmd/vsmbench` (this section; `-h` lists the sizes and windows, "+
		"`-only chassis|sweep|failover`, `-out -` prints instead of writing). About 10 minutes on 2 cores; nothing needs root.\n\n")
	return b.String()
}

// findings explains the figures from the code that produces them.
const findings = "### Where the cost is\n\n" +
	"Heartbeats are cheap: each is a small JSON line on a connection the VSM already has, and the domain check every VEM message gets reads an atomic copy " +
	"of the domain ID rather than taking the VSM's one lock (`Server.mu`). An attach or detach holds that lock for the change: it checks the new binding " +
	"against the others (one pass over the domain's bindings), appends one synced line to `ports.json.journal` (the whole `ports.json` is rewritten only every " +
	"4,096 changes), and renders and sends a delta to the one or two modules the vEth was or is on, whose ports it finds by filtering the bindings before sorting " +
	"that module's few. What still grows with the switch: a configuration change (a profile edit) renders every connected module, a connecting VEM's snapshot " +
	"costs its own ports, and an HA pair's standby gets the whole replicated state after each change (encoded outside the lock). When anything holds the lock " +
	"longer than the 8 s dead interval, the VEMs (real and simulated) give the connection up and reconnect, and every reconnect is another snapshot under the lock: " +
	"the column of lost connections shows where that starts. Steady-state memory per VEM and the heartbeat CPU are far from any limit; the peaks (VmHWM) come from " +
	"reconnect storms, where every admission renders and queues a full snapshot, also for connections the VEM has already given up (the VSM VM has 384 MiB by default).\n\n"

func (r results) chassisSection(b *strings.Builder, c *chassisResult) {
	fmt.Fprintf(b, "### At the chassis limit: %d VEMs × %d vEths (%s ports)\n\n", c.VEMs, c.Veths, thousands(c.VEMs*c.Veths))
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(b, "| VSM resident (VmRSS), configured, no VEM | %s |\n", mib(c.IdleRSSKiB))
	fmt.Fprintf(b, "| %d VEMs connect at once → every one welcomed, its snapshot applied and acked | %s (VmRSS then %s) |\n", c.VEMs, fmtDur(c.Join), mib(c.JoinedRSSKiB))
	a := c.Attach
	fmt.Fprintf(b, "| attach phase (all VEMs at once, each one vEth after the other, %s budget) | %s of %s vEths attached in %s; all in their VEMs' programming after %s |\n",
		fmtDur(a.Budget), thousands(a.Done), thousands(a.Wanted), fmtDur(a.Elapsed), fmtDurOr(a.Programmed, "—"))
	if a.Errors > 0 {
		fmt.Fprintf(b, "| attach errors | %d (first: %s) |\n", a.Errors, mdEscape(a.FirstError))
	}
	if len(a.Steps) > 0 {
		slow := 0
		for _, s := range a.Steps {
			if s.Latency > vsmlinkAttachTimeout {
				slow++
			}
		}
		fmt.Fprintf(b, "| attaches slower than the real VEM's 10 s attach timeout | %s of %s |\n", thousands(slow), thousands(len(a.Steps)))
	}
	fmt.Fprintf(b, "| VmRSS after the attach phase | %s |\n", mib(c.AttachedRSSKiB))
	if c.Seeded > 0 {
		fmt.Fprintf(b, "| vEths not attached within the budget, bound in the stopped VSM's state instead (so the restart loads a full switch) | %s |\n", thousands(c.Seeded))
	}
	fmt.Fprintf(b, "| VSM restarted with all %s vEths: process start → API answers | %s |\n", thousands(c.VEMs*c.Veths), fmtDur(c.APIReady))
	fmt.Fprintf(b, "| … → every VEM reconnected and acked a full snapshot with its %d vEths (includes the VEMs' 1 s redial backoff) | %s |\n", c.Veths, fmtDur(c.Restart))
	fmt.Fprintf(b, "| VmHWM (peak resident) over the run | %s |\n\n", mib(c.HWMKiB))

	if len(a.Steps) > 0 {
		b.WriteString("Attach as the switch fills up (attach sent → attach-result; the VSM serves one at a time, so latency is about the VEMs waiting × the cost of one):\n\n")
		b.WriteString("| vEths bound | attaches/s | median latency | max latency |\n|---|---|---|---|\n")
		bs := buckets(a.Steps, 8)
		for _, bk := range bs {
			fmt.Fprintf(b, "| %s–%s | %.1f | %s | %s |\n", thousands(bk.from), thousands(bk.to), bk.rate, fmtDur(bk.median), fmtDur(bk.max))
		}
		if one, all, ok := extrapolate(bs[len(bs)-1], a.Wanted); ok && a.Done < a.Wanted {
			fmt.Fprintf(b, "\nIf the time one attach holds the VSM grew linearly with the vEths bound (the last row: %s per attach at about %s), "+
				"it would be about **%s per attach** with all %s bound, and **%s** to attach them all one by one (a linear extrapolation, an upper bound).\n",
				fmtDur(time.Duration(float64(time.Second)/bs[len(bs)-1].rate)), thousands((bs[len(bs)-1].from+bs[len(bs)-1].to)/2),
				fmtDur(one), thousands(a.Wanted), fmtHours(all))
		}
		b.WriteString("\n")
	}

	h, rp := c.Heartbeats, c.Reports
	fmt.Fprintf(b, "Steady state with all %s vEths bound, %s windows:\n\n", thousands(c.VEMs*c.Veths), fmtDur(r.Opts.steady))
	b.WriteString("| | heartbeats only | heartbeats + port reports every 10 s |\n|---|---|---|\n")
	fmt.Fprintf(b, "| VSM CPU, %% of one core | %.2f %% | %.2f %% |\n", h.CPUPercent(), rp.CPUPercent())
	fmt.Fprintf(b, "| heartbeats handled (VEM→VSM + VSM→VEM) per second | %.0f | %.0f |\n", perSec(h.HBSent+h.HBRecv, h.Dur), perSec(rp.HBSent+rp.HBRecv, rp.Dur))
	fmt.Fprintf(b, "| **VSM CPU per heartbeat** (all CPU of the window / heartbeats) | **%s** | — |\n", fmtDur(h.PerHeartbeat()))
	fmt.Fprintf(b, "| port reports received | — | %d (%.1f/s, %d ports each) |\n", rp.Reports, perSec(rp.Reports, rp.Dur), c.Veths+1)
	fmt.Fprintf(b, "| VmRSS at the end of the window | %s | %s |\n", mib(h.RSSKiB), mib(rp.RSSKiB))
	fmt.Fprintf(b, "| threads | %d | %d |\n", h.Threads, rp.Threads)
	fmt.Fprintf(b, "| VEM connections lost | %d | %d |\n\n", h.Drops, rp.Drops)
	b.WriteString("The heartbeat column's CPU also holds the VSM's 1 s dead-VEM sweep and the Go runtime's own work (GC, timers): it is an upper bound for heartbeats.\n\n")

	if len(c.Props) > 0 {
		b.WriteString("Port-profile change → every VEM (CLI request sent → each VEM acked a config carrying the new VLAN; the VSM sends every enabled profile to every module, so all VEMs get it):\n\n")
		b.WriteString("| change | ports on it | CLI request | first VEM | median | last VEM | VEM connections lost |\n|---|---|---|---|---|---|---|\n")
		for _, p := range c.Props {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %d |\n", p.What, thousands(p.Ports), fmtDur(p.CLI), fmtDur(p.First), fmtDur(p.Median), fmtDur(p.Last), p.Drops)
		}
		fmt.Fprintf(b, "\nOne profile cannot carry all %s ports: `max-ports` is at most 4,096, as on the Nexus 1000V, so the all-ports case changes all %d profiles in one CLI request (one configuration change, and one push, per line).\n\n",
			thousands(c.VEMs*c.Veths), c.Profiles)
	}
}

func (r results) sweepSection(b *strings.Builder) {
	o := r.Opts
	fmt.Fprintf(b, "### Scale sweep: past the chassis (%d vEths per VEM)\n\n", o.sweepVeths)
	b.WriteString("The chassis has 66 slots (64 VEMs); here the daemon's benchmark-only `-max-slot` flag raises it. Each size starts a fresh VSM whose state already binds " +
		"every host to a slot and every vEth to its host (written before the start, as a restarted VSM would load it, which keeps the sweep about joins and steady state; the chassis section above measures the attach path). " +
		fmt.Sprintf("*Join*: the VEMs connect %d at a time, each wave once the one before is in, until the last acked its full snapshot with its vEths. ", joinWave) +
		fmt.Sprintf("*Steady*: a %s window with heartbeats and port reports. *One attach*: one more vEth on one VEM, until the VSM answers a CLI `show` again "+
			"(the show waits for the lock the attach's push to every module holds; the VEM itself may get its port earlier, as the push reaches modules in no set order). ", fmtDur(o.sweepSteady)) +
		"*All at once*: the VSM is restarted and every VEM redials at the same time (a VSM reboot, or a failover); until the last one resynced, with the number of admissions it took " +
		"(a VEM gives up a welcome that takes over 10 s and redials, like vsmlink).\n\n")
	b.WriteString("| VEMs | vEths | join (waves) | VmRSS before VEMs | VmRSS steady | VmHWM | CPU steady, % of a core | heartbeats/s | one attach (VSM busy) | connections lost in it | all at once after a VSM restart |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Sweep {
		switch {
		case p.Failed != "":
			fmt.Fprintf(b, "| %s | %s | failed: %s | | | | | | | | |\n", thousands(p.VEMs), thousands(p.VEMs*p.Veths), mdEscape(p.Failed))
			continue
		case p.JoinErr != "":
			fmt.Fprintf(b, "| %s | %s | not all in: %s | %s | | %s | | | | | |\n", thousands(p.VEMs), thousands(p.VEMs*p.Veths), mdEscape(p.JoinErr), mib(p.IdleRSSKiB), mib(p.HWMKiB))
			continue
		}
		attach := fmtDur(p.AttachBusy)
		if p.AttachErr != "" {
			attach = "failed: " + mdEscape(p.AttachErr)
		} else if !o.sweepAttach {
			attach = "—"
		}
		storm := fmt.Sprintf("%s (%s admissions)", fmtDur(p.Storm), thousands(int(p.StormWelcomes)))
		if p.StormIn < p.VEMs {
			storm = fmt.Sprintf("**%s of %s in after %s** (%s admissions)", thousands(p.StormIn), thousands(p.VEMs), fmtDur(p.StormTimeout), thousands(int(p.StormWelcomes)))
		}
		if p.StopNote != "" {
			storm += "; the VSM did not stop on SIGTERM within 10 s (killed)"
		}
		s := p.Steady
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %.2f %% | %.0f | %s | %d | %s |\n", thousands(p.VEMs), thousands(p.VEMs*p.Veths), fmtDur(p.Join),
			mib(p.IdleRSSKiB), mib(s.RSSKiB), mib(p.HWMKiB), s.CPUPercent(), perSec(s.HBSent+s.HBRecv, s.Dur), attach, p.AttachDrops, storm)
	}
	if per, ok := perVEM(r.Sweep); ok {
		fmt.Fprintf(b, "\nVmRSS grows by about %s per connected VEM with %d vEths (steady VmRSS, first to last size).\n", kib(per), o.sweepVeths)
	}
	b.WriteString("\n")
}

// perVEM is the steady RSS slope between the smallest and largest size
// that completed.
func perVEM(pts []sweepPoint) (float64, bool) {
	var ok []sweepPoint
	for _, p := range pts {
		if p.Failed == "" && p.JoinErr == "" && p.Steady.RSSKiB > 0 {
			ok = append(ok, p)
		}
	}
	if len(ok) < 2 || ok[len(ok)-1].VEMs == ok[0].VEMs {
		return 0, false
	}
	a, z := ok[0], ok[len(ok)-1]
	return float64(z.Steady.RSSKiB-a.Steady.RSSKiB) / float64(z.VEMs-a.VEMs), true
}

type bucket struct {
	from, to    int
	rate        float64
	median, max time.Duration
}

// buckets splits completed attaches (in completion order) into n groups
// of equal count.
func buckets(steps []attachStep, n int) []bucket {
	var out []bucket
	n = min(n, len(steps))
	for k := range n {
		lo, hi := k*len(steps)/n, (k+1)*len(steps)/n
		if hi <= lo {
			continue
		}
		var ds durations
		for _, s := range steps[lo:hi] {
			ds = append(ds, s.Latency)
		}
		start := time.Duration(0)
		if lo > 0 {
			start = steps[lo-1].Done
		}
		bk := bucket{from: lo + 1, to: hi, median: ds.pct(50), max: ds.pct(100)}
		if d := steps[hi-1].Done - start; d > 0 {
			bk.rate = float64(hi-lo) / d.Seconds()
		}
		out = append(out, bk)
	}
	return out
}

// extrapolate takes a bucket's service time (1 / its rate) as linear in
// the vEths bound and returns the service time at n and the sum over 1..n.
func extrapolate(last bucket, n int) (one, all time.Duration, ok bool) {
	mid := float64(last.from+last.to) / 2
	if last.rate <= 0 || mid <= 0 {
		return 0, 0, false
	}
	perPort := 1 / last.rate / mid // seconds per attach per vEth bound
	one = time.Duration(perPort * float64(n) * float64(time.Second))
	all = time.Duration(perPort * float64(n) * float64(n+1) / 2 * float64(time.Second))
	return one, all, true
}

func fmtHours(d time.Duration) string {
	if d >= time.Hour {
		return fmt.Sprintf("%.1f hours", d.Hours())
	}
	return fmtDur(d)
}

func perSec(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func mib(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }

func kib(k float64) string {
	if k >= 1024 {
		return fmt.Sprintf("%.2f MiB", k/1024)
	}
	return fmt.Sprintf("%.0f KiB", k)
}

// fmtDur renders a duration with a precision that suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

func fmtDurOr(d time.Duration, none string) string {
	if d <= 0 {
		return none
	}
	return fmtDur(d)
}

// thousands writes n with comma separators: 16384 -> "16,384".
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// mdEscape keeps an error message on one table cell.
func mdEscape(s string) string {
	s = strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// loadavg is "1 / 5 / 15" from /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " / ")
}

// qemuProcesses counts running qemu-system-* processes (other tests: the
// benchmark runs none).
func qemuProcesses() int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	n := 0
	for _, c := range comms {
		if b, err := os.ReadFile(c); err == nil && strings.HasPrefix(string(b), "qemu-system") {
			n++
		}
	}
	return n
}

// loaded reports whether a loadavg string's 1- or 5-minute figure is at
// least half the cores: other work then competes with the benchmark.
func loaded(la string, cores int) bool {
	var a, b float64
	if _, err := fmt.Sscanf(la, "%g / %g", &a, &b); err != nil {
		return false
	}
	return max(a, b) >= float64(cores)/2
}

// machine describes where the figures come from.
func machine() string {
	kernel := "Linux ?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %s, %s", benchdoc.Machine(), kernel, runtime.Version())
}

// updateSection writes our section of docs/benchmarks.md (the markers
// fvbench uses for its sections too).
func updateSection(path, id, title, body string) error {
	return benchdoc.UpdateSection(path, id, title, body)
}
