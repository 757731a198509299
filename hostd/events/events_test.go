package events

import "testing"

func TestBus(t *testing.T) {
	b := New(3)
	ch, cancel := b.Subscribe()
	for _, k := range []string{"a", "b", "c", "d"} {
		b.Publish(k, "vm1", "")
	}
	if got := <-ch; got.Kind != "a" || got.Seq != 1 {
		t.Errorf("first delivered = %+v, want a/1", got)
	}
	kept := b.Since(0)
	if len(kept) != 3 || kept[0].Kind != "b" {
		t.Errorf("Since(0) = %+v, want the last 3 (b c d)", kept)
	}
	if got := b.Since(3); len(got) != 1 || got[0].Kind != "d" {
		t.Errorf("Since(3) = %+v, want d", got)
	}
	cancel()
	b.Publish("e", "vm1", "") // must not block or panic without subscribers
}
