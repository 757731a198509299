// Package cdp captures the CDP frames that reach a host's uplink NICs, so
// that the VEM relays them to the VSM (SPEC VEM-9, packet channel; the VSM
// decodes them for `show cdp neighbors`).
//
// Match is the pure test of a frame; Capture is the real frame source: an
// AF_PACKET socket bound to one NIC with a classic BPF filter that lets
// only CDP frames up to user space. A NIC enslaved to the switch's bridge
// still hands every frame it receives to packet sockets (ETH_P_ALL) before
// the bridge consumes it.
package cdp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Multicast is CDP's destination MAC address.
var Multicast = net.HardwareAddr{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc}

// MaxFrame is the largest frame read (a jumbo frame).
const MaxFrame = 9216

// Match reports whether frame is a CDP frame by its headers: destination
// 01:00:0c:cc:cc:cc, an 802.3 length, LLC/SNAP AA-AA-03 with OUI 00:00:0c
// and protocol 0x2000 (not VTP, DTP, PAgP or UDLD, which share the
// address). An 802.1Q tag is allowed.
func Match(frame []byte) bool {
	if len(frame) < 14 || string(frame[:6]) != string(Multicast) {
		return false
	}
	b := frame[12:]
	if binary.BigEndian.Uint16(b) == 0x8100 {
		b = b[4:]
	}
	return len(b) >= 10 && binary.BigEndian.Uint16(b) <= 1500 &&
		string(b[2:8]) == "\xaa\xaa\x03\x00\x00\x0c" && binary.BigEndian.Uint16(b[8:10]) == 0x2000
}

// filter is the classic BPF program of Match (untagged frames: the kernel
// strips a tag the NIC offloads): it accepts a CDP frame whole, drops
// anything else.
var filter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},                   // 0: dst[0:4]
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x01000ccc, Jf: 11}, // 1
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 4},                   // 2: dst[4:6]
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0xcccc, Jf: 9},      // 3
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},                  // 4: 802.3 length
	{Code: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, K: 1500, Jt: 7},        // 5
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 14},                  // 6: AA AA 03 00
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0xaaaa0300, Jf: 5},  // 7
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 18},                  // 8: 00 0c
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x000c, Jf: 3},      // 9
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 20},                  // 10: protocol
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x2000, Jf: 1},      // 11
	{Code: unix.BPF_RET | unix.BPF_K, K: 0x40000},                           // 12: accept
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},                                 // 13: drop
}

// Capture is the real frame source: Run captures the CDP frames received
// on one NIC. The zero value is ready.
type Capture struct{}

// Run reads the CDP frames received on ifname (not those it sends) and
// calls fn with each, from one goroutine, until ctx ends (it then returns
// nil) or the socket fails. fn must not keep frame.
func (Capture) Run(ctx context.Context, ifname string, fn func(frame []byte)) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("cdp capture on %s: %w", ifname, err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return fmt.Errorf("cdp capture on %s: socket: %w", ifname, err)
	}
	// The file owns fd from here: pollable (non-blocking), so Close wakes
	// a read.
	f := os.NewFile(uintptr(fd), "cdp:"+ifname)
	defer f.Close()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("cdp capture on %s: attach filter: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("cdp capture on %s: bind: %w", ifname, err)
	}
	// A NIC that is not promiscuous must accept the CDP address.
	mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	copy(mr.Address[:], Multicast)
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		return fmt.Errorf("cdp capture on %s: multicast membership: %w", ifname, err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("cdp capture on %s: %w", ifname, err)
	}
	buf := make([]byte, MaxFrame)
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("cdp capture on %s: read: %w", ifname, err)
		}
		// Packets queued before bind may come from other NICs.
		if sl, ok := from.(*unix.SockaddrLinklayer); !ok || sl.Ifindex != ifi.Index || sl.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if frame := buf[:n]; Match(frame) {
			fn(frame)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
