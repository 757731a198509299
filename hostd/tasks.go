package hostd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/events"
	"github.com/flashvisor/flashvisor/hostd/task"
)

// Long-poll bounds of GET /api/v1/tasks/{id}/wait.
const (
	DefaultTaskWait = 30 * time.Second
	MaxTaskWait     = 5 * time.Minute
)

// Defaults when Options leave the task manager or the event bus out.
const (
	defaultKeepTasks  = 100
	defaultKeepEvents = 1000
)

// EventTaskDone is the kind of the event published when a task ends.
const EventTaskDone = "task.done"

func (s *Server) taskRoutes(v string) []route {
	return []route{
		{"GET", v + "/tasks", s.listTasks},
		{"GET", v + "/tasks/{id}", s.getTask},
		{"GET", v + "/tasks/{id}/wait", s.waitTask},
		{"GET", v + "/events", s.listEvents},
	}
}

// initTasks fills in the task manager and event bus, and makes every task's
// end an event unless the caller hooked Done itself.
func (s *Server) initTasks() {
	if s.o.Events == nil {
		s.o.Events = events.New(defaultKeepEvents)
	}
	if s.o.Tasks == nil {
		s.o.Tasks = task.New(defaultKeepTasks)
	}
	s.tasks = s.o.Tasks
	if s.tasks.Done == nil {
		bus := s.o.Events
		s.tasks.Done = func(t api.Task) { bus.Publish(EventTaskDone, t.ID, taskSummary(t)) }
	}
}

// taskSummary is a task.done event's message: "datastore.create ds1: success".
func taskSummary(t api.Task) string {
	msg := t.Kind + " " + t.Target + ": " + t.State
	if t.Error != nil {
		msg += ": " + t.Error.Message
	}
	return msg
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.tasks.List())
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.tasks.Get(r.PathValue("id"))
	if err != nil {
		taskError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// waitTask is a long poll: it answers when the task ends or when the
// timeout passes, with the task as it is then; clients loop while it runs.
func (s *Server) waitTask(w http.ResponseWriter, r *http.Request) {
	timeout, err := parseWaitTimeout(r.URL.Query().Get("timeout"))
	if err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	// The server's write timeout is shorter than the longest wait.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn("extend write deadline", "err", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	t, err := s.tasks.Wait(ctx, r.PathValue("id"))
	if err != nil {
		taskError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// parseWaitTimeout reads ?timeout= as a Go duration ("30s", "2m"):
// DefaultTaskWait when empty, at most MaxTaskWait (longer asks are cut to
// it: the client loops anyway).
func parseWaitTimeout(v string) (time.Duration, error) {
	if v == "" {
		return DefaultTaskWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("query timeout=%q: want a duration like 30s, at most %s", v, MaxTaskWait)
	}
	return min(d, MaxTaskWait), nil
}

func taskError(w http.ResponseWriter, err error) {
	if errors.Is(err, task.ErrNotFound) {
		writeError(w, http.StatusNotFound, api.ErrNotFound, err.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, api.ErrInternal, err.Error())
}

// listEvents returns the kept events after ?since= (a sequence number; 0 or
// absent: all kept). Streaming comes later; until then clients poll with
// the last seq they saw.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.ErrBadRequest, fmt.Sprintf("query since=%q: want an event sequence number", v))
			return
		}
		since = n
	}
	ev := s.o.Events.Since(since)
	if ev == nil {
		ev = []api.Event{}
	}
	writeJSON(w, http.StatusOK, ev)
}
