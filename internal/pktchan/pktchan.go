// Package pktchan is the packet channel of svs mode L2 (SPEC VEM-9): in L2
// mode a VEM relays the CDP and IGMP frames its ports receive to the VSM
// as raw Ethernet frames on the switch's packet VLAN, from its vmknic on
// that VLAN to the VSM's packet vNIC, instead of over the control
// connection.
//
// A packet channel frame is EtherType 0x88B5 (IEEE 802 local
// experimental) with this payload, big-endian:
//
//	magic "FVPC" | version 1 | type 1 (relayed frame)
//	domain ID (2) | module (2) | sequence number (8)
//	port name length (1) | port name (EthM/P or VethN)
//	frame length (2) | the relayed frame (Ethernet header on)
//	tag (16): HMAC-SHA-256 of everything before it, truncated
//
// Raw frames on a VLAN are neither confidential nor authenticated, so the
// tag is keyed per control connection: both ends derive the key from the
// connection's TLS 1.3 session (Key, RFC 8446 exporter), never send it,
// and a new connection means a new key. The VSM finds the key by the
// frame's module, checks the tag in constant time and takes only sequence
// numbers above the last it took with that key, so a frame cannot be
// forged, altered or replayed by anyone on the VLAN. Trailing bytes (the
// padding of a short Ethernet frame) are ignored.
//
// Conn is the raw socket (AF_PACKET, SOCK_DGRAM on EtherType, through
// mdlayher/packet): the kernel builds and strips the Ethernet header.
package pktchan

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
)

// EtherType is the packet channel's EtherType (IEEE 802 local
// experimental 1: never forwarded beyond a site by anyone's equipment).
const EtherType = 0x88B5

// Version is the payload format's version.
const Version = 1

// TypeFrame is a relayed frame.
const TypeFrame = 1

// KeyLen is the length of a packet channel key.
const KeyLen = 32

const (
	magic     = "FVPC"
	headerLen = 4 + 1 + 1 + 2 + 2 + 8
	tagLen    = 16
	// MaxPort is the longest port name carried.
	MaxPort = 32
	// MaxData is the largest relayed frame carried (a jumbo frame).
	MaxData = 9216
)

// exporterLabel names the key in the TLS exporter (RFC 8446 7.5).
const exporterLabel = "EXPORTER-flashvisor-packet-channel"

// Errors of Open and Peek.
var (
	// ErrMalformed: not a packet channel payload of a version we know.
	ErrMalformed = errors.New("pktchan: malformed payload")
	// ErrAuth: the tag does not match the key.
	ErrAuth = errors.New("pktchan: authentication failed")
)

// Frame is one relayed frame with its origin.
type Frame struct {
	Domain int
	Module int
	// Seq grows by one per frame a module sends on one key.
	Seq  uint64
	Port string
	Data []byte
}

// Key derives the packet channel key of one control connection: both
// ends of the same TLS 1.3 session get the same key.
func Key(cs tls.ConnectionState) ([]byte, error) {
	if cs.Version != tls.VersionTLS13 {
		return nil, fmt.Errorf("pktchan: key needs TLS 1.3 (connection is %s)", tls.VersionName(cs.Version))
	}
	k, err := cs.ExportKeyingMaterial(exporterLabel, nil, KeyLen)
	if err != nil {
		return nil, fmt.Errorf("pktchan: key: %w", err)
	}
	return k, nil
}

// Len is the payload length of f.
func Len(f Frame) int { return headerLen + 1 + len(f.Port) + 2 + len(f.Data) + tagLen }

// Append appends f's payload, tagged with key, to dst.
func Append(dst []byte, f Frame, key []byte) ([]byte, error) {
	switch {
	case len(key) != KeyLen:
		return dst, fmt.Errorf("pktchan: key of %d bytes, want %d", len(key), KeyLen)
	case f.Domain < 1 || f.Domain > 0xffff || f.Module < 1 || f.Module > 0xffff:
		return dst, fmt.Errorf("pktchan: domain %d, module %d out of range", f.Domain, f.Module)
	case f.Port == "" || len(f.Port) > MaxPort:
		return dst, fmt.Errorf("pktchan: port name %q: want 1-%d bytes", f.Port, MaxPort)
	case len(f.Data) == 0 || len(f.Data) > MaxData:
		return dst, fmt.Errorf("pktchan: frame of %d bytes: want 1-%d", len(f.Data), MaxData)
	}
	start := len(dst)
	dst = append(dst, magic...)
	dst = append(dst, Version, TypeFrame)
	dst = binary.BigEndian.AppendUint16(dst, uint16(f.Domain))
	dst = binary.BigEndian.AppendUint16(dst, uint16(f.Module))
	dst = binary.BigEndian.AppendUint64(dst, f.Seq)
	dst = append(dst, byte(len(f.Port)))
	dst = append(dst, f.Port...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.Data)))
	dst = append(dst, f.Data...)
	mac := hmac.New(sha256.New, key)
	mac.Write(dst[start:])
	return append(dst, mac.Sum(nil)[:tagLen]...), nil
}

// Peek reads the domain and module of a payload, unauthenticated: the
// receiver needs the module to find the key Open checks the payload with.
func Peek(b []byte) (domain, module int, err error) {
	if len(b) < headerLen || string(b[:4]) != magic || b[4] != Version || b[5] != TypeFrame {
		return 0, 0, ErrMalformed
	}
	return int(binary.BigEndian.Uint16(b[6:])), int(binary.BigEndian.Uint16(b[8:])), nil
}

// Open checks b's tag with key and returns the frame it carries. Data
// aliases b.
func Open(b []byte, key []byte) (Frame, error) {
	var f Frame
	var err error
	if f.Domain, f.Module, err = Peek(b); err != nil {
		return Frame{}, err
	}
	f.Seq = binary.BigEndian.Uint64(b[10:])
	rest := b[headerLen:]
	if len(rest) < 1 {
		return Frame{}, ErrMalformed
	}
	pl := int(rest[0])
	if pl == 0 || pl > MaxPort || len(rest) < 1+pl+2 {
		return Frame{}, ErrMalformed
	}
	f.Port = string(rest[1 : 1+pl])
	rest = rest[1+pl:]
	dl := int(binary.BigEndian.Uint16(rest))
	if dl == 0 || dl > MaxData || len(rest) < 2+dl+tagLen {
		return Frame{}, ErrMalformed
	}
	f.Data = rest[2 : 2+dl]
	end := len(b) - len(rest) + 2 + dl
	if len(key) != KeyLen {
		return Frame{}, ErrAuth
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b[:end])
	if !hmac.Equal(mac.Sum(nil)[:tagLen], b[end:end+tagLen]) {
		return Frame{}, ErrAuth
	}
	return f, nil
}
