package qemutest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// A Hub is a virtual Ethernet segment shared by emulated hosts: a repeater
// on 127.0.0.1 that speaks the framing of QEMU's socket network backend
// (each frame is preceded by its length, 4 bytes big-endian) and sends every
// frame it receives from one port to all the others. Each host joins with
// WithHubNIC (QEMU's "-netdev socket,connect=ADDR"), so any number of hosts
// can share the segment, unlike QEMU's own listen=/connect= pairs, which
// join exactly two.
//
// The hub also records the frames it carried (Frames, WaitFrame), which
// lets a test prove that traffic crossed between hosts (or did not), and
// can put frames of its own on the segment (Inject): the test's own
// station on the wire.
//
// It is a hub, not a learning switch: every host sees every frame, as on a
// shared segment, which is what a host's switch must cope with anyway
// (unknown unicast arriving on an uplink).
type Hub struct {
	ln    net.Listener
	logf  func(format string, args ...any)
	start time.Time

	mu       sync.Mutex
	ports    map[int]*hubPort
	nextPort int
	frames   []Frame
	capBytes int
	lost     int // frames recorded but dropped from the record (capacity)
	total    int // frames received from ports
	dropped  int // frames not queued to a port whose queue was full
	changed  chan struct{}
	closed   bool

	wg sync.WaitGroup
}

// Hub limits.
const (
	// MaxHubFrame is the largest frame the hub accepts: QEMU's own limit
	// for its socket backend (NET_BUFSIZE, 4 KiB of headroom and a 64 KiB
	// packet). A longer length prefix means the stream is out of step, and
	// the port is closed.
	MaxHubFrame = 4096 + 65536
	// hubQueue is how many frames may wait for one port's writer; more
	// are dropped, as a congested link would.
	hubQueue = 256
	// hubRecordBytes bounds the recorded frames' bytes; the oldest go
	// first (Lost counts them).
	hubRecordBytes = 32 << 20
)

// InjectedPort is the Port of frames the test put on the segment (Inject).
const InjectedPort = -1

// Frame is one frame the hub carried.
type Frame struct {
	// Seq numbers the hub's frames from 1 in the order they were received.
	Seq int
	// Port is the hub port it came from (numbered from 1 in the order the
	// hosts connected), or InjectedPort.
	Port int
	// At is the time since the hub started.
	At   time.Duration
	Data []byte
}

type hubPort struct {
	id   int
	conn net.Conn
	out  chan []byte
}

// NewHub starts a hub on a free 127.0.0.1 port. logf (nil: silent) gets a
// line when a port connects or leaves. The caller must Close it.
func NewHub(logf func(format string, args ...any)) (*Hub, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	h := &Hub{ln: ln, logf: logf, start: time.Now(), ports: map[int]*hubPort{}, changed: make(chan struct{})}
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

// StartHub starts a hub for a test and closes it at cleanup, logging what
// it carried.
func StartHub(t testing.TB) *Hub {
	t.Helper()
	h, err := NewHub(t.Logf)
	if err != nil {
		t.Fatalf("qemutest.StartHub: %v", err)
	}
	t.Cleanup(func() {
		h.Close()
		st := h.Stats()
		t.Logf("[hub %s] closed: %d frames carried, %d dropped at full queues", h.Addr(), st.Frames, st.Dropped)
	})
	return h
}

// Addr is the hub's 127.0.0.1:PORT, what QEMU connects to.
func (h *Hub) Addr() string { return h.ln.Addr().String() }

func (h *Hub) accept() {
	defer h.wg.Done()
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			return // closed
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			conn.Close()
			return
		}
		h.nextPort++
		p := &hubPort{id: h.nextPort, conn: conn, out: make(chan []byte, hubQueue)}
		h.ports[p.id] = p
		h.wg.Add(2)
		h.mu.Unlock()
		h.logf("[hub %s] port %d connected from %s", h.Addr(), p.id, conn.RemoteAddr())
		go h.read(p)
		go h.write(p)
	}
}

// read takes frames from a port until it leaves or breaks the framing.
func (h *Hub) read(p *hubPort) {
	defer h.wg.Done()
	err := readFrames(p.conn, func(f []byte) { h.forward(p.id, f) })
	h.mu.Lock()
	_, present := h.ports[p.id]
	delete(h.ports, p.id)
	closed := h.closed
	h.mu.Unlock()
	if present {
		close(p.out) // the writer closes the connection
	}
	if !closed {
		h.logf("[hub %s] port %d left: %v", h.Addr(), p.id, err)
	}
}

