package pktchan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/packet"
)

// Conn is a packet channel socket on one interface: it sends and receives
// payloads of EtherType frames; the kernel adds and strips the Ethernet
// header (and, on a VLAN-filtering bridge port, the VLAN is the port's).
type Conn struct {
	c   *packet.Conn
	ifi *net.Interface
}

// Listen opens the packet channel socket on ifname (CAP_NET_RAW).
func Listen(ifname string) (*Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("packet channel on %s: %w", ifname, err)
	}
	c, err := packet.Listen(ifi, packet.Datagram, EtherType, nil)
	if err != nil {
		return nil, fmt.Errorf("packet channel on %s: %w", ifname, err)
	}
	return &Conn{c: c, ifi: ifi}, nil
}

// MAC is the interface's hardware address (the source of what it sends).
func (c *Conn) MAC() net.HardwareAddr { return c.ifi.HardwareAddr }

// MTU is the largest payload the interface sends.
func (c *Conn) MTU() int { return c.ifi.MTU }

// Send sends one payload to dst.
func (c *Conn) Send(dst net.HardwareAddr, payload []byte) error {
	if _, err := c.c.WriteTo(payload, &packet.Addr{HardwareAddr: dst}); err != nil {
		return fmt.Errorf("packet channel on %s: send: %w", c.ifi.Name, err)
	}
	return nil
}

// Run reads payloads and calls fn with each (fn must not keep it) until
// ctx ends (then it returns nil) or the socket fails.
func (c *Conn) Run(ctx context.Context, fn func(payload []byte)) error {
	stop := context.AfterFunc(ctx, func() { c.c.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, headerLen+1+MaxPort+2+MaxData+tagLen)
	for {
		n, _, err := c.c.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("packet channel on %s: read: %w", c.ifi.Name, err)
		}
		fn(buf[:n])
	}
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }
