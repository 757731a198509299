package vmknictest

import (
	"slices"
	"sync"
	"time"
)

// Clock is a manual vmknic.Clock: time moves only by Advance, which runs
// the functions that come due, in time order, on the caller's goroutine.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*timer
	added  chan struct{} // closed and replaced whenever a timer is added
}

type timer struct {
	at  time.Time
	seq int
	f   func()
}

// NewClock returns a clock reading now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, added: make(chan struct{})}
}

// Now implements vmknic.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements vmknic.Clock.
func (c *Clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	close(c.added)
	c.added = make(chan struct{})
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// Advance moves the clock by d, running every function that comes due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		slices.SortFunc(c.timers, func(a, b *timer) int {
			if a.at.Equal(b.at) {
				return a.seq - b.seq
			}
			return a.at.Compare(b.at)
		})
		if len(c.timers) == 0 || c.timers[0].at.After(end) {
			break
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		c.now = t.at
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// AdvanceToNext moves the clock to the earliest waiting function and runs
// it (and any other due then); it reports false, without moving, if none
// is waiting.
func (c *Clock) AdvanceToNext() bool {
	c.mu.Lock()
	if len(c.timers) == 0 {
		c.mu.Unlock()
		return false
	}
	next := c.timers[0].at
	for _, t := range c.timers {
		if t.at.Before(next) {
			next = t.at
		}
	}
	d := next.Sub(c.now)
	c.mu.Unlock()
	c.Advance(d)
	return true
}

// Timers returns how many functions are waiting.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitTimers blocks until at least n functions are waiting or timeout
// (real time) passes; it reports whether they are.
func (c *Clock) WaitTimers(n int, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		ok, added := len(c.timers) >= n, c.added
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-added:
		case <-deadline:
			return false
		}
	}
}
