package client

import (
	"context"
	"net/url"

	"github.com/flashvisor/flashvisor/api"
)

// Disk operations on datastore files; disks are "[datastore] path".

// ImportDisk starts converting an image (vmdk, vhdx, qcow2, raw, vdi, vpc)
// into a new thin (qcow2) or thick (raw) disk.
func (c *Client) ImportDisk(ctx context.Context, req api.DiskCopyRequest) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "POST", v1("/disks/import"), req, &t)
	return t, err
}

// CloneDisk starts copying a qcow2 or raw disk into a new, independent one.
func (c *Client) CloneDisk(ctx context.Context, req api.DiskCopyRequest) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "POST", v1("/disks/clone"), req, &t)
	return t, err
}

// GrowDisk starts enlarging a disk of no running VM to sizeMiB.
func (c *Client) GrowDisk(ctx context.Context, disk string, sizeMiB int64) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "POST", v1("/disks/grow"), api.DiskGrowRequest{Disk: disk, SizeMiB: sizeMiB}, &t)
	return t, err
}

// DiskInfo describes a disk image.
func (c *Client) DiskInfo(ctx context.Context, disk string) (api.DiskInfo, error) {
	var out api.DiskInfo
	err := c.do(ctx, "GET", v1("/disks/info?path="+url.QueryEscape(disk)), nil, &out)
	return out, err
}
