// Package fvtest is the wire between qemutest.RunGoTests, which runs Go test
// binaries inside an emulated Flashvisor host, and fvtestrun, the program
// that runs them there: the spec the runner reads, and the framed lines it
// writes back.
//
// Frames travel on a dedicated virtio serial port (the kernel's console is
// not used, so kernel messages can never cut into them). Each frame is one
// line:
//
//	FVTEST <run> <seq> <crc> <stream> <kind> <quoted payload>
//
// run is the spec's random RunID, so lines of another run never count; seq
// counts from 0 without gaps, so a lost line is noticed; crc is the CRC-32
// (IEEE, hex) of the other fields, so a damaged line is noticed; stream is
// the index of the test binary in the spec (-1 for the runner itself); kind
// is one of the Kind constants; the payload is a Go-quoted string, so any
// byte survives a terminal.
package fvtest

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Prefix starts every frame.
const Prefix = "FVTEST "

// Kind says what a frame carries.
type Kind string

const (
	// KindLine is one output line of a test binary, without its newline.
	KindLine Kind = "o"
	// KindPart is output that did not end in a newline (a very long line
	// is cut into parts; the last part of a line is a KindLine).
	KindPart Kind = "p"
	// KindExit ends a stream: the payload is the binary's exit code, or
	// -1 when it could not run or was killed.
	KindExit Kind = "x"
	// KindError is a message from the runner about a stream (or, on
	// stream -1, about the whole run).
	KindError Kind = "e"
	// KindDone is the last frame of a run: every stream has ended.
	KindDone Kind = "d"
)

// MaxPayload bounds the payload of one frame before quoting; longer output
// lines are cut into KindPart frames.
const MaxPayload = 4096

// Frame is one decoded frame.
type Frame struct {
	Run     string
	Seq     uint64
	Stream  int
	Kind    Kind
	Payload string
}

func checksum(run string, seq uint64, stream int, kind Kind, payload string) uint32 {
	return crc32.ChecksumIEEE(fmt.Appendf(nil, "%s %d %d %s %s", run, seq, stream, kind, payload))
}

// Encode renders f as one line, without the newline.
func Encode(f Frame) string {
	return fmt.Sprintf("%s%s %d %08x %d %s %s", Prefix, f.Run, f.Seq,
		checksum(f.Run, f.Seq, f.Stream, f.Kind, f.Payload), f.Stream, f.Kind, strconv.Quote(f.Payload))
}

// ErrNotFrame is returned by Decode for a line that holds no frame.
var ErrNotFrame = errors.New("not a frame")

// Decode finds a frame in line. Text before the prefix is ignored (a console
// may stamp its lines), and so is a trailing carriage return. A line without
// the prefix gives ErrNotFrame; a damaged frame gives another error.
func Decode(line string) (Frame, error) {
	i := strings.Index(line, Prefix)
	if i < 0 {
		return Frame{}, ErrNotFrame
	}
	rest := strings.TrimRight(line[i+len(Prefix):], "\r\n")
	f := strings.SplitN(rest, " ", 6)
	if len(f) != 6 {
		return Frame{}, fmt.Errorf("frame %q: want 6 fields", rest)
	}
	var fr Frame
	var err error
	fr.Run = f[0]
	if fr.Seq, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return Frame{}, fmt.Errorf("frame %q: sequence: %w", rest, err)
	}
	sum, err := strconv.ParseUint(f[2], 16, 32)
	if err != nil {
		return Frame{}, fmt.Errorf("frame %q: checksum: %w", rest, err)
	}
	if fr.Stream, err = strconv.Atoi(f[3]); err != nil || fr.Stream < -1 {
		return Frame{}, fmt.Errorf("frame %q: bad stream", rest)
	}
	fr.Kind = Kind(f[4])
	switch fr.Kind {
	case KindLine, KindPart, KindExit, KindError, KindDone:
	default:
		return Frame{}, fmt.Errorf("frame %q: unknown kind %q", rest, f[4])
	}
	if fr.Payload, err = strconv.Unquote(f[5]); err != nil {
		return Frame{}, fmt.Errorf("frame %q: payload: %w", rest, err)
	}
	if got := checksum(fr.Run, fr.Seq, fr.Stream, fr.Kind, fr.Payload); uint64(got) != sum {
		return Frame{}, fmt.Errorf("frame %q: checksum %08x, want %08x (damaged in transit)", rest, got, sum)
	}
	return fr, nil
}

// Stream is what a run brought back for one test binary.
type Stream struct {
	// Output is the binary's combined stdout and stderr, byte for byte.
	Output []byte
	// Ended is set by the KindExit frame; ExitCode is its code (-1: the
	// binary could not run or died from a signal).
	Ended    bool
	ExitCode int
	// Errors are the runner's messages about this stream.
	Errors []string
}

// Collector reassembles the frames of one run from lines, in order.
type Collector struct {
	Run     string
	Streams map[int]*Stream
	// Errors are problems of the run as a whole: runner messages on
	// stream -1, damaged frames, lost frames.
	Errors []string
	Done   bool
	next   uint64
}

// NewCollector collects the frames of run.
func NewCollector(run string) *Collector {
	return &Collector{Run: run, Streams: map[int]*Stream{}}
}

// Stream returns the stream with index i, creating it.
func (c *Collector) Stream(i int) *Stream {
	s := c.Streams[i]
	if s == nil {
		s = &Stream{}
		c.Streams[i] = s
	}
	return s
}

// Add takes one line. Lines without a frame and frames of other runs are
// ignored; a damaged frame or a gap in the sequence is recorded in Errors.
func (c *Collector) Add(line string) {
	f, err := Decode(line)
	if errors.Is(err, ErrNotFrame) {
		return
	}
	if err != nil {
		c.Errors = append(c.Errors, err.Error())
		return
	}
	if f.Run != c.Run {
		return
	}
	switch {
	case f.Seq < c.next:
		c.Errors = append(c.Errors, fmt.Sprintf("frame %d seen twice or out of order", f.Seq))
		return
	case f.Seq > c.next:
		c.Errors = append(c.Errors, fmt.Sprintf("frames %d to %d lost", c.next, f.Seq-1))
	}
	c.next = f.Seq + 1
	if f.Kind == KindDone {
		c.Done = true
		return
	}
	if f.Stream < 0 {
		c.Errors = append(c.Errors, "runner: "+f.Payload)
		return
	}
	s := c.Stream(f.Stream)
	switch f.Kind {
	case KindLine:
		s.Output = append(append(s.Output, f.Payload...), '\n')
	case KindPart:
		s.Output = append(s.Output, f.Payload...)
	case KindError:
		s.Errors = append(s.Errors, f.Payload)
	case KindExit:
		s.Ended = true
		s.ExitCode, err = strconv.Atoi(f.Payload)
		if err != nil {
			s.ExitCode = -1
			s.Errors = append(s.Errors, fmt.Sprintf("exit frame %q", f.Payload))
		}
	}
}
