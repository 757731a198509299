package hostd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// ErrCorruptKey is returned when the stored TLS key (or certificate) exists
// but cannot be used. hostd then refuses to start rather than replace it:
// a new key would change the fingerprint every client has pinned, and the
// operator should decide that (by deleting the files), not a parse error.
var ErrCorruptKey = errors.New("stored TLS key or certificate is unusable")

// certNotAfter is RFC 5280's "no well-defined expiration date": the
// certificate is trusted by its pinned fingerprint, not by its dates, and a
// host must never lock its operators out because a date passed.
var certNotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// hostCert is the loaded or generated TLS identity.
type hostCert struct {
	cert        tls.Certificate
	fingerprint string // "AB:CD:..."
	generated   bool
}

// fingerprint returns the SHA-256 of der as uppercase colon-separated hex.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	parts := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// loadOrCreateCert loads <stateDir>/tls/host.{key,crt}, generating what is
// missing. A key that exists but does not parse is an error (ErrCorruptKey),
// and so is a certificate that does not parse or does not match the key.
func loadOrCreateCert(stateDir, hostname string, ips []netip.Addr, now time.Time, log *slog.Logger) (hostCert, error) {
	keyPath := filepath.Join(stateDir, layout.TLSKeyFile)
	certPath := filepath.Join(stateDir, layout.TLSCertFile)

	keyPEM, err := os.ReadFile(keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createCert(keyPath, certPath, hostname, ips, now, log)
	case err != nil:
		return hostCert{}, fmt.Errorf("read TLS key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return hostCert{}, fmt.Errorf("%w: %s: %w (remove %s and %s to generate a new identity; clients will see a new fingerprint)",
			ErrCorruptKey, keyPath, err, keyPath, certPath)
	}

	certPEM, err := os.ReadFile(certPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Crash between writing the key and the certificate (the key is
		// written first): issue a certificate for the existing key.
		log.Warn("TLS certificate missing, issuing a new one for the existing key", "path", certPath)
		der, err := selfSign(key, hostname, ips, now)
		if err != nil {
			return hostCert{}, err
		}
		if err := atomicfile.WriteFile(certPath, pemCert(der), 0o644); err != nil {
			return hostCert{}, fmt.Errorf("store TLS certificate: %w", err)
		}
		return newHostCert(der, key, true), nil
	case err != nil:
		return hostCert{}, fmt.Errorf("read TLS certificate: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return hostCert{}, fmt.Errorf("%w: %s: no PEM CERTIFICATE block", ErrCorruptKey, certPath)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return hostCert{}, fmt.Errorf("%w: %s: %w", ErrCorruptKey, certPath, err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return hostCert{}, fmt.Errorf("%w: %s does not belong to the key in %s", ErrCorruptKey, certPath, keyPath)
	}
	return newHostCert(blk.Bytes, key, false), nil
}

func createCert(keyPath, certPath, hostname string, ips []netip.Addr, now time.Time, log *slog.Logger) (hostCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return hostCert{}, fmt.Errorf("generate TLS key: %w", err)
	}
	der, err := selfSign(key, hostname, ips, now)
	if err != nil {
		return hostCert{}, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return hostCert{}, fmt.Errorf("encode TLS key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return hostCert{}, fmt.Errorf("create TLS directory: %w", err)
	}
	// Key first: a crash before the certificate is written is repaired at
	// the next start by issuing a certificate for this key.
	if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return hostCert{}, fmt.Errorf("store TLS key: %w", err)
	}
	if err := atomicfile.WriteFile(certPath, pemCert(der), 0o644); err != nil {
		return hostCert{}, fmt.Errorf("store TLS certificate: %w", err)
	}
	log.Info("generated host TLS key and certificate", "cert", certPath)
	return newHostCert(der, key, true), nil
}

func newHostCert(der []byte, key *ecdsa.PrivateKey, generated bool) hostCert {
	return hostCert{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		fingerprint: fingerprint(der),
		generated:   generated,
	}
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want ECDSA", k)
		}
		return ek, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", blk.Type)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func selfSign(key *ecdsa.PrivateKey, hostname string, ips []netip.Addr, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	cn := hostname
	if cn == "" {
		cn = "flashvisor-host"
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Flashvisor host"}},
		// A day back covers a host whose clock is behind its clients'.
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              certNotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: lets a browser import it as its own anchor
	}
	if hostname != "" {
		tmpl.DNSNames = []string{hostname}
	}
	seen := map[netip.Addr]bool{}
	for _, ip := range append(ips, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()) {
		if ip.IsValid() && !seen[ip] {
			seen[ip] = true
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return der, nil
}
