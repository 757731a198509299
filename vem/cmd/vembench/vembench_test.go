package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
)

func TestConfigsValidate(t *testing.T) {
	for name, sc := range map[string]api.SwitchConfig{
		"forward": vemForwardConfig(),
		"scale":   scaleConfig(1000, 500, 500),
	} {
		c, err := vem.Validate(sc)
		if err != nil {
			t.Fatalf("%s: Validate() = %v", name, err)
		}
		d := vem.Desired(c, vem.Runtime{})
		for _, l := range d.Links {
			if l.Kind == vem.KindBridge {
				continue
			}
			if !l.TC.DropBPDU || l.TC.AllowSrc == nil || l.TC.IngressRate != benchRate || l.BridgePort.Learning || l.BridgePort.Flood {
				t.Errorf("%s: %s = %+v, want the full policy (BPDU drop, port security, policer, learning and flooding off)", name, l.Name, l)
			}
		}
	}
	sc := scaleConfig(1000, 500, 500)
	if sc.Ports[499].Profile != "vm-b" || sc.Ports[498].Profile != "vm-a" || len(sc.Ports) != 1000 ||
		sc.Ports[499].MACs[0] == scaleConfig(1000, 0, 0).Ports[499].MACs[0] {
		t.Errorf("scaleConfig(1000, 500, 500): port 500 on %q, 499 on %q, %d ports; want vm-b, vm-a, 1000", sc.Ports[499].Profile, sc.Ports[498].Profile, len(sc.Ports))
	}
	if d := vem.Desired(mustValidate(t, sc), vem.Runtime{}); len(d.FDB) != 1000 {
		t.Errorf("scale config: %d static entries, want 1000", len(d.FDB))
	}
}

func mustValidate(t *testing.T, sc api.SwitchConfig) *vem.Config {
	t.Helper()
	c, err := vem.Validate(sc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Trimmed iperf3 3.12 -J reports.
const (
	udpReport = `{"start":{},"intervals":[],"end":{
		"sum":{"start":0,"end":1.002598,"seconds":1.002598,"bytes":4081920,"bits_per_second":32654413.0,"lost_packets":31856,"packets":63780,"sender":true},
		"sum_sent":{"start":0,"end":1.000029,"seconds":1.000029,"bytes":4081920,"bits_per_second":32654413.0,"lost_packets":0,"packets":63780,"sender":true},
		"sum_received":{"start":0,"end":1.002598,"seconds":1.002598,"bytes":2043136,"bits_per_second":16302733.5,"lost_packets":31856,"packets":63780,"sender":false}}}`
	tcpReport = `{"start":{},"end":{
		"sum_sent":{"start":0,"end":1.000172,"seconds":1.000172,"bytes":356515840,"bits_per_second":2851636238.5,"retransmits":70,"sender":true},
		"sum_received":{"start":0,"end":1.0272,"seconds":1.0272,"bytes":359661568,"bits_per_second":2801102554.5,"sender":true}}}`
)

func TestIperfReports(t *testing.T) {
	bps, err := tcpRate([]byte(tcpReport))
	if err != nil || bps != 2801102554.5 {
		t.Errorf("tcpRate() = %v, %v; want the received rate 2801102554.5", bps, err)
	}
	sent, recv, secs, err := udpRates([]byte(udpReport))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(sent-63778.2) > 1 || math.Abs(recv-31923.1) > 1 || secs != 1.000029 {
		t.Errorf("udpRates() = sent %.1f received %.1f over %v s; want 63778.2, 31923.1 over 1.000029", sent, recv, secs)
	}
	if r, err := parsePktgen("Params: count 0\nResult: OK: 3000210(c2999836+d373) usec, 151234 (64byte,0frags)\n  50407pps 25Mb/sec (25808384bps) errors: 0\n"); err != nil || r.Sent != 151234 || r.Seconds != 3.00021 {
		t.Errorf("parsePktgen() = %+v, %v; want 151234 frames in 3.00021 s", r, err)
	}
	if _, err := parsePktgen("Result: Idle\n"); err == nil {
		t.Error("parsePktgen(idle) = nil error")
	}
	if _, err := tcpRate([]byte(`{"error":"unable to connect to server"}`)); err == nil {
		t.Error("tcpRate(error report) = nil error")
	}
	if _, _, _, err := udpRates([]byte(tcpReport)); err == nil {
		t.Error("udpRates(TCP report) = nil error")
	}
}

func TestProcStatus(t *testing.T) {
	rss, hwm, err := procStatus("Name:\tvemd\nVmPeak:\t 1254468 kB\nVmHWM:\t   21400 kB\nVmRSS:\t   18220 kB\nThreads:\t7\n")
	if err != nil || rss != 18220 || hwm != 21400 {
		t.Errorf("procStatus() = %d, %d, %v; want 18220, 21400", rss, hwm, err)
	}
	if _, _, err := procStatus("Name:\tx\n"); err == nil {
		t.Error("procStatus(no VmRSS) = nil error")
	}
}

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	for dev, name := range map[string]string{"vport1p1": "org.flashvisor.fvtest", "vport2p1": ResultPort} {
		os.MkdirAll(filepath.Join(sys, dev), 0o755)
		os.WriteFile(filepath.Join(sys, dev, "name"), []byte(name+"\n"), 0o644)
	}
	if got, err := findPort(sys, "/dev", ResultPort); err != nil || got != "/dev/vport2p1" {
		t.Errorf("findPort() = %q, %v; want /dev/vport2p1", got, err)
	}
	if _, err := findPort(sys, "/dev", "absent"); err == nil {
		t.Error("findPort(absent) = nil error")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"nsexec"}, {"run", "-runs", "0"}} {
		if err := run(t.Context(), args, os.Stdout); err == nil {
			t.Errorf("run(%q) = nil error", args)
		}
	}
	if !isService([]string{"-runs", "3", "-service"}) || isService([]string{"-runs", "3"}) {
		t.Error("isService is wrong")
	}
}
