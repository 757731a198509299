package api

import (
	"encoding/json"
	"time"
)

// Task states.
const (
	TaskRunning = "running"
	TaskSuccess = "success"
	TaskError   = "error"
)

// Task is a long operation (power on, shutdown, snapshot, create...): the
// API answers 202 with it and the client follows GET /api/v1/tasks/{id}.
type Task struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`   // e.g. "vm.power_on"
	Target   string          `json:"target"` // e.g. the VM name
	State    string          `json:"state"`
	Error    *Error          `json:"error,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Started  time.Time       `json:"started"`
	Finished *time.Time      `json:"finished,omitempty"`
}

// Event is one entry of the host's event stream (GET /api/v1/events).
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`   // e.g. "vm.powered_on", "vm.guest_shutdown", "task.done"
	Target  string    `json:"target"` // VM name, task id, ...
	Message string    `json:"message,omitempty"`
}