// readFrames calls emit with each frame of a QEMU socket stream until the
// stream ends (nil at a clean end between frames) or is out of step.
func readFrames(r io.Reader, emit func([]byte)) error {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxHubFrame {
			return fmt.Errorf("frame length %d: more than %d, the stream is out of step", n, MaxHubFrame)
		}
		f := make([]byte, n)
		if _, err := io.ReadFull(r, f); err != nil {
			return fmt.Errorf("frame of %d bytes cut short: %w", n, err)
		}
		if n > 0 {
			emit(f)
		}
	}
}

// appendFrame appends f with its length prefix.
func appendFrame(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// write sends the port's queued frames.
func (h *Hub) write(p *hubPort) {
	defer h.wg.Done()
	defer p.conn.Close()
	var buf []byte
	for f := range p.out {
		buf = appendFrame(buf[:0], f)
		if _, err := p.conn.Write(buf); err != nil {
			// The reader sees the connection fail too and unregisters the
			// port; drain until it closes the queue.
			for range p.out {
			}
			return
		}
	}
}

// forward records a frame and queues it to every port but its own.
func (h *Hub) forward(from int, f []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if from != InjectedPort {
		h.total++
	}
	h.record(from, f)
	for id, p := range h.ports {
		if id == from {
			continue
		}
		select {
		case p.out <- f:
		default:
			h.dropped++
		}
	}
}

// record keeps the frame, within hubRecordBytes; h.mu is held.
func (h *Hub) record(from int, f []byte) {
	seq := h.lost + len(h.frames) + 1
	h.frames = append(h.frames, Frame{Seq: seq, Port: from, At: time.Since(h.start), Data: f})
	h.capBytes += len(f)
	drop := 0
	for h.capBytes > hubRecordBytes && drop < len(h.frames)-1 {
		h.capBytes -= len(h.frames[drop].Data)
		drop++
	}
	if drop > 0 {
		h.frames = append(h.frames[:0:0], h.frames[drop:]...)
		h.lost += drop
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

// Inject puts a frame on the segment: every connected port receives it.
// It is recorded with Port InjectedPort.
func (h *Hub) Inject(frame []byte) error {
	if len(frame) == 0 || len(frame) > MaxHubFrame {
		return fmt.Errorf("hub: inject a frame of %d bytes: want 1-%d", len(frame), MaxHubFrame)
	}
	h.mu.Lock()
	closed, n := h.closed, len(h.ports)
	h.mu.Unlock()
	if closed {
		return errors.New("hub: closed")
	}
	if n == 0 {
		return errors.New("hub: no port connected")
	}
	h.forward(InjectedPort, append([]byte(nil), frame...))
	return nil
}

// Frames returns the recorded frames, oldest first (at most the last
// 32 MiB of them: Stats().Lost says how many older ones were let go).
// The frames' bytes are shared: do not change them.
func (h *Hub) Frames() []Frame {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Frame(nil), h.frames...)
}

// Mark returns the Seq of the next frame, for FramesSince.
func (h *Hub) Mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost + len(h.frames) + 1
}

// FramesSince returns the recorded frames whose Seq is at least seq.
func (h *Hub) FramesSince(seq int) []Frame {
	var out []Frame
	for _, f := range h.Frames() {
		if f.Seq >= seq {
			out = append(out, f)
		}
	}
	return out
}

// WaitFrame waits for a frame with Seq at least since that match accepts,
// and returns it.
func (h *Hub) WaitFrame(ctx context.Context, since int, match func(Frame) bool) (Frame, error) {
	for {
		h.mu.Lock()
		frames, changed := append([]Frame(nil), h.frames...), h.changed
		closed := h.closed
		h.mu.Unlock()
		for _, f := range frames {
			if f.Seq >= since && match(f) {
				return f, nil
			}
		}
		if closed {
			return Frame{}, errors.New("hub: closed")
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Frame{}, fmt.Errorf("hub: no matching frame: %w", ctx.Err())
		}
	}
}

// HubStats are counters of a hub.
type HubStats struct {
	// Ports connected now.
	Ports int
	// Frames received from ports (injected ones not counted).
	Frames int
	// Dropped counts frames not sent to a port because its queue was full.
	Dropped int
	// Lost counts recorded frames let go to stay within the record's size.
	Lost int
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HubStats{Ports: len(h.ports), Frames: h.total, Dropped: h.dropped, Lost: h.lost}
}

// Close stops the hub: it stops listening and disconnects every port
// (QEMU keeps running, its NIC without a peer). It waits for the hub's
// goroutines.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.changed)
	h.changed = make(chan struct{})
	err := h.ln.Close()
	for id, p := range h.ports {
		delete(h.ports, id)
		close(p.out)
		// Unblocks the reader (and a writer stuck on a full socket).
		p.conn.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	return err
}
