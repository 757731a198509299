package vsm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
)

func TestReadLine(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want []string
		err  error
	}{
		{in: "a\nbc\n", max: 10, want: []string{"a", "bc"}, err: io.EOF},
		{in: "abc", max: 10, err: io.ErrUnexpectedEOF},
		{in: "abcd\n", max: 4, want: []string{"abcd"}, err: io.EOF},
		{in: "abcde\n", max: 4, err: ErrMessageTooBig},
		{in: strings.Repeat("x", 100) + "\n", max: 50, err: ErrMessageTooBig},
	}
	for _, tt := range tests {
		r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
		var got []string
		var err error
		for {
			var b []byte
			if b, err = readLine(r, tt.max); err != nil {
				break
			}
			got = append(got, string(b))
		}
		if !errors.Is(err, tt.err) || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("readLine(%q, %d) = %q, %v; want %q, %v", tt.in, tt.max, got, err, tt.want, tt.err)
		}
	}
}

func TestReadMessage(t *testing.T) {
	m := api.VSMMessage{Version: 1, Domain: 5, Type: api.VSMHeartbeat, Seq: 1}
	b, err := encodeMessage(&m)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(append(append([]byte("\n\r\n"), b...), "{\"v\":2}\n"...)))
	got, err := readMessage(r)
	if err != nil || got.Type != api.VSMHeartbeat || got.Domain != 5 {
		t.Errorf("readMessage = %+v, %v; want the heartbeat", got, err)
	}
	if _, err := readMessage(r); !errors.Is(err, ErrBadMessage) {
		t.Errorf("readMessage(version 2) error = %v, want ErrBadMessage", err)
	}
}

// FuzzReadMessage feeds arbitrary streams to the control message reader:
// it must never panic, never return a line over the limit, and every
// message it returns must validate.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"domain":100,"type":"heartbeat","seq":1}` + "\n"))
	f.Add([]byte(`{"v":1,"domain":100,"type":"hello","seq":1,"hello":{"host_uuid":"11111111-2222-3333-4444-555555555501","uplinks":[{"interface":"eth1","profile":"up"}]}}` + "\n"))
	f.Add([]byte(`{"v":1,"domain":1,"type":"attach","seq":2,"attach":{"owner":"vm:x/nic0","profile":"p"}}` + "\n\n"))
	f.Add([]byte("\n\n{\n"))
	f.Add([]byte(`{"v":1,"domain":1,"type":"config","seq":3,"config":{"generation":2,"base":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for range 100 {
			m, err := readMessage(r)
			if err != nil {
				return
			}
			if verr := m.Validate(); verr != nil {
				t.Fatalf("readMessage returned an invalid message: %v", verr)
			}
		}
	})
}
