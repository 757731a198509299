package vsmlink

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
)

// PacketSender is the sending end of the packet channel on a vmknic
// (svs mode L2, VEM-9): internal/pktchan.Conn in vemd.
type PacketSender interface {
	Send(dst net.HardwareAddr, payload []byte) error
	MTU() int
	Close() error
}

// PacketOpener opens a PacketSender on a kernel interface.
type PacketOpener func(ifname string) (PacketSender, error)

// viaControl is Status's PacketChannel when frames ride the control
// connection.
const viaControl = "control connection"

// errTooBig: a frame that does not fit the vmknic's MTU once wrapped.
var errTooBig = errors.New("frame too big for the packet VLAN")

// packetPath is a session's packet channel: raw frames on the packet
// VLAN through a vmknic to the VSM's packet vNIC, tagged with the
// session's key.
type packetPath struct {
	iface string
	vlan  int
	dst   net.HardwareAddr
	key   []byte

	mu  sync.Mutex // orders seq with sends
	snd PacketSender
	seq uint64
	buf []byte
}

func (p *packetPath) send(domain, module int, port string, frame []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := pktchan.Frame{Domain: domain, Module: module, Seq: p.seq + 1, Port: port, Data: frame}
	if pktchan.Len(f) > p.snd.MTU() {
		return errTooBig
	}
	b, err := pktchan.Append(p.buf[:0], f, p.key)
	if err != nil {
		return err
	}
	p.buf = b
	if err := p.snd.Send(p.dst, b); err != nil {
		return err
	}
	p.seq++
	return nil
}

func (p *packetPath) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snd.Close()
}

// wantPacket is the vmknic and VLAN s's frames should take now: in svs
// mode L2, with a VSM that has a packet vNIC, the host's vmknic on the
// packet VLAN. iface "" means the control connection; why then says why
// not the packet VLAN when L2 mode would want it.
func (l *Link) wantPacket(s *session) (iface string, vlan int, why error) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.join == nil || controlMode(l.st.Opaque, l.join) != api.SVSModeL2 {
		return "", 0, nil
	}
	vlan = l.join.Opaque.PacketVLAN
	if o := l.st.Opaque; o != nil {
		vlan = o.PacketVLAN
	}
	switch {
	case l.o.Packet == nil:
		return "", 0, nil
	case len(s.pktMAC) == 0:
		return "", 0, errors.New("the VSM has no packet vNIC")
	case s.pktKey == nil:
		return "", 0, errors.New("no packet channel key")
	case vlan == 0:
		return "", 0, errors.New("no packet VLAN")
	}
	sc, _ := l.agent.Config()
	iface, ok := vmknicOn(sc, vlan)
	if !ok {
		return "", 0, fmt.Errorf("no vmknic on the packet VLAN %d (fvctl network vmknic add, IPv4 none, on a port group of VLAN %d)", vlan, vlan)
	}
	return iface, vlan, nil
}

// updatePacket opens, keeps or closes s's packet path for the mode and
// the programming of now, and says in Status which way frames go.
func (l *Link) updatePacket(s *session) {
	iface, vlan, why := l.wantPacket(s)
	state := fmt.Sprintf("%s/%d/%v", iface, vlan, why)
	cur := s.pkt.Load()
	if state == s.pktState && (iface == "") == (cur == nil) {
		return
	}
	s.pktState = state
	if cur != nil {
		s.pkt.Store(nil)
		cur.close()
	}
	desc := viaControl
	if iface != "" {
		snd, err := l.o.Packet(iface)
		if err != nil {
			why = err
		} else {
			s.pkt.Store(&packetPath{iface: iface, vlan: vlan, dst: s.pktMAC, key: s.pktKey, snd: snd})
			desc = fmt.Sprintf("VLAN %d via %s", vlan, iface)
			l.log.Info("packet channel: relayed frames go on the packet VLAN", "vlan", vlan, "vmknic", iface, "vsm_mac", s.pktMAC.String())
		}
	}
	if why != nil {
		l.log.Warn("svs mode L2: relayed frames take the control connection", "reason", why)
	}
	l.mu.Lock()
	if l.sess == s {
		l.status.PacketChannel = desc
	}
	l.mu.Unlock()
}

// relayFrame sends one captured frame to the VSM: on the packet VLAN
// when s has a packet path, else (or when that fails: too big for the
// MTU, a socket error) over the control connection.
func (l *Link) relayFrame(s *session, port string, frame []byte) error {
	if p := s.pkt.Load(); p != nil {
		err := p.send(s.domain, s.module, port, frame)
		if err == nil {
			l.mu.Lock()
			l.status.PacketFrames++
			l.mu.Unlock()
			return nil
		}
		if !errors.Is(err, errTooBig) {
			l.log.Debug("packet channel: send failed: over the control connection", "port", port, "err", err)
		}
	}
	return s.send(api.VSMMessage{Type: api.VSMFrame, Frame: &api.VSMFrameBody{Port: port, Data: frame}})
}
