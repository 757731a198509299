package vmknic

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDecodeLease(t *testing.T) {
	full := ack(t,
		dhcpv4.WithYourIP(net.IPv4(192, 168, 1, 50)),
		dhcpv4.WithNetmask(net.CIDRMask(25, 32)),
		dhcpv4.WithRouter(net.IPv4(192, 168, 1, 1), net.IPv4(192, 168, 1, 2)),
		dhcpv4.WithDNS(net.IPv4(192, 168, 1, 53)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 1))),
		dhcpv4.WithLeaseTime(600),
		dhcpv4.WithGeneric(dhcpv4.OptionRenewTimeValue, []byte{0, 0, 0, 200}), // T1 200 s
	)
	l, err := decodeLease(full)
	if err != nil {
		t.Fatal(err)
	}
	if l.Address != netip.MustParsePrefix("192.168.1.50/25") || l.Router != netip.MustParseAddr("192.168.1.1") ||
		l.Server != netip.MustParseAddr("192.168.1.1") || len(l.DNS) != 1 || l.Duration != 10*time.Minute || l.Renew != 200*time.Second {
		t.Errorf("decodeLease(full ACK) = %+v", l)
	}

	bare, err := decodeLease(ack(t, dhcpv4.WithYourIP(net.IPv4(172, 16, 3, 4))))
	if err != nil {
		t.Fatal(err)
	}
	if bare.Address != netip.MustParsePrefix("172.16.3.4/16") || bare.Duration != time.Hour || bare.Router.IsValid() {
		t.Errorf("decodeLease(bare ACK) = %+v, want the classful /16 and an hour", bare)
	}
	if _, err := decodeLease(ack(t)); err == nil {
		t.Error("decodeLease(ACK without an address) works")
	}
}

func TestLeaseTimes(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d, t1, want time.Duration
	}{
		{time.Hour, 0, 30 * time.Minute},
		{time.Hour, 10 * time.Minute, 10 * time.Minute},
		{time.Hour, 2 * time.Hour, 30 * time.Minute},
	} {
		l := Lease{Duration: tc.d, Renew: tc.t1, Acquired: t0}
		if got := l.RenewAt(); !got.Equal(t0.Add(tc.want)) {
			t.Errorf("Lease{%s, T1 %s}.RenewAt() = %s, want +%s", tc.d, tc.t1, got, tc.want)
		}
	}
}

func TestNakErr(t *testing.T) {
	nak := fmt.Errorf("request: %w", &nclient4.ErrNak{Offer: ack(t), Nak: ack(t)})
	if err := nakErr(nak); !errors.Is(err, ErrNAK) {
		t.Errorf("nakErr(NAK) = %v, want ErrNAK", err)
	}
	if err := nakErr(errors.New("timeout")); errors.Is(err, ErrNAK) {
		t.Errorf("nakErr(timeout) = %v, wraps ErrNAK", err)
	}
}
