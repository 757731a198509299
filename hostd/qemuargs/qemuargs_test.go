package qemuargs

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// resolve maps "[ds] p" as hostd does on a running host.
func resolve(ds, p string) (string, error) {
	if ds == "gone" {
		return "", errors.New("datastore not mounted")
	}
	return filepath.Join("/vmfs/volumes", ds, p), nil
}

func runtimeFor(spec api.VMSpec) Runtime {
	rt := Runtime{
		VMDir:            "/vmfs/volumes/datastore1/" + spec.Name,
		ResolveDatastore: resolve,
		Accel:            AccelKVM,
		QMPSocket:        "/run/flashvisor/vms/" + spec.Name + "/qmp.sock",
	}
	if spec.SerialConsole {
		rt.SerialSocket = "/run/flashvisor/vms/" + spec.Name + "/serial.sock"
	}
	if spec.VNCConsole {
		rt.VNCSocket = "/run/flashvisor/vms/" + spec.Name + "/vnc.sock"
	}
	for i := range spec.NICs {
		rt.Taps = append(rt.Taps, Tap{Name: fmt.Sprintf("fvtap%d", i)})
	}
	if spec.Firmware == api.FirmwareUEFI {
		rt.OVMFCode = DefaultOVMFCode
		rt.NVRAM = rt.VMDir + "/" + spec.Name + NVRAMExtension
	}
	return rt
}

func base(name string) api.VMSpec {
	return api.VMSpec{Name: name, VCPUs: 1, MemoryMiB: 256, Firmware: api.FirmwareBIOS}
}

func nic(model, mac string) api.NIC {
	return api.NIC{Model: model, PortGroup: "VM Network", AddressType: api.MACGenerated, MAC: mac}
}

