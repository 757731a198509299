package vmknictest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// ErrNoAnswer is what a DHCP exchange returns when the fake has no lease
// to offer for the interface.
var ErrNoAnswer = errors.New("fake DHCP: no answer")

// DHCP is a scripted vmknic.DHCP: it answers every exchange on an
// interface at once, with the lease set for it (SetLease) or the error
// set for it (SetError), and records every call.
type DHCP struct {
	mu     sync.Mutex
	leases map[string]vmknic.Lease
	errs   map[string]error
	calls  []string
	// OpenErr, if set, is returned by Open.
	OpenErr error
}

// NewDHCP returns a DHCP with no leases: every exchange fails with
// ErrNoAnswer until SetLease.
func NewDHCP() *DHCP {
	return &DHCP{leases: map[string]vmknic.Lease{}, errs: map[string]error{}}
}

// SetLease makes exchanges on ifname succeed with l (Acquired is set by
// the manager) and clears its error.
func (d *DHCP) SetLease(ifname string, l vmknic.Lease) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leases[ifname] = l
	delete(d.errs, ifname)
}

// SetError makes exchanges on ifname fail with err (vmknic.ErrNAK for a
// refusal; nil restores the lease, if any).
func (d *DHCP) SetError(ifname string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.errs, ifname)
		return
	}
	d.errs[ifname] = err
}

// Calls returns the calls so far: "open vmk1 00:50:56:..", "request vmk1
// 10.0.0.5" (or "request vmk1 -" without a wanted address), "renew vmk1",
// "release vmk1", "close vmk1".
func (d *DHCP) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Count returns how many calls so far start with prefix (e.g. "renew vmk1").
func (d *DHCP) Count(prefix string) int {
	n := 0
	for _, c := range d.Calls() {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

func (d *DHCP) record(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf(format, args...))
}

// Open implements vmknic.DHCP.
func (d *DHCP) Open(ifname string, mac net.HardwareAddr) (vmknic.DHCPClient, error) {
	d.record("open %s %s", ifname, mac)
	if d.OpenErr != nil {
		return nil, d.OpenErr
	}
	return &client{d: d, ifname: ifname}, nil
}

type client struct {
	d      *DHCP
	ifname string
}

func (c *client) answer() (vmknic.Lease, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.d.errs[c.ifname]; err != nil {
		return vmknic.Lease{}, err
	}
	l, ok := c.d.leases[c.ifname]
	if !ok {
		return vmknic.Lease{}, ErrNoAnswer
	}
	l.DNS = slices.Clone(l.DNS)
	return l, nil
}

func (c *client) Request(ctx context.Context, want netip.Addr) (vmknic.Lease, error) {
	w := "-"
	if want.IsValid() {
		w = want.String()
	}
	c.d.record("request %s %s", c.ifname, w)
	return c.answer()
}

func (c *client) Renew(ctx context.Context) (vmknic.Lease, error) {
	c.d.record("renew %s", c.ifname)
	return c.answer()
}

func (c *client) Release() error {
	c.d.record("release %s", c.ifname)
	return nil
}

func (c *client) Close() error {
	c.d.record("close %s", c.ifname)
	return nil
}
