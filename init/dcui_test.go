package boot

import (
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
)

func TestScreenRender(t *testing.T) {
	s := Screen{
		Version: "v1.2.3",
		Info: api.BootInfo{Hostname: "esx1", HostUUID: "u-1", PersistentState: true,
			Management: api.MgmtInfo{NIC: "eth0", Mode: "dhcp", Address: "10.0.2.15/24"}},
		Fingerprint: "AB:CD",
		Services:    []api.Service{{Name: "hostd", State: api.ServiceRunning}},
	}
	out := s.Render()
	for _, want := range []string{"Flashvisor v1.2.3", "esx1", "u-1", "https://10.0.2.15/", "AB:CD", "hostd (running)"} {
		if !strings.Contains(out, want) {
			t.Errorf("Render() lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("Render() warns about state with a state partition:\n%s", out)
	}
	s.Info.PersistentState = false
	s.Info.Management = api.MgmtInfo{}
	s.Info.FailedSteps = []string{"network"}
	out = s.Render()
	for _, want := range []string{"WARNING", "not configured", "network"} {
		if !strings.Contains(out, want) {
			t.Errorf("Render() of a broken host lacks %q:\n%s", want, out)
		}
	}
}

func TestCertFingerprint(t *testing.T) {
	der := []byte("not really DER but hashed all the same")
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	got, err := CertFingerprint(p)
	sum := sha256.Sum256(der)
	if err != nil || !strings.HasPrefix(got, fmt.Sprintf("%02X:%02X:", sum[0], sum[1])) || len(got) != 95 {
		t.Errorf("CertFingerprint = %q, %v", got, err)
	}
	if _, err := CertFingerprint([]byte("garbage")); err == nil {
		t.Error("CertFingerprint(garbage) = nil error")
	}
}
