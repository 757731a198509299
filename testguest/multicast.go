package guest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Memberships holds the multicast groups the guest joined: each is a UDP
// socket kept open, so the kernel stays a member and answers queries.
// The zero value is ready.
type Memberships struct {
	mu  sync.Mutex
	fds map[netip.Addr]int
}

// Join joins group on the first interface that is up and not loopback;
// the kernel sends its IGMP reports at once. Joining twice is a no-op.
func (m *Memberships) Join(group netip.Addr) error {
	if !group.Is4() || !group.IsMulticast() {
		return fmt.Errorf("%s is not an IPv4 multicast group", group)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.fds[group]; ok {
		return nil
	}
	ifi, err := firstNIC()
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	mreq := &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(ifi.Index)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		unix.Close(fd)
		return fmt.Errorf("join %s on %s: %w", group, ifi.Name, err)
	}
	if m.fds == nil {
		m.fds = map[netip.Addr]int{}
	}
	m.fds[group] = fd
	return nil
}

func firstNIC() (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagUp != 0 {
			return &ifi, nil
		}
	}
	return nil, errors.New("no network interface is up")
}
