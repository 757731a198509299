// Package kerneltest proves that the host image's kernel has what the VEM
// (vem/) programs over netlink: bridge VLAN filtering, 802.1Q links, bonds
// (active-backup with failover, 802.3ad) and tc (ingress policing with a
// matchall filter, tbf and htb qdiscs). Each test builds its topology in
// fresh network namespaces and checks it by sending traffic, not just by
// reading the configuration back.
//
// The tests carry the fvhost build tag: the kernel of a development machine
// may lack these features, so they run inside an emulated host only, through
// the e2e suite (qemutest.RunGoTests builds them with -tags fvhost). By hand:
//
//	go test -c -tags fvhost -o kerneltest.test ./qemu-test/kerneltest
//
// and run the binary as root on a machine with the host's kernel. Plain
// go test ./... sees a package without tests.
package kerneltest
