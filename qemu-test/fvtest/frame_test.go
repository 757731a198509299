package fvtest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, f := range []Frame{
		{Run: "r1", Seq: 0, Stream: 0, Kind: KindLine, Payload: "\x16=== RUN   TestA"},
		{Run: "r1", Seq: 7, Stream: 3, Kind: KindPart, Payload: "tab\there, quote \" and \xff invalid UTF-8"},
		{Run: "r1", Seq: 8, Stream: -1, Kind: KindDone},
		{Run: "r1", Seq: 9, Stream: 1, Kind: KindExit, Payload: "-1"},
		{Run: "r1", Seq: 10, Stream: 1, Kind: KindError, Payload: "line\nbreak\r"},
	} {
		line := Encode(f)
		if strings.ContainsAny(line, "\n\r\x16") {
			t.Errorf("Encode(%+v) = %q, want one printable line", f, line)
		}
		// A console stamps its lines; the frame is found after the stamp.
		got, err := Decode("[gotest +1.00s] [fvtest] " + line + "\r")
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)) error %v", f, err)
		}
		if diff := cmp.Diff(f, got); diff != "" {
			t.Errorf("Decode(Encode()) mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode(Frame{Run: "r", Seq: 4, Stream: 0, Kind: KindLine, Payload: "hello"})
	for _, tc := range []struct {
		name, line string
		notFrame   bool
	}{
		{"no prefix", "hello world", true},
		{"payload changed", strings.Replace(good, "hello", "hellO", 1), false},
		{"sequence changed", strings.Replace(good, " 4 ", " 5 ", 1), false},
		{"cut short", good[:len(good)-3], false},
		{"few fields", Prefix + "r 1 00000000 0", false},
		{"bad kind", strings.Replace(good, " o ", " z ", 1), false},
		{"bad stream", strings.Replace(good, " 0 o ", " -2 o ", 1), false},
		{"kernel message inside", good[:30] + "[ 12.3] bridge: port 1 entered forwarding state" + good[30:], false},
	} {
		_, err := Decode(tc.line)
		if err == nil {
			t.Errorf("%s: Decode(%q) = nil error, want one", tc.name, tc.line)
		} else if errors.Is(err, ErrNotFrame) != tc.notFrame {
			t.Errorf("%s: Decode(%q) = %v, want ErrNotFrame %v", tc.name, tc.line, err, tc.notFrame)
		}
	}
}

func TestCollector(t *testing.T) {
	var buf bytes.Buffer
	s := NewSender(&buf, "run1")
	s.Send(0, KindLine, "first")
	s.Send(0, KindPart, "long ")
	s.Send(0, KindLine, "line")
	s.Send(0, KindExit, "0")
	s.Send(1, KindError, "start /fvtest/1/pkg.test: no such file")
	s.Send(1, KindExit, "-1")
	s.Send(-1, KindDone, "")
	lines := strings.Split(buf.String(), "\n")

	c := NewCollector("run1")
	c.Add("noise from the console")
	c.Add(Encode(Frame{Run: "other", Seq: 0, Kind: KindLine, Payload: "another run"}))
	for _, l := range lines {
		c.Add(l)
	}
	if len(c.Errors) != 0 || !c.Done {
		t.Fatalf("Errors %q, Done %v; want none, true", c.Errors, c.Done)
	}
	want := map[int]*Stream{
		0: {Output: []byte("first\nlong line\n"), Ended: true},
		1: {Ended: true, ExitCode: -1, Errors: []string{"start /fvtest/1/pkg.test: no such file"}},
	}
	if diff := cmp.Diff(want, c.Streams); diff != "" {
		t.Errorf("streams (-want +got):\n%s", diff)
	}

	// A lost frame, a damaged one and a repeated one are all reported.
	c = NewCollector("run1")
	c.Add(lines[0])
	c.Add(lines[2]) // 1 lost
	c.Add(strings.Replace(lines[3], "0", "1", 1))
	c.Add(lines[2])
	if len(c.Errors) != 3 {
		t.Errorf("Errors = %q, want lost, damaged and repeated frames", c.Errors)
	}
	if c.Done {
		t.Error("Done without the done frame")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Frame{Run: "r", Seq: 1, Stream: 2, Kind: KindLine, Payload: "x"}))
	f.Add(Prefix + "r 1 0 0 o \"\"")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, line string) {
		fr, err := Decode(line)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to a frame that decodes the same.
		again, err := Decode(Encode(fr))
		if err != nil || again != fr {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", fr, again, err)
		}
	})
}
