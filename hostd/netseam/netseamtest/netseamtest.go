// Package netseamtest is a fake netseam.Ports for hostd's tests: it keeps
// the attachments in memory, applies the same rules as the real seam (port
// group must exist, attach is idempotent, detach of nothing is fine) and
// records calls, so tests assert on meaning rather than on netlink.
package netseamtest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
)

// Attachment is one attached vNIC.
type Attachment struct {
	VM        string
	NIC       int
	PortGroup string
	MAC       string
	Tap       string
}

// Ports is the fake. The zero value has no port groups; use New.
type Ports struct {
	mu       sync.Mutex
	pgs      []api.PortGroup
	attached map[string]map[int]Attachment
	calls    []string
	// Err, when set, is returned by every Attach (e.g. to test how hostd
	// handles a network failure at power-on).
	Err error
}

var _ netseam.Ports = (*Ports)(nil)

// New returns a fake with the given port groups.
func New(pgs ...api.PortGroup) *Ports {
	return &Ports{pgs: slices.Clone(pgs), attached: map[string]map[int]Attachment{}}
}

// TapName is the fake's tap name for a vNIC: stable, and unlike the real
// switch's (fvvethN) derived from the VM and vNIC so tests can predict it.
func TapName(vm string, nic int) string {
	return fmt.Sprintf("fvt-%.8s-%d", vm, nic)
}

// Attach implements netseam.Ports.
func (p *Ports) Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("attach %s %d %s %s", vm, nic, portGroup, mac))
	if p.Err != nil {
		return "", p.Err
	}
	if !slices.ContainsFunc(p.pgs, func(pg api.PortGroup) bool { return pg.Name == portGroup }) {
		return "", fmt.Errorf("attach VM %q vNIC %d: port group %q: %w", vm, nic, portGroup, netseam.ErrNoPortGroup)
	}
	if p.attached == nil {
		p.attached = map[string]map[int]Attachment{}
	}
	if p.attached[vm] == nil {
		p.attached[vm] = map[int]Attachment{}
	}
	a := Attachment{VM: vm, NIC: nic, PortGroup: portGroup, MAC: mac, Tap: TapName(vm, nic)}
	p.attached[vm][nic] = a
	return a.Tap, nil
}

// Detach implements netseam.Ports.
func (p *Ports) Detach(ctx context.Context, vm string, nic int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("detach %s %d", vm, nic))
	delete(p.attached[vm], nic)
	if len(p.attached[vm]) == 0 {
		delete(p.attached, vm)
	}
	return nil
}

// Release implements netseam.Ports.
func (p *Ports) Release(ctx context.Context, vm string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "release "+vm)
	delete(p.attached, vm)
	return nil
}

// PortGroups implements netseam.Ports.
func (p *Ports) PortGroups() []api.PortGroup {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := slices.Clone(p.pgs)
	slices.SortFunc(s, func(a, b api.PortGroup) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return s
}

// Attached lists what is attached, by VM then vNIC.
func (p *Ports) Attached() []Attachment {
	p.mu.Lock()
	defer p.mu.Unlock()
	var as []Attachment
	for _, nics := range p.attached {
		for _, a := range nics {
			as = append(as, a)
		}
	}
	slices.SortFunc(as, func(a, b Attachment) int {
		if a.VM != b.VM {
			if a.VM < b.VM {
				return -1
			}
			return 1
		}
		return a.NIC - b.NIC
	})
	return as
}

// Calls lists the calls so far, e.g. "attach web 0 VM Network 00:50:56:..",
// "detach web 0", "release web".
func (p *Ports) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}
