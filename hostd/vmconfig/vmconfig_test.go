package vmconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
)

// fullSpec is testdata/full.fvx as a spec.
func fullSpec() api.VMSpec {
	return api.VMSpec{
		Name:      "web01",
		UUID:      "564d137a-a932-1e82-0cce-859cd6ef243c",
		GuestOS:   "debian-64",
		VCPUs:     2,
		MemoryMiB: 2048,
		Firmware:  api.FirmwareUEFI,
		SCSIControllers: []api.SCSIController{
			{Model: api.SCSIVirtio},
			{Model: api.SCSILSILogic},
		},
		Disks: []api.VirtualDisk{
			{Bus: api.DiskBusSCSI, Controller: 0, Unit: 0, File: "web01.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 20480},
			{Bus: api.DiskBusSCSI, Controller: 0, Unit: 1, File: "[shared] images/data.raw", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
			{Bus: api.DiskBusSCSI, Controller: 1, Unit: 8, File: "web01_1.raw", Provisioning: api.ProvisionThick, SizeMiB: 1024},
			{Bus: api.DiskBusNVMe, Controller: 0, Unit: 0, File: "web01_2.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 4096},
			{Bus: api.DiskBusVirtio, Controller: 0, File: "web01_3.qcow2", Provisioning: api.ProvisionExisting, Format: api.DiskQcow2},
		},
		CDROM: &api.CDROM{File: "[iso] debian-12.iso", StartConnected: true},
		NICs: []api.NIC{
			{Model: api.NICVmxnet3, PortGroup: "VM Network", AddressType: api.MACGenerated, MAC: "00:50:56:4a:1b:2c"},
			{Model: api.NICVirtio, PortGroup: "Storage", AddressType: api.MACStatic, MAC: "00:50:56:01:02:03"},
		},
		SerialConsole: true,
		VNCConsole:    true,
		Autostart:     api.Autostart{Enabled: true, Order: 1, DelaySeconds: 120},
		Extra: map[string]string{
			"guestinfo.hostname": "web01.example.com",
			"x-owner":            `team "web" \ ops`,
		},
	}
}

// minimalSpec is the smallest valid VM.
func minimalSpec() api.VMSpec {
	return api.VMSpec{Name: "tiny", VCPUs: 1, MemoryMiB: 64, Firmware: api.FirmwareBIOS}
}

func TestParseFullFile(t *testing.T) {
	data, err := os.ReadFile("testdata/full.fvx")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(full.fvx) = %v, want no error", err)
	}
	if diff := cmp.Diff(fullSpec(), got); diff != "" {
		t.Errorf("Parse(full.fvx) mismatch (-want +got):\n%s", diff)
	}
	// The file is also Format's golden output.
	if diff := cmp.Diff(string(data), string(Format(got))); diff != "" {
		t.Errorf("Format(Parse(full.fvx)) mismatch (-want +got):\n%s", diff)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		spec func(*api.VMSpec)
	}{
		{"minimal", func(*api.VMSpec) {}},
		{"full", func(s *api.VMSpec) { *s = fullSpec() }},
		{"direct kernel boot", func(s *api.VMSpec) {
			s.KernelBoot = &api.KernelBoot{Kernel: "[images] guest/vmlinuz", Initrd: "initrd.img", Cmdline: `console=ttyS0 quiet msg="a \ b"`}
		}},
		{"kernel only", func(s *api.VMSpec) { s.KernelBoot = &api.KernelBoot{Kernel: "vmlinuz"} }},
		{"empty CD-ROM drive", func(s *api.VMSpec) { s.CDROM = &api.CDROM{} }},
		{"CD-ROM not connected", func(s *api.VMSpec) { s.CDROM = &api.CDROM{File: "[iso] x.iso"} }},
		{"generated NIC without MAC yet", func(s *api.VMSpec) {
			s.NICs = []api.NIC{{Model: api.NICE1000, PortGroup: "pg", AddressType: api.MACGenerated}}
		}},
		{"ten NICs", func(s *api.VMSpec) {
			for range MaxNICs {
				s.NICs = append(s.NICs, api.NIC{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACGenerated})
			}
		}},
		{"four SCSI controllers, units 15", func(s *api.VMSpec) {
			for i := range MaxSCSIControllers {
				s.SCSIControllers = append(s.SCSIControllers, api.SCSIController{Model: api.SCSILSILogic})
				s.Disks = append(s.Disks, api.VirtualDisk{Bus: api.DiskBusSCSI, Controller: i, Unit: 15,
					File: "d" + string(rune('0'+i)), Provisioning: api.ProvisionThin, Format: api.DiskQcow2, SizeMiB: 1})
			}
		}},
		{"autostart disabled keeps order", func(s *api.VMSpec) { s.Autostart = api.Autostart{Order: 3, DelaySeconds: 10} }},
		{"spaces in name", func(s *api.VMSpec) { s.Name = "Web Server 01" }},
		{"memory hot-add", func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, 64+3*MemoryBlockMiB }},
		{"memory hot-add, grown to the maximum", func(s *api.VMSpec) { s.MemoryHotAdd, s.MemoryMiB, s.MaxMemoryMiB = true, 4096, 4096 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := minimalSpec()
			tt.spec(&spec)
			if err := Validate(spec); err != nil {
				t.Fatalf("Validate(spec) = %v, want nil", err)
			}
			got, err := Parse(Format(spec))
			if err != nil {
				t.Fatalf("Parse(Format(spec)) = %v, want no error\n%s", err, Format(spec))
			}
			if diff := cmp.Diff(spec, got); diff != "" {
				t.Errorf("Parse(Format(spec)) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// file builds a parameter file from lines, after a valid version key.
func file(lines ...string) []byte {
	return []byte(`config.version = "1"` + "\n" + strings.Join(lines, "\n") + "\n")
}

// valid are the lines of a minimal valid file.
var valid = []string{`displayName = "tiny"`, `numvcpus = "1"`, `memSize = "64"`, `firmware = "bios"`}

func withValid(lines ...string) []byte {
	return file(append(append([]string{}, valid...), lines...)...)
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want func(*api.VMSpec)
	}{
		{"comments and blank lines",
			[]byte("# header\n\n  config.version = \"1\"  # why\n" + strings.Join(valid, "\n") + "\n\t# end\n"),
			func(*api.VMSpec) {}},
		{"CRLF line ends",
			[]byte(strings.ReplaceAll(string(withValid()), "\n", "\r\n")),
			func(*api.VMSpec) {}},
		{"no spaces around =", file(`displayName="tiny"`, `numvcpus="1"`, `memSize="64"`, `firmware="bios"`),
			func(*api.VMSpec) {}},
		{"keys in any case, as ESXi", file(`DISPLAYNAME = "tiny"`, `NumVCPUs = "1"`, `memsize = "64"`, `Firmware = "BIOS"`),
			func(*api.VMSpec) {}},
		{"ESXi's efi spelling", file(`displayName = "tiny"`, `numvcpus = "1"`, `memSize = "64"`, `firmware = "efi"`),
			func(s *api.VMSpec) { s.Firmware = api.FirmwareUEFI }},
		{"booleans in any case, present optional",
			withValid(`serial0.present = "true"`, `vnc.enabled = "True"`, `ethernet0.virtualDev = "E1000"`,
				`ethernet0.networkName = "pg"`, `ethernet0.addressType = "Generated"`),
			func(s *api.VMSpec) {
				s.SerialConsole, s.VNCConsole = true, true
				s.NICs = []api.NIC{{Model: api.NICE1000, PortGroup: "pg", AddressType: api.MACGenerated}}
			}},
		{"escapes", withValid(`x-a = "say \"hi\" \\o/"`, `guestinfo.b = "#not a comment" # a comment`),
			func(s *api.VMSpec) {
				s.Extra = map[string]string{"x-a": `say "hi" \o/`, "guestinfo.b": "#not a comment"}
			}},
		{"user keys keep their case", withValid(`X-MyTool.Setting = "1"`),
			func(s *api.VMSpec) { s.Extra = map[string]string{"X-MyTool.Setting": "1"} }},
		{"disks sorted whatever the file order",
			withValid(`virtioblk0.fileName = "c"`, `virtioblk0.provisioning = "existing"`, `virtioblk0.format = "raw"`,
				`scsi0.virtualDev = "virtio-scsi"`, `scsi0:2.fileName = "b"`, `scsi0:2.provisioning = "existing"`, `scsi0:2.format = "qcow2"`,
				`scsi0:0.fileName = "a"`, `scsi0:0.provisioning = "existing"`, `scsi0:0.format = "qcow2"`),
			func(s *api.VMSpec) {
				s.SCSIControllers = []api.SCSIController{{Model: api.SCSIVirtio}}
				s.Disks = []api.VirtualDisk{
					{Bus: api.DiskBusSCSI, Unit: 0, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskQcow2},
					{Bus: api.DiskBusSCSI, Unit: 2, File: "b", Provisioning: api.ProvisionExisting, Format: api.DiskQcow2},
					{Bus: api.DiskBusVirtio, File: "c", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
				}
			}},
		{"ESXi's mem.hotadd, in any case", withValid(`MEM.HOTADD = "true"`, `mem.maxsize = "1088"`),
			func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, 1088 }},
		{"memory hot-add off", withValid(`mem.hotadd = "FALSE"`), func(*api.VMSpec) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := minimalSpec()
			tt.want(&want)
			got, err := Parse(tt.data)
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want no error", tt.data, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.data, diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not a number", withValid(`autostart.delay = "abc"`),
			`line 6: autostart.delay = "abc": not a whole number`},
		{"out of range", file(`displayName = "tiny"`, `numvcpus = "65"`, `memSize = "8"`, `firmware = "bios"`),
			"line 3: numvcpus = \"65\": must be 1-64\nline 4: memSize = \"8\": must be 16-1048576"},
		{"unknown key", withValid(`numvcpu = "2"`), `line 6: numvcpu = "2": unknown key`},
		{"unknown device property", withValid(`ethernet0.startConnected = "TRUE"`), `line 6: ethernet0.startConnected = "TRUE": unknown key`},
		{"duplicate key in another case", withValid(`MEMSIZE = "128"`), `line 6: MEMSIZE = "128": duplicate key (first set on line 4)`},
		{"device number with leading zero", withValid(`ethernet01.present = "TRUE"`), `line 6: ethernet01.present = "TRUE": unknown key`},
		{"no quotes", withValid(`vnc.enabled = TRUE`), `line 6: vnc.enabled: value must be in double quotes`},
		{"no =", withValid(`vnc.enabled "TRUE"`), `line 6: want key = "value"`},
		{"bad key", withValid(`vnc enabled = "TRUE"`), `line 6: bad key "vnc enabled": use letters, digits and . : _ -`},
		{"unterminated", withValid(`x-a = "abc`), `line 6: x-a: missing closing quote`},
		{"bad escape", withValid(`x-a = "a\nb"`), `line 6: x-a: only \" and \\ may follow a backslash`},
		{"text after value", withValid(`x-a = "a" b`), `line 6: x-a: unexpected "b" after the closing quote`},
		{"control character", withValid("x-a = \"a\tb\""), `line 6: x-a: control character in value`},
		{"not UTF-8", withValid("x-a = \"\xff\""), `line 6: not UTF-8 text`},
		{"missing required keys", file(`numvcpus = "1"`),
			"displayName: missing\nmemSize = \"0\": must be 16-1048576\nfirmware: missing"},
		{"bad boolean", withValid(`serial0.present = "yes"`), `line 6: serial0.present = "yes": not "TRUE" or "FALSE"`},
		{"present FALSE", withValid(`scsi0.present = "FALSE"`, `scsi0.virtualDev = "lsilogic"`),
			`line 6: scsi0.present = "FALSE": not supported: delete the scsi0 keys to remove the device`},
		{"too many NICs", withValid(`ethernet10.present = "TRUE"`), `line 6: ethernet10.present = "TRUE": at most 10 vNICs (ethernet0-ethernet9)`},
		{"too many SCSI controllers", withValid(`scsi4.virtualDev = "lsilogic"`), `line 6: scsi4.virtualDev = "lsilogic": at most 4 SCSI controllers (scsi0-scsi3)`},
		{"NIC gap", withValid(`ethernet0.virtualDev = "virtio"`, `ethernet0.networkName = "a"`, `ethernet0.addressType = "generated"`,
			`ethernet2.virtualDev = "virtio"`, `ethernet2.networkName = "a"`, `ethernet2.addressType = "generated"`),
			`line 9: ethernet2: ethernet1 is missing: vNICs are numbered from ethernet0 without gaps`},
		{"SCSI disk without controller", withValid(`scsi1:0.fileName = "a.qcow2"`, `scsi1:0.provisioning = "thin"`, `scsi1:0.sizeMiB = "10"`),
			`line 6: scsi1:0: no SCSI controller scsi1: add scsi1.virtualDev`},
		{"SCSI unit 7", withValid(`scsi0.virtualDev = "virtio-scsi"`, `scsi0:7.fileName = "a.qcow2"`, `scsi0:7.provisioning = "thin"`, `scsi0:7.sizeMiB = "10"`),
			`line 7: scsi0:7: unit 7 is the controller's own`},
		{"SCSI unit 16", withValid(`scsi0.virtualDev = "virtio-scsi"`, `scsi0:16.fileName = "a.qcow2"`, `scsi0:16.provisioning = "thin"`, `scsi0:16.sizeMiB = "10"`),
			`line 7: scsi0:16: SCSI units are 0-15 except 7`},
		{"unknown SCSI model", withValid(`scsi0.virtualDev = "pvscsi"`),
			`line 6: scsi0.virtualDev = "pvscsi": want "virtio-scsi" or "lsilogic"`},
		{"unknown NIC model", withValid(`ethernet0.virtualDev = "vlance"`, `ethernet0.networkName = "a"`, `ethernet0.addressType = "generated"`),
			`line 6: ethernet0.virtualDev = "vlance": want "virtio", "e1000" or "vmxnet3"`},
		{"static MAC outside the static range", withValid(`ethernet0.virtualDev = "virtio"`, `ethernet0.networkName = "a"`,
			`ethernet0.addressType = "static"`, `ethernet0.address = "00:50:56:40:00:01"`),
			`line 9: ethernet0.address = "00:50:56:40:00:01": static MAC addresses must be within 00:50:56:00:00:00-00:50:56:3f:ff:ff`},
		{"static MAC in the wrong key", withValid(`ethernet0.virtualDev = "virtio"`, `ethernet0.networkName = "a"`,
			`ethernet0.addressType = "static"`, `ethernet0.generatedAddress = "00:50:56:00:00:01"`),
			"line 9: ethernet0.generatedAddress = \"00:50:56:00:00:01\": the vNIC's addressType is static: its MAC goes in ethernet0.address\nethernet0.address: missing"},
		{"host path", withValid(`sata0:0.fileName = "/vmfs/volumes/iso/x.iso"`),
			`line 6: sata0:0.fileName = "/vmfs/volumes/iso/x.iso": host paths are not allowed: use "[datastore] path" or a name relative to the VM directory`},
		{"path escapes the VM directory", withValid(`directBoot.kernel = "../other/vmlinuz"`),
			`line 6: directBoot.kernel = "../other/vmlinuz": not a clean relative path (no '..', '.', '//' or trailing '/')`},
		{"initrd without kernel", withValid(`directBoot.initrd = "initrd"`), `directBoot.kernel: missing`},
		{"second SATA device", withValid(`sata0:1.fileName = "x.iso"`), `line 6: sata0:1.fileName = "x.iso": only sata0:0 (the CD-ROM) is supported`},
		{"CD-ROM device type", withValid(`sata0:0.deviceType = "atapi-cdrom"`), `line 6: sata0:0.deviceType = "atapi-cdrom": only "cdrom-image" (an ISO image) is supported`},
		{"new disk without size", withValid(`nvme0:0.fileName = "a.qcow2"`, `nvme0:0.provisioning = "thin"`), `nvme0:0.sizeMiB: missing: new disks need a size`},
		{"unsafe name", file(`displayName = "../etc"`, `numvcpus = "1"`, `memSize = "64"`, `firmware = "bios"`),
			`line 2: displayName = "../etc": must start with a letter or digit`},
		{"hot-add without a maximum", withValid(`mem.hotadd = "TRUE"`),
			`mem.maxSize: missing: mem.hotadd = "TRUE" needs the most memory (MiB) the VM may grow to`},
		{"maximum without hot-add", withValid(`mem.maxSize = "1088"`),
			`line 6: mem.maxSize = "1088": only with mem.hotadd = "TRUE"`},
		{"maximum below memSize", withValid(`mem.hotadd = "TRUE"`, `mem.maxSize = "32"`),
			`line 7: mem.maxSize = "32": must be memSize (64)-1048576`},
		{"maximum not in whole blocks", withValid(`mem.hotadd = "TRUE"`, `mem.maxSize = "1024"`),
			`line 7: mem.maxSize = "1024": memory is hot-added in blocks of 128 MiB: mem.maxSize - memSize must be a multiple of 128 (e.g. 960 or 1088)`},
		{"hot-add not a boolean", withValid(`mem.hotadd = "yes"`), `line 6: mem.hotadd = "yes": not "TRUE" or "FALSE"`},
		{"all problems at once", withValid(`numvcpus = "2"`, `bogus = "1"`, `autostart.delay = "-1"`),
			"line 6: numvcpus = \"2\": duplicate key (first set on line 3)\nline 7: bogus = \"1\": unknown key\nline 8: autostart.delay = \"-1\": must be 0-3600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data)
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want %q", tt.data, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse(%q) error =\n%s\nwant\n%s", tt.data, got, tt.want)
			}
			if errors.Is(err, ErrVersion) {
				t.Errorf("Parse(%q) error wraps ErrVersion, want not", tt.data)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	rest := strings.Join(valid, "\n") + "\n"
	tests := []struct {
		name string
		data string
		want string
	}{
		{"missing", rest, "config.version: missing: not a Flashvisor VM parameter file, or damaged"},
		{"newer", `config.version = "2"` + "\n" + rest + "newKey = \"x\"\n",
			`line 1: config.version = "2": written by a newer Flashvisor; this host reads version 1`},
		{"garbage", `config.version = "1.0"` + "\n" + rest, `line 1: config.version = "1.0": unknown version; this host reads version 1`},
		{"empty file", "", "config.version: missing: not a Flashvisor VM parameter file, or damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.data))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%q) = %v, want %q", tt.data, err, tt.want)
			}
			if !errors.Is(err, ErrVersion) {
				t.Errorf("Parse(%q) error does not wrap ErrVersion", tt.data)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	data := make([]byte, MaxFileSize+1)
	if _, err := Parse(data); err == nil {
		t.Errorf("Parse(%d bytes) = nil error, want too large", len(data))
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		spec func(*api.VMSpec)
		want string // "" for valid
	}{
		{"minimal", func(*api.VMSpec) {}, ""},
		{"full", func(s *api.VMSpec) { *s = fullSpec() }, ""},
		{"unknown firmware", func(s *api.VMSpec) { s.Firmware = "efi" }, `firmware = "efi": want "bios" or "uefi"`},
		{"too many controllers", func(s *api.VMSpec) {
			s.SCSIControllers = make([]api.SCSIController, 5)
			for i := range s.SCSIControllers {
				s.SCSIControllers[i].Model = api.SCSIVirtio
			}
		}, "scsi4: at most 4 SCSI controllers"},
		{"too many NICs", func(s *api.VMSpec) {
			for range 11 {
				s.NICs = append(s.NICs, api.NIC{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACGenerated})
			}
		}, "ethernet10: at most 10 vNICs"},
		{"two disks at one address", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{
				{Bus: api.DiskBusNVMe, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
				{Bus: api.DiskBusNVMe, File: "b", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
			}
		}, "nvme0:0: two disks at the same address"},
		{"one file, two disks", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{
				{Bus: api.DiskBusVirtio, Controller: 0, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
				{Bus: api.DiskBusVirtio, Controller: 1, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
			}
		}, `virtioblk1.fileName = "a": also used by virtioblk0`},
		{"unknown bus", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{{Bus: "ide", File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw}}
		}, `ide0:0: unknown disk bus "ide": want "scsi", "nvme" or "virtio"`},
		{"virtio-blk limit", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusVirtio, Controller: 8, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw}}
		}, "virtioblk8: virtio-blk disks are virtioblk0-virtioblk7"},
		{"NVMe namespace limit", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusNVMe, Unit: 15, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw}}
		}, "nvme0:15: NVMe namespaces are 0-14"},
		{"thin disk as raw", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusNVMe, File: "a", Provisioning: api.ProvisionThin, Format: api.DiskRaw, SizeMiB: 1}}
		}, `nvme0:0.format = "raw": thin disks are qcow2`},
		{"existing disk with a size", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusNVMe, File: "a", Provisioning: api.ProvisionExisting, Format: api.DiskRaw, SizeMiB: 1}}
		}, `nvme0:0.sizeMiB = "1": only for new (thin or thick) disks; an existing image has its own size`},
		{"existing disk without format", func(s *api.VMSpec) {
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusNVMe, File: "a", Provisioning: api.ProvisionExisting}}
		}, `nvme0:0.format: missing`},
		{"CD connected without ISO", func(s *api.VMSpec) { s.CDROM = &api.CDROM{StartConnected: true} },
			`sata0:0.startConnected = "TRUE": no ISO image to connect: set sata0:0.fileName`},
		{"static MAC missing", func(s *api.VMSpec) {
			s.NICs = []api.NIC{{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACStatic}}
		}, "ethernet0.address: missing"},
		{"multicast generated MAC", func(s *api.VMSpec) {
			s.NICs = []api.NIC{{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACGenerated, MAC: "01:50:56:40:00:01"}}
		}, `ethernet0.generatedAddress = "01:50:56:40:00:01": multicast MAC address`},
		{"generated MAC from elsewhere is kept", func(s *api.VMSpec) {
			s.NICs = []api.NIC{{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACGenerated, MAC: "00:0c:29:12:34:56"}}
		}, ""},
		{"same MAC twice", func(s *api.VMSpec) {
			s.NICs = []api.NIC{
				{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACStatic, MAC: "00:50:56:00:00:01"},
				{Model: api.NICVirtio, PortGroup: "pg", AddressType: api.MACGenerated, MAC: "00:50:56:00:00:01"},
			}
		}, `ethernet1.generatedAddress = "00:50:56:00:00:01": same MAC as ethernet0`},
		{"bad UUID", func(s *api.VMSpec) { s.UUID = "56 4d 13 7a" }, `uuid.bios = "56 4d 13 7a": want a UUID like 564d137a-a932-1e82-0cce-859cd6ef243c`},
		{"bad user key", func(s *api.VMSpec) { s.Extra = map[string]string{"owner": "me"} },
			`owner = "me": user keys start with "x-" or "guestinfo." and use letters, digits and . : _ -`},
		{"user keys differing only in case", func(s *api.VMSpec) { s.Extra = map[string]string{"x-a": "1", "X-A": "2"} },
			`x-a = "1": same key as X-A (keys ignore case)`},
		{"control character", func(s *api.VMSpec) { s.KernelBoot = &api.KernelBoot{Kernel: "k", Cmdline: "a\nb"} },
			"directBoot.cmdline = \"a\nb\": control character in value"},
		{"negative autostart order", func(s *api.VMSpec) { s.Autostart.Order = -1 },
			`autostart.order = "-1": must be 0 (any order) or 1-1000`},
		{"memory hot-add", func(s *api.VMSpec) { s.MemoryHotAdd, s.MemoryMiB, s.MaxMemoryMiB = true, 1000, 1000+8*MemoryBlockMiB }, ""},
		{"memory hot-add without room", func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, 64 }, ""},
		{"memory hot-add beyond the limit", func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, MaxMemoryMiB+64 },
			`mem.maxSize = "1048640": must be memSize (64)-1048576`},
		{"memory hot-add off with a maximum", func(s *api.VMSpec) { s.MaxMemoryMiB = 1088 },
			`mem.maxSize = "1088": only with mem.hotadd = "TRUE"`},
		{"memory hot-add, maximum not in whole blocks", func(s *api.VMSpec) { s.MemoryHotAdd, s.MemoryMiB, s.MaxMemoryMiB = true, 1000, 4000 },
			`mem.maxSize = "4000": memory is hot-added in blocks of 128 MiB: mem.maxSize - memSize must be a multiple of 128 (e.g. 3944 or 4072)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := minimalSpec()
			tt.spec(&spec)
			err := Validate(spec)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate(%+v) = %q, want %q", spec, got, tt.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web01", true},
		{"Web Server 01", true},
		{"a.b_c-d", true},
		{"9", true},
		{strings.Repeat("a", MaxNameLen), true},
		{strings.Repeat("a", MaxNameLen+1), false},
		{"", false},
		{".hidden", false},
		{"-flag", false},
		{" lead", false},
		{"trail ", false},
		{"dot.", false},
		{"a/b", false},
		{"a\\b", false},
		{"ünï", false},
		{"a:b", false},
	}
	for _, tt := range tests {
		if err := CheckName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestCheckFileRef(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"web01.qcow2", true},
		{"disks/web01.qcow2", true},
		{"[datastore1] web01/web01.qcow2", true},
		{"[iso]debian.iso", true},
		{"[my ds] iso/a,b.iso", true},
		{"", false},
		{"/vmfs/volumes/ds/x", false},
		{"../x", false},
		{"a/../../x", false},
		{"a//b", false},
		{"a/", false},
		{".", false},
		{"[] x", false},
		{"[ds] ", false},
		{"[ds] /etc/passwd", false},
		{"[ds] ../x", false},
		{"[a/b] x", false},
		{"[ds x", false},
	}
	for _, tt := range tests {
		if err := CheckFileRef(tt.ref); (err == nil) != tt.ok {
			t.Errorf("CheckFileRef(%q) = %v, want ok=%v", tt.ref, err, tt.ok)
		}
	}
}

func TestSplitDatastorePath(t *testing.T) {
	tests := []struct {
		ref, ds, path string
		ok            bool
	}{
		{"[datastore1] web01/web01.fvx", "datastore1", "web01/web01.fvx", true},
		{"[iso]x.iso", "iso", "x.iso", true},
		{"web01.qcow2", "", "", false},
	}
	for _, tt := range tests {
		ds, p, ok := SplitDatastorePath(tt.ref)
		if ds != tt.ds || p != tt.path || ok != tt.ok {
			t.Errorf("SplitDatastorePath(%q) = %q, %q, %v, want %q, %q, %v", tt.ref, ds, p, ok, tt.ds, tt.path, tt.ok)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName("web01"))
	spec := fullSpec()
	if err := Save(path, spec); err != nil {
		t.Fatalf("Save(%s) = %v", path, err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	if diff := cmp.Diff(spec, got); diff != "" {
		t.Errorf("Load(Save(spec)) mismatch (-want +got):\n%s", diff)
	}

	bad := spec
	bad.VCPUs = 0
	if err := Save(path, bad); err == nil {
		t.Errorf("Save(%s, vcpus 0) = nil, want an error", path)
	}
	if got, err := Load(path); err != nil || got.VCPUs != spec.VCPUs {
		t.Errorf("after a refused Save, Load(%s) = vcpus %d, %v, want the old file (vcpus %d)", path, got.VCPUs, err, spec.VCPUs)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files in the VM directory = %d, want 1 (no temp files left)", len(entries))
	}

	if _, err := Load(filepath.Join(dir, "missing.fvx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte("config.version = \"9\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(version 9) = %v, want ErrVersion naming the file", err)
	}
}
