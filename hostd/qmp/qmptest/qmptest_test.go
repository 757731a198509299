package qmptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"testing"
)

// The fake must hold clients to the protocol, or tests would pass against
// it that fail against QEMU.
func TestServerEnforcesNegotiation(t *testing.T) {
	s := NewServer(map[string]Handler{"ping": func(json.RawMessage) (any, error) { return "pong", nil }})
	if err := s.Emit("STOP", nil); err == nil {
		t.Error("Emit() without a client = nil, want error")
	}
	cc, sc := net.Pipe()
	defer cc.Close()
	go s.Serve(sc)
	r := bufio.NewScanner(cc)
	next := func() map[string]json.RawMessage {
		t.Helper()
		if !r.Scan() {
			t.Fatalf("no message: %v", r.Err())
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, ok := next()["QMP"]; !ok {
		t.Fatal("first message is not a greeting")
	}
	for i, tc := range []struct{ cmd, want string }{
		{"ping", "error"},              // before negotiation
		{"qmp_capabilities", "return"}, //
		{"qmp_capabilities", "error"},  // twice
		{"ping", "return"},             //
	} {
		fmt.Fprintf(cc, `{"execute": %q, "id": %d}`+"\n", tc.cmd, i)
		m := next()
		if _, ok := m[tc.want]; !ok || string(m["id"]) != fmt.Sprint(i) {
			t.Errorf("step %d %s: answer %v, want %q with id %d", i, tc.cmd, m, tc.want, i)
		}
	}
	if got := s.CommandNames(); len(got) != 1 || got[0] != "ping" {
		t.Errorf("CommandNames() = %v, want [ping]", got)
	}
}
