// Package task runs hostd's long operations in the background and keeps
// their outcome, so API calls answer at once with a task the client can
// follow (HOSTD-9).
package task

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// ErrNotFound is returned for an unknown task id.
var ErrNotFound = errors.New("no such task")

// CodedError lets an operation choose the API error code of its failure.
type CodedError interface {
	error
	Code() string
}

// Manager keeps tasks in memory: the last Keep finished ones, and all
// running ones.
type Manager struct {
	Keep int
	// Done is called when a task ends (hostd publishes an event).
	Done func(api.Task)

	mu    sync.Mutex
	tasks map[string]*entry
}

type entry struct {
	t    api.Task
	done chan struct{}
}

// New makes a Manager keeping the last keep finished tasks.
func New(keep int) *Manager {
	return &Manager{Keep: keep, tasks: map[string]*entry{}}
}

// Start runs fn in the background and returns the task at once. fn's
// result, if any, is kept as JSON.
func (m *Manager) Start(kind, target string, fn func(ctx context.Context) (any, error)) api.Task {
	var b [8]byte
	_, _ = rand.Read(b[:])
	e := &entry{t: api.Task{ID: "task-" + hex.EncodeToString(b[:]), Kind: kind, Target: target,
		State: api.TaskRunning, Started: time.Now().UTC()}, done: make(chan struct{})}
	m.mu.Lock()
	m.tasks[e.t.ID] = e
	m.mu.Unlock()
	started := e.t // copied before the goroutine writes e.t
	go func() {
		res, err := safe(fn)
		now := time.Now().UTC()
		m.mu.Lock()
		e.t.Finished = &now
		if err != nil {
			e.t.State = api.TaskError
			code := api.ErrInternal
			var ce CodedError
			if errors.As(err, &ce) {
				code = ce.Code()
			}
			e.t.Error = &api.Error{Code: code, Message: err.Error()}
		} else {
			e.t.State = api.TaskSuccess
			if res != nil {
				if b, err := json.Marshal(res); err == nil {
					e.t.Result = b
				}
			}
		}
		t := e.t
		m.prune()
		m.mu.Unlock()
		close(e.done)
		if m.Done != nil {
			m.Done(t)
		}
	}()
	return started
}

func safe(fn func(ctx context.Context) (any, error)) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("task panicked: %v", r)
		}
	}()
	return fn(context.Background())
}

// prune drops the oldest finished tasks beyond Keep; m.mu is held.
func (m *Manager) prune() {
	var fin []*entry
	for _, e := range m.tasks {
		if e.t.Finished != nil {
			fin = append(fin, e)
		}
	}
	if len(fin) <= m.Keep {
		return
	}
	sort.Slice(fin, func(i, j int) bool { return fin[i].t.Finished.Before(*fin[j].t.Finished) })
	for _, e := range fin[:len(fin)-m.Keep] {
		delete(m.tasks, e.t.ID)
	}
}

// Get returns a task.
func (m *Manager) Get(id string) (api.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.tasks[id]
	if !ok {
		return api.Task{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return e.t, nil
}

// List returns all kept tasks, newest first.
func (m *Manager) List() []api.Task {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]api.Task, 0, len(m.tasks))
	for _, e := range m.tasks {
		out = append(out, e.t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out
}

// Wait blocks until the task ends or ctx is done, and returns it.
func (m *Manager) Wait(ctx context.Context, id string) (api.Task, error) {
	m.mu.Lock()
	e, ok := m.tasks[id]
	m.mu.Unlock()
	if !ok {
		return api.Task{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
	}
	return m.Get(id)
}
