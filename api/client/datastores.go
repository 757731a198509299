package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/flashvisor/flashvisor/api"
)

// taskPollMax is the longest single wait WaitTask asks the host for; the
// host caps it at 5 minutes, and shorter polls notice a lost host sooner.
const taskPollMax = 30 * time.Second

func v1(path string) string { return "/api/" + api.Version + path }

func datastorePath(name, tail string) string {
	return v1("/datastores/" + url.PathEscape(name) + tail)
}

// Disks lists the host's disks and their partitions.
func (c *Client) Disks(ctx context.Context) ([]api.Disk, error) {
	var d []api.Disk
	err := c.do(ctx, http.MethodGet, v1("/storage/disks"), nil, &d)
	return d, err
}

// Rescan asks the host to look for new disks and mount the datastores
// found, and returns the disks.
func (c *Client) Rescan(ctx context.Context) ([]api.Disk, error) {
	var d []api.Disk
	err := c.do(ctx, http.MethodPost, v1("/storage/rescan"), nil, &d)
	return d, err
}

// Datastores lists the host's datastores.
func (c *Client) Datastores(ctx context.Context) ([]api.Datastore, error) {
	var d []api.Datastore
	err := c.do(ctx, http.MethodGet, v1("/datastores"), nil, &d)
	return d, err
}

// Datastore returns one datastore.
func (c *Client) Datastore(ctx context.Context, name string) (api.Datastore, error) {
	var d api.Datastore
	err := c.do(ctx, http.MethodGet, datastorePath(name, ""), nil, &d)
	return d, err
}

// CreateDatastore starts formatting a device as a datastore. The task's
// Result is the api.Datastore once it succeeded (see WaitTask).
func (c *Client) CreateDatastore(ctx context.Context, req api.DatastoreCreateRequest) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, http.MethodPost, v1("/datastores"), req, &t)
	return t, err
}

// RemoveDatastore starts removing a datastore; force deletes the VM
// directories on it too.
func (c *Client) RemoveDatastore(ctx context.Context, name string, force bool) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, http.MethodDelete, datastorePath(name, "?force="+strconv.FormatBool(force)), nil, &t)
	return t, err
}

// MountDatastore mounts an unmounted datastore and returns it.
func (c *Client) MountDatastore(ctx context.Context, name string) (api.Datastore, error) {
	var d api.Datastore
	err := c.do(ctx, http.MethodPost, datastorePath(name, "/mount"), nil, &d)
	return d, err
}

// UnmountDatastore unmounts a datastore (it stays unmounted across reboots)
// and returns it.
func (c *Client) UnmountDatastore(ctx context.Context, name string) (api.Datastore, error) {
	var d api.Datastore
	err := c.do(ctx, http.MethodPost, datastorePath(name, "/unmount"), nil, &d)
	return d, err
}

// Tasks lists the host's recent and running tasks, newest first.
func (c *Client) Tasks(ctx context.Context) ([]api.Task, error) {
	var t []api.Task
	err := c.do(ctx, http.MethodGet, v1("/tasks"), nil, &t)
	return t, err
}

// Task returns one task.
func (c *Client) Task(ctx context.Context, id string) (api.Task, error) {
	var t api.Task
	err := c.do(ctx, http.MethodGet, v1("/tasks/"+url.PathEscape(id)), nil, &t)
	return t, err
}

// WaitTask waits until a task ends or ctx is done, long-polling the host.
// A task that ended in error is returned without an error: its Error says
// what failed. When ctx ends first, the error wraps ctx's.
func (c *Client) WaitTask(ctx context.Context, id string) (api.Task, error) {
	for {
		poll := taskPollMax
		// Each poll must end well before the client's own timeout cuts
		// the request, and the host answers at the timeout anyway.
		if c.hc.Timeout > 0 && poll > c.hc.Timeout/2 {
			poll = c.hc.Timeout / 2
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < poll {
			poll = max(time.Until(dl), time.Millisecond)
		}
		var t api.Task
		path := v1("/tasks/" + url.PathEscape(id) + "/wait?timeout=" + poll.Round(time.Millisecond).String())
		if err := c.do(ctx, http.MethodGet, path, nil, &t); err != nil {
			return t, err
		}
		if t.State != api.TaskRunning {
			return t, nil
		}
		if err := ctx.Err(); err != nil {
			return t, err
		}
	}
}

// Events returns the host's kept events with a sequence number after since
// (0: all kept).
func (c *Client) Events(ctx context.Context, since uint64) ([]api.Event, error) {
	var e []api.Event
	err := c.do(ctx, http.MethodGet, v1("/events?since="+strconv.FormatUint(since, 10)), nil, &e)
	return e, err
}
