// Package clitest provides an in-memory cli.Switch for tests of the CLI
// and its front ends.
package clitest

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// Fake is a cli.Switch in memory. Set the view fields before use (or
// under Lock); Update validates like the server does (config.Validate)
// and counts changes; SaveStartup copies the running configuration to
// Startup.
type Fake struct {
	mu sync.Mutex

	Running config.Config
	// Startup is the last saved configuration (nil: never saved).
	Startup *config.Config
	// Updates counts successful Update calls.
	Updates int
	// UpdateErr, when set, is returned by every Update (a refusing server).
	UpdateErr error
	// SaveErr, when set, is returned by SaveStartup.
	SaveErr error

	ModuleList []api.VSMModule
	Ifaces     []cli.Interface
	MACTable   []cli.MAC
	CDP        []cli.CDPNeighbor
	IGMP       []cli.IGMPGroup
	// Switchovers counts `system switchover`; SwitchoverErr is its answer.
	Switchovers   int
	SwitchoverErr error
	Redund        api.VSMRedundancy
	Usage         map[string][]string
}

var _ cli.Switch = (*Fake)(nil)

// New returns a Fake holding config.Default and an active standalone VSM
// in slot 1.
func New() *Fake {
	return &Fake{
		Running: config.Default(),
		ModuleList: []api.VSMModule{{Slot: 1, Ports: 0, Type: "Virtual Supervisor Module", Model: "Flashvisor-VSM",
			Status: "active *", Version: "1.0"}},
		Redund: api.VSMRedundancy{Role: config.RoleStandalone, State: "active", PeerState: "Not present"},
		Usage:  map[string][]string{},
	}
}

// Config returns a copy of the running configuration.
func (f *Fake) Config() config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Running.Clone()
}

// Update applies fn to a copy and keeps it when it validates.
func (f *Fake) Update(fn func(*config.Config) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.UpdateErr != nil {
		return f.UpdateErr
	}
	c := f.Running.Clone()
	if err := fn(&c); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	f.Running = c
	f.Updates++
	return nil
}

// SaveStartup copies the running configuration to Startup.
func (f *Fake) SaveStartup() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.SaveErr != nil {
		return f.SaveErr
	}
	c := f.Running.Clone()
	f.Startup = &c
	return nil
}

// Modules returns ModuleList.
func (f *Fake) Modules() []api.VSMModule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ModuleList)
}

// Interfaces returns Ifaces.
func (f *Fake) Interfaces() []cli.Interface {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.Ifaces)
}

// MACs returns MACTable.
func (f *Fake) MACs() []cli.MAC {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.MACTable)
}

// CDPNeighbors returns CDP.
func (f *Fake) CDPNeighbors() []cli.CDPNeighbor {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.CDP)
}

// IGMPGroups returns IGMP.
func (f *Fake) IGMPGroups() []cli.IGMPGroup {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.IGMP)
}

// Switchover records the request and returns SwitchoverErr.
func (f *Fake) Switchover() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Switchovers++
	return f.SwitchoverErr
}

// Redundancy returns Redund.
func (f *Fake) Redundancy() api.VSMRedundancy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Redund
}

// ProfileUsage returns Usage.
func (f *Fake) ProfileUsage() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.Usage)
}

// ErrRefused is a ready-made UpdateErr.
var ErrRefused = errors.New("refused by the fake switch")