func TestBuildGolden(t *testing.T) {
	tests := []struct {
		name string
		spec func() api.VMSpec
		rt   func(*Runtime)
	}{
		{"minimal", func() api.VMSpec { return base("tiny") }, nil},
		{"full-uefi", func() api.VMSpec {
			s := base("web01")
			s.UUID = "564D137A-A932-1E82-0CCE-859CD6EF243C"
			s.VCPUs, s.MemoryMiB, s.Firmware = 4, 4096, api.FirmwareUEFI
			s.SCSIControllers = []api.SCSIController{{Model: api.SCSIVirtio}, {Model: api.SCSILSILogic}}
			s.Disks = []api.VirtualDisk{
				{Bus: api.DiskBusVirtio, Controller: 0, File: "web01_4.raw", Provisioning: api.ProvisionExisting, Format: api.DiskRaw},
				{Bus: api.DiskBusSCSI, Controller: 0, Unit: 0, File: "web01.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 20480},
				{Bus: api.DiskBusSCSI, Controller: 0, Unit: 15, File: "[shared] images/base.qcow2", Provisioning: api.ProvisionExisting, Format: api.DiskQcow2},
				{Bus: api.DiskBusSCSI, Controller: 1, Unit: 0, File: "web01_1.raw", Provisioning: api.ProvisionThick, SizeMiB: 1024},
				{Bus: api.DiskBusNVMe, Controller: 0, Unit: 0, File: "web01_2.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 10},
				{Bus: api.DiskBusNVMe, Controller: 0, Unit: 1, File: "web01_3.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 10},
				{Bus: api.DiskBusNVMe, Controller: 1, Unit: 0, File: "web01_5.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 10},
			}
			s.CDROM = &api.CDROM{File: "[iso] debian-12.iso", StartConnected: true}
			s.NICs = []api.NIC{
				nic(api.NICVirtio, "00:50:56:4A:00:01"),
				nic(api.NICE1000, "00:50:56:4a:00:02"),
				{Model: api.NICVmxnet3, PortGroup: "Storage", AddressType: api.MACStatic, MAC: "00:50:56:00:00:03"},
			}
			s.SerialConsole, s.VNCConsole = true, true
			return s
		}, func(rt *Runtime) {
			rt.PIDFile = "/run/flashvisor/vms/web01/qemu.pid"
			rt.SerialLog = rt.VMDir + "/serial.log"
			rt.Sandbox = true
		}},
		{"direct-kernel-tcg", func() api.VMSpec {
			s := base("guest")
			s.KernelBoot = &api.KernelBoot{Kernel: "[images] guest/vmlinuz", Initrd: "initramfs.cpio.zst", Cmdline: "console=ttyS0 fv.marker=ready"}
			s.SerialConsole = true
			s.NICs = []api.NIC{nic(api.NICVirtio, "00:50:56:40:00:01"), nic(api.NICE1000, "00:50:56:40:00:02")}
			return s
		}, func(rt *Runtime) {
			rt.Accel = AccelTCG
			rt.Machine = "pc-q35-7.2"
			rt.Taps = []Tap{{FD: 3, VhostFD: 4}, {FD: 5}}
		}},
		{"cdrom-not-connected", func() api.VMSpec {
			s := base("inst")
			s.CDROM = &api.CDROM{File: "[iso] debian-12.iso"}
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusVirtio, File: "inst.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 8192}}
			return s
		}, nil},
		{"cdrom-empty", func() api.VMSpec {
			s := base("empty")
			s.CDROM = &api.CDROM{}
			return s
		}, nil},
		{"commas-in-paths", func() api.VMSpec {
			s := base("ab")
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusVirtio, File: "[ds,1] x,y.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 1}}
			s.SerialConsole, s.VNCConsole = true, true
			return s
		}, func(rt *Runtime) {
			rt.VMDir = "/vmfs/volumes/d,s/a,b"
			rt.QMPSocket = "/run/q,mp.sock"
			rt.SerialSocket = "/run/s,erial.sock"
			rt.VNCSocket = "/run/v,nc.sock"
		}},
		{"memory-hotadd", func() api.VMSpec {
			s := base("grow")
			s.MemoryMiB, s.MemoryHotAdd, s.MaxMemoryMiB = 1024, true, 4096
			return s
		}, nil},
		// Memory grown to its maximum: no slots left to offer.
		{"memory-hotadd-full", func() api.VMSpec {
			s := base("full")
			s.MemoryMiB, s.MemoryHotAdd, s.MaxMemoryMiB = 4096, true, 4096
			return s
		}, nil},
		// Resumed from a suspend after two hot-adds: 1024 MiB at power-on,
		// then 512 and 256 MiB.
		{"memory-hotadd-resume", func() api.VMSpec {
			s := base("grow")
			s.MemoryMiB, s.MemoryHotAdd, s.MaxMemoryMiB = 1024+512+256, true, 4096
			return s
		}, func(rt *Runtime) {
			rt.DIMMs = []DIMM{{SizeMiB: 512, Addr: 4 << 30}, {SizeMiB: 256}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec()
			rt := runtimeFor(spec)
			if tt.rt != nil {
				tt.rt(&rt)
			}
			args, err := Build(spec, rt)
			if err != nil {
				t.Fatalf("Build(%s) = %v, want no error", tt.name, err)
			}
			got := strings.Join(args, "\n") + "\n"
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Build(%s) mismatch with %s (-want +got):\n%s", tt.name, golden, diff)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	withDisk := func(d api.VirtualDisk) func(*api.VMSpec) {
		return func(s *api.VMSpec) { s.Disks = append(s.Disks, d) }
	}
	tests := []struct {
		name       string
		spec       func(*api.VMSpec)
		rt         func(*Runtime)
		want       string // substring of the error
		runtimeErr bool   // wraps ErrRuntime
	}{
		{"SCSI disk without its controller",
			withDisk(api.VirtualDisk{Bus: api.DiskBusSCSI, File: "a", Provisioning: api.ProvisionThin, SizeMiB: 1}), nil,
			"scsi0:0: no SCSI controller scsi0", false},
		{"unknown SCSI model", func(s *api.VMSpec) { s.SCSIControllers = []api.SCSIController{{Model: "buslogic"}} }, nil,
			`scsi0.virtualDev = "buslogic": want "virtio-scsi" or "lsilogic"`, false},
		{"unknown NIC model", func(s *api.VMSpec) { s.NICs = []api.NIC{nic("rtl8139", "00:50:56:40:00:01")} }, nil,
			`ethernet0.virtualDev = "rtl8139"`, false},
		{"controller unit", func(s *api.VMSpec) {
			s.SCSIControllers = []api.SCSIController{{Model: api.SCSIVirtio}}
			s.Disks = []api.VirtualDisk{{Bus: api.DiskBusSCSI, Unit: 7, File: "a", Provisioning: api.ProvisionThin, SizeMiB: 1}}
		}, nil, "scsi0:7: unit 7 is the controller's own", false},
		{"too many disks on a controller", func(s *api.VMSpec) {
			s.SCSIControllers = []api.SCSIController{{Model: api.SCSIVirtio}}
			for u := range 17 {
				s.Disks = append(s.Disks, api.VirtualDisk{Bus: api.DiskBusSCSI, Unit: u, File: fmt.Sprint(u), Provisioning: api.ProvisionThin, SizeMiB: 1})
			}
		}, nil, "scsi0:16: SCSI units are 0-15 except 7", false},
		{"taps missing", func(s *api.VMSpec) { s.NICs = []api.NIC{nic(api.NICVirtio, "00:50:56:40:00:01")} },
			func(rt *Runtime) { rt.Taps = nil }, "0 taps for 1 vNICs", true},
		{"tap without name or fd", func(s *api.VMSpec) { s.NICs = []api.NIC{nic(api.NICVirtio, "00:50:56:40:00:01")} },
			func(rt *Runtime) { rt.Taps = []Tap{{}} }, "tap of ethernet0: neither a name nor a file descriptor", true},
		{"MAC not assigned", func(s *api.VMSpec) { s.NICs = []api.NIC{nic(api.NICVirtio, "")} }, nil,
			"ethernet0 has no MAC address yet", true},
		{"UEFI without firmware", func(s *api.VMSpec) { s.Firmware = api.FirmwareUEFI },
			func(rt *Runtime) { rt.NVRAM = "" }, "UEFI firmware needs the OVMF code file and the VM's NVRAM file", true},
		{"no QMP socket", nil, func(rt *Runtime) { rt.QMPSocket = "" }, "no QMP socket path", true},
		{"socket path too long", func(s *api.VMSpec) { s.SerialConsole = true },
			func(rt *Runtime) { rt.SerialSocket = "/" + strings.Repeat("s", 107) }, "longer than 107 bytes", true},
		{"VNC without socket", func(s *api.VMSpec) { s.VNCConsole = true },
			func(rt *Runtime) { rt.VNCSocket = "" }, "no VNC socket path", true},
		{"relative VM directory", nil, func(rt *Runtime) { rt.VMDir = "vms/tiny" }, `VM directory "vms/tiny" is not an absolute path`, true},
		{"unknown accelerator", nil, func(rt *Runtime) { rt.Accel = "hvf" }, `accelerator "hvf"`, true},
		{"no accelerator", nil, func(rt *Runtime) { rt.Accel = "" }, `accelerator ""`, true},
		{"datastore not mounted", func(s *api.VMSpec) { s.CDROM = &api.CDROM{File: "[gone] x.iso", StartConnected: true} }, nil,
			"[gone] x.iso: datastore not mounted", true},
		{"no resolver", func(s *api.VMSpec) { s.KernelBoot = &api.KernelBoot{Kernel: "[images] vmlinuz"} },
			func(rt *Runtime) { rt.ResolveDatastore = nil }, "[images] vmlinuz: no datastore resolver", true},
		{"hot-add maximum below memory", func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, 128 }, nil,
			`mem.maxSize = "128": must be memSize (256)-1048576`, false},
		{"DIMMs without hot-add", nil, func(rt *Runtime) { rt.DIMMs = []DIMM{{SizeMiB: 128}} },
			"1 hot-added DIMMs, but memory hot-add is off", true},
		{"DIMMs larger than the memory", func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, 1024 },
			func(rt *Runtime) { rt.DIMMs = []DIMM{{SizeMiB: 128}, {SizeMiB: 128}} },
			"hot-added DIMMs hold more than the VM's 256 MiB of memory (0 MiB left to start with)", true},
		{"DIMM not in whole blocks", func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = true, 1024 },
			func(rt *Runtime) { rt.DIMMs = []DIMM{{SizeMiB: 100}} }, "DIMM dimm0: 100 MiB is not a whole number of 128 MiB blocks", true},
		{"more DIMMs than slots", func(s *api.VMSpec) { s.MemoryMiB, s.MemoryHotAdd, s.MaxMemoryMiB = 4096, true, 8192 },
			func(rt *Runtime) { rt.DIMMs = make([]DIMM, MemorySlots+1) }, "17 hot-added DIMMs for 16 memory slots", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base("tiny")
			if tt.spec != nil {
				tt.spec(&spec)
			}
			rt := runtimeFor(spec)
			if tt.rt != nil {
				tt.rt(&rt)
			}
			args, err := Build(spec, rt)
			if err == nil {
				t.Fatalf("Build(%s) = %q, want an error containing %q", tt.name, args, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build(%s) error = %q, want it to contain %q", tt.name, err, tt.want)
			}
			if got := errors.Is(err, ErrRuntime); got != tt.runtimeErr {
				t.Errorf("errors.Is(Build(%s), ErrRuntime) = %v, want %v", tt.name, got, tt.runtimeErr)
			}
		})
	}
}

func TestDeviceID(t *testing.T) {
	for in, want := range map[string]string{"scsi0:1": "scsi0-1", "ethernet3": "ethernet3", "sata0:0": "sata0-0"} {
		if got := DeviceID(in); got != want {
			t.Errorf("DeviceID(%q) = %q, want %q", in, got, want)
		}
	}
}
