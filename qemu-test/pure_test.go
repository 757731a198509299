package qemutest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChooseAccel(t *testing.T) {
	for _, tc := range []struct {
		want      string
		kvmUsable bool
		accel     string
		err       bool
	}{
		{"", true, AccelKVM, false},
		{"", false, AccelTCG, false},
		{"kvm", true, AccelKVM, false},
		{"kvm", false, "", true},
		{"tcg", true, AccelTCG, false},
		{"tcg", false, AccelTCG, false},
		{"hvf", true, "", true},
	} {
		got, err := chooseAccel(tc.want, tc.kvmUsable)
		if got != tc.accel || (err != nil) != tc.err {
			t.Errorf("chooseAccel(%q, %v) = %q, %v, want %q, error %v", tc.want, tc.kvmUsable, got, err, tc.accel, tc.err)
		}
	}
}

func TestAccelArgs(t *testing.T) {
	for accel, want := range map[string][]string{
		AccelKVM: {"-accel", "kvm", "-cpu", "host"},
		AccelTCG: {"-accel", "tcg", "-cpu", "max"},
	} {
		if d := cmp.Diff(want, accelArgs(accel)); d != "" {
			t.Errorf("accelArgs(%q) mismatch (-want +got):\n%s", accel, d)
		}
	}
}

func TestAccelReason(t *testing.T) {
	for _, tc := range []struct{ want, got, say string }{
		{"", AccelKVM, "kvm (/dev/kvm is usable)"},
		{"", AccelTCG, "tcg (/dev/kvm not usable)"},
		{"tcg", AccelTCG, "tcg (requested)"},
	} {
		if r := accelReason(tc.want, tc.got); !strings.Contains(r, tc.say) {
			t.Errorf("accelReason(%q, %q) = %q, want it to say %q", tc.want, tc.got, r, tc.say)
		}
	}
}

