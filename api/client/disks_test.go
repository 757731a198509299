package client

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

func TestDiskCalls(t *testing.T) {
	task := api.Task{ID: "task-1", Kind: "disk.import", Target: "[ds1] web 01/web01.qcow2", State: api.TaskRunning}
	info := api.DiskInfo{Path: "[ds1] web 01/web01.qcow2", Format: "qcow2", VirtualSizeBytes: 20 << 30, ActualSizeBytes: 1 << 20, Snapshots: 1}
	c, rec := newRecorder(t, map[string]func(*http.Request) (int, any){
		"POST /api/v1/disks/import": fixed(202, task),
		"POST /api/v1/disks/clone":  fixed(202, task),
		"POST /api/v1/disks/grow":   fixed(202, task),
		"GET /api/v1/disks/info": func(r *http.Request) (int, any) {
			if r.URL.Query().Get("path") != "[ds1] web 01/web01.qcow2" {
				return 404, api.Error{Code: api.ErrNotFound, Message: "no such file: " + r.URL.Query().Get("path")}
			}
			return 200, info
		},
	})
	ctx := context.Background()
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s = %v", name, err)
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	tk, err := c.ImportDisk(ctx, api.DiskCopyRequest{Source: "[ds1] import/app.vmdk", Destination: "[ds1] web 01/web01.qcow2"})
	check("ImportDisk()", tk, task, err)
	tk, err = c.CloneDisk(ctx, api.DiskCopyRequest{Source: "[ds1] web 01/web01.qcow2", Destination: "[ds2] web02/web02.img", Provisioning: api.ProvisionThick})
	check("CloneDisk()", tk, task, err)
	tk, err = c.GrowDisk(ctx, "[ds1] web 01/web01.qcow2", 20480)
	check("GrowDisk()", tk, task, err)
	got, err := c.DiskInfo(ctx, "[ds1] web 01/web01.qcow2")
	check("DiskInfo()", got, info, err)
	want := []string{
		`POST /api/v1/disks/import {"source":"[ds1] import/app.vmdk","destination":"[ds1] web 01/web01.qcow2"}`,
		`POST /api/v1/disks/clone {"source":"[ds1] web 01/web01.qcow2","destination":"[ds2] web02/web02.img","provisioning":"thick"}`,
		`POST /api/v1/disks/grow {"disk":"[ds1] web 01/web01.qcow2","size_mib":20480}`,
		`GET /api/v1/disks/info?path=%5Bds1%5D+web+01%2Fweb01.qcow2`,
	}
	if diff := cmp.Diff(want, rec.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	// The reference stays one query value, whatever it holds.
	var ae *APIError
	if _, err := c.DiskInfo(ctx, "[ds1] a&path=b#c"); !errors.As(err, &ae) || ae.Status != 404 || ae.Message != "no such file: [ds1] a&path=b#c" {
		t.Errorf("DiskInfo(a&path=b#c) = %v, want 404 naming the whole reference", err)
	}
}
