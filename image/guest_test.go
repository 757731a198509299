package image

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestKernelMatchesHost: the test guest has its own lock (the kernel
// only) but must boot the host's kernel, so the e2e tests exercise the same
// drivers the host image ships. `make lock` regenerates both; this catches
// one regenerated without the other.
func TestGuestKernelMatchesHost(t *testing.T) {
	kernelPins := func(p Profile) []Pin {
		l, err := ReadLock(filepath.Join("..", p.Lock))
		if err != nil {
			t.Fatal(err)
		}
		var out []Pin
		for _, pin := range l.Pins {
			if strings.HasPrefix(pin.Name, "linux-image-") {
				out = append(out, pin)
			}
		}
		return out
	}
	host, guest, vsm := kernelPins(HostProfile()), kernelPins(GuestProfile()), kernelPins(VSMProfile())
	if len(host) != 1 || len(guest) != 1 || host[0] != guest[0] {
		t.Errorf("kernel pins: host %+v, guest %+v; want the same single pin (run make lock)", host, guest)
	}
	if len(vsm) != 1 || len(host) != 1 || vsm[0] != host[0] {
		t.Errorf("kernel pins: host %+v, vsm %+v; want the same single pin (run make lock)", host, vsm)
	}
	if l, err := ReadLock(filepath.Join("..", GuestProfile().Lock)); err == nil && len(l.Pins) != 1 {
		t.Errorf("guest lock pins %d packages, want the kernel only", len(l.Pins))
	}
}

// TestGuestProfileIsSmall: the guest boots under emulation in every e2e
// run, so it must not grow a Debian userland by accident.
func TestGuestProfileIsSmall(t *testing.T) {
	p := GuestProfile()
	if len(p.Packages) != 0 || len(p.Paths) != 0 {
		t.Errorf("guest profile: Packages %q Paths %q, want none", p.Packages, p.Paths)
	}
	if len(p.Programs) != 1 || p.Programs[0].Dest != "/init" {
		t.Errorf("guest profile programs = %+v, want one /init", p.Programs)
	}
	for _, m := range []string{"virtio_pci", "virtio_net", "virtio_blk", "e1000", "button", "evdev"} {
		found := false
		for _, l := range p.ModulesLoad {
			found = found || l == m
		}
		if !found {
			t.Errorf("guest modules.load lacks %s", m)
		}
	}
}
