package qmptest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/hostd/qmp"
)

// Pipe connects a real qmp.Client to s over net.Pipe() and closes both at
// the end of the test. net.Pipe cannot carry file descriptors; use
// ListenUnix for GetFD and MigrateToFile.
func Pipe(t testing.TB, s *Server, opts ...qmp.Option) *qmp.Client {
	t.Helper()
	cc, sc := net.Pipe()
	go s.Serve(sc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.New(ctx, cc, opts...)
	if err != nil {
		t.Fatalf("qmp.New over net.Pipe: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ListenUnix serves s on a fresh unix socket (as QEMU's -qmp unix:PATH,server
// does) until the end of the test and returns the socket's path.
func ListenUnix(t testing.TB, s *Server) string {
	t.Helper()
	// Socket paths are limited to about 108 bytes: t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeListener(l)
	}()
	t.Cleanup(func() {
		l.Close()
		s.Hangup()
		<-done
	})
	return path
}
