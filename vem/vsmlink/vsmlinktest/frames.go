package vsmlinktest

import (
	"context"
	"slices"
	"sync"
)

// Frames is a fake vsmlink.FrameSource: a test injects frames into the
// captures running on NICs. Set Fail before the link runs to make the
// capture of a NIC fail.
type Frames struct {
	// Fail maps a NIC to the error its capture fails with.
	Fail map[string]error

	mu      sync.Mutex
	running map[string]func([]byte)
	starts  map[string]int
}

// Run implements vsmlink.FrameSource.
func (f *Frames) Run(ctx context.Context, ifname string, fn func([]byte)) error {
	f.mu.Lock()
	if f.running == nil {
		f.running, f.starts = map[string]func([]byte){}, map[string]int{}
	}
	f.starts[ifname]++
	if err := f.Fail[ifname]; err != nil {
		f.mu.Unlock()
		return err
	}
	f.running[ifname] = fn
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	delete(f.running, ifname)
	f.mu.Unlock()
	return nil
}

// Inject hands frame to the capture running on ifname; it reports false
// when none runs.
func (f *Frames) Inject(ifname string, frame []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock() // fn is called from one goroutine at a time
	fn := f.running[ifname]
	if fn == nil {
		return false
	}
	fn(slices.Clone(frame))
	return true
}

// Running lists the NICs being captured, sorted.
func (f *Frames) Running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.running {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Starts counts the captures started on ifname (failed ones included).
func (f *Frames) Starts(ifname string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts[ifname]
}
