package vsm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Files of the domain's trust material inside the state directory. Keys
// are written 0600, certificates 0644, each atomically.
const (
	CAKeyFile      = "tls/ca.key"
	CACertFile     = "tls/ca.crt"
	ServerKeyFile  = "tls/vsm.key"
	ServerCertFile = "tls/vsm.crt"
)

// ServerName is the DNS name in the VSM's server certificate: VEMs and
// peers verify the VSM under this name whatever address they dial.
const ServerName = "vsm"

// caLifetime is the domain CA's validity (and that of what it issues).
const caLifetime = 10 * 365 * 24 * time.Hour

// ErrCorruptTrust is returned when stored keys or certificates exist but
// cannot be used. The VSM then refuses to start rather than replace them:
// a new CA would lock every joined host out, and the operator must decide
// that by deleting the files.
var ErrCorruptTrust = errors.New("stored VSM key or certificate is unusable")

// trust is the domain CA and the VSM's server identity.
type trust struct {
	caKey    *ecdsa.PrivateKey
	caCert   *x509.Certificate
	caPEM    []byte
	pool     *x509.CertPool
	server   tls.Certificate
	now      func() time.Time
	stateDir string
}

// loadOrCreateTrust loads the domain CA and server certificate from
// stateDir, creating what is missing. The server certificate is reissued
// (same key) when it does not cover every address in ips, is not signed by
// the CA, or expires within 30 days.
func loadOrCreateTrust(stateDir string, ips []netip.Addr, now func() time.Time, log *slog.Logger) (*trust, error) {
	if err := os.MkdirAll(filepath.Join(stateDir, "tls"), 0o700); err != nil {
		return nil, fmt.Errorf("create TLS directory: %w", err)
	}
	t := &trust{now: now, stateDir: stateDir}
	caKeyPath, caCertPath := filepath.Join(stateDir, CAKeyFile), filepath.Join(stateDir, CACertFile)
	key, err := loadOrCreateKey(caKeyPath, log)
	if err != nil {
		return nil, err
	}
	t.caKey = key
	cert, err := loadCert(caCertPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		der, err := t.issueCA()
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(caCertPath, pemCert(der), 0o644); err != nil {
			return nil, fmt.Errorf("store CA certificate: %w", err)
		}
		if cert, err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("parse new CA certificate: %w", err)
		}
		log.Info("created the domain CA", "cert", caCertPath)
	case err != nil:
		return nil, err
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) || !cert.IsCA {
		return nil, fmt.Errorf("%w: %s does not belong to the CA key %s", ErrCorruptTrust, caCertPath, caKeyPath)
	}
	t.caCert = cert
	t.caPEM = pemCert(cert.Raw)
	t.pool = x509.NewCertPool()
	t.pool.AddCert(cert)

	srvKeyPath, srvCertPath := filepath.Join(stateDir, ServerKeyFile), filepath.Join(stateDir, ServerCertFile)
	skey, err := loadOrCreateKey(srvKeyPath, log)
	if err != nil {
		return nil, err
	}
	scert, err := loadCert(srvCertPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if why := t.serverCertStale(scert, skey, ips); why != "" {
		der, err := t.issue(skey.Public().(*ecdsa.PublicKey), serverTemplate(ips))
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(srvCertPath, pemCert(der), 0o644); err != nil {
			return nil, fmt.Errorf("store server certificate: %w", err)
		}
		if scert, err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("parse new server certificate: %w", err)
		}
		log.Info("issued the VSM server certificate", "reason", why, "ips", fmt.Sprint(ips))
	}
	t.server = tls.Certificate{Certificate: [][]byte{scert.Raw, cert.Raw}, PrivateKey: skey, Leaf: scert}
	return t, nil
}

// serverCertStale says why c must be reissued, or "" when it is fine.
func (t *trust) serverCertStale(c *x509.Certificate, key *ecdsa.PrivateKey, ips []netip.Addr) string {
	if c == nil {
		return "none stored"
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return "does not match the key"
	}
	if err := c.CheckSignatureFrom(t.caCert); err != nil {
		return "not signed by the domain CA"
	}
	if t.now().Add(30 * 24 * time.Hour).After(c.NotAfter) {
		return "expires soon"
	}
	if !slices.Contains(c.DNSNames, ServerName) {
		return "lacks the DNS name " + ServerName
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, func(x net.IP) bool { return x.Equal(ip.AsSlice()) }) {
			return "lacks address " + ip.String()
		}
	}
	return ""
}

func serverTemplate(ips []netip.Addr) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ServerName, Organization: []string{"Flashvisor VSM"}},
		DNSNames:    []string{ServerName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	seen := map[netip.Addr]bool{}
	for _, ip := range append(slices.Clone(ips), netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()) {
		if ip.IsValid() && !seen[ip.Unmap()] {
			seen[ip.Unmap()] = true
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.Unmap().AsSlice())
		}
	}
	return tmpl
}

func (t *trust) issueCA() ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := t.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Flashvisor VSM domain CA", Organization: []string{"Flashvisor"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &t.caKey.PublicKey, t.caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return der, nil
}

// issue signs tmpl for pub with the CA. Validity: from a day back to the
// CA's end.
func (t *trust) issue(pub *ecdsa.PublicKey, tmpl *x509.Certificate) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := t.now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-24 * time.Hour)
	tmpl.NotAfter = now.Add(caLifetime)
	if tmpl.NotAfter.After(t.caCert.NotAfter) {
		tmpl.NotAfter = t.caCert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, t.caCert, pub, t.caKey)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

// issueClient creates a key and a client certificate whose CN is cn (a
// host UUID; the HA peers use their server certificates). It returns PEM.
func (t *trust) issueClient(cn string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate client key: %w", err)
	}
	der, err := t.issue(&key.PublicKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"Flashvisor VEM"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode client key: %w", err)
	}
	return pemCert(der), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// controlTLS is the control listener's configuration: TLS 1.3, client
// certificates signed by the domain CA required.
func (t *trust) controlTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    t.pool,
	}
}

// apiTLS is the management API's configuration: the same server
// certificate, no client certificates.
func (t *trust) apiTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.server},
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// peerCN returns the common name of a verified TLS peer's leaf certificate.
func peerCN(cs tls.ConnectionState) (string, bool) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	return cs.VerifiedChains[0][0].Subject.CommonName, true
}

func loadOrCreateKey(path string, log *slog.Logger) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := parseKey(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorruptTrust, path, err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	log.Info("generated a key", "path", path)
	return k, nil
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ECDSA", k)
	}
	return ek, nil
}

// loadCert reads one PEM certificate; fs.ErrNotExist when absent.
func loadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no PEM CERTIFICATE block", ErrCorruptTrust, path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorruptTrust, path, err)
	}
	return c, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s, nil
}

// advertisedIPs returns the IP addresses among host:port strings.
func advertisedIPs(addrs []string) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			h = a
		}
		if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
