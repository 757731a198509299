// Package ctlframe captures the control frames a host's switch ports
// receive, CDP on the uplinks and IGMP on every port, so that the VEM
// relays them to the VSM (SPEC VEM-9, packet channel; the VSM decodes them
// for `show cdp neighbors` and `show ip igmp snooping groups`).
//
// MatchCDP and MatchIGMP are the pure tests of a frame; Capture is the
// real frame source: an AF_PACKET socket bound to one interface with a
// classic BPF filter that lets only CDP and IGMP frames up to user space.
// A NIC or tap enslaved to the switch's bridge still hands every frame it
// receives to packet sockets (ETH_P_ALL) before the bridge consumes it.
package ctlframe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Multicast is CDP's destination MAC address.
var Multicast = net.HardwareAddr{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc}

// MaxFrame is the largest frame read (a jumbo frame).
const MaxFrame = 9216

// MatchCDP reports whether frame is a CDP frame by its headers: destination
// 01:00:0c:cc:cc:cc, an 802.3 length, LLC/SNAP AA-AA-03 with OUI 00:00:0c
// and protocol 0x2000 (not VTP, DTP, PAgP or UDLD, which share the
// address). An 802.1Q tag is allowed.
func MatchCDP(frame []byte) bool {
	if len(frame) < 14 || string(frame[:6]) != string(Multicast) {
		return false
	}
	b := untag(frame[12:])
	return len(b) >= 10 && binary.BigEndian.Uint16(b) <= 1500 &&
		string(b[2:8]) == "\xaa\xaa\x03\x00\x00\x0c" && binary.BigEndian.Uint16(b[8:10]) == 0x2000
}

// MatchIGMP reports whether frame is an IPv4 packet carrying IGMP
// (protocol 2) by its headers; an 802.1Q tag is allowed. The VSM parses
// and checks the IGMP message itself.
func MatchIGMP(frame []byte) bool {
	if len(frame) < 14 {
		return false
	}
	b := untag(frame[12:])
	return len(b) >= 2+20 && binary.BigEndian.Uint16(b) == 0x0800 && b[2]>>4 == 4 && b[2+9] == 2
}

// untag skips one 802.1Q tag: b starts at the EtherType/length field.
func untag(b []byte) []byte {
	if len(b) >= 6 && binary.BigEndian.Uint16(b) == 0x8100 {
		return b[4:]
	}
	return b
}

// filter is the classic BPF program of MatchIGMP and MatchCDP for untagged
// frames (the kernel moves a received 802.1Q tag to the packet's metadata
// before packet sockets see it; Capture puts it back): it accepts an IGMP
// or CDP frame whole and drops anything else.
var filter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},                  // 0: EtherType
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x0800, Jf: 2},      // 1: IPv4? else CDP at 4
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 23},                  // 2: IP protocol
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 2, Jt: 12, Jf: 13},  // 3: IGMP
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},                   // 4: dst[0:4]
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x01000ccc, Jf: 11}, // 5
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 4},                   // 6: dst[4:6]
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0xcccc, Jf: 9},      // 7
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},                  // 8: 802.3 length
	{Code: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, K: 1500, Jt: 7},        // 9
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 14},                  // 10: AA AA 03 00
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0xaaaa0300, Jf: 5},  // 11
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 18},                  // 12: 00 0c
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x000c, Jf: 3},      // 13
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 20},                  // 14: protocol
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x2000, Jf: 1},      // 15
	{Code: unix.BPF_RET | unix.BPF_K, K: 0x40000},                           // 16: accept
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},                                 // 17: drop
}

// Capture is the real frame source: Run captures the CDP and IGMP frames
// received on one interface. The zero value is ready.
type Capture struct{}

// Run reads the CDP and IGMP frames received on ifname (not those it
// sends), each with its 802.1Q tag if it came with one, and calls fn with
// each, from one goroutine, until ctx ends (it then returns nil) or the
// socket fails. fn must not keep frame.
func (Capture) Run(ctx context.Context, ifname string, fn func(frame []byte)) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("frame capture on %s: %w", ifname, err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return fmt.Errorf("frame capture on %s: socket: %w", ifname, err)
	}
	// The file owns fd from here: pollable (non-blocking), so Close wakes
	// a read.
	f := os.NewFile(uintptr(fd), "ctlframe:"+ifname)
	defer f.Close()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("frame capture on %s: attach filter: %w", ifname, err)
	}
	// The kernel strips a received 802.1Q tag into the packet's metadata;
	// auxdata hands it back.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fmt.Errorf("frame capture on %s: auxdata: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("frame capture on %s: bind: %w", ifname, err)
	}
	// A NIC that is not promiscuous must accept the CDP address.
	mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	copy(mr.Address[:], Multicast)
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		return fmt.Errorf("frame capture on %s: multicast membership: %w", ifname, err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("frame capture on %s: %w", ifname, err)
	}
	buf := make([]byte, MaxFrame)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{}))))
	out := make([]byte, 0, MaxFrame+4)
	for {
		var (
			n, oobn int
			from    unix.Sockaddr
			rerr    error
		)
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("frame capture on %s: read: %w", ifname, err)
		}
		// Packets queued before bind may come from other interfaces.
		if sl, ok := from.(*unix.SockaddrLinklayer); !ok || sl.Ifindex != ifi.Index || sl.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frame := withTag(out[:0], buf[:n], vlanTag(oob[:oobn]))
		if MatchCDP(frame) || MatchIGMP(frame) {
			fn(frame)
		}
	}
}

// vlanTag returns the 802.1Q TCI the kernel took off a received frame
// (from the PACKET_AUXDATA control message), or -1.
func vlanTag(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			continue
		}
		aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
		if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
			return int(aux.Vlan_tci)
		}
	}
	return -1
}

// withTag appends frame to dst with an 802.1Q tag carrying tci after the
// MAC addresses (tci < 0: as it is).
func withTag(dst, frame []byte, tci int) []byte {
	if tci < 0 || len(frame) < 12 {
		return append(dst, frame...)
	}
	dst = append(dst, frame[:12]...)
	dst = append(dst, 0x81, 0x00, byte(tci>>8), byte(tci))
	return append(dst, frame[12:]...)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
