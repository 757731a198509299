package vmknic_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

var host = vmknic.Host{UUID: "4c4c4544-0044-3510-8052-b4c04f4a4d32", UplinkMAC: "00:25:90:AA:BB:CC"}

func TestGenerateMAC(t *testing.T) {
	check := func(name string, h vmknic.Host, fourthHigh byte) string {
		t.Helper()
		mac := vmknic.GenerateMAC(name, h, 0)
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 || mac != hw.String() {
			t.Fatalf("GenerateMAC(%q) = %q, not a canonical MAC", name, mac)
		}
		if hw[0] != 0 || hw[1] != 0x50 || hw[2] != 0x56 || hw[3]&0xf0 != fourthHigh {
			t.Errorf("GenerateMAC(%q, %+v) = %s, want 00:50:56:%xx:xx:xx", name, h, mac, fourthHigh>>4)
		}
		if again := vmknic.GenerateMAC(name, h, 0); again != mac {
			t.Errorf("GenerateMAC(%q) = %s then %s, want stable", name, mac, again)
		}
		return mac
	}
	vswif := check("vswif0", host, 0x50)
	vmk1 := check("vmk1", host, 0x60)
	check("vmk255", host, 0x60)
	noUplink := check("vswif0", vmknic.Host{UUID: host.UUID}, 0x60)

	if vswif == noUplink {
		t.Errorf("vswif0's MAC %s does not depend on the uplink", vswif)
	}
	// vswif0 follows the uplink, not the host UUID (as ESXi's vmk0).
	if got := vmknic.GenerateMAC("vswif0", vmknic.Host{UUID: "other", UplinkMAC: "00:25:90:aa:bb:cc"}, 0); got != vswif {
		t.Errorf("GenerateMAC(vswif0, other host, same uplink) = %s, want %s", got, vswif)
	}
	if got := vmknic.GenerateMAC("vswif0", vmknic.Host{UUID: host.UUID, UplinkMAC: "00:25:90:aa:bb:cd"}, 0); got == vswif {
		t.Errorf("GenerateMAC(vswif0) = %s for two uplinks", got)
	}
	// Never the uplink's own MAC (the bridge would keep its frames).
	if vswif == "00:25:90:aa:bb:cc" {
		t.Errorf("vswif0 got the uplink's MAC")
	}
	// Other vmknics follow the host UUID (case-insensitively) and the name.
	if got := vmknic.GenerateMAC("vmk1", vmknic.Host{UUID: "OTHER"}, 0); got == vmk1 {
		t.Errorf("vmk1 has %s on two hosts", got)
	}
	if got := vmknic.GenerateMAC("vmk1", vmknic.Host{UUID: "4C4C4544-0044-3510-8052-B4C04F4A4D32"}, 0); got != vmk1 {
		t.Errorf("GenerateMAC(vmk1, upper-case UUID) = %s, want %s", got, vmk1)
	}
	if got := vmknic.GenerateMAC("vmk1", host, 1); got == vmk1 {
		t.Errorf("attempt 1 gives attempt 0's MAC %s", got)
	}
	seen := map[string]string{}
	for i := 1; i <= vmknic.MaxVMK; i++ {
		name := fmt.Sprintf("vmk%d", i)
		mac := vmknic.GenerateMAC(name, host, 0)
		if other, dup := seen[mac]; dup {
			t.Logf("%s and %s collide on %s (AssignMACs resolves it)", name, other, mac)
		}
		seen[mac] = name
	}
}

func TestAssignMACs(t *testing.T) {
	specs := []api.VMKNIC{
		static("vmk2", "10.0.0.6/24", ""),
		dhcp("vswif0"),
		static("vmk1", "10.0.0.5/24", ""),
		static("vmk3", "10.0.0.7/24", ""),
	}
	specs[3].MAC = "00:50:56:0A:0B:0C"
	got := vmknic.AssignMACs(specs, host)
	if specs[0].MAC != "" {
		t.Errorf("AssignMACs changed its argument")
	}
	want := map[string]string{
		"vswif0": vmknic.GenerateMAC("vswif0", host, 0),
		"vmk1":   vmknic.GenerateMAC("vmk1", host, 0),
		"vmk2":   vmknic.GenerateMAC("vmk2", host, 0),
		"vmk3":   "00:50:56:0a:0b:0c",
	}
	for _, s := range got {
		if s.MAC != want[s.Name] {
			t.Errorf("AssignMACs: %s has %s, want %s", s.Name, s.MAC, want[s.Name])
		}
	}
	if got[0].Name != "vmk2" || got[3].Name != "vmk3" {
		t.Errorf("AssignMACs reordered the specs: %v", got)
	}

	// A given MAC that equals vmk1's generated one pushes vmk1 to its
	// next attempt; vmk1 taking it pushes vmk2 if they collide.
	specs = []api.VMKNIC{static("vmk1", "10.0.0.5/24", ""), static("vmk4", "10.0.0.8/24", "")}
	specs[1].MAC = vmknic.GenerateMAC("vmk1", host, 0)
	got = vmknic.AssignMACs(specs, host)
	if w := vmknic.GenerateMAC("vmk1", host, 1); got[0].MAC != w {
		t.Errorf("AssignMACs: vmk1 whose MAC is taken has %s, want attempt 1's %s", got[0].MAC, w)
	}
	if err := vmknic.Validate(got); err != nil {
		t.Errorf("Validate(AssignMACs(...)) = %v", err)
	}
}
