package vsmlink

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/vem"
)

// ServerName is the DNS name the VSM's server certificate carries: the VEM
// verifies the VSM under it whatever address it dials.
const ServerName = "vsm"

// maxJoinFile bounds the join file (PEMs and the opaque data).
const maxJoinFile = 1 << 20

// ParseJoin decodes join data strictly (unknown fields and trailing data
// are errors) and validates it (ValidateJoin). Errors wrap vem.ErrBadRequest.
func ParseJoin(data []byte) (api.VSMJoin, error) {
	var j api.VSMJoin
	if len(data) > maxJoinFile {
		return j, fmt.Errorf("%w: join data: %d bytes, at most %d", vem.ErrBadRequest, len(data), maxJoinFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return api.VSMJoin{}, fmt.Errorf("%w: join data: %w", vem.ErrBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.VSMJoin{}, fmt.Errorf("%w: join data: trailing data", vem.ErrBadRequest)
	}
	if _, err := ValidateJoin(j); err != nil {
		return api.VSMJoin{}, err
	}
	return j, nil
}

// ValidateJoin checks join data and returns the TLS client configuration
// it makes: domain 1-4095, mode L3, at least one VSM host:port, PEMs that
// parse, a client certificate that chains to the domain CA and matches its
// key, and uplinks with valid interface names and a profile. Errors wrap
// vem.ErrBadRequest and never quote the key.
func ValidateJoin(j api.VSMJoin) (*tls.Config, error) {
	bad := func(format string, args ...any) (*tls.Config, error) {
		return nil, fmt.Errorf("%w: join data: "+format, append([]any{vem.ErrBadRequest}, args...)...)
	}
	o := j.Opaque
	if o.DomainID < 1 || o.DomainID > api.VSMDomainIDMax {
		return bad("domain id %d: must be 1-%d", o.DomainID, api.VSMDomainIDMax)
	}
	switch o.Mode {
	case "", api.SVSModeL3:
	case api.SVSModeL2:
		if o.ControlVLAN < 1 || o.ControlVLAN > 4094 {
			return bad("svs mode L2: control vlan %d: must be 1-4094", o.ControlVLAN)
		}
	default:
		return bad("svs mode %q: must be %s or %s", o.Mode, api.SVSModeL3, api.SVSModeL2)
	}
	if len(o.VSMs) == 0 {
		return bad("no VSM address")
	}
	if j.Module != 0 && (j.Module < api.VSMFirstVEMSlot || j.Module > api.VSMSlots) {
		return bad("module %d: must be %d-%d", j.Module, api.VSMFirstVEMSlot, api.VSMSlots)
	}
	for _, a := range o.VSMs {
		if err := checkAddr(a); err != nil {
			return bad("VSM address %q: %w", a, err)
		}
	}
	if len(j.Uplinks) > 32 {
		return bad("%d uplinks, at most 32", len(j.Uplinks))
	}
	seen := map[string]bool{}
	for _, u := range j.Uplinks {
		if !validIfName(u.Interface) {
			return bad("uplink interface %q: not an interface name", u.Interface)
		}
		if seen[u.Interface] {
			return bad("uplink %s listed twice", u.Interface)
		}
		seen[u.Interface] = true
		if u.Profile == "" || len(u.Profile) > vem.MaxProfileName {
			return bad("uplink %s: profile %q: want 1-%d characters", u.Interface, u.Profile, vem.MaxProfileName)
		}
	}
	ca, err := parseCert(j.CACert)
	if err != nil {
		return bad("CA certificate: %w", err)
	}
	if !ca.IsCA {
		return bad("CA certificate is not a CA")
	}
	leaf, err := parseCert(j.Cert)
	if err != nil {
		return bad("client certificate: %w", err)
	}
	pair, err := tls.X509KeyPair([]byte(j.Cert), []byte(j.Key))
	if err != nil {
		// tls's messages name the PEM types, never the key material.
		return bad("client certificate and key: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	// The chain is checked at the certificate's own start time: a host
	// whose clock is off still joins, and the TLS handshakes (on both
	// sides) check validity at the time they happen.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: leaf.NotBefore,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return bad("client certificate does not chain to the domain CA: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		ServerName:   ServerName,
	}, nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host == "" || strings.ContainsAny(host, " \t\n/") {
		return errors.New("empty or invalid host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1-65535", port)
	}
	return nil
}

func parseCert(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(b.Bytes)
}

func validIfName(s string) bool {
	return s != "" && len(s) <= 15 && s != "." && s != ".." &&
		!strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '/' || r == ':' || r >= 0x7f })
}

// LoadJoin reads the join file: os.ErrNotExist (wrapped) when the host has
// not joined.
func LoadJoin(path string) (api.VSMJoin, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return api.VSMJoin{}, fmt.Errorf("load join data: %w", err)
	}
	j, err := ParseJoin(data)
	if err != nil {
		return api.VSMJoin{}, fmt.Errorf("%s: %w", path, err)
	}
	return j, nil
}

// SaveJoin writes the join file atomically, 0600.
func SaveJoin(path string, j api.VSMJoin) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("save join data: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save join data: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save join data: %w", err)
	}
	return nil
}
