package qmp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

type kind int

const (
	kindGreeting kind = iota + 1
	kindResponse
	kindEvent
)

func (k kind) String() string {
	switch k {
	case kindGreeting:
		return "greeting"
	case kindResponse:
		return "answer"
	case kindEvent:
		return "event"
	}
	return "unknown message"
}

// message is one decoded line from QEMU.
type message struct {
	kind kind
	// greeting
	version Version
	caps    []string
	// answer
	id  string // "" when QEMU sent none
	ret json.RawMessage
	err *Error
	// event
	event Event
}

// wireMessage is the union of everything QEMU sends.
type wireMessage struct {
	QMP *struct {
		Version struct {
			QEMU    Version `json:"qemu"`
			Package string  `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// parseMessage decodes one line from QEMU. It never panics; anything that is
// not exactly one greeting, answer or event is an error wrapping ErrProtocol.
func parseMessage(line []byte) (message, error) {
	var w wireMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&w); err != nil {
		return message{}, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if dec.More() {
		return message{}, fmt.Errorf("%w: trailing data after message", ErrProtocol)
	}
	n := 0
	for _, present := range []bool{w.QMP != nil, w.Return != nil || w.Error != nil, w.Event != ""} {
		if present {
			n++
		}
	}
	if n != 1 || (w.Return != nil && w.Error != nil) {
		return message{}, fmt.Errorf("%w: not one of greeting, answer or event: %.200q", ErrProtocol, line)
	}
	switch {
	case w.QMP != nil:
		v := w.QMP.Version.QEMU
		v.Package = w.QMP.Version.Package
		return message{kind: kindGreeting, version: v, caps: w.QMP.Capabilities}, nil
	case w.Event != "":
		ev := Event{Name: w.Event, Data: w.Data}
		if w.Timestamp != nil && w.Timestamp.Seconds >= 0 && w.Timestamp.Microseconds >= 0 && w.Timestamp.Microseconds < 1e6 {
			ev.Time = time.Unix(w.Timestamp.Seconds, w.Timestamp.Microseconds*1000)
		}
		return message{kind: kindEvent, event: ev}, nil
	}
	m := message{kind: kindResponse, ret: w.Return}
	if len(w.ID) > 0 && string(w.ID) != "null" {
		var id string
		if err := json.Unmarshal(w.ID, &id); err != nil {
			// We only send string ids; another type cannot be ours.
			return message{}, fmt.Errorf("%w: answer id %s is not a string", ErrProtocol, w.ID)
		}
		m.id = id
	}
	if w.Error != nil {
		m.err = &Error{Class: w.Error.Class, Desc: w.Error.Desc}
		m.ret = nil
	}
	return m, nil
}
