// Package events is hostd's event stream: VM state changes, task ends and
// host events, kept in a ring for late readers and fanned out to
// subscribers (GET /api/v1/events).
package events

import (
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Bus keeps the last events and delivers new ones to subscribers. A slow
// subscriber loses events (its channel is full) rather than blocking hostd.
type Bus struct {
	mu   sync.Mutex
	seq  uint64
	ring []api.Event
	keep int
	subs map[chan api.Event]struct{}
}

// New makes a Bus that remembers the last keep events.
func New(keep int) *Bus {
	return &Bus{keep: keep, subs: map[chan api.Event]struct{}{}}
}

// Publish records an event and delivers it.
func (b *Bus) Publish(kind, target, message string) api.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e := api.Event{Seq: b.seq, Time: time.Now().UTC(), Kind: kind, Target: target, Message: message}
	b.ring = append(b.ring, e)
	if len(b.ring) > b.keep {
		b.ring = b.ring[len(b.ring)-b.keep:]
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
	return e
}

// Since returns the kept events with Seq > after.
func (b *Bus) Since(after uint64) []api.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.Event
	for _, e := range b.ring {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

// Subscribe returns a channel of new events and a cancel func.
func (b *Bus) Subscribe() (<-chan api.Event, func()) {
	ch := make(chan api.Event, 64)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}
