package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem/vemclient"
	"github.com/vishvananda/netlink"
)

// The two "VMs" of every switch: 10.0.0.1 (client) and 10.0.0.2 (iperf3
// server), each pair in namespaces of its own.
const (
	vmClientIP = "10.0.0.1"
	vmServerIP = "10.0.0.2"
	accessVLAN = 100
	// benchRate is the VEM's (and OVS's) ingress rate limit: far above
	// what the emulated host forwards, so the policer is in the path
	// without limiting.
	benchRate = 20_000_000_000 // bit/s
)

// switchUnderTest is one switch with its two VMs.
type switchUnderTest struct {
	name   string
	config string
	sw     *netNS
	client *netNS // VM A
	server *netNS // VM B, runs iperf3 -s
	// serverMAC is VM B's MAC (pktgen's destination).
	serverMAC string
	// counters reads the switch's drop counters after the runs (nil: none).
	counters func(ctx context.Context) (map[string]uint64, error)
}

// vmMAC is the MAC of VM side (1 or 2) of switch i.
func vmMAC(i, side int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i, side) }

// connectVMs makes the switch's two VM namespaces and their veth pairs
// (switch ends ifA and ifB in sw).
func (w *world) connectVMs(s *switchUnderTest, i int, ifA, ifB string) error {
	var err error
	if s.client, err = w.newNS(s.name + "-vm1"); err != nil {
		return err
	}
	if s.server, err = w.newNS(s.name + "-vm2"); err != nil {
		return err
	}
	if err := vmPort(s.sw, ifA, s.client, vmMAC(i, 1), vmClientIP); err != nil {
		return err
	}
	s.serverMAC = vmMAC(i, 2)
	return vmPort(s.sw, ifB, s.server, s.serverMAC, vmServerIP)
}

// setupBridge is (a): a plain Linux bridge, no VLAN filtering, learning
// and flooding on (the kernel's defaults).
func (w *world) setupBridge() (*switchUnderTest, error) {
	sw, err := w.newNS("br")
	if err != nil {
		return nil, err
	}
	s := &switchUnderTest{name: "bridge", sw: sw,
		config: "Linux bridge `br0`, no VLAN filtering, no STP, learning and flooding on (kernel defaults), no tc"}
	if err := sw.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := w.connectVMs(s, 1, "bra", "brb"); err != nil {
		return nil, err
	}
	br, err := sw.h.LinkByName("br0")
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"bra", "brb"} {
		l, err := sw.h.LinkByName(name)
		if err != nil {
			return nil, err
		}
		if err := sw.h.LinkSetMaster(l, br); err != nil {
			return nil, fmt.Errorf("%s into br0: %w", name, err)
		}
	}
	return s, setUp(sw, "br0", "bra", "brb")
}

// vemForwardConfig is (b)'s switch: both VMs on access VLAN 100 with their
// MACs as static entries, port security (one MAC), the ingress policer;
// the VEM adds BPDU filters, learning and unicast flooding off.
func vemForwardConfig() api.SwitchConfig {
	return api.SwitchConfig{
		Module: 3,
		Profiles: []api.PortProfile{{
			Name: "vm", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: accessVLAN, Enabled: true,
			Ingress:      &api.RateLimit{BitsPerSecond: benchRate},
			PortSecurity: &api.PortSecurity{MaxMACs: 1},
		}},
		Ports: []api.Port{
			{Name: "Veth1", Kind: api.PortVeth, Profile: "vm", Interface: "vema", MACs: []string{vmMAC(2, 1)}, Owner: "vm1 nic 0"},
			{Name: "Veth2", Kind: api.PortVeth, Profile: "vm", Interface: "vemb", MACs: []string{vmMAC(2, 2)}, Owner: "vm2 nic 0"},
		},
	}
}

