package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

// sampleVEMResult is shaped like vembench's output.
const sampleVEMResult = `{"host":{"kernel":"6.1.0-56-amd64","cpus":2,"mem_mib":2990,"iperf3":"iperf 3.12","ovs":"ovs-vswitchd (Open vSwitch) 3.1.0"},
"runs":3,"seconds":3,"ports":1000,
"switches":[
 {"name":"bridge","config":"Linux bridge","tcp_bps":[2e9,2.2e9,2.1e9],"pktgen_delivered_pps":[100000,110000,120000],"udp_sent_pps":[40000,41000,42000],"udp_received_pps":[30000,31000,32000],"udp_delivered_pps":[40000,41000,42000]},
 {"name":"vem","config":"vemd","tcp_bps":[1.8e9,1.9e9,2e9],"pktgen_delivered_pps":[90000,99000,100000],"udp_sent_pps":[30000,31000,32000],"udp_received_pps":[25000,26000,27000],"udp_delivered_pps":[30000,31000,32000],"counters":{"bpdu_drops":0,"security_violations":0}},
 {"name":"ovs","config":"OVS","tcp_bps":[1.5e9,1.6e9,1.7e9],"pktgen_delivered_pps":[50000,60000,70000],"udp_sent_pps":[20000,21000,22000],"udp_received_pps":[19000,20000,21000],"udp_delivered_pps":[20000,21000,22000],"counters":{"drop_flow_packets":0}}],
"reconcile":{"ports":1000,"create":[30,31,32],"noop":[2,2.1,2.2],"change_mac":[2.4,2.3,2.2],"change_mac_changes":3,"change":[2.5,2.6,2.7],"change_error":"run 1: del vlans: invalid argument","delete":[20,21,22],"kernel_changes":14001,"change_changes":5},
"memory":{"ports":1000,"idle_rss_kib":10240,"put_seconds":35,"after_put_rss_kib":30720,"min_rss_kib":25600,"max_rss_kib":30720,"hwm_kib":40960,"sample_every_seconds":5,"sample_for_seconds":65,"reconcile_interval_seconds":30,"state_file_kib":200},
"wall_seconds":400}`

func TestVEMSection(t *testing.T) {
	var r vemRun
	if err := json.Unmarshal([]byte(sampleVEMResult), &r.res); err != nil {
		t.Fatal(err)
	}
	r.hostAccel, r.machine, r.initrdMiB = "tcg", "2 cores", 47.3
	s := r.section(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
	for _, want := range []string{
		"Measured 2026-11-25",
		"| VEM | 1900 (1800 / 2000) | 99000 (90000 / 100000) | 31000 (30000 / 32000) | 26000 (25000 / 27000) |",
		"| **VEM / Linux bridge** | **0.90** | **0.90** | 0.76 |",
		"| **VEM / Open vSwitch** | **1.19** | **1.65** | 1.48 |",
		"one port's MAC changed** (3 kernel changes) | 2.30 | 2.20 / 2.40 |",
		"**The VLAN change failed**: `run 1: del vlans: invalid argument`",
		"no switch → 1000 ports (14001 kernel changes) | 31.00 | 30.00 / 32.00 |",
		"one port's VLAN changed** (5 kernel changes; **failed**, see below) | 2.60 |",
		"| **resident with 1000 ports programmed** (smallest / largest of the samples over 65 s) | **25.0** / 30.0 |",
		"bpdu_drops 0, security_violations 0",
		"Per port: 31 ms to create, 2 ms to observe.",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("section lacks %q:\n%s", want, s)
		}
	}
}

func TestAppendCpio(t *testing.T) {
	dir := t.TempDir()
	base, src, dst := filepath.Join(dir, "base"), filepath.Join(dir, "bin"), filepath.Join(dir, "out")
	os.WriteFile(base, []byte("BASE"), 0o644)
	os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755)
	if err := appendCpio(dst, base, []cpioEntry{
		{name: "etc", mode: cpio.S_IFDIR | 0o755},
		{name: "etc/x.json", mode: cpio.S_IFREG | 0o644, data: []byte("[]")},
		{name: "fvbench/vembench", mode: cpio.S_IFREG | 0o755, src: src},
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	if string(b[:4]) != "BASE" || len(b) < 512 || strings.Trim(string(b[4:512]), "\x00") != "" {
		t.Fatalf("appended archive does not start with the base padded to 512 bytes")
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(io.NewSectionReader(strings.NewReader(string(b)), 512, int64(len(b)-512))))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, rec := range recs {
		data, _ := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		got[rec.Name] = string(data)
	}
	if got["etc/x.json"] != "[]" || got["fvbench/vembench"] != "#!/bin/sh\n" {
		t.Errorf("archive = %q", got)
	}
}
