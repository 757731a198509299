package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Where the bench image has Open vSwitch (Debian's openvswitch-switch).
const (
	ovsVswitchd = "/usr/lib/openvswitch-switch/ovs-vswitchd"
	ovsSchema   = "/usr/share/openvswitch/vswitch.ovsschema"
)

// ovs is a private Open vSwitch: a fresh database, ovsdb-server and
// ovs-vswitchd, everything under dir.
type ovs struct {
	w   *world
	dir string
	db  string // unix:... remote
}

func (o *ovs) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+o.dir, "OVS_LOGDIR="+o.dir, "OVS_DBDIR="+o.dir, "OVS_SYSCONFDIR="+o.dir)
}

// run runs an OVS client program (in this namespace: they talk to the
// daemons over unix sockets).
func (o *ovs) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := o.w.command(ctx, nil, name, args...)
	cmd.Env = o.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(string(out), 10))
	}
	return string(out), nil
}

func (o *ovs) vsctl(ctx context.Context, args ...string) (string, error) {
	return o.run(ctx, "ovs-vsctl", append([]string{"--db=" + o.db, "--timeout=120"}, args...)...)
}

// startOVS creates the database and starts ovsdb-server (here) and
// ovs-vswitchd (in ns, whose interfaces it then switches).
func (w *world) startOVS(ctx context.Context, ns *netNS) (*ovs, error) {
	o := &ovs{w: w, dir: filepath.Join(w.logDir, "ovs")}
	o.db = "unix:" + o.dir + "/db.sock"
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, err
	}
	conf := o.dir + "/conf.db"
	if _, err := o.run(ctx, "ovsdb-tool", "create", conf, ovsSchema); err != nil {
		return nil, err
	}
	db, err := w.startEnv(nil, "ovsdb-server", o.env(), "ovsdb-server", conf,
		"--remote=p"+o.db, "--unixctl="+o.dir+"/ovsdb-server.ctl", "--pidfile="+o.dir+"/ovsdb-server.pid",
		"--log-file="+o.dir+"/ovsdb-server.log")
	if err != nil {
		return nil, err
	}
	if err := waitFile(ctx, o.dir+"/db.sock", db); err != nil {
		return nil, err
	}
	if _, err := o.vsctl(ctx, "--no-wait", "init"); err != nil {
		return nil, err
	}
	vs, err := w.startEnv(ns, "ovs-vswitchd", o.env(), ovsVswitchd, o.db,
		"--unixctl="+o.dir+"/ovs-vswitchd.ctl", "--pidfile="+o.dir+"/ovs-vswitchd.pid",
		"--log-file="+o.dir+"/ovs-vswitchd.log")
	if err != nil {
		return nil, err
	}
	if err := waitFile(ctx, o.dir+"/ovs-vswitchd.ctl", vs); err != nil {
		return nil, err
	}
	return o, nil
}

func waitFile(ctx context.Context, path string, p *proc) error {
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if err := p.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: no %s after a minute", p.name, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setupOVS is (c): Open vSwitch's kernel datapath with both VM ports on
// access VLAN 100 (tag=100) and NORMAL (MAC-learning) forwarding, plus
// flows that do what the VEM's tc filters do: drop BPDUs, and accept only
// the VM's MAC from each port; the same ingress policer (OVS programs tc
// police itself).
func (w *world) setupOVS(ctx context.Context) (*switchUnderTest, *ovs, error) {
	sw, err := w.newNS("ovs")
	if err != nil {
		return nil, nil, err
	}
	s := &switchUnderTest{name: "ovs", sw: sw}
	if err := w.connectVMs(s, 3, "ovsa", "ovsb"); err != nil {
		return nil, nil, err
	}
	if err := setUp(sw, "ovsa", "ovsb"); err != nil {
		return nil, nil, err
	}
	o, err := w.startOVS(ctx, sw)
	if err != nil {
		return nil, nil, err
	}
	kbps := strconv.Itoa(benchRate / 1000)
	burst := strconv.Itoa(benchRate / 100 / 1000) // 10 ms, in kbit, as the VEM's default
	if _, err := o.vsctl(ctx, "add-br", "ovsbr0",
		"--", "add-port", "ovsbr0", "ovsa", "tag="+strconv.Itoa(accessVLAN),
		"--", "add-port", "ovsbr0", "ovsb", "tag="+strconv.Itoa(accessVLAN),
		"--", "set", "interface", "ovsa", "ingress_policing_rate="+kbps, "ingress_policing_burst="+burst,
		"--", "set", "interface", "ovsb", "ingress_policing_rate="+kbps, "ingress_policing_burst="+burst); err != nil {
		return nil, nil, err
	}
	flows := []string{"priority=100,dl_dst=01:80:c2:00:00:00,actions=drop"}
	for i, port := range []string{"ovsa", "ovsb"} {
		flows = append(flows,
			fmt.Sprintf("priority=50,in_port=%s,dl_src=%s,actions=NORMAL", port, vmMAC(3, i+1)),
			fmt.Sprintf("priority=40,in_port=%s,actions=drop", port))
	}
	for _, f := range flows {
		if _, err := o.run(ctx, "ovs-ofctl", "add-flow", "ovsbr0", f); err != nil {
			return nil, nil, err
		}
	}
	s.config = fmt.Sprintf("%s, kernel datapath: bridge `ovsbr0`, both ports `tag=%d` (access), "+
		"NORMAL action (MAC learning) behind the OpenFlow rules `%s`, ingress_policing_rate %s kbit/s on both ports (tc police)",
		w.version(ctx, ovsVswitchd), accessVLAN, strings.Join(flows, "`, `"), kbps)
	s.counters = func(ctx context.Context) (map[string]uint64, error) {
		out, err := o.run(ctx, "ovs-ofctl", "dump-flows", "ovsbr0")
		if err != nil {
			return nil, err
		}
		m := map[string]uint64{}
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, "actions=drop") {
				continue
			}
			for _, f := range strings.Split(strings.TrimSpace(l), ", ") {
				if v, ok := strings.CutPrefix(f, "n_packets="); ok {
					n, _ := strconv.ParseUint(v, 10, 64)
					m["drop_flow_packets"] += n
				}
			}
		}
		return m, nil
	}
	return s, o, nil
}

// version is the first line of a program's --version that is not one of
// OVS's log lines ("2026-...|00001|dns_resolve|WARN|...").
func (w *world) version(ctx context.Context, name string) string {
	out, err := w.command(ctx, nil, name, "--version").Output()
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && strings.Count(l, "|") < 3 {
			return l
		}
	}
	return "unknown"
}
