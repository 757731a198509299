package boot

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchAliases(t *testing.T) {
	const db = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias acpi*:LNXPWRBN:* button
alias cpu:type:x86,ven*fam*mod*:feature:*,00C2,* kvm_amd
alias fs-ext4 ext4
alias crypto-crc32c crc32c_generic
garbage line
`
	aliases, err := ParseAliases(bufio.NewScanner(strings.NewReader(db)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		modalias string
		want     []string
	}{
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", []string{"virtio_pci"}},
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}},
		{"acpi:LNXPWRBN:", []string{"button"}},
		{"cpu:type:x86,ven0002fam0017mod0031:feature:,0000,0001,00C2,00E3", []string{"kvm_amd"}},
		{"fs-ext4", []string{"ext4"}},
		{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", nil},
	} {
		if d := cmp.Diff(tc.want, MatchAliases(aliases, tc.modalias)); d != "" {
			t.Errorf("MatchAliases(%q) (-want +got):\n%s", tc.modalias, d)
		}
	}
}

func TestColdplugLoadsDriversWithDependencies(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules/6.1.0-test-amd64")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "modules.dep"), "kernel/virtio_net.ko: kernel/net_failover.ko\nkernel/net_failover.ko:\nkernel/virtio_pci.ko:\n")
	write(filepath.Join(dir, "modules.alias"), "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000001v* virtio_net\n")
	bus := filepath.Join(root, "sys/bus")
	write(filepath.Join(bus, "pci/devices/0000:00:02.0/modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
	write(filepath.Join(bus, "virtio/devices/virtio0/modalias"), "virtio:d00000001v00001AF4\n")
	write(filepath.Join(bus, "pci/devices/0000:00:03.0/modalias"), "pci:v00008086d00001234sv0sd0bc0sc0i0\n")

	var loadedPaths []string
	m, err := newModules(testLogger(t), dir, func(p string) { loadedPaths = append(loadedPaths, filepath.Base(p)) })
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Coldplug(bus)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"virtio_net", "virtio_pci"}, got); d != "" {
		t.Errorf("Coldplug loaded (-want +got):\n%s", d)
	}
	sort.Strings(loadedPaths)
	if d := cmp.Diff([]string{"net_failover.ko", "virtio_net.ko", "virtio_pci.ko"}, loadedPaths); d != "" {
		t.Errorf("module files loaded (-want +got):\n%s", d)
	}
	if more, _ := m.Coldplug(bus); len(more) != 0 {
		t.Errorf("second Coldplug loaded %v again", more)
	}
}

func TestModuleParams(t *testing.T) {
	got := ModuleParams(`console=ttyS0 kvm_amd.npt=0 kvm-amd.avic=1 snd-hda_intel.power_save=0 bonding.max_bonds=0 flashvisor.token=x flashvisor.vsm.domain=18 foo. .bar=1 quiet`)
	want := map[string]string{"kvm_amd": "npt=0 avic=1", "snd_hda_intel": "power_save=0", "bonding": "max_bonds=0"}
	if len(got) != len(want) {
		t.Errorf("ModuleParams = %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ModuleParams[%s] = %q, want %q (all: %q)", k, got[k], v, got)
		}
	}
}

// FuzzModuleParams: any command line parses without panicking into module
// names with '_' only (never ours) and options that were on it.
func FuzzModuleParams(f *testing.F) {
	for _, s := range []string{"kvm_amd.npt=0", "a.b.c snd-hda_intel.x=1 flashvisor.token=x", ".=. a. .b", "x.y=\"1 2\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		for mod, params := range ModuleParams(cmdline) {
			if mod == "" || strings.Contains(mod, "-") || strings.HasPrefix(mod, "flashvisor") || params == "" {
				t.Errorf("ModuleParams(%q): module %q options %q", cmdline, mod, params)
			}
			for _, p := range strings.Fields(params) {
				if !strings.Contains(cmdline, "."+p) {
					t.Errorf("ModuleParams(%q): option %q of %s not on the command line", cmdline, p, mod)
				}
			}
		}
	})
}
