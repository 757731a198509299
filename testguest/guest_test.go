package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testGuest answers with a file as its disk and counts power-offs.
func testGuest(t *testing.T, out io.Writer) (*Guest, *int) {
	t.Helper()
	dev := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(dev, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	offs := 0
	g := &Guest{
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Out:      NewLineWriter(out),
		FindDisk: func() (string, error) { return dev, nil },
		Addrs:    func() ([]string, error) { return []string{"10.0.2.15/24", "fe80::1/64"}, nil },
		MemTotal: func() (int64, error) { return 498036, nil },
		PowerOff: func() error { offs++; return nil },
	}
	return g, &offs
}

func TestAnswer(t *testing.T) {
	g, offs := testGuest(t, io.Discard)
	// In order: the disk keeps what earlier lines wrote.
	for _, tc := range []struct {
		line, want string
		off        bool
	}{
		{"", "", false},
		{"read", "FVGUEST DATA <none>", false},
		{"ping", "FVGUEST PONG", false},
		{"write hello", "FVGUEST WROTE 5", false},
		{"read", "FVGUEST DATA hello", false},
		{"write héllo wörld\r", "FVGUEST WROTE 13", false},
		{"read", "FVGUEST DATA héllo wörld", false},
		{"ip", "FVGUEST IP 10.0.2.15/24 fe80::1/64", false},
		{"mem", "FVGUEST MEM 498036 kB", false},
		{"mem 1", "FVGUEST ERR usage: mem takes no argument", false},
		{"frobnicate", "FVGUEST ERR unknown command", false},
		{"write", "FVGUEST ERR usage: write TEXT", false},
		{"write a\tb", "FVGUEST ERR bad text: control character", false},
		{"read", "FVGUEST DATA héllo wörld", false},
		{"poweroff", "", true},
	} {
		got, off := g.Answer(tc.line)
		if got != tc.want || off != tc.off {
			t.Errorf("Answer(%q) = %q, %v; want %q, %v", tc.line, got, off, tc.want, tc.off)
		}
	}
	if *offs != 0 {
		t.Errorf("Answer powered off %d times, want 0 (Serve calls Shutdown)", *offs)
	}
}

func TestAnswerErrors(t *testing.T) {
	g, _ := testGuest(t, io.Discard)
	g.FindDisk = func() (string, error) { return "", ErrNoDisk }
	g.Addrs = func() ([]string, error) { return nil, nil }
	for line, want := range map[string]string{
		"write x": "FVGUEST ERR no disk",
		"read":    "FVGUEST ERR no disk",
		"ip":      "FVGUEST IP none",
	} {
		if got, _ := g.Answer(line); got != want {
			t.Errorf("Answer(%q) = %q, want %q", line, got, want)
		}
	}
	g.FindDisk = func() (string, error) { return "/nonexistent/disk", nil }
	g.Addrs = func() ([]string, error) { return nil, errors.New("netlink:\nbroken") }
	for _, line := range []string{"write x", "read", "ip"} {
		got, _ := g.Answer(line)
		if !strings.HasPrefix(got, "FVGUEST ERR ") || strings.Contains(got, "\n") {
			t.Errorf("Answer(%q) = %q, want one FVGUEST ERR line", line, got)
		}
	}
}

func TestServe(t *testing.T) {
	var out bytes.Buffer
	g, offs := testGuest(t, &out)
	in := "ping\r\n\nwrite hi\n" + strings.Repeat("x", 3*maxLine) + "\nread\npoweroff\nping\npoweroff\nread"
	if err := g.Serve(strings.NewReader(in)); !errors.Is(err, io.EOF) {
		t.Errorf("Serve() = %v, want io.EOF", err)
	}
	want := "FVGUEST PONG\nFVGUEST WROTE 2\n" +
		fmt.Sprintf("FVGUEST ERR line too long (at most %d bytes)\n", maxLine) +
		"FVGUEST DATA hi\nFVGUEST POWEROFF\nFVGUEST PONG\nFVGUEST DATA hi\n"
	if got := out.String(); got != want {
		t.Errorf("Serve() wrote:\n%s\nwant:\n%s", got, want)
	}
	if *offs != 1 {
		t.Errorf("powered off %d times, want once", *offs)
	}
}

func TestServeSurvivesPanic(t *testing.T) {
	var out bytes.Buffer
	g, _ := testGuest(t, &out)
	g.Addrs = func() ([]string, error) { panic("boom") }
	if err := g.Serve(strings.NewReader("ip\nping\n")); !errors.Is(err, io.EOF) {
		t.Errorf("Serve() = %v, want io.EOF", err)
	}
	if want := "FVGUEST ERR internal error: boom\nFVGUEST PONG\n"; out.String() != want {
		t.Errorf("Serve() wrote %q, want %q", out.String(), want)
	}
}

func TestShutdownOnce(t *testing.T) {
	var out bytes.Buffer
	g, offs := testGuest(t, &out)
	g.PowerOff = func() error { *offs++; return errors.New("not PID 1") }
	g.Shutdown("button")
	g.Shutdown("again")
	if *offs != 1 || out.String() != "FVGUEST POWEROFF\n" {
		t.Errorf("after two Shutdowns: %d power-offs, console %q; want one each", *offs, out.String())
	}
}

// FuzzAnswer: no console line crashes the guest or breaks the protocol (one
// line per answer, every answer marked).
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{"ping", "write hello", "read", "ip", "poweroff", "write \xff", "x y z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		g, _ := testGuest(t, io.Discard)
		got, off := g.Answer(line)
		if strings.ContainsAny(got, "\r\n") || (got != "" && !strings.HasPrefix(got, Marker+" ")) {
			t.Errorf("Answer(%q) = %q, want one marked line", line, got)
		}
		if got == "" && !off && strings.Trim(line, " \t\r\n") != "" {
			t.Errorf("Answer(%q) = no answer", line)
		}
	})
}

func TestParseMemTotal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"MemTotal:         498036 kB\nMemFree:          461164 kB\n", 498036, true},
		{"MemFree:          461164 kB\nMemTotal:  12 kB", 12, true},
		{"MemFree:          461164 kB\n", 0, false},
		{"MemTotal: lots\n", 0, false},
	} {
		got, err := ParseMemTotal(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseMemTotal(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
