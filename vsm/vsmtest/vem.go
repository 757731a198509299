// Package vsmtest provides a fake VEM for testing the VSM's control
// channel: a TLS client with a join bundle's certificate that speaks
// api.VSMMessage directly, answers heartbeats (until told to go silent)
// and hands every other message to the test.
package vsmtest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
)

// VEM is one fake VEM connection.
type VEM struct {
	// Domain is stamped on every message sent (default: the bundle's).
	Domain int

	conn   *tls.Conn
	mu     sync.Mutex // orders Seq with writes
	seq    uint64
	silent atomic.Bool
	msgs   chan api.VSMMessage
	done   chan struct{}
	err    error // why the read loop ended, after done closes
}

// Dial connects to the VSM's control address with j's trust material. It
// verifies the VSM's certificate against j's CA under the name "vsm".
func Dial(addr string, j api.VSMJoin) (*VEM, error) {
	cert, err := tls.X509KeyPair([]byte(j.Cert), []byte(j.Key))
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(j.CACert)) {
		return nil, errors.New("no CA certificate in the bundle")
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		RootCAs: pool, ServerName: "vsm",
	})
	if err != nil {
		return nil, err
	}
	v := &VEM{Domain: j.Opaque.DomainID, conn: c, msgs: make(chan api.VSMMessage, 1024), done: make(chan struct{})}
	go v.readLoop()
	return v, nil
}

func (v *VEM) readLoop() {
	defer close(v.done)
	br := bufio.NewReaderSize(v.conn, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			v.err = err
			return
		}
		m, err := api.DecodeVSMMessage(line)
		if err != nil {
			v.err = fmt.Errorf("VSM sent a bad message: %w", err)
			return
		}
		if m.Type == api.VSMHeartbeat {
			if !v.silent.Load() {
				v.Send(api.VSMMessage{Type: api.VSMHeartbeat})
			}
			continue
		}
		v.msgs <- m
	}
}

// Send stamps m with the version, v.Domain (unless m has one) and the next
// sequence number, and writes it.
func (v *VEM) Send(m api.VSMMessage) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seq++
	m.Version, m.Seq = api.VSMProtocolVersion, v.seq
	if m.Domain == 0 {
		m.Domain = v.Domain
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	v.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = v.conn.Write(append(b, '\n'))
	return err
}

// Hello sends a hello.
func (v *VEM) Hello(h api.VSMHelloBody) error {
	return v.Send(api.VSMMessage{Type: api.VSMHello, Hello: &h})
}

// Next returns the next message that is not a heartbeat, or an error when
// none comes within timeout or the connection ended.
func (v *VEM) Next(timeout time.Duration) (api.VSMMessage, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-v.msgs:
		return m, nil
	case <-v.done:
		select {
		case m := <-v.msgs:
			return m, nil
		default:
		}
		return api.VSMMessage{}, fmt.Errorf("connection ended: %w", v.err)
	case <-t.C:
		return api.VSMMessage{}, errors.New("no message")
	}
}

// Expect returns the next message, which must be of type typ.
func (v *VEM) Expect(typ string, timeout time.Duration) (api.VSMMessage, error) {
	m, err := v.Next(timeout)
	if err != nil {
		return m, fmt.Errorf("waiting for %s: %w", typ, err)
	}
	if m.Type != typ {
		b, _ := json.Marshal(m)
		return m, fmt.Errorf("got %s, want %s: %s", m.Type, typ, b)
	}
	return m, nil
}

// Silence stops answering heartbeats: the VSM should declare the VEM dead.
func (v *VEM) Silence() { v.silent.Store(true) }

// Done is closed when the connection has ended.
func (v *VEM) Done() <-chan struct{} { return v.done }

// PacketKey is the packet channel key of this connection (what a real
// VEM tags its frames on the packet VLAN with).
func (v *VEM) PacketKey() ([]byte, error) { return pktchan.Key(v.conn.ConnectionState()) }

// Close closes the connection.
func (v *VEM) Close() error { return v.conn.Close() }

// Connect does what a VEM's link does after losing its VSM: it tries
// each address in turn (dial, hello, wait for the answer) and returns the
// connection of the first VSM that welcomes it, with the welcome. A VSM
// that refuses (an error message, such as a standby's not_active) or
// cannot be reached is skipped; the error lists why each one failed.
func Connect(addrs []string, j api.VSMJoin, h api.VSMHelloBody, timeout time.Duration) (*VEM, api.VSMMessage, error) {
	var errs []error
	for _, a := range addrs {
		v, err := Dial(a, j)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		if err := v.Hello(h); err != nil {
			v.Close()
			errs = append(errs, fmt.Errorf("%s: hello: %w", a, err))
			continue
		}
		m, err := v.Next(timeout)
		switch {
		case err != nil:
			err = fmt.Errorf("%s: %w", a, err)
		case m.Type == api.VSMWelcome:
			return v, m, nil
		case m.Type == api.VSMError:
			err = fmt.Errorf("%s refused: %s (%s)", a, m.Error.Message, m.Error.Code)
		default:
			err = fmt.Errorf("%s: got %s before welcome", a, m.Type)
		}
		v.Close()
		errs = append(errs, err)
	}
	return nil, api.VSMMessage{}, errors.Join(errs...)
}
