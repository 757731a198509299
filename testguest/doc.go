// Package guest is the test guest's PID 1: a tiny Linux VM (the image
// builder's "guest" profile: the host's kernel plus this program) that the
// end-to-end tests run to check what a VM sees. It speaks a line protocol on
// its serial console, so a test needs nothing in the guest but QEMU's serial
// port:
//
//	FVGUEST READY name=NAME mac=MAC ip=ADDR   once the NIC is configured
//	                                          (mac=none ip=none without one)
//	ping          -> FVGUEST PONG
//	write TEXT    -> FVGUEST WROTE N          TEXT (N bytes) as a record at
//	                                          offset 0 of the first disk, fsynced
//	read          -> FVGUEST DATA TEXT        or FVGUEST DATA <none>
//	ip            -> FVGUEST IP ADDR/PREFIX...  or FVGUEST IP none
//	mem           -> FVGUEST MEM N kB           MemTotal of /proc/meminfo
//	poweroff      -> FVGUEST POWEROFF, then the VM powers off
//	anything else -> FVGUEST ERR reason
//
// The ACPI power button (QMP system_powerdown) and a panic also end in
// FVGUEST POWEROFF and a clean power-off: a test guest must never hang a
// test.
//
// Configuration comes from the kernel command line (ParseConfig):
// fvguest.name, fvguest.ip (dhcp, none or ADDR/PREFIX[,GATEWAY]),
// fvguest.disk and fvguest.console. Boot reuses the host init's pieces
// (package boot: mounts, module loading, NIC setup, power button) rather
// than copies of them.
package guest
