package vsm

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/config"
)

type configT = config.Config

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestTrustPersistsAndReissues(t *testing.T) {
	dir := t.TempDir()
	ip1 := netip.MustParseAddr("192.0.2.10")
	t1, err := loadOrCreateTrust(dir, []netip.Addr{ip1}, time.Now, discard())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAKeyFile, ServerKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	leaf := t1.server.Leaf
	if leaf.DNSNames[0] != ServerName || leaf.VerifyHostname("192.0.2.10") != nil {
		t.Errorf("server cert names %v %v, want vsm and 192.0.2.10", leaf.DNSNames, leaf.IPAddresses)
	}
	if d := t1.caCert.NotAfter.Sub(t1.caCert.NotBefore); d < 3650*24*time.Hour {
		t.Errorf("CA lifetime %v, want 10 years", d)
	}

	// Same addresses: everything reused.
	t2, err := loadOrCreateTrust(dir, []netip.Addr{ip1}, time.Now, discard())
	if err != nil {
		t.Fatal(err)
	}
	if !t2.caCert.Equal(t1.caCert) || !t2.server.Leaf.Equal(leaf) {
		t.Error("second start did not reuse the CA and server certificate")
	}
	// A new address: same CA, server certificate reissued for it.
	ip2 := netip.MustParseAddr("192.0.2.20")
	t3, err := loadOrCreateTrust(dir, []netip.Addr{ip2}, time.Now, discard())
	if err != nil {
		t.Fatal(err)
	}
	if !t3.caCert.Equal(t1.caCert) || t3.server.Leaf.Equal(leaf) || t3.server.Leaf.VerifyHostname("192.0.2.20") != nil {
		t.Error("a new address did not reissue the server certificate under the same CA")
	}

	// Client certificates chain to the CA and carry the CN.
	certPEM, keyPEM, err := t3.issueClient("11111111-2222-3333-4444-555555555501")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(pair.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(t3.caCert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify: %v", err)
	}
	if c.Subject.CommonName != "11111111-2222-3333-4444-555555555501" {
		t.Errorf("client CN = %q", c.Subject.CommonName)
	}
}

func TestCorruptKeyRefused(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tls"), 0o700)
	os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("garbage"), 0o600)
	if _, err := loadOrCreateTrust(dir, nil, time.Now, discard()); err == nil {
		t.Error("a corrupt CA key was accepted or replaced")
	}
}

func TestEpoch(t *testing.T) {
	p := filepath.Join(t.TempDir(), EpochFile)
	for want := uint64(1); want <= 3; want++ {
		if got, err := nextEpoch(p, 0); err != nil || got != want {
			t.Errorf("nextEpoch = %d, %v; want %d", got, err, want)
		}
	}
	if got, _ := nextEpoch(p, 10); got != 11 {
		t.Errorf("nextEpoch(floor 10) = %d, want 11", got)
	}
	if got, _ := readEpoch(p); got != 11 {
		t.Errorf("readEpoch = %d, want 11", got)
	}
}

// The primary activates with odd epochs, the secondary with even ones:
// two activations of a pair never share an epoch.
func TestEpochParity(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		file   string
		floor  uint64
		parity int
		want   uint64
	}{
		{"p", 0, epochOdd, 1},
		{"s", 1, epochEven, 2},
		{"p", 2, epochOdd, 3},
		{"s", 3, epochEven, 4},
		{"s", 4, epochEven, 6}, // stored 4 is already the floor
		{"p", 6, epochOdd, 7},
		{"x", 6, epochAny, 7},
	} {
		if got, err := nextEpochFor(filepath.Join(dir, c.file), c.floor, c.parity); err != nil || got != c.want {
			t.Errorf("nextEpochFor(%s, floor %d, parity %d) = %d, %v; want %d", c.file, c.floor, c.parity, got, err, c.want)
		}
	}
}

func TestJoinBundleNeedsDomain(t *testing.T) {
	s, err := New(Options{StateDir: t.TempDir(), Token: "0123456789abcdef0", Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.JoinBundle("11111111-2222-3333-4444-555555555501", nil); err == nil {
		t.Error("JoinBundle without a domain id worked")
	}
	if err := s.Update(func(c *configT) error { c.SVSDomain.ID = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	j, err := s.JoinBundle("11111111-2222-3333-4444-555555555501", []api.VSMUplink{{Interface: "eth1", Profile: "up"}})
	if err != nil {
		t.Fatal(err)
	}
	if j.Opaque.DomainID != 7 || j.Opaque.Mode != api.SVSModeL3 || j.Key == "" || len(j.Uplinks) != 1 {
		t.Errorf("JoinBundle = %+v", j.Opaque)
	}
	if _, err := s.JoinBundle("not-a-uuid", nil); err == nil {
		t.Error("JoinBundle accepted a bad UUID")
	}
}
