package vmknic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netns"
)

// NClient4 opens DHCP clients built on insomniacslk/dhcp's nclient4: a raw
// packet socket on the vmknic, so it works before the vmknic has an
// address, with the vmknic's MAC as the client hardware address.
type NClient4 struct {
	// NetnsPath, if set, is the network namespace (e.g.
	// "/proc/self/fd/7") the sockets are opened in; by default the
	// calling thread's (tests run the manager in a fresh namespace).
	NetnsPath string
	// Timeout is the wait for each answer (default 3 s); Retries the
	// number of sends per exchange (default 3).
	Timeout time.Duration
	Retries int
}

// Open implements DHCP.
func (o NClient4) Open(ifname string, mac net.HardwareAddr) (DHCPClient, error) {
	var conn net.PacketConn
	err := inNetns(o.NetnsPath, func() error {
		var err error
		conn, err = nclient4.NewRawUDPConn(ifname, nclient4.ClientPort)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dhcp socket on %s: %w", ifname, err)
	}
	timeout, retries := o.Timeout, o.Retries
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	if retries <= 0 {
		retries = 3
	}
	c, err := nclient4.NewWithConn(conn, mac, nclient4.WithTimeout(timeout), nclient4.WithRetry(retries))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcp client on %s: %w", ifname, err)
	}
	raw, _ := conn.(*nclient4.BroadcastRawUDPConn)
	return &nclient{c: c, raw: raw}, nil
}

// inNetns runs fn on a thread in the namespace at path ("" : here). The
// thread is never unlocked, so it ends with its goroutine and no other
// goroutine ever runs in that namespace by accident.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

type nclient struct {
	c     *nclient4.Client
	raw   *nclient4.BroadcastRawUDPConn
	lease *nclient4.Lease
}

func (n *nclient) Request(ctx context.Context, want netip.Addr) (Lease, error) {
	var mods []dhcpv4.Modifier
	if want.Is4() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want.AsSlice())))
	}
	// The wanted address goes in the DISCOVER only: the REQUEST must ask
	// for what was offered.
	offer, err := n.c.DiscoverOffer(ctx, mods...)
	if err != nil {
		return Lease{}, err
	}
	l, err := n.c.RequestFromOffer(ctx, offer)
	if err != nil {
		return Lease{}, nakErr(err)
	}
	n.lease = l
	return decodeLease(l.ACK)
}

func (n *nclient) Renew(ctx context.Context) (Lease, error) {
	if n.lease == nil {
		return Lease{}, errors.New("no lease to renew")
	}
	l, err := n.c.Renew(ctx, n.lease)
	if err != nil {
		return Lease{}, nakErr(err)
	}
	n.lease = l
	return decodeLease(l.ACK)
}

// Release sends a DHCPRELEASE from the leased address, as RFC 2131 wants.
// (nclient4's own Release sends it from 0.0.0.0, which a Linux server's
// UDP socket never sees: the kernel drops a zero source to a unicast
// destination as a martian.)
func (n *nclient) Release() error {
	if n.lease == nil {
		return nil
	}
	ack := n.lease.ACK
	n.lease = nil
	if n.raw == nil {
		return errors.New("dhcp release: no raw socket")
	}
	req, err := dhcpv4.NewReleaseFromACK(ack)
	if err != nil {
		return fmt.Errorf("dhcp release: %w", err)
	}
	from := nclient4.NewBroadcastUDPConn(n.raw.PacketConn, &net.UDPAddr{IP: ack.YourIPAddr, Port: nclient4.ClientPort})
	_, err = from.WriteTo(req.ToBytes(), &net.UDPAddr{IP: ack.ServerIdentifier(), Port: nclient4.ServerPort})
	return err
}

func (n *nclient) Close() error { return n.c.Close() }

func nakErr(err error) error {
	if nak := new(nclient4.ErrNak); errors.As(err, &nak) {
		return fmt.Errorf("%w: %w", ErrNAK, err)
	}
	return err
}

// decodeLease reads what the manager needs from an ACK. Without a subnet
// mask option the address's classful mask is used (RFC 2131); without a
// lease time, an hour.
func decodeLease(ack *dhcpv4.DHCPv4) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Lease{}, errors.New("dhcp: ACK without an address")
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.To4().DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 || ones == 0 {
		return Lease{}, fmt.Errorf("dhcp: bad subnet mask %s", mask)
	}
	l := Lease{
		Address:  netip.PrefixFrom(ip, ones),
		Duration: ack.IPAddressLeaseTime(time.Hour),
		Renew:    ack.IPAddressRenewalTime(0),
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router, _ = netip.AddrFromSlice(r[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	l.Server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	return l, nil
}
