// Command fvguest is the test guest's PID 1 (package guest). The kernel runs
// it as /init; its request_module() runs it as /sbin/modprobe, as with the
// host's init.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	boot "github.com/flashvisor/flashvisor/init"
	guest "github.com/flashvisor/flashvisor/testguest"
	"golang.org/x/sys/unix"
)

func main() {
	if filepath.Base(os.Args[0]) == "modprobe" {
		var u unix.Utsname
		_ = unix.Uname(&u)
		os.Exit(boot.Modprobe(os.Args[1:], filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))))
	}
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		// PID 1 exiting is a kernel panic, which the guest's kernel.panic
		// turns into a reboot (an exit under QEMU's -no-reboot): the end of
		// last resort, but never a hang.
		fmt.Fprintln(os.Stderr, "fvguest:", err)
		os.Exit(1)
	}
}

// run ignores args: the kernel hands PID 1 the command line words it does
// not know, and the guest reads its own keys from /proc/cmdline.
func run(ctx context.Context, _ []string, stdout io.Writer) error {
	return guest.Run(ctx, stdout)
}
