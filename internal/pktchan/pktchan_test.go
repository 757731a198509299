package pktchan_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/flashvisor/flashvisor/internal/netnstest"
	"github.com/flashvisor/flashvisor/internal/pktchan"
)

var key = bytes.Repeat([]byte{7}, pktchan.KeyLen)

func sample() pktchan.Frame {
	return pktchan.Frame{Domain: 18, Module: 4, Seq: 9, Port: "Eth4/2", Data: []byte("\x01\x00\x0c\xcc\xcc\xcc a CDP frame")}
}

func TestRoundTrip(t *testing.T) {
	f := sample()
	b, err := pktchan.Append(nil, f, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != pktchan.Len(f) {
		t.Errorf("payload of %d bytes, Len says %d", len(b), pktchan.Len(f))
	}
	if d, m, err := pktchan.Peek(b); err != nil || d != 18 || m != 4 {
		t.Errorf("Peek = %d, %d, %v; want 18, 4", d, m, err)
	}
	// Ethernet pads short frames: trailing bytes do not matter.
	got, err := pktchan.Open(append(b, 0, 0, 0), key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Domain != f.Domain || got.Module != f.Module || got.Seq != f.Seq || got.Port != f.Port || !bytes.Equal(got.Data, f.Data) {
		t.Errorf("Open = %+v, want %+v", got, f)
	}
}

// Every byte of a payload is covered: flipping any one is refused.
func TestTamper(t *testing.T) {
	b, err := pktchan.Append(nil, sample(), key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := pktchan.Open(c, key); !errors.Is(err, pktchan.ErrAuth) && !errors.Is(err, pktchan.ErrMalformed) {
			t.Fatalf("byte %d flipped: Open err = %v, want ErrAuth or ErrMalformed", i, err)
		}
	}
	other := bytes.Repeat([]byte{8}, pktchan.KeyLen)
	if _, err := pktchan.Open(b, other); !errors.Is(err, pktchan.ErrAuth) {
		t.Errorf("another key: %v, want ErrAuth", err)
	}
	for n := range len(b) {
		if _, err := pktchan.Open(b[:n], key); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
}

func TestAppendRefuses(t *testing.T) {
	for name, f := range map[string]func(*pktchan.Frame){
		"no port":    func(f *pktchan.Frame) { f.Port = "" },
		"long port":  func(f *pktchan.Frame) { f.Port = string(bytes.Repeat([]byte("x"), 33)) },
		"no data":    func(f *pktchan.Frame) { f.Data = nil },
		"jumbo+1":    func(f *pktchan.Frame) { f.Data = make([]byte, pktchan.MaxData+1) },
		"domain 0":   func(f *pktchan.Frame) { f.Domain = 0 },
		"module 0":   func(f *pktchan.Frame) { f.Module = 0 },
		"module big": func(f *pktchan.Frame) { f.Module = 1 << 16 },
	} {
		fr := sample()
		f(&fr)
		if _, err := pktchan.Append(nil, fr, key); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := pktchan.Append(nil, sample(), key[:16]); err == nil {
		t.Error("short key: accepted")
	}
}

// Both ends of one TLS 1.3 session derive the same key; another session
// another one.
func TestKey(t *testing.T) {
	cert := selfSigned(t)
	session := func() (client, server []byte) {
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		sc := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		cc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		done := make(chan error, 1)
		go func() { done <- sc.Handshake() }()
		if err := cc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		ck, err := pktchan.Key(cc.ConnectionState())
		if err != nil {
			t.Fatal(err)
		}
		sk, err := pktchan.Key(sc.ConnectionState())
		if err != nil {
			t.Fatal(err)
		}
		return ck, sk
	}
	c1, s1 := session()
	c2, _ := session()
	if !bytes.Equal(c1, s1) || len(c1) != pktchan.KeyLen {
		t.Errorf("client key %x, server key %x: want the same %d bytes", c1, s1, pktchan.KeyLen)
	}
	if bytes.Equal(c1, c2) {
		t.Error("two sessions, one key")
	}
	if _, err := pktchan.Key(tls.ConnectionState{Version: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2: key derived")
	}
}

func FuzzOpen(f *testing.F) {
	b, _ := pktchan.Append(nil, sample(), key)
	f.Add(b)
	f.Add([]byte("FVPC\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := pktchan.Open(b, key)
		if err != nil {
			return
		}
		// Whatever opens was made with the key: it re-encodes to itself.
		again, err := pktchan.Append(nil, fr, key)
		if err != nil || !bytes.HasPrefix(b, again) {
			t.Fatalf("opened %+v, re-encodes to %x (%v)", fr, again, err)
		}
	})
}

// TestConn sends a payload across a veth pair in a fresh namespace: the
// receiver gets it with the EtherType's frames only.
func TestConn(t *testing.T) {
	netnstest.Enter(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pc0"}, PeerName: "pc1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pc0", "pc1"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := pktchan.Listen("pc0")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := pktchan.Listen("pc1")
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if tx.MTU() != 1500 || len(tx.MAC()) != 6 {
		t.Errorf("MTU %d, MAC %s", tx.MTU(), tx.MAC())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan pktchan.Frame, 4)
	done := make(chan error, 1)
	go func() {
		done <- rx.Run(ctx, func(p []byte) {
			if f, err := pktchan.Open(p, key); err == nil {
				f.Data = bytes.Clone(f.Data)
				got <- f
			}
		})
	}()
	want := sample()
	b, err := pktchan.Append(nil, want, key)
	if err != nil {
		t.Fatal(err)
	}
	// The receiver's socket may not be reading yet: send until it is.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := tx.Send(rx.MAC(), b); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-got:
			if f.Port != want.Port || !bytes.Equal(f.Data, want.Data) || f.Module != 4 {
				t.Errorf("received %+v, want %+v", f, want)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run after cancel: %v", err)
			}
			return
		case err := <-done:
			t.Fatalf("Run: %v", err)
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("nothing received in 10 s")
		}
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vsm"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
