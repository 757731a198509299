// Package vsmlinktest is a fake VSM for tests of the VEM's control
// channel: a throwaway domain CA, a TLS 1.3 listener on 127.0.0.1 with a
// server certificate for "vsm", and connections that speak api.VSMMessage
// on meaning (the test scripts what the VSM says and checks what the VEM
// answers).
package vsmlinktest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
)

// CA is a throwaway domain CA.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  string
	pool *x509.CertPool
}

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test domain CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), pool: pool}
}

// Issue returns a certificate and key (PEM) signed by the CA: a server
// certificate for "vsm" and 127.0.0.1, or a client one for cn.
func (ca *CA) Issue(t testing.TB, cn string, server bool) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.DNSNames = []string{"vsm"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// VSM is a fake VSM listening on 127.0.0.1 (or StartOn's address).
type VSM struct {
	Addr   string
	Domain int
	CA     *CA
	ln     net.Listener
	conns  chan *Conn
}

// Start starts a fake VSM of domain; it stops at the end of the test.
func Start(t testing.TB, ca *CA, domain int) *VSM {
	t.Helper()
	return StartOn(t, ca, domain, "127.0.0.1:0")
}

// StartOn is Start listening on addr (in the calling thread's network
// namespace).
func StartOn(t testing.TB, ca *CA, domain int, addr string) *VSM {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, "vsm", true)
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair},
		ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	v := &VSM{Addr: ln.Addr().String(), Domain: domain, CA: ca, ln: ln, conns: make(chan *Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(v.conns)
				return
			}
			v.conns <- &Conn{c: c, br: bufio.NewReader(c), Domain: domain}
		}
	}()
	t.Cleanup(func() { v.Close() })
	return v
}

// Close stops listening.
func (v *VSM) Close() { v.ln.Close() }

// Join returns join data for this VSM with a fresh client certificate.
func (v *VSM) Join(t testing.TB, uplinks ...api.VSMUplink) api.VSMJoin {
	t.Helper()
	cert, key := v.CA.Issue(t, "host", false)
	return api.VSMJoin{
		Opaque: api.VSMOpaque{DomainID: v.Domain, SwitchName: "dvs", VSMs: []string{v.Addr}, Mode: api.SVSModeL3},
		CACert: v.CA.PEM, Cert: cert, Key: key, Uplinks: uplinks,
	}
}

// Accept waits for the next VEM connection (TLS handshake done).
func (v *VSM) Accept(t testing.TB, timeout time.Duration) *Conn {
	t.Helper()
	select {
	case c, ok := <-v.conns:
		if !ok {
			t.Fatal("fake VSM: listener closed")
		}
		if err := c.c.(*tls.Conn).Handshake(); err != nil {
			t.Fatalf("fake VSM: handshake: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(timeout):
		t.Fatalf("fake VSM: no connection in %s", timeout)
	}
	return nil
}

// Conn is one VEM connection as the fake VSM sees it.
type Conn struct {
	c      net.Conn
	br     *bufio.Reader
	Domain int
	// Epoch is put on messages sent without one.
	Epoch uint64

	mu  sync.Mutex
	seq uint64
}

// Send fills in version, domain (when 0), the next seq and the epoch
// (when 0), and writes m.
func (c *Conn) Send(t testing.TB, m api.VSMMessage) {
	t.Helper()
	c.mu.Lock()
	c.seq++
	m.Seq = c.seq
	c.mu.Unlock()
	c.SendRaw(t, m)
}

// Skip makes the next Send skip a seq number (a lost message).
func (c *Conn) Skip() {
	c.mu.Lock()
	c.seq++
	c.mu.Unlock()
}

// SendRaw writes m with its seq as given (version, domain and epoch
// filled in when zero).
func (c *Conn) SendRaw(t testing.TB, m api.VSMMessage) {
	t.Helper()
	if m.Version == 0 {
		m.Version = api.VSMProtocolVersion
	}
	if m.Domain == 0 {
		m.Domain = c.Domain
	}
	if m.Epoch == 0 {
		m.Epoch = c.Epoch
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(append(b, '\n')); err != nil {
		t.Errorf("fake VSM: send %s: %v", m.Type, err)
	}
}

// PacketKey is the packet channel key of this connection's TLS session
// (what the VEM tags its frames on the packet VLAN with).
func (c *Conn) PacketKey() ([]byte, error) {
	tc, ok := c.c.(*tls.Conn)
	if !ok {
		return nil, fmt.Errorf("fake VSM: not a TLS connection")
	}
	return pktchan.Key(tc.ConnectionState())
}

// Recv returns the next message from the VEM.
func (c *Conn) Recv(timeout time.Duration) (api.VSMMessage, error) {
	c.c.SetReadDeadline(time.Now().Add(timeout))
	line, err := c.br.ReadBytes('\n')
	if err != nil {
		return api.VSMMessage{}, err
	}
	return api.DecodeVSMMessage(line)
}

// Expect returns the next message of type typ, skipping heartbeats and
// port reports (unless asked for), and fails the test on anything else.
func (c *Conn) Expect(t testing.TB, typ string, timeout time.Duration) api.VSMMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := c.Recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("fake VSM: waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
		if m.Type != api.VSMHeartbeat && m.Type != api.VSMPortReport {
			t.Fatalf("fake VSM: got %s (%+v), want %s", m.Type, m, typ)
		}
	}
}

// Heartbeats sends heartbeats every interval until stop is called.
func (c *Conn) Heartbeats(t testing.TB, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				c.mu.Lock()
				c.seq++
				m := api.VSMMessage{Version: api.VSMProtocolVersion, Domain: c.Domain, Seq: c.seq, Epoch: c.Epoch, Type: api.VSMHeartbeat}
				b, _ := json.Marshal(m)
				c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, err := c.c.Write(append(b, '\n'))
				c.mu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	stop = func() { once.Do(func() { close(done) }) }
	t.Cleanup(stop)
	return stop
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// String names the connection.
func (c *Conn) String() string { return fmt.Sprintf("vem %s", c.c.RemoteAddr()) }
