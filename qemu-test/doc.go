// Package qemutest is Flashvisor's end-to-end harness: it boots real host
// images (or any kernel) under QEMU and gives tests a handle on the running
// machine (SPEC QT-1).
//
// A test boots a host and waits until its management API answers:
//
//	kernel, initrd := qemutest.HostImage(t) // fails (never skips) when the image is not built
//	token := qemutest.RandomToken(t)
//	vm := qemutest.Start(t, "host1",
//		qemutest.WithKernel(kernel), qemutest.WithInitrd(initrd),
//		qemutest.WithAppend("flashvisor.token="+token, "flashvisor.hostname=host1"),
//		qemutest.WithBlankDisk("state", 64),
//		qemutest.WithForward(443),
//		qemutest.WithTimeout(10*time.Minute))
//	c, fingerprint, err := vm.WaitAPI(ctx, 443, token)
//
// Pass/fail comes from API answers; vm.WaitConsole is for smoke checks only.
//
// What the harness does for every VM:
//
//   - KVM when /dev/kvm opens read-write (-accel kvm -cpu host), otherwise
//     software emulation with -cpu max, which exposes SVM so KVM still works
//     inside the emulated host and guests run nested. The choice is logged.
//   - q35, headless (-nodefaults -display none), the serial console on QEMU's
//     stdio, QMP on a unix socket (vm.QMP) for system_powerdown, system_reset
//     and quit.
//   - Every serial line goes to t.Logf as "[NAME +12.34s] line" and to
//     <state dir>/NAME.log. The exact QEMU command is printed at start and
//     again at cleanup.
//   - The state folder is WithStateDir, else $FV_E2E_DIR (default
//     os.TempDir()/flashvisor-e2e) plus the sanitized test name. It is kept
//     after the test so CI can publish it.
//   - A whole-VM deadline (WithTimeout, and the test binary's -timeout minus a
//     margin) kills QEMU and fails the test with the last console lines.
//   - t.Cleanup kills QEMU's whole process group and waits for it, and QEMU
//     gets SIGKILL if the test binary dies first.
//
// Programs that are not tests (fvrun, behind make run) use Boot and Close
// instead of Start.
//
// Tests that need the host kernel rather than the one running go test (the
// VEM's root tests: bridge VLAN filtering, 802.1Q, bonds, tc) run inside a
// host with RunGoTests:
//
//	func TestVEMInHost(t *testing.T) {
//		qemutest.RunGoTests(t, []qemutest.GoTest{
//			{Pkg: "./vem", Args: []string{"-test.run=TestSwitch"}},
//			{Pkg: "./qemu-test/kerneltest", Tags: []string{"fvhost"}},
//		}, qemutest.WithTimeout(20*time.Minute))
//	}
//
// It builds each package with go test -c, ships the binaries in an extra
// initramfs appended to the host's (with a services.json whose only service
// is the fvtestrun runner), boots one host, brings the output back framed on
// a virtio serial port (package fvtest), and replays every inner test as a
// subtest: TestVEMInHost/vem/TestSwitch/... Binaries run one after the other
// as root; their testdata folder is beside them in their working directory.
//
// The harness tests itself with a fake QEMU (a shell script), so
// go test ./qemu-test/ needs no QEMU; suites that boot real images carry the
// e2e build tag and run with make e2e.
package qemutest
