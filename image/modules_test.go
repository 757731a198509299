package image

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// syntheticDep parses a modules.dep-style text ("a: b c") into edges.
func syntheticDep(dep string) func(string) ([]string, bool) {
	edges := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		mod, deps, _ := strings.Cut(line, ":")
		var names []string
		for _, d := range strings.Fields(deps) {
			names = append(names, modName(d))
		}
		edges[modName(mod)] = names
	}
	return func(n string) ([]string, bool) { d, ok := edges[n]; return d, ok }
}

func TestModuleClosure(t *testing.T) {
	dep := `
kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko kernel/drivers/crypto/ccp/ccp.ko
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/crypto/ccp/ccp.ko:
kernel/drivers/usb/storage/uas.ko: kernel/drivers/usb/storage/usb-storage.ko kernel/drivers/usb/core/usbcore.ko
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/usb/core/usbcore.ko
kernel/drivers/a.ko: kernel/drivers/b.ko
kernel/drivers/b.ko: kernel/drivers/a.ko
`
	builtin := map[string]bool{"usbcore": true, "button": true}
	for _, tc := range []struct {
		name           string
		want, optional []string
		got            []string
		err            string
	}{
		{name: "transitive", want: []string{"kvm_amd"}, got: []string{"ccp", "irqbypass", "kvm", "kvm_amd"}},
		{name: "hyphens and builtin deps", want: []string{"uas", "usb-storage"}, got: []string{"usb_storage", "uas"}},
		{name: "builtin wanted", want: []string{"button", "kvm"}, got: []string{"irqbypass", "kvm"}},
		{name: "optional missing", want: []string{"ccp"}, optional: []string{"nft_reject_bridge"}, got: []string{"ccp"}},
		{name: "missing", want: []string{"nosuch"}, err: "module nosuch: not found"},
		{name: "cycle", want: []string{"a"}, err: "cycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := moduleClosure(syntheticDep(dep), builtin, tc.want, tc.optional)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("moduleClosure(%v) = %v, want error %q", tc.want, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.got, got); diff != "" {
				t.Errorf("moduleClosure(%v) mismatch (-want +got):\n%s", tc.want, diff)
			}
		})
	}
}

func TestDepFiles(t *testing.T) {
	km := &kernelModules{
		mods: map[string]*kmod{
			"kvm_amd":   {name: "kvm_amd", rel: "kernel/kvm-amd.ko", depends: []string{"kvm", "ccp"}, aliases: []string{"cpu:type:x86*"}},
			"kvm":       {name: "kvm", rel: "kernel/kvm.ko", depends: []string{"irqbypass"}},
			"irqbypass": {name: "irqbypass", rel: "kernel/irqbypass.ko"},
			"ccp":       {name: "ccp", rel: "kernel/ccp.ko"},
			"ext4":      {name: "ext4", rel: "kernel/ext4.ko", softdep: []string{"pre: crypto-crc32c"}},
			"unused":    {name: "unused", rel: "kernel/unused.ko"},
		},
		builtin: map[string]bool{},
	}
	files := km.depFiles([]string{"ccp", "irqbypass", "kvm", "kvm_amd", "ext4"},
		[]byte("kernel/kvm.ko\nkernel/unused.ko\nkernel/kvm-amd.ko\n"))
	want := map[string]string{
		"modules.dep": "kernel/ccp.ko:\nkernel/ext4.ko:\nkernel/irqbypass.ko:\nkernel/kvm.ko: kernel/irqbypass.ko\n" +
			"kernel/kvm-amd.ko: kernel/kvm.ko kernel/irqbypass.ko kernel/ccp.ko\n",
		"modules.alias":   "alias cpu:type:x86* kvm_amd\n",
		"modules.softdep": "softdep ext4 pre: crypto-crc32c\n",
		"modules.order":   "kernel/kvm.ko\nkernel/kvm-amd.ko\n",
	}
	got := map[string]string{}
	for k, v := range files {
		got[k] = string(v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("depFiles mismatch (-want +got):\n%s", diff)
	}
}
