package qmp

import (
	"bufio"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		line    string
		kind    kind
		id      string
		errCls  string
		wantErr bool
	}{
		{line: `{"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 8}, "package": "v8.2.1"}, "capabilities": ["oob"]}}`, kind: kindGreeting},
		{line: `{"return": {}, "id": "fv-1"}`, kind: kindResponse, id: "fv-1"},
		{line: `{"return": [1,2]}`, kind: kindResponse},
		{line: `{"error": {"class": "GenericError", "desc": "x"}, "id": "fv-9"}`, kind: kindResponse, id: "fv-9", errCls: "GenericError"},
		{line: `{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 1700000000, "microseconds": 5}}`, kind: kindEvent},
		{line: ``, wantErr: true},
		{line: `[]`, wantErr: true},
		{line: `{}`, wantErr: true},
		{line: `{"return": {}, "id": 5}`, wantErr: true},
		{line: `{"return": {}, "event": "STOP"}`, wantErr: true},
		{line: `{"return": {}}x`, wantErr: true},
		{line: `{"event": 3}`, wantErr: true},
	}
	for _, tc := range tests {
		m, err := parseMessage([]byte(tc.line))
		if tc.wantErr {
			if err == nil || !errors.Is(err, ErrProtocol) {
				t.Errorf("parseMessage(%q) = %v, want ErrProtocol", tc.line, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseMessage(%q) = %v", tc.line, err)
			continue
		}
		if m.kind != tc.kind || m.id != tc.id {
			t.Errorf("parseMessage(%q) = kind %v id %q, want %v %q", tc.line, m.kind, m.id, tc.kind, tc.id)
		}
		if (m.err != nil) != (tc.errCls != "") || m.err != nil && m.err.Class != tc.errCls {
			t.Errorf("parseMessage(%q) error = %v, want class %q", tc.line, m.err, tc.errCls)
		}
	}
	m, _ := parseMessage([]byte(tests[0].line))
	if m.version.String() != "8.2.1" || m.version.Package != "v8.2.1" {
		t.Errorf("greeting version = %+v", m.version)
	}
	m, _ = parseMessage([]byte(tests[4].line))
	if want := time.Unix(1700000000, 5000); !m.event.Time.Equal(want) || m.event.Name != "SHUTDOWN" {
		t.Errorf("event = %+v, want SHUTDOWN at %v", m.event, want)
	}
}

func TestReadLine(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("\r\n{\"a\":1}\r\n"+strings.Repeat("x", 100)+"\n{\"b\""), 16)
	for _, want := range []string{`{"a":1}`, strings.Repeat("x", 100)} {
		got, err := readLine(r)
		if err != nil || string(got) != want {
			t.Fatalf("readLine() = %q, %v, want %q", got, err, want)
		}
	}
	if _, err := readLine(r); !errors.Is(err, ErrProtocol) {
		t.Errorf("readLine(truncated) = %v, want ErrProtocol", err)
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}}, "capabilities": []}}`,
		`{"return": {"status": "running"}, "id": "fv-1"}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": "fv-2"}`,
		`{"event": "STOP", "timestamp": {"seconds": -1, "microseconds": 99999999}}`,
		`{"id": null, "return": null}`,
		`{"event": "X", "data": [], "timestamp": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := parseMessage(line)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("parseMessage(%q) error %v does not wrap ErrProtocol", line, err)
			}
			return
		}
		switch m.kind {
		case kindGreeting, kindResponse, kindEvent:
		default:
			t.Fatalf("parseMessage(%q) kind = %v", line, m.kind)
		}
		if m.kind == kindEvent && m.event.Name == "" {
			t.Fatalf("parseMessage(%q): event without name", line)
		}
	})
}
