package vsm

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/cdp"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/igmp"
)

// cdpMaxPerModule bounds the neighbors kept per module: a VEM relaying
// floods of made-up device IDs cannot grow the VSM without bound.
const cdpMaxPerModule = 256

// cdpKey is one neighbor as NX-OS keys it: where it was heard, and who.
type cdpKey struct {
	module int
	port   string
	device string
}

type cdpEntry struct {
	n       cdp.Neighbor
	expires time.Time
}

// cdpTable is the CDP neighbors the VEMs relayed (packet channel, VEM-9),
// each kept for the holdtime of its last frame. Not replicated to the
// standby: after a switchover the table fills again within a CDP period
// (60 s), as on a supervisor switchover of the original. The zero value
// is empty and ready.
type cdpTable struct {
	mu sync.Mutex
	m  map[cdpKey]cdpEntry
}

// errCDPFull: a module has cdpMaxPerModule neighbors already.
var errCDPFull = fmt.Errorf("CDP neighbor table of the module full (%d entries)", cdpMaxPerModule)

// learn records n, heard on module's port at now (holdtime 0: forget it).
func (t *cdpTable) learn(module int, port string, n cdp.Neighbor, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[cdpKey]cdpEntry{}
	}
	t.expireLocked(now)
	k := cdpKey{module, port, n.DeviceID}
	if n.Holdtime == 0 {
		delete(t.m, k)
		return nil
	}
	if _, ok := t.m[k]; !ok {
		count := 0
		for o := range t.m {
			if o.module == module {
				count++
			}
		}
		if count >= cdpMaxPerModule {
			return errCDPFull
		}
	}
	t.m[k] = cdpEntry{n: n, expires: now.Add(n.Holdtime)}
	return nil
}

func (t *cdpTable) expireLocked(now time.Time) {
	maps.DeleteFunc(t.m, func(_ cdpKey, e cdpEntry) bool { return !now.Before(e.expires) })
}

// neighbors returns the entries not expired at now, each with the
// seconds it has left (rounded up).
func (t *cdpTable) neighbors(now time.Time) []cli.CDPNeighbor {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	out := make([]cli.CDPNeighbor, 0, len(t.m))
	for k, e := range t.m {
		left := int((e.expires.Sub(now) + time.Second - 1) / time.Second)
		out = append(out, cli.CDPNeighbor{Module: k.module, Port: k.port, Holdtime: left, Neighbor: e.n})
	}
	slices.SortFunc(out, func(a, b cli.CDPNeighbor) int {
		return cmp.Or(cmp.Compare(a.Module, b.Module), strings.Compare(a.Port, b.Port),
			strings.Compare(a.Neighbor.DeviceID, b.Neighbor.DeviceID))
	})
	return out
}

// CDPNeighbors implements cli.Switch: the CDP neighbors heard on the
// modules' uplinks, not yet expired.
func (s *Server) CDPNeighbors() []cli.CDPNeighbor { return s.cdp.neighbors(s.o.Now()) }

// relayedFrame takes in a frame a VEM relayed from one of its ports: IGMP
// from any port of the module, CDP from its Eth ports. Anything else is
// counted and logged, never a reason to drop the connection.
func (s *Server) relayedFrame(vc *vemConn, f *api.VSMFrameBody, log *slog.Logger) {
	if err := s.learnFrame(vc.slot, f); err != nil {
		log.Debug("control: relayed frame dropped", "port", f.Port, "err", err)
	}
}

func (s *Server) learnFrame(slot int, f *api.VSMFrameBody) error {
	m, err := igmp.Parse(f.Data)
	switch {
	case err == nil:
		return s.learnIGMP(slot, f.Port, m)
	case !errors.Is(err, igmp.ErrNotIGMP):
		return fmt.Errorf("IGMP: %w", err)
	}
	var mod, port int
	if n, err := fmt.Sscanf(f.Port, "Eth%d/%d", &mod, &port); err != nil || n != 2 || fmt.Sprintf("Eth%d/%d", mod, port) != f.Port {
		return fmt.Errorf("port %q: want EthM/P", f.Port)
	}
	if mod != slot {
		return fmt.Errorf("port %s is not on module %d", f.Port, slot)
	}
	n, err := cdp.Parse(f.Data)
	if err != nil {
		return err
	}
	return s.cdp.learn(slot, f.Port, n, s.o.Now())
}
