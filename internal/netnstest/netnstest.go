// Package netnstest puts a root test into a fresh network namespace, so
// that it can make links without touching the machine's own.
package netnstest

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// Enter locks the test's goroutine to its thread and moves that thread into
// a new network namespace, which it returns; the test is skipped when not
// root or when namespaces cannot be made. At cleanup the thread goes back to
// its namespace and is unlocked.
func Enter(t testing.TB) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // the thread is in ns from here
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace: never hand it back.
			panic(err)
		}
		orig.Close()
		ns.Close()
		runtime.UnlockOSThread()
	})
	return ns
}
