package boot

import (
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// Screen is what the local console screen shows (INIT-6, the DCUI
// analogue): enough for someone at the server to reach it remotely.
type Screen struct {
	Version     string
	Info        api.BootInfo
	Fingerprint string // "" until hostd has made its certificate
	Services    []api.Service
}

// Render draws the screen as text for an 80x25 console.
func (s Screen) Render() string {
	var b strings.Builder
	b.WriteString("\033[2J\033[H") // clear, home
	fmt.Fprintf(&b, "Flashvisor %s\n\n", s.Version)
	fmt.Fprintf(&b, "  Host:        %s\n", s.Info.Hostname)
	fmt.Fprintf(&b, "  UUID:        %s\n", s.Info.HostUUID)
	m := s.Info.Management
	if m.Address == "" {
		b.WriteString("  Management:  not configured (see the boot log)\n")
	} else {
		fmt.Fprintf(&b, "  Management:  %s on %s (%s)\n", m.Address, m.NIC, m.Mode)
		if p, err := netip.ParsePrefix(m.Address); err == nil {
			host := p.Addr().String()
			if p.Addr().Is6() {
				host = "[" + host + "]"
			}
			fmt.Fprintf(&b, "\n  Manage this host at:  https://%s/\n", host)
		}
	}
	if s.Fingerprint != "" {
		fmt.Fprintf(&b, "  Certificate SHA-256:\n    %s\n", s.Fingerprint)
	}
	if !s.Info.PersistentState {
		b.WriteString("\n  WARNING: no state partition; configuration is lost at reboot.\n")
	}
	if len(s.Info.FailedSteps) > 0 {
		fmt.Fprintf(&b, "\n  Boot steps that failed: %s\n", strings.Join(s.Info.FailedSteps, ", "))
	}
	b.WriteString("\n  Services:")
	for _, sv := range s.Services {
		fmt.Fprintf(&b, " %s (%s)", sv.Name, sv.State)
	}
	b.WriteString("\n")
	return b.String()
}

// CertFingerprint returns the SHA-256 of a PEM certificate's DER in the
// colon-separated form the API and fvctl use.
func CertFingerprint(pemBytes []byte) (string, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("no PEM certificate")
	}
	sum := sha256.Sum256(blk.Bytes)
	parts := make([]string, len(sum))
	for i, c := range sum {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":"), nil
}

// RunScreen redraws the screen on tty when its content changes.
func (m *Machine) RunScreen(tty, certFile, version string) {
	f, err := os.OpenFile(tty, os.O_WRONLY, 0)
	if err != nil {
		m.Log.Info("no local console screen", "tty", tty, "err", err)
		return
	}
	defer f.Close()
	last := ""
	for {
		s := Screen{Version: version, Info: m.Info, Services: m.Sup.Status()}
		if pemBytes, err := os.ReadFile(certFile); err == nil {
			s.Fingerprint, _ = CertFingerprint(pemBytes)
		}
		if out := s.Render(); out != last {
			if _, err := f.WriteString(out); err != nil {
				return
			}
			last = out
		}
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}