func TestKVMUsable(t *testing.T) {
	rw := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(rw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mods := func(names ...string) string {
		d := t.TempDir()
		for _, n := range names {
			if err := os.Mkdir(filepath.Join(d, n), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	for _, tc := range []struct {
		device, modules string
		want            bool
	}{
		{rw, mods("kvm", "kvm_intel"), true},
		{rw, mods("kvm", "kvm_amd"), true},
		{rw, mods("kvm", "kvm_pvm"), false}, // PVM: stock kernels hang
		{filepath.Join(t.TempDir(), "missing"), mods("kvm", "kvm_amd"), false},
		{t.TempDir(), mods("kvm", "kvm_amd"), false}, // a folder does not open for writing
	} {
		if got := kvmUsable(tc.device, tc.modules); got != tc.want {
			t.Errorf("kvmUsable(%q, %q) = %v, want %v", tc.device, tc.modules, got, tc.want)
		}
	}
}

func TestMachineArgs(t *testing.T) {
	m := machine{
		Accel:     AccelTCG,
		MemoryMiB: 4096,
		CPUs:      2,
		Kernel:    "/img/vmlinuz",
		Initrd:    "/img/initrd.img",
		Append:    []string{"console=ttyS0,115200", "panic=-1", "flashvisor.hostname=h1"},
		Disks:     []disk{{path: "/s/state.img", serial: "state"}, {path: "/s/a,b.img", serial: "spare"}},
		NICs: []nic{{ID: "net0", Model: "virtio-net-pci", MAC: "52:54:00:aa:bb:cc",
			Backend: netdev{Type: "user", Opts: []string{"hostfwd=tcp:127.0.0.1:8443-:443"}}}},
		QMPSocket: "/s/h1.qmp",
		NoReboot:  true,
		Extra:     []string{"-s"},
	}
	want := []string{
		"-nodefaults", "-no-user-config",
		"-machine", "q35",
		"-accel", "tcg", "-cpu", "max",
		"-m", "4096", "-smp", "2",
		"-display", "none", "-monitor", "none",
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
		"-qmp", "unix:/s/h1.qmp,server=on,wait=off",
		"-device", "virtio-rng-pci",
		"-kernel", "/img/vmlinuz",
		"-append", "console=ttyS0,115200 panic=-1 flashvisor.hostname=h1",
		"-initrd", "/img/initrd.img",
		"-drive", "file=/s/state.img,format=raw,if=none,id=disk0",
		"-device", "virtio-blk-pci,drive=disk0,serial=state",
		"-drive", "file=/s/a,,b.img,format=raw,if=none,id=disk1",
		"-device", "virtio-blk-pci,drive=disk1,serial=spare",
		"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:8443-:443",
		"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc",
		"-no-reboot",
		"-s",
	}
	if d := cmp.Diff(want, m.args()); d != "" {
		t.Errorf("machine.args() mismatch (-want +got):\n%s", d)
	}

	// Without a kernel (booting a disk) there is no -append either.
	bare := machine{Accel: AccelKVM, MemoryMiB: 2048, CPUs: 1, QMPSocket: "/q",
		NICs: []nic{{ID: "net0", Model: "e1000", MAC: "52:54:00:00:00:01", Backend: netdev{Type: "user"}}}}
	got := strings.Join(bare.args(), " ")
	for _, s := range []string{"-accel kvm -cpu host", "-netdev user,id=net0 -device e1000,netdev=net0,mac=52:54:00:00:00:01"} {
		if !strings.Contains(got, s) {
			t.Errorf("args() = %s, want it to contain %q", got, s)
		}
	}
	for _, s := range []string{"-kernel", "-append", "-initrd", "-no-reboot", "-drive"} {
		if strings.Contains(got, s) {
			t.Errorf("args() = %s, want no %s", got, s)
		}
	}
}

func TestMACFor(t *testing.T) {
	mac := regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`)
	a, b, a1 := macFor("host1", 0), macFor("host2", 0), macFor("host1", 1)
	if !mac.MatchString(a) {
		t.Errorf("macFor(host1, 0) = %q, want 52:54:00:xx:xx:xx", a)
	}
	if a == b || a == a1 || a != macFor("host1", 0) {
		t.Errorf("macFor not distinct per VM and NIC or not stable: %s %s %s", a, b, a1)
	}
}

func TestEffectiveTimeout(t *testing.T) {
	for _, tc := range []struct{ vm, test, want time.Duration }{
		{0, 0, 0},
		{time.Minute, 0, time.Minute},
		{0, time.Minute, time.Minute},
		{time.Minute, time.Hour, time.Minute},
		{time.Hour, time.Minute, time.Minute},
	} {
		if got := effectiveTimeout(tc.vm, tc.test); got != tc.want {
			t.Errorf("effectiveTimeout(%v, %v) = %v, want %v", tc.vm, tc.test, got, tc.want)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"TestBoot":              "TestBoot",
		"TestBoot/two_hosts":    "TestBoot_two_hosts",
		"TestX/with space/#01":  "TestX_with_space_01",
		"..":                    "_",
		"":                      "_",
		"Test/../../etc/passwd": "Test_.._.._etc_passwd",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLineSplitter(t *testing.T) {
	var got []string
	s := lineSplitter{emit: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"Linux ver", "sion 6.1\r\n", "a\nb\r", "\n\nlast"} {
		s.Write([]byte(chunk))
	}
	s.Flush()
	want := []string{"Linux version 6.1", "a", "b", "", "last"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lines mismatch (-want +got):\n%s", d)
	}
}

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"qemu", "-append", "console=ttyS0 panic=-1", "it's", "", "file=/a,,b"})
	want := `qemu -append 'console=ttyS0 panic=-1' 'it'\''s' '' file=/a,,b`
	if got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}

func TestHostImageMissing(t *testing.T) {
	t.Setenv("FV_IMAGE_DIR", filepath.Join(t.TempDir(), "nope"))
	rec := newRecordingTB(t)
	returned := false
	runRecorded(func() {
		HostImage(rec)
		returned = true
	})
	_, _, fatals := rec.recorded()
	if len(fatals) != 1 || !strings.Contains(fatals[0], "host image not built") || !strings.Contains(fatals[0], "make image") {
		t.Errorf("HostImage Fatalf calls = %q, want one saying the image is not built", fatals)
	}
	if returned {
		t.Error("HostImage returned after Fatalf")
	}
}

func TestHostImageFound(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{KernelFile, InitrdFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("FV_IMAGE_DIR", dir)
	rec := newRecordingTB(t)
	var k, i string
	runRecorded(func() { k, i = HostImage(rec) })
	if _, _, fatals := rec.recorded(); len(fatals) != 0 {
		t.Fatalf("HostImage Fatalf calls = %q, want none", fatals)
	}
	if k != filepath.Join(dir, KernelFile) || i != filepath.Join(dir, InitrdFile) {
		t.Errorf("HostImage = %q, %q, want the files in %s", k, i, dir)
	}
}

func TestHostImageInPartial(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, KernelFile), []byte("x"), 0o644)
	if _, _, err := HostImageIn(dir); err == nil || !strings.Contains(err.Error(), InitrdFile) {
		t.Errorf("HostImageIn(kernel only) error = %v, want one naming %s", err, InitrdFile)
	}
}

func TestImageDirDefault(t *testing.T) {
	t.Setenv("FV_IMAGE_DIR", "")
	dir, err := ImageDir()
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "out", "host") {
		t.Errorf("ImageDir() = %q, want %q", dir, filepath.Join(root, "out", "host"))
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("RepoRoot(.) = %q, which has no go.mod", root)
	}
}

func TestRandomToken(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9]{32,}$`)
	seen := map[string]bool{}
	for range 20 {
		tok := RandomToken(t)
		if !re.MatchString(tok) {
			t.Fatalf("RandomToken = %q, want at least 32 of [A-Za-z0-9]", tok)
		}
		if seen[tok] {
			t.Fatalf("RandomToken repeated %q", tok)
		}
		seen[tok] = true
	}
}