// setupVEM is (b): the real vemd in its own namespace, configured through
// vemclient.
func (w *world) setupVEM(ctx context.Context, vemd string) (*switchUnderTest, error) {
	sw, err := w.newNS("vem")
	if err != nil {
		return nil, err
	}
	s := &switchUnderTest{name: "vem", sw: sw, config: fmt.Sprintf("vemd (this tree) programming its VLAN-filtering bridge: "+
		"both vEths (api.Port with Interface = the veth's switch end) on access VLAN %d, the VMs' MACs as static sticky entries, "+
		"learning and unicast flooding off, BPDU filter (tc u32 drop), port security with the VM's MAC allowed (tc u32 accept + matchall drop), "+
		"ingress policer at %d Gbit/s (tc police)", accessVLAN, benchRate/1_000_000_000)}
	if err := w.connectVMs(s, 2, "vema", "vemb"); err != nil {
		return nil, err
	}
	c, _, err := w.startVemd(ctx, sw, vemd, "vemd-forward", 30*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.SetConfig(ctx, vemForwardConfig()); err != nil {
		return nil, fmt.Errorf("vemd: set config: %w", err)
	}
	s.counters = func(ctx context.Context) (map[string]uint64, error) {
		ports, err := c.Ports(ctx)
		if err != nil {
			return nil, err
		}
		m := map[string]uint64{}
		for _, p := range ports {
			if p.State != api.PortUp {
				return nil, fmt.Errorf("vem port %s is %s (%s)", p.Name, p.State, p.Reason)
			}
			m["bpdu_drops"] += p.Counters.BPDUDrops
			m["security_violations"] += p.Counters.SecurityViolations
			m["ingress_policed"] += p.Counters.IngressPoliced
		}
		// The policer's own statistics, from the kernel: packets it saw
		// and packets it dropped.
		for _, name := range []string{"vema", "vemb"} {
			seen, dropped, err := policerStats(sw, name)
			if err != nil {
				return nil, err
			}
			m["tc_police_seen"] += seen
			m["tc_police_dropped"] += dropped
		}
		return m, nil
	}
	return s, nil
}

// startVemd starts the real agent in ns with its own socket and state file
// and waits until it answers.
func (w *world) startVemd(ctx context.Context, ns *netNS, vemd, name string, interval time.Duration) (*vemclient.Client, *proc, error) {
	sock := w.logDir + "/" + name + ".sock"
	p, err := w.start(ns, name, vemd, "-socket", sock, "-state", w.logDir+"/"+name+"-state.json",
		"-boot-info", w.logDir+"/none", "-manifest", w.logDir+"/none", "-interval", interval.String())
	if err != nil {
		return nil, nil, err
	}
	c := vemclient.New(sock)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := c.Card(ctx); err == nil {
			return c, p, nil
		} else if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%s does not answer: %w", name, err)
		}
		if err := p.exited(); err != nil {
			return nil, nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// iperfServer starts iperf3 -s in the switch's server VM and waits until a
// short test through the switch succeeds (which also lets OVS and the
// bridge learn the MACs).
func (w *world) iperfServer(ctx context.Context, s *switchUnderTest) error {
	p, err := w.start(s.server, s.name+"-iperf3-server", "iperf3", "-s", "-B", vmServerIP)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := w.output(ctx, s.client, "iperf3", "-c", vmServerIP, "-t", "1", "-J")
		if err == nil {
			return nil
		}
		if perr := p.exited(); perr != nil {
			return perr
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: no iperf3 test through the switch: %w", s.name, err)
		}
		time.Sleep(time.Second)
	}
}

// iperfReport is the part of iperf3 -J's output the benchmark reads.
type iperfReport struct {
	End struct {
		SumReceived *iperfSum `json:"sum_received"`
		SumSent     *iperfSum `json:"sum_sent"`
		Sum         *iperfSum `json:"sum"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         float64 `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Packets       float64 `json:"packets"`
	LostPackets   float64 `json:"lost_packets"`
}

func parseIperf(b []byte) (iperfReport, error) {
	var r iperfReport
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("iperf3 -J output: %w", err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r, nil
}

// tcpRate is the received bit rate of a TCP test.
func tcpRate(b []byte) (float64, error) {
	r, err := parseIperf(b)
	if err != nil {
		return 0, err
	}
	if s := r.End.SumReceived; s != nil && s.BitsPerSecond > 0 {
		return s.BitsPerSecond, nil
	}
	return 0, errors.New("iperf3 TCP report without end.sum_received")
}

// udpRates are a UDP test's packets/s sent and received (iperf3's own
// count: sent minus lost) and its sending time.
func udpRates(b []byte) (sent, received, seconds float64, err error) {
	r, err := parseIperf(b)
	if err != nil {
		return 0, 0, 0, err
	}
	s := r.End.Sum
	if s == nil || s.Seconds <= 0 || s.Packets <= 0 {
		return 0, 0, 0, errors.New("iperf3 UDP report without end.sum packets")
	}
	sentPkts, lost, secs := s.Packets, s.LostPackets, s.Seconds
	if ss := r.End.SumSent; ss != nil && ss.Packets > 0 && ss.Seconds > 0 {
		sentPkts, secs = ss.Packets, ss.Seconds
	}
	if sr := r.End.SumReceived; sr != nil && sr.Packets > 0 {
		lost = sr.LostPackets
	}
	return sentPkts / secs, (sentPkts - lost) / secs, secs, nil
}

// measureTCP is one iperf3 TCP test: 1 stream, secs seconds after one
// omitted second (slow start).
func (w *world) measureTCP(ctx context.Context, s *switchUnderTest, secs int) (float64, error) {
	out, err := w.output(ctx, s.client, "iperf3", "-c", vmServerIP, "-t", strconv.Itoa(secs), "-O", "1", "-J")
	if err != nil {
		return 0, err
	}
	return tcpRate(out)
}

// measureUDP is one iperf3 UDP test with 64-byte payloads at an unlimited
// offered rate. delivered is the receiving VM's rx_packets increase over
// iperf3's sending time.
func (w *world) measureUDP(ctx context.Context, s *switchUnderTest, secs int) (sent, received, delivered float64, err error) {
	before, err := rxPackets(s.server, "eth0")
	if err != nil {
		return 0, 0, 0, err
	}
	out, err := w.output(ctx, s.client, "iperf3", "-c", vmServerIP, "-u", "-l", "64", "-b", "0", "-t", strconv.Itoa(secs), "-J")
	if err != nil {
		return 0, 0, 0, err
	}
	after, err := rxPackets(s.server, "eth0")
	if err != nil {
		return 0, 0, 0, err
	}
	sent, received, seconds, err := udpRates(out)
	if err != nil {
		return 0, 0, 0, err
	}
	return sent, received, float64(after-before) / seconds, nil
}

// policerStats reads the statistics of the police actions on a link's
// ingress qdisc.
func policerStats(n *netNS, name string) (seen, dropped uint64, err error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return 0, 0, err
	}
	fs, err := n.h.FilterList(l, netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return 0, 0, fmt.Errorf("tc filters of %s: %w", name, err)
	}
	found := false
	for _, f := range fs {
		ma, ok := f.(*netlink.MatchAll)
		if !ok {
			continue
		}
		for _, a := range ma.Actions {
			if _, ok := a.(*netlink.PoliceAction); !ok {
				continue
			}
			found = true
			if st := a.Attrs().Statistics; st != nil {
				if st.Basic != nil {
					seen += uint64(st.Basic.Packets)
				}
				if st.Queue != nil {
					dropped += uint64(st.Queue.Drops)
				}
			}
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("%s: no tc police action on its ingress", name)
	}
	return seen, dropped, nil
}
