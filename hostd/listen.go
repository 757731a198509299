package hostd

import (
	"net"
	"net/netip"
)

// mgmtListener accepts only connections made to a management address. The
// management address moves: from the NIC init configured at first boot to
// vswif0, and with each DHCP lease or operator change (VMK-1, VMK-3). A
// socket bound to one address would lose the API with the address; one
// bound to every address would serve the API on storage and migration
// vmknics too. So hostd listens on the wildcard address and closes, before
// any TLS byte, every connection whose local address is not a management
// address right now.
type mgmtListener struct {
	net.Listener
	allowed func() []netip.Addr
	refused func(local, remote net.Addr)
}

func (l *mgmtListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.ok(c.LocalAddr()) {
			return c, nil
		}
		if l.refused != nil {
			l.refused(c.LocalAddr(), c.RemoteAddr())
		}
		c.Close()
	}
}

func (l *mgmtListener) ok(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, m := range l.allowed() {
		if m.Unmap() == ip {
			return true
		}
	}
	return false
}
