package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseArgs(nil) = %v", err)
	}
	if o.vems != 64 || o.veths != 256 || o.profiles != 4 || o.only != "all" || len(o.sweep) != 5 || o.sweep[4] != 1000 || o.out != "docs/benchmarks.md" {
		t.Errorf("parseArgs(nil) = %+v, want 64 VEMs x 256 vEths, 4 profiles, sweep to 1000, docs/benchmarks.md", o)
	}
	for _, tc := range []struct {
		args []string
		want string // in the error; "" = ok
	}{
		{[]string{"-only", "sweep", "-sweep", "8, 16"}, ""},
		{[]string{"-only", "failover", "-vems", "8", "-veths", "32"}, ""},
		{[]string{"-only", "nope"}, "-only"},
		{[]string{"-sweep", "64,x"}, "-sweep"},
		{[]string{"-sweep", "0"}, "-sweep"},
		{[]string{"-vems", "65"}, "-vems 65"},
		{[]string{"-veths", "0"}, "-veths 0"},
		{[]string{"-profiles", "33"}, "-profiles 33"},
		{[]string{"-profiles", "2"}, "max-ports"},                   // 16,384 vEths on 2 profiles
		{[]string{"-sweep", "1000", "-sweep-veths", "20"}, "sweep"}, // 20,001 on 4
		{[]string{"-steady", "0s"}, "-steady"},
		{[]string{"extra"}, "unexpected"},
	} {
		_, err := parseArgs(tc.args, &bytes.Buffer{})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("parseArgs(%q) = %v, want ok", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("parseArgs(%q) = %v, want an error about %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-sweep") {
		t.Errorf("run(-h) = %v with usage %q, want flag.ErrHelp and the flags", err, out.String())
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis; utime 250, stime 50.
	line := "4242 (vsm (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v, want 3s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 vsm S 1")); err == nil {
		t.Error("parseStatCPU(no parentheses) = nil error, want one")
	}
}

func TestReadUsage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "status"), []byte("Name:\tvsm\nVmHWM:\t   30000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "stat"), []byte("1 (vsm) S 1 1 1 0 -1 0 0 0 0 0 100 100 0 0 20 0 9 0 1 0 0\n"), 0o644)
	u, err := readUsage(dir)
	if err != nil || u.RSSKiB != 20480 || u.HWMKiB != 30000 || u.Threads != 9 || u.CPU != 2*time.Second {
		t.Errorf("readUsage = %+v, %v; want RSS 20480, HWM 30000, 9 threads, 2s", u, err)
	}
	self, err := readUsage("/proc/self")
	if err != nil || self.RSSKiB <= 0 {
		t.Errorf("readUsage(/proc/self) = %+v, %v; want a resident size", self, err)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 16384: "16,384", 1234567: "1,234,567", -4096: "-4,096"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0", 1500 * time.Nanosecond: "1.5 µs", 12300 * time.Microsecond: "12.3 ms",
		7120 * time.Millisecond: "7.12 s", 95 * time.Second: "1m35s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	if !loaded("1.31 / 2.34 / 1.69", 2) || loaded("0.20 / 0.40 / 3.00", 2) || loaded("?", 2) || loaded("1.31 / 2.34 / 1.69", 8) {
		t.Error("loaded: want true at half the cores or more in the 1- or 5-minute figure")
	}
	w := window{Dur: 10 * time.Second, CPU: 100 * time.Millisecond, HBSent: 640, HBRecv: 640}
	if w.CPUPercent() != 1 || w.PerHeartbeat() != 78125*time.Nanosecond {
		t.Errorf("window: %v%%, %v per heartbeat; want 1%%, 78.125µs", w.CPUPercent(), w.PerHeartbeat())
	}
	var steps []attachStep
	for i := range 10 {
		steps = append(steps, attachStep{Done: time.Duration(i+1) * time.Second, Latency: time.Duration(i+1) * time.Millisecond})
	}
	bs := buckets(steps, 2)
	if len(bs) != 2 || bs[0].from != 1 || bs[0].to != 5 || bs[1].from != 6 || bs[1].to != 10 || bs[1].rate != 1 || bs[1].max != 10*time.Millisecond {
		t.Errorf("buckets = %+v, want 1-5 and 6-10 at 1/s", bs)
	}
	one, all, ok := extrapolate(bucket{from: 1, to: 99, rate: 10}, 100) // 0.1 s at 50 bound
	if !ok || one != 200*time.Millisecond || all != 10100*time.Millisecond {
		t.Errorf("extrapolate = %v, %v, %v; want 200ms, 10.1s", one, all, ok)
	}
	if d := (durations{3, 1, 2}); d.pct(50) != 2 || d.pct(100) != 3 || d.pct(0) != 1 {
		t.Errorf("pct of 1,2,3 = %v %v %v, want 2 3 1", d.pct(50), d.pct(100), d.pct(0))
	}
}

func TestSection(t *testing.T) {
	o, _ := parseArgs(nil, &bytes.Buffer{})
	r := results{
		Start: time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 7, 15, 9, 0, 0, time.UTC),
		Machine: "2 cores (Test CPU)", Cores: 2, QEMUStart: 2, LoadStart: "3.00 / 2.00 / 1.00", LoadEnd: "0.10 / 0.10 / 0.10", Opts: o,
		Chassis: &chassisResult{
			VEMs: 64, Veths: 256, Profiles: 4, Join: 300 * time.Millisecond,
			Attach:     attachResult{Wanted: 16384, Done: 2, Steps: []attachStep{{time.Second, time.Millisecond}, {2 * time.Second, 11 * time.Second}}},
			Seeded:     16382,
			Heartbeats: window{Dur: 30 * time.Second, CPU: 300 * time.Millisecond, HBSent: 960, HBRecv: 960},
			Props:      []propResult{{What: "one profile", Ports: 4096, VEMs: 64, Last: 5 * time.Second}},
		},
		Sweep: []sweepPoint{
			{VEMs: 64, Veths: 16, Join: time.Second, Steady: window{Dur: 20 * time.Second, RSSKiB: 30 << 10}, Storm: time.Second, StormIn: 64, StormWelcomes: 64},
			{VEMs: 512, Veths: 16, Join: time.Second, Steady: window{Dur: 20 * time.Second, RSSKiB: 90 << 10}, StormIn: 100, StormWelcomes: 9000, StormTimeout: time.Minute},
			{VEMs: 1000, Veths: 16, JoinErr: "resync: 3 of 1000 VEMs | not there"},
			{VEMs: 2000, Veths: 16, Failed: "boom"},
		},
		Failover: failoverResult{NotMeasured: "Not measured: HA not implemented yet."},
	}
	s := r.section()
	for _, want := range []string{
		"Measured 2026-12-07", "2 cores (Test CPU)", "2 QEMU processes of other work were running at the start, 0 at the end", "the machine was shared",
		"### At the chassis limit: 64 VEMs × 256 vEths (16,384 ports)",
		"| 2 of 16,384 vEths attached", "| attaches slower than the real VEM's 10 s attach timeout | 1 of 2 |",
		"| 16,382 |", "| **VSM CPU per heartbeat** (all CPU of the window / heartbeats) | **156.2 µs** |",
		"| one profile | 4,096 |", "### Scale sweep", "| 1.00 s (64 admissions) |", "**100 of 512 in after 1m00s** (9,000 admissions)", "| 1,000 | 16,000 | not all in: resync: 3 of 1000 VEMs \\| not there |",
		"| 2,000 | 32,000 | failed: boom |", "### Failover\n\nNot measured: HA not implemented yet.", "### Where the cost is", "Rerun:",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("section lacks %q:\n%s", want, s)
		}
	}
	r.Failover = failoverResult{VEMs: 64, Veths: 256, Active: 6 * time.Second, AllBack: 7120 * time.Millisecond}
	if s := r.section(); !strings.Contains(s, "| **primary killed → every VEM on the secondary with all its vEths** | **7.12 s** |") {
		t.Errorf("failover table missing:\n%s", s)
	}
}

func TestUpdateSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	os.WriteFile(p, []byte("# Benchmarks\n\n<!-- bench:vem -->\n## VEM\n\nkeep\n<!-- /bench:vem -->\n"), 0o644)
	if err := updateSection(p, sectionID, sectionTitle, "one\n"); err != nil {
		t.Fatal(err)
	}
	if err := updateSection(p, sectionID, sectionTitle, "two\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "# Benchmarks\n\n<!-- bench:vem -->\n## VEM\n\nkeep\n<!-- /bench:vem -->\n\n<!-- bench:vsm-scale -->\n## VSM scale\n\ntwo\n<!-- /bench:vsm-scale -->\n"
	if string(b) != want {
		t.Errorf("after two updates:\n%s\nwant:\n%s", b, want)
	}
}

// TestSimVEM runs the simulated VEM against an in-process VSM: join,
// snapshot, attach, a profile change, the state seeding's file formats.
func TestSimVEM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := vsm.New(vsm.Options{StateDir: dir, DomainID: benchDomain, Token: "bench-token-0123456789", Advertise: []string{ln.Addr().String()}, CmdlineFile: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, vsm.Listeners{Control: ln}) }()
	defer func() { cancel(); <-served }()
	if r := vsm.RunCLI(s.NewSession(), switchConfig(2)); r.Error != "" {
		t.Fatalf("switch config: %s\n%s", r.Error, r.Output)
	}
	j, err := s.JoinBundle(hostUUID(0), []api.VSMUplink{{Interface: "eth1", Profile: uplinkProfile}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{}
	f.reports.Store(true)
	v, err := newSimVEM(0, hostUUID(0), j, &f.stats, &f.reports)
	if err != nil {
		t.Fatal(err)
	}
	f.vems = []*simVEM{v}
	f.start(ctx)
	defer f.stop()
	if _, err := f.resynced(ctx, time.Time{}, func(int) int { return 0 }, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	port, err := v.attach(ctx, api.VSMAttachBody{Owner: owner(0, 0), Profile: profileName(0), MAC: mac(0, 0)}, 10*time.Second)
	if err != nil || port != "Veth1" {
		t.Fatalf("attach = %q, %v; want Veth1", port, err)
	}
	if err := f.waitAll(ctx, 10*time.Second, "programmed", func(_ *simVEM, s vemState) bool { return s.ports == 1 }); err != nil {
		t.Fatal(err)
	}
	p, err := propagate(ctx, &vsmProcCLI{s}, f, "change", 1, []string{"configure terminal", "port-profile type vethernet bench-0", "switchport access vlan 200", "end"},
		func(pp map[string]api.PortProfile) bool { return pp["bench-0"].AccessVLAN == 200 })
	if err != nil || p.Last <= 0 {
		t.Errorf("propagate = %+v, %v; want a time", p, err)
	}
	if st := v.state(); st.module != api.VSMFirstVEMSlot || !st.connected {
		t.Errorf("VEM state %+v, want connected in slot 3", st)
	}
	if f.stats.reports.Load() == 0 {
		t.Error("no port report sent after the applied configs")
	}

	// The seeded files load in a VSM (the daemon validates them at start).
	seedDir := t.TempDir()
	n, err := seedState(seedDir, 3, 5, 2)
	if err != nil || n != 15 {
		t.Fatalf("seedState = %d, %v; want 15 vEths", n, err)
	}
	if _, err := vsm.New(vsm.Options{StateDir: seedDir, DomainID: benchDomain, Token: "bench-token-0123456789", CmdlineFile: "/nonexistent"}); err != nil {
		t.Errorf("vsm.New on the seeded state: %v", err)
	}
	if n, err := seedState(seedDir, 3, 5, 2); err != nil || n != 0 {
		t.Errorf("seedState again = %d, %v; want nothing more to bind", n, err)
	}
}

// vsmProcCLI runs the CLI of an in-process server for propagate.
type vsmProcCLI struct{ s *vsm.Server }

func (c *vsmProcCLI) cli(_ context.Context, lines ...string) error {
	if r := vsm.RunCLI(c.s.NewSession(), lines); r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}
