// Package datastore manages the host's local datastores (DS-1, DS-2): ext4
// filesystems on whole disks or partitions, mounted the way ESXi operators
// expect, at /vmfs/volumes/<uuid> with /vmfs/volumes/<name> a symlink to it.
//
// Identity. A datastore's UUID is the ext4 filesystem UUID (given to mke2fs
// with -U), written in the standard 8-4-4-4-12 form, so `blkid` and the
// datastore list agree and a disk is recognised by its superblock alone,
// whatever /dev name it gets at boot. The ext4 label is the name's first 16
// bytes (informational). The root of each filesystem holds a small
// descriptor, .flashvisor-datastore.json (version, name, uuid, kind,
// created), which travels with the disk: a disk moved from another host is
// adopted under its name at the next MountAll.
//
// Desired and applied state. The state file (/var/lib/flashvisor/
// datastores.json) lists the datastores this host knows and whether the
// operator unmounted them; the applied state is the mount table and the
// links. MountAll reconciles the two and is idempotent; a known datastore
// whose disk is gone is listed as missing.
//
// Safety. Create never formats the state partition (label FVSTATE) or a
// disk holding it, nor a mounted device; it formats a device holding a
// datastore, a filesystem, a partition table or any non-zero bytes only when
// forced. Remove refuses while VM directories exist unless forced, and then
// zeroes both ends of the device so it is blank again.
//
// Discovery only reads sysfs and device nodes (no blkid, no lsblk); the OS
// is reached through the Formatter, Mounter and StatfsFunc seams, so the
// package is tested without root (see datastoretest).
package datastore
