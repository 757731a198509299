package task

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

type codeErr struct{}

func (codeErr) Error() string { return "not enough memory" }
func (codeErr) Code() string  { return "admission" }

func TestTaskLifecycle(t *testing.T) {
	m := New(2)
	doneCh := make(chan api.Task, 4)
	m.Done = func(t api.Task) { doneCh <- t }
	release := make(chan struct{})
	ok := m.Start("vm.power_on", "web01", func(context.Context) (any, error) {
		<-release
		return map[string]int{"pid": 42}, nil
	})
	if ok.State != api.TaskRunning || ok.ID == "" {
		t.Fatalf("Start = %+v, want a running task with an id", ok)
	}
	if got, _ := m.Get(ok.ID); got.State != api.TaskRunning {
		t.Errorf("Get while running = %+v", got)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := m.Wait(ctx, ok.ID)
	if err != nil || got.State != api.TaskSuccess || got.Finished == nil {
		t.Fatalf("Wait = %+v, %v; want success", got, err)
	}
	var res map[string]int
	if json.Unmarshal(got.Result, &res) != nil || res["pid"] != 42 {
		t.Errorf("result = %s, want {\"pid\":42}", got.Result)
	}
	if d := <-doneCh; d.ID != ok.ID {
		t.Errorf("Done called with %s, want %s", d.ID, ok.ID)
	}

	bad := m.Start("vm.power_on", "big", func(context.Context) (any, error) { return nil, codeErr{} })
	got, _ = m.Wait(ctx, bad.ID)
	if got.State != api.TaskError || got.Error == nil || got.Error.Code != "admission" {
		t.Errorf("failed task = %+v, want error with code admission", got)
	}
	boom := m.Start("x", "y", func(context.Context) (any, error) { panic("boom") })
	got, _ = m.Wait(ctx, boom.ID)
	if got.State != api.TaskError || got.Error.Code != api.ErrInternal {
		t.Errorf("panicking task = %+v, want an internal error", got)
	}
	// Keep = 2: the oldest finished task is gone.
	if _, err := m.Get(ok.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(oldest) = %v, want ErrNotFound after pruning", err)
	}
	if n := len(m.List()); n != 2 {
		t.Errorf("List has %d tasks, want 2", n)
	}
	if _, err := m.Wait(ctx, "task-nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait(unknown) = %v, want ErrNotFound", err)
	}
}
