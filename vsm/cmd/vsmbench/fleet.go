package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm"
	"github.com/flashvisor/flashvisor/vsm/chassis"
	"github.com/flashvisor/flashvisor/vsm/ports"
)

// Names the benchmark gives the switch's objects.
const uplinkProfile = "bench-uplink"

func profileName(k int) string { return fmt.Sprintf("bench-%d", k) }

// owner is vEth i of VEM m, as hostd names a VM's vNIC.
func owner(m, i int) string { return fmt.Sprintf("vm:bench-%d-%d/nic0", m, i) }

// mac is a distinct unicast MAC per (m, i), in VMware's OUI like hostd's.
func mac(m, i int) string {
	return fmt.Sprintf("00:50:56:%02x:%02x:%02x", m>>4&0xff, (m&0xf)<<4|i>>8&0xf, i&0xff)
}

// hostUUID is simulated host m's UUID.
func hostUUID(m int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", m+1) }

// Base VLANs: profile k starts on baseVLAN+k; the propagation runs move
// one profile to changeVLAN+k, then all to allVLAN+k.
const (
	baseVLAN   = 100
	changeVLAN = 200
	allVLAN    = 300
	maxProfile = 32
)

// switchConfig is the CLI script for the benchmark's profiles: an uplink
// profile and P vethernet profiles with max-ports raised to the most the
// VSM allows (4,096; the default is 32).
func switchConfig(profiles int) []string {
	vl := func(b int) string { return fmt.Sprintf("%d-%d", b, b+profiles-1) }
	lines := []string{"configure terminal",
		"vlan " + vl(baseVLAN), "vlan " + vl(changeVLAN), "vlan " + vl(allVLAN),
		"port-profile type ethernet " + uplinkProfile, "capability uplink", "switchport mode trunk",
		fmt.Sprintf("switchport trunk allowed vlan %s,%s,%s", vl(baseVLAN), vl(changeVLAN), vl(allVLAN)), "state enabled",
	}
	for k := range profiles {
		lines = append(lines, "port-profile type vethernet "+profileName(k), "switchport mode access",
			fmt.Sprintf("switchport access vlan %d", baseVLAN+k), "max-ports 4096", "state enabled")
	}
	return append(lines, "end")
}

// fleet is the simulated VEMs of one run.
type fleet struct {
	vems    []*simVEM
	stats   fleetStats
	reports atomic.Bool
	ctx     context.Context // the VEMs' (set by the first start)
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// newFleet asks the VSM for n join bundles (a few at a time, as many
// operators joining hosts would) and prepares n VEMs.
func newFleet(ctx context.Context, p *vsmProc, n int) (*fleet, error) {
	f := &fleet{vems: make([]*simVEM, n)}
	f.reports.Store(true)
	uplinks := []api.VSMUplink{{Interface: "eth1", Profile: uplinkProfile}}
	var mu sync.Mutex
	var firstErr error
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m := int(next.Add(1) - 1)
				if m >= n || ctx.Err() != nil {
					return
				}
				j, err := p.joinBundle(ctx, hostUUID(m), uplinks)
				var v *simVEM
				if err == nil {
					v, err = newSimVEM(m, hostUUID(m), j, &f.stats, &f.reports)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("join bundle %d: %w", m, err))
					mu.Unlock()
					return
				}
				f.vems[m] = v
			}
		}()
	}
	wg.Wait()
	return f, firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// start connects the given VEMs (all when none are given); each keeps
// reconnecting until stop.
func (f *fleet) start(ctx context.Context, vems ...*simVEM) {
	if f.cancel == nil {
		f.ctx, f.cancel = context.WithCancel(ctx)
	}
	if len(vems) == 0 {
		vems = f.vems
	}
	for _, v := range vems {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); v.run(f.ctx) }()
	}
}

func (f *fleet) stop() {
	if f.cancel != nil {
		f.cancel()
		f.wg.Wait()
	}
}

// waitAll polls until ok holds for every VEM, or timeout.
func (f *fleet) waitAll(ctx context.Context, timeout time.Duration, what string, ok func(*simVEM, vemState) bool) error {
	return waitFor(ctx, f.vems, timeout, what, ok)
}

