// Package boot is Flashvisor's PID 1 (the directory is init/, but init cannot
// be a Go package name). It brings the machine up as a list of named steps,
// supervises the services listed by the image, serves a small control socket
// for hostd, and funnels every way of stopping (API, ACPI power button,
// Ctrl-Alt-Del, a panic) into one shutdown path.
//
// PID 1 must reap every process in the system. Go's os/exec reaps only its own
// children by pid, so all process spawning in init goes through Reaper, which
// owns wait4(-1) and hands exit statuses to whoever started the process.
package boot
