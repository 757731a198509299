package netnstest

import (
	"runtime"

	"github.com/vishvananda/netns"
)

// In runs fn on a thread moved into network namespace ns and returns what
// it returns: a socket made there stays in ns wherever it is used from.
// The thread is never handed back to the runtime (it ends with fn's
// goroutine), so no other goroutine runs in ns by accident.
func In[T any](ns netns.NsHandle, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		if err := netns.Set(ns); err != nil {
			var zero T
			ch <- result{zero, err}
			return
		}
		v, err := fn()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}
