package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoReply means no echo reply came back in time.
var ErrNoReply = errors.New("no reply")

// ICMPEcho sends up to tries ICMP echo requests to a, one per wait, over a
// raw socket (the guest is root and has no ping binary), and returns the
// round trip of the first matching reply.
func ICMPEcho(a netip.Addr, tries int, wait time.Duration) (time.Duration, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: a.As4()}
	id := uint16(os.Getpid())
	buf := make([]byte, 1500)
	for seq := 1; seq <= tries; seq++ {
		req := EchoRequest(id, uint16(seq), []byte("fvguest"))
		start := time.Now()
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			return 0, fmt.Errorf("send: %w", err)
		}
		deadline := start.Add(wait)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			tv := unix.NsecToTimeval(left.Nanoseconds())
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break // timeout (EAGAIN) or interrupted: next try
			}
			src, ok := from.(*unix.SockaddrInet4)
			if !ok || src.Addr != a.As4() {
				continue
			}
			if IsEchoReply(buf[:n], id, uint16(seq)) {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("%w from %s after %d requests", ErrNoReply, a, tries)
}

// EchoRequest builds an ICMP echo request.
func EchoRequest(id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// IsEchoReply reports whether an IPv4 packet (as a raw socket returns it,
// header included) is the echo reply to id and seq.
func IsEchoReply(pkt []byte, id, seq uint16) bool {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return false
	}
	hl := int(pkt[0]&0x0f) * 4
	if len(pkt) < hl+8 {
		return false
	}
	icmp := pkt[hl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id && binary.BigEndian.Uint16(icmp[6:]) == seq
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
