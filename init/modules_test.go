package boot

import (
	"bufio"
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
