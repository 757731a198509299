package guest

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEchoCommand(t *testing.T) {
	for _, line := range []string{"echo", "echo ", "echo 10.0.0", "echo ::1", "echo 10.0.0.1 x"} {
		if _, err := ParseCommand(line); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseCommand(%q) = %v, want a usage error", line, err)
		}
	}
	c, err := ParseCommand("echo 10.100.0.2")
	if err != nil || c.Op != OpEcho || c.Addr != netip.MustParseAddr("10.100.0.2") {
		t.Errorf("ParseCommand(echo 10.100.0.2) = %+v, %v", c, err)
	}
	g := &Guest{Echo: func(a netip.Addr) (time.Duration, error) {
		if a.String() == "10.0.0.9" {
			return 0, ErrNoReply
		}
		return 1500 * time.Microsecond, nil
	}}
	if r, _ := g.Answer("echo 10.0.0.1"); r != "FVGUEST ECHO 10.0.0.1 ok 1500us" {
		t.Errorf("echo answered %q", r)
	}
	if r, _ := g.Answer("echo 10.0.0.9"); !strings.HasPrefix(r, "FVGUEST ECHO 10.0.0.9 fail ") {
		t.Errorf("echo to nobody answered %q", r)
	}
}

func TestICMPEchoLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw sockets need root")
	}
	rtt, err := ICMPEcho(netip.MustParseAddr("127.0.0.1"), 2, time.Second)
	if err != nil || rtt <= 0 {
		t.Errorf("echo to 127.0.0.1 = %v, %v", rtt, err)
	}
	// (No negative case here: this machine's network may answer for any
	// address. The two-host e2e checks that a guest on another VLAN does
	// not answer.)
}

func TestEchoPacket(t *testing.T) {
	req := EchoRequest(7, 3, []byte("x"))
	if checksum(req) != 0 {
		t.Errorf("checksum of a finished request = %#x, want 0", checksum(req))
	}
	// The reply as the kernel would return it: a 20-byte IPv4 header, then
	// type 0 with the same id and sequence.
	reply := append([]byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}, req...)
	reply[20] = 0
	if !IsEchoReply(reply, 7, 3) || IsEchoReply(reply, 7, 4) || IsEchoReply(reply[:24], 7, 3) {
		t.Errorf("IsEchoReply misjudges the reply")
	}
}
