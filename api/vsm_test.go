package api

import (
	"encoding/json"
	"strings"
	"testing"
)

const testUUID = "0f8fad5b-d9cb-469f-a165-70867728950e"

func TestVSMMessageValidate(t *testing.T) {
	ok := func(m VSMMessage) VSMMessage { m.Version, m.Domain, m.Seq = VSMProtocolVersion, 18, 1; return m }
	good := []VSMMessage{
		ok(VSMMessage{Type: VSMHeartbeat}),
		ok(VSMMessage{Type: VSMResync}),
		ok(VSMMessage{Type: VSMHello, Hello: &VSMHelloBody{HostUUID: testUUID, Module: 3, Uplinks: []VSMUplink{{Interface: "eth1", Profile: "uplink"}}}}),
		ok(VSMMessage{Type: VSMWelcome, Welcome: &VSMWelcomeBody{Module: 66}}),
		ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Generation: 1, Full: true, Profiles: []PortProfile{{Name: "web"}}}}),
		ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Generation: 5, Base: 4, RemovePorts: []string{"Veth3"}}}),
		ok(VSMMessage{Type: VSMAck, Ack: &VSMAckBody{Generation: 5}}),
		ok(VSMMessage{Type: VSMAttach, Attach: &VSMAttachBody{Owner: "vm:" + testUUID + "/nic0", Profile: "web"}}),
		ok(VSMMessage{Type: VSMAttachResult, AttachResult: &VSMAttachResultBody{Port: "Veth12"}}),
		ok(VSMMessage{Type: VSMAttachResult, AttachResult: &VSMAttachResultBody{Error: "no such profile"}}),
		ok(VSMMessage{Type: VSMDetach, Detach: &VSMDetachBody{Owner: "vmk:" + testUUID + "/vmk1"}}),
		ok(VSMMessage{Type: VSMPortReport, Ports: &VSMPortReportBody{}}),
		ok(VSMMessage{Type: VSMFrame, Frame: &VSMFrameBody{Port: "Eth3/2", Data: make([]byte, 60)}}),
		ok(VSMMessage{Type: VSMError, Error: &VSMErrorBody{Code: VSMErrChassisFull, Message: "full"}}),
	}
	for _, m := range good {
		if err := m.Validate(); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", m.Type, err)
		}
	}
	bad := []struct {
		m    VSMMessage
		want string
	}{
		{VSMMessage{Version: 2, Domain: 18, Seq: 1, Type: VSMHeartbeat}, "version 2"},
		{VSMMessage{Version: 1, Domain: 0, Seq: 1, Type: VSMHeartbeat}, "domain 0"},
		{VSMMessage{Version: 1, Domain: 4096, Seq: 1, Type: VSMHeartbeat}, "domain 4096"},
		{VSMMessage{Version: 1, Domain: 18, Type: VSMHeartbeat}, "seq 0"},
		{ok(VSMMessage{Type: "bogus"}), "unknown type"},
		{ok(VSMMessage{Type: VSMHeartbeat, Ack: &VSMAckBody{}}), "no body"},
		{ok(VSMMessage{Type: VSMHello}), "exactly its own body"},
		{ok(VSMMessage{Type: VSMHello, Hello: &VSMHelloBody{HostUUID: testUUID}, Ack: &VSMAckBody{}}), "2 bodies"},
		{ok(VSMMessage{Type: VSMHello, Hello: &VSMHelloBody{HostUUID: "host-a"}}), "not a UUID"},
		{ok(VSMMessage{Type: VSMHello, Hello: &VSMHelloBody{HostUUID: testUUID, Module: 2}}), "module 2"},
		{ok(VSMMessage{Type: VSMHello, Hello: &VSMHelloBody{HostUUID: testUUID, Uplinks: []VSMUplink{{Interface: "eth1"}}}}), "without a profile"},
		{ok(VSMMessage{Type: VSMWelcome, Welcome: &VSMWelcomeBody{Module: 67}}), "module 67"},
		{ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Full: true}}), "generation 0"},
		{ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Generation: 3, Base: 1}}), "want one step"},
		{ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Generation: 3, Base: 2, Full: true}}), "no base"},
		{ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Generation: 3, Full: true, RemovePorts: []string{"Veth1"}}}), "removes nothing"},
		{ok(VSMMessage{Type: VSMConfigMsg, Config: &VSMConfigBody{Generation: 1, Full: true, Profiles: []PortProfile{{Name: "a b"}}}}), "profile name"},
		{ok(VSMMessage{Type: VSMAttach, Attach: &VSMAttachBody{Owner: "web01", Profile: "web"}}), "owner"},
		{ok(VSMMessage{Type: VSMAttach, Attach: &VSMAttachBody{Owner: "vm:x/nic0"}}), "profile"},
		{ok(VSMMessage{Type: VSMAttachResult, AttachResult: &VSMAttachResultBody{}}), "a port or an error"},
		{ok(VSMMessage{Type: VSMAttachResult, AttachResult: &VSMAttachResultBody{Port: "Veth0"}}), "want VethN"},
		{ok(VSMMessage{Type: VSMFrame, Frame: &VSMFrameBody{Data: []byte{1}}}), "1 bytes"},
		{ok(VSMMessage{Type: VSMError, Error: &VSMErrorBody{}}), "empty code"},
	}
	for _, c := range bad {
		err := c.m.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error with %q", c.m, err, c.want)
		}
	}
}

func TestDecodeVSMMessage(t *testing.T) {
	b, _ := json.Marshal(VSMMessage{Version: 1, Domain: 18, Seq: 7, Type: VSMAck, Ack: &VSMAckBody{Generation: 2}})
	m, err := DecodeVSMMessage(b)
	if err != nil || m.Ack == nil || m.Ack.Generation != 2 || m.Seq != 7 {
		t.Errorf("DecodeVSMMessage(%s) = %+v, %v", b, m, err)
	}
	if _, err := DecodeVSMMessage([]byte(`{"v":1,`)); err == nil {
		t.Errorf("DecodeVSMMessage(truncated) = nil error")
	}
	if _, err := DecodeVSMMessage(make([]byte, VSMMaxMessageBytes+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("DecodeVSMMessage(too big) = %v", err)
	}
}

func TestVethNumber(t *testing.T) {
	for in, want := range map[string]int{"Veth1": 1, "Veth1024": 1024, "Veth0": 0, "Veth01": 0, "veth1": 0, "Veth": 0, "Veth-1": 0, "Eth3/1": 0} {
		n, ok := VethNumber(in)
		if ok != (want > 0) || n != want {
			t.Errorf("VethNumber(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
}

// FuzzDecodeVSMMessage: any bytes give a message or an error, never a
// panic, and whatever decodes re-encodes to something that decodes again.
func FuzzDecodeVSMMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"domain":18,"type":"heartbeat","seq":1}`))
	f.Add([]byte(`{"v":1,"domain":18,"type":"hello","seq":1,"hello":{"host_uuid":"` + testUUID + `","uplinks":[{"interface":"eth1","profile":"up"}]}}`))
	f.Add([]byte(`{"v":1,"domain":18,"type":"config","seq":2,"epoch":3,"config":{"generation":4,"base":3,"ports":[{"name":"Veth1","kind":"veth"}]}}`))
	f.Add([]byte(`{"v":1,"domain":18,"type":"attach-result","seq":2,"attach_result":{"port":"Veth9"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeVSMMessage(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeVSMMessage(again); err != nil {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
	})
}
