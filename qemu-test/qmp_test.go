package qemutest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQMP serves QEMU's monitor protocol on a unix socket: the greeting,
// qmp_capabilities, an event before every answer (which clients must skip),
// "fail" answers with an error, "quit" closes the connection like QEMU does
// when it exits. It returns the socket path and the commands it received.
func fakeQMP(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 10)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		enc := json.NewEncoder(c)
		enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}})
		r := bufio.NewReader(c)
		negotiated := false
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
				ID        int             `json:"id"`
			}
			if err := json.Unmarshal(line, &req); err != nil {
				t.Errorf("fake QMP: bad request %q", line)
				return
			}
			if !negotiated {
				if req.Execute != "qmp_capabilities" {
					enc.Encode(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "capabilities first"}, "id": req.ID})
					continue
				}
				negotiated = true
				enc.Encode(map[string]any{"return": map[string]any{}, "id": req.ID})
				continue
			}
			got <- req.Execute + " " + string(req.Arguments)
			enc.Encode(map[string]any{"event": "RESUME", "timestamp": map[string]int{"seconds": 1}})
			switch req.Execute {
			case "quit":
				return
			case "fail":
				enc.Encode(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "no such thing"}, "id": req.ID})
			default:
				enc.Encode(map[string]any{"return": map[string]any{"status": "running", "echo": req.Execute}, "id": req.ID})
			}
		}
	}()
	return path, got
}

func TestQMP(t *testing.T) {
	path, got := fakeQMP(t)
	q := qmpConn{path: path}
	defer q.close()
	ctx := ctxFor(t, 10*time.Second)
	exited := make(chan struct{})

	raw, err := q.execute(ctx, exited, "query-status", nil)
	if err != nil {
		t.Fatalf("execute(query-status) = %v", err)
	}
	var st struct{ Status, Echo string }
	if err := json.Unmarshal(raw, &st); err != nil || st.Status != "running" || st.Echo != "query-status" {
		t.Errorf("execute(query-status) = %s, %v, want status running", raw, err)
	}
	if c := <-got; c != "query-status " {
		t.Errorf("server got %q, want query-status without arguments", c)
	}

	if _, err := q.execute(ctx, exited, "send-key", map[string]any{"keys": []string{"a"}}); err != nil {
		t.Errorf("execute(send-key) = %v", err)
	}
	if c := <-got; c != `send-key {"keys":["a"]}` {
		t.Errorf("server got %q, want send-key with its arguments", c)
	}

	_, err = q.execute(ctx, exited, "fail", nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Errorf("execute(fail) error = %v, want a *QMPError of class GenericError", err)
	}
	<-got
	// The connection survives an error answer (the fake accepts only one);
	// quit ends it and counts as success.
	if _, err := q.execute(ctx, exited, "quit", nil); err != nil {
		t.Errorf("execute(quit) = %v, want nil (QEMU closes the socket)", err)
	}
}

func TestQMPGivesUpWhenQEMUExited(t *testing.T) {
	q := qmpConn{path: filepath.Join(t.TempDir(), "never")}
	exited := make(chan struct{})
	close(exited)
	_, err := q.execute(ctxFor(t, 10*time.Second), exited, "quit", nil)
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("execute on an exited QEMU = %v, want an error saying it exited", err)
	}
}

func TestQMPContextEnds(t *testing.T) {
	q := qmpConn{path: filepath.Join(t.TempDir(), "never")}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := q.execute(ctx, make(chan struct{}), "quit", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("execute with no socket = %v, want context.DeadlineExceeded", err)
	}
}
