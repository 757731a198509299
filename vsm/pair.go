package vsm

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// Pairing: how the secondary gets the domain CA (VSM-7).
//
// Both VSMs of a pair are deployed with the same API token; the secondary
// also with the primary's peer address. On its first start (no CA in its
// state directory) the secondary opens a TLS connection to the primary's
// peer port without a client certificate and without verifying the
// server's (it has no CA yet), and the two prove to each other that they
// know the token, bound to this very TLS connection:
//
//	proof = HMAC-SHA256(key: SHA-256(token), label || TLS exporter)
//
// with the label "secondary" (the side that asks) or "primary" (the side
// that answers: the labels name sides, not roles) and the exporter
// "EXPORTER-flashvisor-vsm-pairing" (32 bytes; RFC 8446 7.5). The key is
// the hash the VSM already stores (it never keeps the token), the token
// itself never crosses the wire, and a man in the middle has two TLS
// sessions with different exporters, so it can neither forward a proof
// nor make one. The secondary sends its proof first; the primary checks
// it and answers with its own proof, the CA certificate and the CA key;
// the secondary checks the primary's proof before it believes anything
// and stores the CA (key 0600), then issues its own server certificate
// as usual. Nothing of this is logged but the outcome.
//
// A primary deployed with the peer address and no CA replaces a lost
// primary: it asks the surviving VSM (a secondary, active by now) the same
// way, then waits for that VSM's peer link (the secondary dials the
// primary's peer address, so the replacement must be reachable at the old
// one's) and becomes its standby. Two VSMs of one role never pair.
//
// Chosen over an HTTPS route because the secondary cannot verify the
// primary's certificate before it has the CA: a bearer token sent there
// would go to whoever answers. A weak (guessable) token is open to an
// offline guess by such a middleman: use the generated 256-bit tokens.

// pairExporterLabel is the TLS exporter label of the pairing proofs.
const pairExporterLabel = "EXPORTER-flashvisor-vsm-pairing"

// ErrPairing: a VSM could not get the domain CA from its peer.
var ErrPairing = errors.New("pairing with the peer VSM failed")

// pairProof is one side's proof of the token on connection cs.
func pairProof(key tokenHash, side string, cs tls.ConnectionState) ([]byte, error) {
	ekm, err := cs.ExportKeyingMaterial(pairExporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("TLS exporter: %w", err)
	}
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte(side))
	mac.Write([]byte{0})
	mac.Write(ekm)
	return mac.Sum(nil), nil
}

