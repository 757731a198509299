package hostd

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestMgmtListenerFilters(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	allowed := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	refused := 0
	l := &mgmtListener{Listener: inner,
		allowed: func() []netip.Addr { mu.Lock(); defer mu.Unlock(); return allowed },
		refused: func(local, remote net.Addr) { mu.Lock(); refused++; mu.Unlock() },
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// 127.0.0.1 is not a management address: closed unread.
	c := dial()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("connection to a non-management address stayed open")
	}
	c.Close()
	// The management address moves to 127.0.0.1 (a new lease): accepted.
	mu.Lock()
	allowed = append(allowed, netip.MustParseAddr("127.0.0.1"))
	mu.Unlock()
	c = dial()
	defer c.Close()
	select {
	case a := <-accepted:
		a.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("connection to a management address not accepted")
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 1 {
		t.Errorf("refused %d connections, want 1", refused)
	}
}
