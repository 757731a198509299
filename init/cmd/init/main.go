// Command init is Flashvisor's PID 1. The kernel runs it as /init; the
// kernel's request_module() runs it as /sbin/modprobe.
package main

import (
	"os"
	"path/filepath"

	boot "github.com/flashvisor/flashvisor/init"
	"golang.org/x/sys/unix"
)

func main() {
	if filepath.Base(os.Args[0]) == "modprobe" {
		var u unix.Utsname
		_ = unix.Uname(&u)
		os.Exit(boot.Modprobe(os.Args[1:], filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))))
	}
	boot.Main()
}