// waitFor polls until ok holds for every VEM of vems, or timeout.
func waitFor(ctx context.Context, vems []*simVEM, timeout time.Duration, what string, ok func(*simVEM, vemState) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		missing, example := 0, ""
		for _, v := range vems {
			if s := v.state(); !ok(v, s) {
				if missing == 0 {
					example = fmt.Sprintf("VEM %d: connected %v, module %d, %d vEths, last error %v", v.idx, s.connected, s.module, s.ports, s.lastErr)
				}
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d VEMs not there after %v (%s)", what, missing, len(vems), timeout, example)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// inSync reports whether v runs a full snapshot applied after since with
// want vEths.
func inSync(s vemState, since time.Time, want int) bool {
	return s.connected && s.fullAt.After(since) && s.ports == want
}

// joinInWaves connects the VEMs wave at a time, each wave once the one
// before is in, and returns when the last VEM acked its snapshot.
func (f *fleet) joinInWaves(ctx context.Context, wave int, want func(m int) int, waveTimeout time.Duration) (time.Time, error) {
	t0 := time.Now()
	for i := 0; i < len(f.vems); i += wave {
		batch := f.vems[i:min(i+wave, len(f.vems))]
		f.start(ctx, batch...)
		if err := waitFor(ctx, batch, waveTimeout, fmt.Sprintf("join, VEMs %d-%d", i, i+len(batch)-1), func(v *simVEM, s vemState) bool {
			return inSync(s, t0, want(v.idx))
		}); err != nil {
			return time.Time{}, err
		}
	}
	return f.lastFull(), nil
}

// lastFull is when the last VEM applied its last full snapshot.
func (f *fleet) lastFull() time.Time {
	var last time.Time
	for _, v := range f.vems {
		if s := v.state(); s.fullAt.After(last) {
			last = s.fullAt
		}
	}
	return last
}

// countInSync counts the VEMs in sync since since.
func (f *fleet) countInSync(since time.Time, want func(m int) int) int {
	n := 0
	for _, v := range f.vems {
		if inSync(v.state(), since, want(v.idx)) {
			n++
		}
	}
	return n
}

// resynced waits until every VEM runs a full snapshot applied after
// since with want vEths, and returns when the last one was applied.
func (f *fleet) resynced(ctx context.Context, since time.Time, want func(m int) int, timeout time.Duration) (time.Time, error) {
	err := f.waitAll(ctx, timeout, "resync", func(v *simVEM, s vemState) bool { return inSync(s, since, want(v.idx)) })
	if err != nil {
		return time.Time{}, err
	}
	return f.lastFull(), nil
}

// seedState writes the VSM's chassis and port bindings as if n VEMs had
// joined (VEM m in slot 3+m) and attached veths vEths each (profile
// i mod profiles), keeping the bindings already in the state directory:
// the attach path is too slow to bind tens of thousands of ports in a
// benchmark's time (see the report), and a VSM restarted with a full
// switch loads exactly this.
func seedState(stateDir string, n, veths, profiles int) (seeded int, err error) {
	cs := chassis.FileStore{Path: filepath.Join(stateDir, vsm.ChassisFile)}
	cst, err := cs.Load()
	if err != nil {
		return 0, err
	}
	cst.Version = chassis.StateVersion
	slotOf := map[string]int{}
	usedSlot := map[int]bool{}
	for _, b := range cst.Bindings {
		slotOf[b.HostUUID], usedSlot[b.Slot] = b.Slot, true
	}
	free := api.VSMFirstVEMSlot
	for m := range n {
		if _, ok := slotOf[hostUUID(m)]; ok {
			continue
		}
		for usedSlot[free] {
			free++
		}
		usedSlot[free], slotOf[hostUUID(m)] = true, free
		cst.Bindings = append(cst.Bindings, chassis.Binding{Slot: free, HostUUID: hostUUID(m), Hostname: fmt.Sprintf("bench-%d", m), Address: "127.0.0.1"})
	}
	if err := cs.Save(cst); err != nil {
		return 0, err
	}

	ps := ports.FileStore{Path: filepath.Join(stateDir, vsm.PortsFile)}
	pst, err := ps.Load()
	if err != nil {
		return 0, err
	}
	pst.Version = ports.StateVersion
	owners, nums := map[string]bool{}, map[int]bool{}
	for _, b := range pst.Veths {
		owners[b.Owner] = true
		k, _ := api.VethNumber(b.Port)
		nums[k] = true
	}
	uplinks := map[int]bool{}
	for _, u := range pst.Uplinks {
		uplinks[u.Module] = true
	}
	num := 1
	for m := range n {
		slot := slotOf[hostUUID(m)]
		if !uplinks[slot] {
			// What ports.SetUplinks records for eth1: Eth<slot>/2.
			pst.Uplinks = append(pst.Uplinks, ports.UplinkRecord{Module: slot, Interface: "eth1", Number: 2, Profile: uplinkProfile, Present: true})
		}
		for i := range veths {
			if owners[owner(m, i)] {
				continue
			}
			for nums[num] {
				num++
			}
			nums[num] = true
			pst.Veths = append(pst.Veths, ports.Binding{
				Port: fmt.Sprintf("Veth%d", num), Owner: owner(m, i), Module: slot,
				Profile: profileName(i % profiles), MAC: mac(m, i), Description: fmt.Sprintf("bench-%d-%d", m, i), Active: true,
			})
			seeded++
		}
	}
	return seeded, ps.Save(pst)
}

// durations summarises latencies.
type durations []time.Duration

func (d durations) sorted() durations {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// pct returns the p-th percentile (0-100) by nearest rank; 0 when empty.
func (d durations) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := d.sorted()
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
