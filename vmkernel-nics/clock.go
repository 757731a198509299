package vmknic

import (
	"context"
	"time"
)

// Clock is the time source of the DHCP clients and the rollback guard
// (vmknictest.Clock in tests, so they never sleep).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, the
	// caller's) once d has passed; stop cancels it and reports whether
	// it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// sleepUntil waits until t on clk; false if ctx ended first.
func sleepUntil(ctx context.Context, clk Clock, t time.Time) bool {
	d := t.Sub(clk.Now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	ch := make(chan struct{})
	stop := clk.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		stop()
		return false
	}
}
