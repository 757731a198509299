package initclient_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/initclient"
	"github.com/flashvisor/flashvisor/hostd/initclient/initclienttest"
)

var services = []api.Service{
	{Name: "hostd", State: api.ServiceRunning, PID: 10},
	{Name: "vem", State: api.ServiceBackoff, Restarts: 2, LastExit: "exit status 1"},
}

func TestAgainstFake(t *testing.T) {
	f := initclienttest.Start(t, services...)
	f.SetLog("vem", "a", "b")
	c := initclient.New(f.Path)
	ctx := context.Background()

	got, err := c.Services(ctx)
	if err != nil {
		t.Fatalf("Services() = %v", err)
	}
	if diff := cmp.Diff(services, got); diff != "" {
		t.Errorf("Services() mismatch (-want +got):\n%s", diff)
	}
	lines, err := c.Log(ctx, "vem")
	if err != nil || !cmp.Equal(lines, []string{"a", "b"}) {
		t.Errorf("Log(vem) = %q, %v, want [a b]", lines, err)
	}
	if err := c.Restart(ctx, "vem"); err != nil {
		t.Errorf("Restart(vem) = %v", err)
	}
	if got := f.Services()[1].Restarts; got != 3 {
		t.Errorf("vem restarts after Restart = %d, want 3", got)
	}
	if err := c.Signal(ctx, "vem", "HUP"); err != nil {
		t.Errorf("Signal(vem, HUP) = %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if err := c.Reboot(ctx); err != nil {
		t.Errorf("Reboot() = %v", err)
	}
	want := []api.InitRequest{
		{Op: api.InitOpServices},
		{Op: api.InitOpLog, Service: "vem"},
		{Op: api.InitOpRestart, Service: "vem"},
		{Op: api.InitOpSignal, Service: "vem", Signal: "HUP"},
		{Op: api.InitOpShutdown},
		{Op: api.InitOpReboot},
	}
	if diff := cmp.Diff(want, f.Requests()); diff != "" {
		t.Errorf("requests init saw (-want +got):\n%s", diff)
	}
}

func TestErrorCodes(t *testing.T) {
	f := initclienttest.Start(t, services...)
	c := initclient.New(f.Path)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		code string
	}{
		{"unknown service log", func() error { _, err := c.Log(ctx, "nope"); return err }, api.ErrNotFound},
		{"unknown service restart", func() error { return c.Restart(ctx, "nope") }, api.ErrNotFound},
		{"bad signal", func() error { return c.Signal(ctx, "vem", "STOP") }, api.ErrBadRequest},
		{"unknown op", func() error { _, err := c.Do(ctx, api.InitRequest{Op: "dance"}); return err }, api.ErrBadRequest},
		{"no init", func() error { return initclient.New(filepath.Join(t.TempDir(), "none.sock")).Reboot(ctx) }, api.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ie *initclient.Error
			if !errors.As(err, &ie) {
				t.Fatalf("call = %v, want *initclient.Error", err)
			}
			if ie.ErrorCode() != tc.code {
				t.Errorf("ErrorCode() = %q, want %q (err %v)", ie.ErrorCode(), tc.code, err)
			}
		})
	}
}

func TestContextCancelsBusyInit(t *testing.T) {
	f := initclienttest.Start(t, services...)
	release := make(chan struct{})
	f.Before = func(api.InitRequest) { <-release }
	defer close(release)
	c := initclient.New(f.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Restart(ctx, "vem")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Restart() with busy init = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Restart() took %v, want about the 100ms deadline", d)
	}
}

// rawInit answers every connection with reply, after reading the request.
func rawInit(t *testing.T, reply string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fvraw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			c.Read(buf)
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	return p
}

func TestOddAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, reply, code string
	}{
		{"garbage", "not json", api.ErrUnavailable},
		{"closed", "", api.ErrUnavailable},
		{"error without code", `{"error":"disk on fire"}`, api.ErrInternal},
		{"code without message", `{"error_code":"not_found"}`, api.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := initclient.New(rawInit(t, tc.reply)).Services(context.Background())
			var ie *initclient.Error
			if !errors.As(err, &ie) || ie.Code != tc.code {
				t.Errorf("Services() with answer %q = %v, want code %s", tc.reply, err, tc.code)
			}
		})
	}
}
