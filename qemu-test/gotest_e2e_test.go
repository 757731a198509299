//go:build e2e

package qemutest_test

import (
	"testing"
	"time"

	qemutest "github.com/flashvisor/flashvisor/qemu-test"
)

// TestGoTestsInHost runs test packages inside one emulated host:
// internal/atomicfile (portable tests: the plumbing works), kerneltest
// (the host kernel's bridge VLAN filtering, 802.1Q, bonding and tc police,
// which the VEM's root tests rely on and this machine's kernel may lack),
// the VEM's kernel tests and vsmlink's svs mode L2 tests.
func TestGoTestsInHost(t *testing.T) {
	start := time.Now()
	res := qemutest.RunGoTests(t, []qemutest.GoTest{
		{Pkg: "./internal/atomicfile"},
		{Pkg: "./qemu-test/kerneltest", Tags: []string{"fvhost"}, Timeout: 5 * time.Minute},
		{Pkg: "./vem", Tags: []string{"fvhost"}, Timeout: 5 * time.Minute},
		// svs mode L2 over the real bridge's control VLAN.
		{Pkg: "./vem/vsmlink", Tags: []string{"fvhost"}, Args: []string{"-test.run=^TestFVHost|^TestL2"}, Timeout: 5 * time.Minute},
	}, qemutest.WithTimeout(20*time.Minute))
	t.Logf("build, boot and run took %.1fs", time.Since(start).Seconds())
	for _, r := range res {
		passed, skipped := 0, 0
		for _, e := range r.Events {
			if e.Test == "" {
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			}
		}
		t.Logf("%s: %d passed, %d skipped inside the host", r, passed, skipped)
		if !r.Passed() || passed == 0 {
			t.Errorf("%s: want a clean exit with passing tests", r)
		}
		if (r.Name == "qemu-test.kerneltest" || r.Name == "vem" || r.Name == "vem.vsmlink") && skipped > 0 {
			t.Errorf("%s: %d tests skipped; inside the host they run as root and must not skip", r.Name, skipped)
		}
	}
}
