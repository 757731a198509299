package vmknic_test

import (
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// dhcpServer is a one-address DHCP server in its own network namespace,
// reached from the test's namespace through the plain bridge br0 (the
// "switch"): br0 - dhcp0 <veth> dhcp0p (server namespace, 10.77.0.1/24).
type dhcpServer struct {
	lease  time.Duration
	mu     sync.Mutex
	counts map[string]int
}

func (s *dhcpServer) count(what string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[what]
}

func (s *dhcpServer) add(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[what]++
}

func startDHCPServer(t *testing.T, hostNS netns.NsHandle) *dhcpServer {
	t.Helper()
	srvNS, err := netns.New() // also enters it
	if err != nil {
		t.Fatalf("server namespace: %v", err)
	}
	if err := netns.Set(hostNS); err != nil {
		t.Fatalf("back to the test namespace: %v", err)
	}
	t.Cleanup(func() { srvNS.Close() })

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dhcp0"}, PeerName: "dhcp0p"}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMaster(link(t, "dhcp0"), link(t, "br0")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"br0", "dhcp0"} {
		if err := netlink.LinkSetUp(link(t, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetNsFd(link(t, "dhcp0p"), int(srvNS)); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(srvNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Delete()
	peer, err := h.LinkByName("dhcp0p")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.77.0.1/24")
	if err := h.AddrAdd(peer, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}

	s := &dhcpServer{lease: 6 * time.Second, counts: map[string]int{}}
	serverIP := net.IPv4(10, 77, 0, 1).To4()
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			s.add("discover")
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			if m.ClientIPAddr.IsUnspecified() {
				s.add("request")
			} else {
				s.add("renew")
			}
			typ = dhcpv4.MessageTypeAck
		case dhcpv4.MessageTypeRelease:
			s.add("release")
			return
		default:
			return
		}
		reply, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(10, 77, 0, 50)),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(serverIP),
			dhcpv4.WithDNS(net.IPv4(10, 77, 0, 53)),
			dhcpv4.WithServerIP(serverIP),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
			dhcpv4.WithLeaseTime(uint32(s.lease/time.Second)),
		)
		if err != nil {
			t.Errorf("DHCP reply: %v", err)
			return
		}
		if _, err := conn.WriteTo(reply.ToBytes(), peer); err != nil {
			t.Logf("DHCP server send: %v", err)
		}
	}
	// The socket must be made inside the server's namespace; the thread
	// that does it never leaves (it dies with its goroutine).
	type result struct {
		srv *server4.Server
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(srvNS); err != nil {
			ch <- result{err: err}
			return
		}
		srv, err := server4.NewServer("dhcp0p", &net.UDPAddr{Port: dhcpv4.ServerPort}, handler)
		ch <- result{srv, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("DHCP server: %v", r.err)
	}
	done := make(chan struct{})
	go func() { r.srv.Serve(); close(done) }()
	t.Cleanup(func() { r.srv.Close(); <-done })
	return s
}
