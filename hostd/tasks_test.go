package hostd

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/events"
	"github.com/flashvisor/flashvisor/hostd/task"
)

type admissionErr struct{}

func (admissionErr) Error() string { return "not enough memory" }
func (admissionErr) Code() string  { return "admission" }

func TestTaskEndpoints(t *testing.T) {
	e := newEnv(t)
	bus := events.New(10)
	e.opts.Events = bus
	e.opts.Tasks = task.New(5)
	s, ts := e.start(t)
	c := apiClient(t, s, ts, testToken)
	ctx := context.Background()

	release := make(chan struct{})
	slow := s.tasks.Start("vm.power_on", "web01", func(context.Context) (any, error) {
		<-release
		return map[string]int{"pid": 42}, nil
	})
	failed := s.tasks.Start("vm.power_on", "big01", func(context.Context) (any, error) { return nil, admissionErr{} })
	if _, err := s.tasks.Wait(ctx, failed.ID); err != nil {
		t.Fatal(err)
	}

	got, err := c.Task(ctx, slow.ID)
	if err != nil || got.State != api.TaskRunning || got.Kind != "vm.power_on" || got.Target != "web01" {
		t.Errorf("Task(slow) = %+v, %v, want running vm.power_on web01", got, err)
	}
	list, err := c.Tasks(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("Tasks() = %+v, %v, want 2", list, err)
	}

	// The long poll answers at its timeout while the task runs...
	start := time.Now()
	resp, b := do(t, ts, ts.URL, "GET", "/api/v1/tasks/"+slow.ID+"/wait?timeout=100ms", testToken, "")
	var polled api.Task
	if resp.StatusCode != 200 || json.Unmarshal(b, &polled) != nil || polled.State != api.TaskRunning {
		t.Errorf("wait?timeout=100ms = %d %s, want 200 with the running task", resp.StatusCode, b)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("wait?timeout=100ms took %v", d)
	}
	// ...and as soon as it ends.
	go func() { time.Sleep(50 * time.Millisecond); close(release) }()
	done, err := c.WaitTask(ctx, slow.ID)
	if err != nil || done.State != api.TaskSuccess || string(done.Result) != `{"pid":42}` || done.Finished == nil {
		t.Errorf("WaitTask(slow) = %+v, %v, want success with the result", done, err)
	}
	// A failed task keeps its operation's code.
	f, err := c.WaitTask(ctx, failed.ID)
	if err != nil || f.State != api.TaskError || f.Error == nil || f.Error.Code != "admission" || f.Error.Message != "not enough memory" {
		t.Errorf("WaitTask(failed) = %+v, %v, want error admission", f, err)
	}

	for _, tc := range []struct{ path, code string }{
		{"/api/v1/tasks/task-nope", api.ErrNotFound},
		{"/api/v1/tasks/task-nope/wait", api.ErrNotFound},
		{"/api/v1/tasks/" + slow.ID + "/wait?timeout=soon", api.ErrBadRequest},
		{"/api/v1/tasks/" + slow.ID + "/wait?timeout=-1s", api.ErrBadRequest},
		{"/api/v1/events?since=-1", api.ErrBadRequest},
		{"/api/v1/events?since=x", api.ErrBadRequest},
	} {
		resp, b := do(t, ts, ts.URL, "GET", tc.path, testToken, "")
		if got := decodeError(t, b).Code; got != tc.code {
			t.Errorf("GET %s = %d %s, want code %s", tc.path, resp.StatusCode, b, tc.code)
		}
	}

	// Both ends were published, with the task id as target (Done runs
	// just after waiters are woken).
	waitFor(t, func() bool { return len(bus.Since(0)) == 2 })
	ev, err := c.Events(ctx, 0)
	if err != nil || len(ev) != 2 {
		t.Fatalf("Events(0) = %+v, %v, want 2", ev, err)
	}
	want := map[string]string{failed.ID: "vm.power_on big01: error: not enough memory", slow.ID: "vm.power_on web01: success"}
	for _, x := range ev {
		if x.Kind != EventTaskDone || want[x.Target] != x.Message {
			t.Errorf("event %+v, want %s with message %q", x, EventTaskDone, want[x.Target])
		}
	}
	bus.Publish("vm.powered_on", "web01", "")
	if ev, err := c.Events(ctx, 2); err != nil || len(ev) != 1 || ev[0].Seq != 3 || ev[0].Kind != "vm.powered_on" {
		t.Errorf("Events(2) = %+v, %v, want the third event only", ev, err)
	}
	resp, b = do(t, ts, ts.URL, "GET", "/api/v1/events?since=99", testToken, "")
	if resp.StatusCode != 200 || string(b) != "[]\n" {
		t.Errorf("events?since=99 = %d %q, want an empty list", resp.StatusCode, b)
	}
}

func TestTaskDoneHookKept(t *testing.T) {
	e := newEnv(t)
	called := make(chan api.Task, 1)
	e.opts.Tasks = task.New(5)
	e.opts.Tasks.Done = func(t api.Task) { called <- t }
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	s.tasks.Start("x", "y", func(context.Context) (any, error) { return nil, errors.New("boom") })
	select {
	case tk := <-called:
		if tk.State != api.TaskError {
			t.Errorf("Done got %+v, want the failed task", tk)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller's Done hook was replaced")
	}
	if ev := s.o.Events.Since(0); len(ev) != 0 {
		t.Errorf("events = %+v, want none: the caller hooked Done", ev)
	}
}

func TestParseWaitTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", DefaultTaskWait, false},
		{"0s", 0, false},
		{"250ms", 250 * time.Millisecond, false},
		{"2m", 2 * time.Minute, false},
		{"5m", MaxTaskWait, false},
		{"1h", MaxTaskWait, false},
		{"-1s", 0, true},
		{"30", 0, true},
		{"soon", 0, true},
	} {
		got, err := parseWaitTimeout(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseWaitTimeout(%q) = %v, %v, want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