// pairIfNeeded gets the domain CA from the peer when this VSM has none
// (a secondary's first start, a replacement primary's), trying for
// PairTimeout; it reports whether it paired.
func (s *Server) pairIfNeeded() (bool, error) {
	caCert := filepath.Join(s.o.StateDir, CACertFile)
	_, errCert := os.Stat(caCert)
	_, errKey := os.Stat(filepath.Join(s.o.StateDir, CAKeyFile))
	if errCert == nil && errKey == nil {
		return false, nil
	}
	if !errors.Is(errCert, fs.ErrNotExist) && errCert != nil {
		return false, fmt.Errorf("CA certificate: %w", errCert)
	}
	if s.o.PeerAddr == "" {
		return false, fmt.Errorf("%w: a secondary VSM without the domain CA needs the primary's peer address (-peer, flashvisor.vsm.peer)", ErrPairing)
	}
	deadline := time.Now().Add(s.o.PairTimeout)
	wait := 200 * time.Millisecond
	for {
		err := s.pairOnce()
		if err == nil {
			s.log.Info("paired with the peer VSM: domain CA stored", "peer", s.o.PeerAddr, "role", s.role)
			return true, nil
		}
		if errors.Is(err, ErrPairing) || time.Now().Add(wait).After(deadline) {
			return false, err
		}
		s.log.Info("pairing: peer not reachable yet (retrying)", "peer", s.o.PeerAddr, "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// pairOnce runs one pairing exchange. Errors that retrying cannot fix
// (a refusal, a wrong proof) wrap ErrPairing.
func (s *Server) pairOnce() error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.o.PeerAddr, &tls.Config{
		MinVersion: tls.VersionTLS13,
		// No CA yet: the server is authenticated by its token proof
		// (pairProof), bound to this connection.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.o.PeerAddr, err)
	}
	defer c.Close()
	cs := c.ConnectionState()
	mine, err := pairProof(s.token, config.RoleSecondary, cs)
	if err != nil {
		return err
	}
	lk := newPeerLink(c)
	if err := lk.send(peerMsg{Type: peerPair, Role: s.role, Proof: mine}, 10*time.Second); err != nil {
		return err
	}
	m, err := lk.read(10 * time.Second)
	if err != nil {
		return fmt.Errorf("pairing answer: %w", err)
	}
	switch m.Type {
	case peerPaired:
	case peerError:
		return fmt.Errorf("%w: %s refused: %s", ErrPairing, s.o.PeerAddr, m.Error)
	default:
		return fmt.Errorf("%w: %s answered %s", ErrPairing, s.o.PeerAddr, m.Type)
	}
	theirs, err := pairProof(s.token, config.RolePrimary, cs)
	if err != nil {
		return err
	}
	if !hmac.Equal(theirs, m.Proof) {
		return fmt.Errorf("%w: %s does not know our token (or is not the primary)", ErrPairing, s.o.PeerAddr)
	}
	if err := checkCA([]byte(m.CACert), []byte(m.CAKey)); err != nil {
		return fmt.Errorf("%w: %w", ErrPairing, err)
	}
	if err := os.MkdirAll(filepath.Join(s.o.StateDir, "tls"), 0o700); err != nil {
		return fmt.Errorf("create TLS directory: %w", err)
	}
	// Key first: a certificate without its key would make the next start
	// create a new key and fail the pair check (ErrCorruptTrust).
	if err := atomicfile.WriteFile(filepath.Join(s.o.StateDir, CAKeyFile), []byte(m.CAKey), 0o600); err != nil {
		return fmt.Errorf("store CA key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.o.StateDir, CACertFile), []byte(m.CACert), 0o644); err != nil {
		return fmt.Errorf("store CA certificate: %w", err)
	}
	return nil
}

// checkCA verifies that certPEM is a CA certificate for keyPEM.
func checkCA(certPEM, keyPEM []byte) error {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return errors.New("no CA certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) || !cert.IsCA {
		return errors.New("the CA certificate does not match its key")
	}
	return nil
}

// servePair answers a pairing request on the peer port (a connection
// without a client certificate).
func (s *Server) servePair(tc *tls.Conn, log *slog.Logger) {
	cs := tc.ConnectionState()
	br := bufio.NewReaderSize(tc, 4<<10)
	m, err := readPeerMsg(tc, br, 10*time.Second)
	if err != nil || m.Type != peerPair {
		log.Info("peer: connection without a certificate that does not pair: closed", "type", m.Type, "err", err)
		return
	}
	lk := newPeerLink(tc)
	refuse := func(why string) {
		log.Warn("pairing refused", "reason", why)
		time.Sleep(time.Second) // slows down guessing
		lk.send(peerMsg{Type: peerError, Error: why}, 5*time.Second)
	}
	if s.role == config.RoleStandalone {
		refuse("this VSM is standalone")
		return
	}
	if m.Role == s.role {
		refuse(fmt.Sprintf("both VSMs are %s: a pair is one primary and one secondary", s.role))
		return
	}
	want, err := pairProof(s.token, config.RoleSecondary, cs)
	if err != nil {
		refuse("internal error")
		return
	}
	if !hmac.Equal(want, m.Proof) {
		refuse("wrong token proof: deploy both VSMs with the same token")
		return
	}
	ours, err := pairProof(s.token, config.RolePrimary, cs)
	if err != nil {
		refuse("internal error")
		return
	}
	kb, err := x509.MarshalPKCS8PrivateKey(s.trust.caKey)
	if err != nil {
		refuse("internal error")
		return
	}
	ans := peerMsg{Type: peerPaired, Role: s.role, Proof: ours, CACert: string(s.trust.caPEM),
		CAKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))}
	if err := lk.send(ans, 10*time.Second); err != nil {
		log.Warn("pairing: answer not sent", "err", err)
		return
	}
	log.Info("paired a peer VSM: domain CA handed over", "peer_role", m.Role)
}
