package vsm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
)

// packetRetry is how long a failed packet channel socket waits before it
// is read again.
const packetRetry = 10 * time.Second

// packetMAC is the packet vNIC's address for the welcome ("" without a
// packet channel).
func (s *Server) packetMAC() string {
	if s.o.Packet == nil || len(s.o.PacketMAC) == 0 {
		return ""
	}
	return s.o.PacketMAC.String()
}

// servePacket reads the packet channel until ctx ends (svs mode L2,
// VEM-9). A socket that fails is logged and read again later: the control
// connection still carries what VEMs cannot send here.
func (s *Server) servePacket(ctx context.Context) {
	log := s.log.With("part", "packet")
	for {
		err := s.o.Packet.Run(ctx, s.packetFrame)
		if ctx.Err() != nil {
			return
		}
		log.Error("packet channel failed: VEMs fall back to the control connection", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(packetRetry):
		}
	}
}

// packetFrame takes in one payload from the packet VLAN: a relayed frame
// of our domain, from a connected module, tagged with that module's
// connection key and numbered above the last one taken, goes where the
// control connection's frame messages go; anything else is counted and
// dropped.
func (s *Server) packetFrame(p []byte) {
	if err := s.openPacket(p); err != nil {
		s.log.Debug("packet channel: frame dropped", "err", err)
	}
}

// errForeignPacket: a packet channel frame of another domain.
var errForeignPacket = errors.New("another domain")

func (s *Server) openPacket(p []byte) error {
	domain, module, err := pktchan.Peek(p)
	if err != nil {
		s.metrics.packetDropped.Add(1)
		return err
	}
	if !s.ourDomain(domain) {
		s.metrics.foreignDomain.Add(1)
		return fmt.Errorf("%w: %d", errForeignPacket, domain)
	}
	s.mu.Lock()
	vc := s.conns[module]
	var f pktchan.Frame
	switch {
	case vc == nil:
		err = fmt.Errorf("module %d is not connected", module)
	case vc.pktKey == nil:
		err = fmt.Errorf("module %d has no packet channel key", module)
	default:
		if f, err = pktchan.Open(p, vc.pktKey); err == nil && f.Seq <= vc.pktSeq {
			err = fmt.Errorf("module %d: sequence number %d replayed (last %d)", module, f.Seq, vc.pktSeq)
		}
	}
	if err != nil {
		s.mu.Unlock()
		s.metrics.packetDropped.Add(1)
		return err
	}
	vc.pktSeq = f.Seq
	s.mu.Unlock()
	s.metrics.packetFrames.Add(1)
	if err := s.learnFrame(module, &api.VSMFrameBody{Port: f.Port, Data: f.Data}); err != nil {
		return fmt.Errorf("module %d port %s: %w", module, f.Port, err)
	}
	return nil
}
