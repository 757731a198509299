package guest

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    Command
		wantErr error
	}{
		{"ping", Command{Op: OpPing}, nil},
		{"ping\r", Command{Op: OpPing}, nil},
		{"  ping  ", Command{Op: OpPing}, nil},
		{"read", Command{Op: OpRead}, nil},
		{"ip", Command{Op: OpIP}, nil},
		{"mem", Command{Op: OpMem}, nil},
		{"poweroff", Command{Op: OpPowerOff}, nil},
		{"write hello", Command{Op: OpWrite, Text: "hello"}, nil},
		{"write hello  world", Command{Op: OpWrite, Text: "hello  world"}, nil},
		{"write  indented", Command{Op: OpWrite, Text: " indented"}, nil},
		{"write héllo ✓", Command{Op: OpWrite, Text: "héllo ✓"}, nil},
		{"write " + strings.Repeat("x", MaxText), Command{Op: OpWrite, Text: strings.Repeat("x", MaxText)}, nil},
		{"", Command{}, ErrEmpty},
		{" \r", Command{}, ErrEmpty},
		{"write", Command{}, ErrUsage},
		{"write ", Command{}, ErrUsage},
		{"ping now", Command{}, ErrUsage},
		{"read x", Command{}, ErrUsage},
		{"write a\x1bb", Command{}, ErrText},
		{"write \xff", Command{}, ErrText},
		{"write " + strings.Repeat("x", MaxText+1), Command{}, ErrText},
		{"PING", Command{}, ErrUnknown},
		{"reboot", Command{}, ErrUnknown},
		{"writehello", Command{}, ErrUnknown},
		{"\x00", Command{}, ErrUnknown},
	} {
		got, err := ParseCommand(tc.line)
		if !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("ParseCommand(%.40q) = %+v, %v; want %+v, %v", tc.line, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"ping", "write hello", "write", "read", "ip", "poweroff", "write a\x00", "\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			if c != (Command{}) {
				t.Errorf("ParseCommand(%q) = %+v with error %v, want a zero command", line, c, err)
			}
			return
		}
		if c.Op < OpPing || c.Op > OpPowerOff {
			t.Errorf("ParseCommand(%q) op = %d", line, c.Op)
		}
		if c.Op == OpWrite {
			if c.Text == "" || len(c.Text) > MaxText || !utf8.ValidString(c.Text) || strings.ContainsAny(c.Text, "\r\n") {
				t.Errorf("ParseCommand(%q) text = %q, want non-empty printable text", line, c.Text)
			}
			if _, err := EncodeRecord(c.Text); err != nil {
				t.Errorf("EncodeRecord(%q) of an accepted write = %v", c.Text, err)
			}
		} else if c.Text != "" {
			t.Errorf("ParseCommand(%q) = %+v, text without write", line, c)
		}
	})
}
