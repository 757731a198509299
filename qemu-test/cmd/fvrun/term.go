package main

import (
	"os"
	"syscall"
	"unsafe"
)

// noEcho switches a terminal on f to character-at-a-time input without local
// echo, and returns the function that restores it (a no-op when f is not a
// terminal). Keys then reach the guest as typed and the guest's own console
// echoes them once, with its own line editing. Signals stay on, so Ctrl-C
// still reaches fvrun as SIGINT.
func noEcho(f *os.File) (restore func()) {
	var old syscall.Termios
	if ioctl(f.Fd(), syscall.TCGETS, &old) != nil {
		return func() {}
	}
	t := old
	t.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON
	t.Cc[syscall.VMIN], t.Cc[syscall.VTIME] = 1, 0
	if ioctl(f.Fd(), syscall.TCSETS, &t) != nil {
		return func() {}
	}
	return func() { ioctl(f.Fd(), syscall.TCSETS, &old) }
}

func ioctl(fd uintptr, req uintptr, t *syscall.Termios) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(t))); e != 0 {
		return e
	}
	return nil
}
