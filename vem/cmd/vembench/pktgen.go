package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"
)

// The kernel's packet generator (pktgen) sends the small-packet test: it
// hands frames straight to the VM's eth0 from a kernel thread, so the rate
// is not bounded by a user-space sender's system calls, which under
// emulation cost more than the switching itself.

// pktgenResult is what `vembench pktgen` prints.
type pktgenResult struct {
	Sent    uint64  `json:"sent"`
	Seconds float64 `json:"seconds"`
}

// runPktgen is `vembench pktgen`, run in the sending VM's namespace (its
// /proc/net/pktgen): sizes-byte UDP frames from dev to dst/dstMAC for secs
// seconds, from the pktgen thread of CPU 0.
func runPktgen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vembench pktgen", flag.ContinueOnError)
	dev := fs.String("dev", "eth0", "device")
	dst := fs.String("dst", vmServerIP, "destination IP")
	dstMAC := fs.String("dst-mac", "", "destination MAC")
	size := fs.Int("size", 64, "frame size without FCS")
	secs := fs.Float64("seconds", 3, "sending time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	const dir = "/proc/net/pktgen"
	// One command per write, ending in a newline as echo's (pgctrl cuts
	// the last byte).
	write := func(file, cmd string) error {
		if err := os.WriteFile(dir+"/"+file, []byte(cmd+"\n"), 0); err != nil {
			return fmt.Errorf("pktgen %s: %q: %w", file, cmd, err)
		}
		return nil
	}
	if err := write("kpktgend_0", "rem_device_all"); err != nil {
		return err
	}
	if err := write("kpktgend_0", "add_device "+*dev); err != nil {
		return err
	}
	for _, c := range []string{
		"count 0", // until stopped
		"clone_skb 0",
		"burst 1",
		"delay 0",
		fmt.Sprintf("pkt_size %d", *size),
		"dst " + *dst,
		"dst_mac " + *dstMAC,
		"udp_src_min 9", "udp_src_max 9", "udp_dst_min 9", "udp_dst_max 9",
	} {
		if err := write(*dev, c); err != nil {
			return err
		}
	}
	done := make(chan error, 1)
	go func() { done <- write("pgctrl", "start") }() // returns once stopped
	select {
	case <-time.After(time.Duration(*secs * float64(time.Second))):
	case err := <-done:
		return fmt.Errorf("pktgen ended early: %v", err)
	case <-ctx.Done():
	}
	if err := write("pgctrl", "stop"); err != nil {
		return err
	}
	select {
	case <-done: // "start" returns an error when stopped on some kernels: the result says
	case <-time.After(30 * time.Second):
		return errors.New("pktgen did not stop")
	}
	b, err := os.ReadFile(dir + "/" + *dev)
	if err != nil {
		return err
	}
	r, err := parsePktgen(string(b))
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(r)
}

var pktgenRE = regexp.MustCompile(`Result: OK: (\d+)\(c\d+\+d\d+\) usec, (\d+) \(`)

// parsePktgen reads the Result line of /proc/net/pktgen/DEV.
func parsePktgen(s string) (pktgenResult, error) {
	m := pktgenRE.FindStringSubmatch(s)
	if m == nil {
		return pktgenResult{}, fmt.Errorf("pktgen: no result in %q", tail(s, 3))
	}
	usec, _ := strconv.ParseUint(m[1], 10, 64)
	sent, _ := strconv.ParseUint(m[2], 10, 64)
	if usec == 0 {
		return pktgenResult{}, fmt.Errorf("pktgen: zero time in %q", m[0])
	}
	return pktgenResult{Sent: sent, Seconds: float64(usec) / 1e6}, nil
}

// measurePktgen sends 64-byte frames from the switch's client VM to its
// server VM for secs seconds; it returns the frames/s pktgen sent and the
// frames/s the server VM's eth0 received (what the switch delivered).
func (w *world) measurePktgen(ctx context.Context, s *switchUnderTest, secs int) (sent, delivered float64, err error) {
	before, err := rxPackets(s.server, "eth0")
	if err != nil {
		return 0, 0, err
	}
	out, err := w.output(ctx, s.client, w.self, "pktgen", "-dev", "eth0", "-dst", vmServerIP, "-dst-mac", s.serverMAC,
		"-size", "64", "-seconds", strconv.Itoa(secs))
	if err != nil {
		return 0, 0, err
	}
	// Frames in flight when pktgen stopped arrive within microseconds,
	// but the emulated host may lag.
	time.Sleep(200 * time.Millisecond)
	after, err := rxPackets(s.server, "eth0")
	if err != nil {
		return 0, 0, err
	}
	var r pktgenResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, 0, fmt.Errorf("pktgen output %q: %w", out, err)
	}
	return float64(r.Sent) / r.Seconds, float64(after-before) / r.Seconds, nil
}
