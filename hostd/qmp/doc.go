// Package qmp is a client for the QEMU Machine Protocol: the JSON monitor
// through which hostd controls each VM's QEMU process.
//
// A Client reads QEMU's greeting, negotiates capabilities and then lets any
// number of goroutines run commands at once: every request carries an "id"
// and QEMU echoes it, so answers are matched to callers however they
// interleave with asynchronous events. Events (SHUTDOWN, STOP, RESUME, ...)
// are delivered in order on Events().
//
// Errors:
//   - an error answer from QEMU is an *Error (errors.As) with QEMU's class
//     and description;
//   - once the connection is gone every pending and later call fails with an
//     error wrapping ErrClosed and saying why (EOF, protocol error, Close);
//   - a context that ends first fails the call with the context's error; the
//     late answer is dropped.
//
// Input from the socket is untrusted: a line that is not a QMP message closes
// the connection with a protocol error, never a panic.
//
// # Suspend and resume
//
// Suspend writes the VM's state to a file in its directory with QEMU's
// migration machinery, the way libvirt's managed save does:
//
//	c.Stop(ctx)                       // guest frozen, state consistent
//	c.MigrateToFile(ctx, "vm.fvss")   // getfd (SCM_RIGHTS) + migrate "fd:"
//	c.Quit(ctx)
//
// The file is opened by hostd and handed to QEMU over the monitor socket, so
// it works with every QEMU version, needs no shell in the image (unlike
// "exec:") and no QEMU 8.2 (unlike "file:"). Resume starts a new QEMU with
// the same arguments plus "-incoming defer" (and -S), then calls
// MigrateIncomingFromFile, which hands the file over the same way, waits for
// the load to complete, and Cont. A VM whose parameters changed cannot be
// resumed from an old state file; hostd refuses that case.
package qmp
