package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

func vmPath(name, tail string) string { return v1("/vms/" + url.PathEscape(name) + tail) }

// VMs lists the host's VMs.
func (c *Client) VMs(ctx context.Context) ([]api.VM, error) {
	var out []api.VM
	err := c.do(ctx, "GET", v1("/vms"), nil, &out)
	return out, err
}

// VM returns one VM.
func (c *Client) VM(ctx context.Context, name string) (api.VM, error) {
	var out api.VM
	err := c.do(ctx, "GET", vmPath(name, ""), nil, &out)
	return out, err
}

// CreateVM starts creating a VM on a datastore.
func (c *Client) CreateVM(ctx context.Context, req api.VMCreateRequest) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "POST", v1("/vms"), req, &t)
	return t, err
}

// RegisterVM adds an existing VM directory to the inventory.
func (c *Client) RegisterVM(ctx context.Context, datastore, path string) (api.VM, error) {
	var out api.VM
	err := c.do(ctx, "POST", v1("/vms/register"), api.VMRegisterRequest{Datastore: datastore, Path: path}, &out)
	return out, err
}

// UnregisterVM removes a VM from the inventory, keeping its files.
func (c *Client) UnregisterVM(ctx context.Context, name string) error {
	return c.do(ctx, "POST", vmPath(name, "/unregister"), nil, nil)
}

// ReconfigureVM replaces a VM's spec: anything while it is powered off;
// while it runs, only additions (SCSI disks, vNICs, and memory when its
// memory_hot_add is on).
func (c *Client) ReconfigureVM(ctx context.Context, name string, spec api.VMSpec) (api.VM, error) {
	var out api.VM
	err := c.do(ctx, "PUT", vmPath(name, ""), spec, &out)
	return out, err
}

// DestroyVM deletes a powered-off VM and its files.
func (c *Client) DestroyVM(ctx context.Context, name string) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "DELETE", vmPath(name, ""), nil, &t)
	return t, err
}

// PowerVM runs a power operation: on, off, shutdown, reset, suspend.
// timeout applies to shutdown ("" = the host's default).
func (c *Client) PowerVM(ctx context.Context, name, op, timeout string) (api.Task, error) {
	p := vmPath(name, "/power/"+url.PathEscape(op))
	if timeout != "" {
		p += "?timeout=" + url.QueryEscape(timeout)
	}
	var t api.Task
	err := c.do(ctx, "POST", p, nil, &t)
	return t, err
}

// Snapshots lists a VM's snapshots.
func (c *Client) Snapshots(ctx context.Context, name string) ([]api.Snapshot, error) {
	var out []api.Snapshot
	err := c.do(ctx, "GET", vmPath(name, "/snapshots"), nil, &out)
	return out, err
}

// CreateSnapshot starts a snapshot.
func (c *Client) CreateSnapshot(ctx context.Context, name string, req api.SnapshotRequest) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "POST", vmPath(name, "/snapshots"), req, &t)
	return t, err
}

// RevertSnapshot starts a revert.
func (c *Client) RevertSnapshot(ctx context.Context, name, snap string) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "POST", vmPath(name, "/snapshots/"+url.PathEscape(snap)+"/revert"), nil, &t)
	return t, err
}

// DeleteSnapshot starts a snapshot deletion.
func (c *Client) DeleteSnapshot(ctx context.Context, name, snap string) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, "DELETE", vmPath(name, "/snapshots/"+url.PathEscape(snap)), nil, &t)
	return t, err
}

// Screenshot returns a PNG of the VM's display.
func (c *Client) Screenshot(ctx context.Context, name string) ([]byte, error) {
	return c.raw(ctx, "GET", vmPath(name, "/screenshot"), nil)
}

func filesPath(datastore, p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return datastorePath(datastore, "/files/"+strings.Join(parts, "/"))
}

// checkFilePath refuses datastore paths the host would only redirect or
// refuse: empty, "." and ".." elements.
func checkFilePath(datastore, p string) error {
	for _, e := range strings.Split(strings.Trim(p, "/"), "/") {
		if e == "" || e == "." || e == ".." {
			return fmt.Errorf("[%s] %s: want a clean path inside the datastore (no empty, . or .. elements)", datastore, p)
		}
	}
	return nil
}

// streaming is the client without its per-call timeout, for file
// transfers that take as long as the file needs; ctx still ends them.
func (c *Client) streaming() *http.Client {
	hc := *c.hc
	hc.Timeout = 0
	return &hc
}

// Upload stores r as a file on a datastore (created or replaced whole).
// The transfer is not bound by Options.Timeout; ctx ends it.
func (c *Client) Upload(ctx context.Context, datastore, path string, r io.Reader, size int64) error {
	if err := checkFilePath(datastore, path); err != nil {
		return fmt.Errorf("upload %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base+filesPath(datastore, path), r)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.streaming().Do(req)
	if err != nil {
		return fmt.Errorf("upload [%s] %s: %w", datastore, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode/100 != 2 {
		return apiError(resp.StatusCode, b)
	}
	return nil
}

// Browse lists a datastore directory ("" is its root).
func (c *Client) Browse(ctx context.Context, datastore, dir string) ([]api.DatastoreEntry, error) {
	var out []api.DatastoreEntry
	p := filesPath(datastore, dir)
	if strings.Trim(dir, "/") == "" {
		p = datastorePath(datastore, "/files/")
	} else if err := checkFilePath(datastore, dir); err != nil {
		return nil, fmt.Errorf("browse %w", err)
	}
	err := c.do(ctx, "GET", p, nil, &out)
	return out, err
}

// Download returns a datastore file's content; DownloadTo streams it.
func (c *Client) Download(ctx context.Context, datastore, path string) ([]byte, error) {
	var b bytes.Buffer
	_, err := c.DownloadTo(ctx, datastore, path, &b)
	return b.Bytes(), err
}

// DownloadTo copies a datastore file to w and returns its size. The
// transfer is not bound by Options.Timeout; ctx ends it.
func (c *Client) DownloadTo(ctx context.Context, datastore, path string, w io.Writer) (int64, error) {
	if err := checkFilePath(datastore, path); err != nil {
		return 0, fmt.Errorf("download %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+filesPath(datastore, path), nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.streaming().Do(req)
	if err != nil {
		return 0, fmt.Errorf("download [%s] %s: %w", datastore, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		return 0, apiError(resp.StatusCode, b)
	}
	if ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); ct == "application/json" {
		return 0, fmt.Errorf("download [%s] %s: is a directory", datastore, path)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download [%s] %s: %w", datastore, path, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("download [%s] %s: got %d of %d bytes", datastore, path, n, resp.ContentLength)
	}
	return n, nil
}
