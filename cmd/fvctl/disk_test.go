package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
)

var web01Disk = api.DiskInfo{Path: "[ds1] web01/web01.qcow2", Format: "qcow2", VirtualSizeBytes: 20 << 30, ActualSizeBytes: 3 << 30, Snapshots: 2}

// addDiskHandlers adds the disk endpoints to newVMHost's fake: importing
// or cloning onto "[ds1] taken.qcow2" fails with exists, growing below
// web01's 20 GiB fails with bad_request; info knows web01's disk only.
func addDiskHandlers(mux *http.ServeMux, reply func(http.ResponseWriter, int, any), start func(http.ResponseWriter, string, string, any, *api.Error)) {
	copyDisk := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req api.DiskCopyRequest
			json.NewDecoder(r.Body).Decode(&req)
			if req.Destination == "[ds1] taken.qcow2" {
				start(w, kind, req.Destination, nil, &api.Error{Code: api.ErrExists, Message: "file already exists: " + req.Destination})
				return
			}
			format := map[string]string{api.ProvisionThin: "qcow2", api.ProvisionThick: "raw"}[req.Provisioning]
			start(w, kind, req.Destination, api.DiskInfo{Path: req.Destination, Format: format, VirtualSizeBytes: 64 << 20, ActualSizeBytes: 1 << 20}, nil)
		}
	}
	mux.HandleFunc("POST /api/v1/disks/import", copyDisk("disk.import"))
	mux.HandleFunc("POST /api/v1/disks/clone", copyDisk("disk.clone"))
	mux.HandleFunc("POST /api/v1/disks/grow", func(w http.ResponseWriter, r *http.Request) {
		var req api.DiskGrowRequest
		json.NewDecoder(r.Body).Decode(&req)
		if req.SizeMiB<<20 < web01Disk.VirtualSizeBytes {
			start(w, "disk.grow", req.Disk, nil, &api.Error{Code: api.ErrBadRequest, Message: "disks can only grow: " + req.Disk + " is 20480 MiB"})
			return
		}
		d := web01Disk
		d.VirtualSizeBytes = req.SizeMiB << 20
		start(w, "disk.grow", req.Disk, d, nil)
	})
	mux.HandleFunc("GET /api/v1/disks/info", func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Query().Get("path"); p != web01Disk.Path {
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no such file: " + p})
			return
		}
		reply(w, 200, web01Disk)
	})
}

func TestDiskCommands(t *testing.T) {
	base, requests := newVMHost(t)
	for _, tc := range []struct {
		name     string
		args     []string
		want     string // stdout; "" is not checked
		wantReqs []string
	}{
		{"disk import", []string{"disk", "import", "[ds1] import/app.vmdk", "[ds1] web02/web02.qcow2"},
			"disk.import [ds1] web02/web02.qcow2: success (qcow2, 64.0 MiB, 1.0 MiB used)\n",
			[]string{`POST /api/v1/disks/import {"source":"[ds1] import/app.vmdk","destination":"[ds1] web02/web02.qcow2","provisioning":"thin"}`,
				"GET /api/v1/tasks/task-1/wait?timeout=30s"}},
		{"disk import thick", []string{"disk", "import", "--thick", "[ds1] import/app.vhdx", "[ds1] web02/web02.img"},
			"disk.import [ds1] web02/web02.img: success (raw, 64.0 MiB, 1.0 MiB used)\n",
			[]string{`POST /api/v1/disks/import {"source":"[ds1] import/app.vhdx","destination":"[ds1] web02/web02.img","provisioning":"thick"}`,
				"GET /api/v1/tasks/task-2/wait?timeout=30s"}},
		{"disk clone, no wait", []string{"disk", "clone", "[ds1] web01/web01.qcow2", "[ds2] web03/web03.qcow2", "--no-wait"},
			"Task task-3 started (disk.clone [ds2] web03/web03.qcow2). Follow it with: fvctl task wait task-3\n",
			[]string{`POST /api/v1/disks/clone {"source":"[ds1] web01/web01.qcow2","destination":"[ds2] web03/web03.qcow2","provisioning":"thin"}`}},
		{"disk grow", []string{"disk", "grow", "[ds1] web01/web01.qcow2", "40G"},
			"disk.grow [ds1] web01/web01.qcow2: success (qcow2, 40.0 GiB, 3.0 GiB used)\n",
			[]string{`POST /api/v1/disks/grow {"disk":"[ds1] web01/web01.qcow2","size_mib":40960}`, "GET /api/v1/tasks/task-4/wait?timeout=30s"}},
		{"disk grow by", []string{"disk", "grow", "[ds1] web01/web01.qcow2", "+512M"},
			"disk.grow [ds1] web01/web01.qcow2: success (qcow2, 20.5 GiB, 3.0 GiB used)\n",
			[]string{"GET /api/v1/disks/info?path=%5Bds1%5D+web01%2Fweb01.qcow2",
				`POST /api/v1/disks/grow {"disk":"[ds1] web01/web01.qcow2","size_mib":20992}`, "GET /api/v1/tasks/task-5/wait?timeout=30s"}},
		{"disk info", []string{"disk", "info", "[ds1] web01/web01.qcow2"}, `Disk:          [ds1] web01/web01.qcow2
Format:        qcow2
Size:          20.0 GiB (21474836480 bytes)
Used:          3.0 GiB
Backing file:  -
Snapshots:     2
`, []string{"GET /api/v1/disks/info?path=%5Bds1%5D+web01%2Fweb01.qcow2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(requests())
			out, errOut, err := fvctl(t, nil, append(base, tc.args...)...)
			if err != nil {
				t.Fatalf("fvctl %q = %v (stderr %s)", tc.args, err, errOut)
			}
			if tc.want != "" {
				if diff := cmp.Diff(tc.want, out); diff != "" {
					t.Errorf("fvctl %q output (-want +got):\n%s", tc.args, diff)
				}
			}
			if diff := cmp.Diff(tc.wantReqs, requests()[n:]); diff != "" {
				t.Errorf("fvctl %q requests (-want +got):\n%s", tc.args, diff)
			}
		})
	}

	out, _, err := fvctl(t, nil, append(base, "disk", "info", "[ds1] web01/web01.qcow2", "--json")...)
	var d api.DiskInfo
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d != web01Disk {
		t.Errorf("disk info --json = %s, %v, want web01's disk as JSON", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "disk", "grow", "[ds1] web01/web01.qcow2", "30G", "--json")...)
	var tk api.Task
	if err != nil || json.Unmarshal([]byte(out), &tk) != nil || tk.State != api.TaskSuccess || tk.Kind != "disk.grow" {
		t.Errorf("disk grow --json = %s, %v, want the finished task", out, err)
	}
}

func TestDiskErrors(t *testing.T) {
	base, _ := newVMHost(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"import onto an existing file", []string{"disk", "import", "[ds1] a.vmdk", "[ds1] taken.qcow2"}, []string{errTaskFailed.Error(), api.ErrExists, "taken.qcow2"}},
		{"grow smaller", []string{"disk", "grow", "[ds1] web01/web01.qcow2", "10G"}, []string{errTaskFailed.Error(), "can only grow"}},
		{"info unknown", []string{"disk", "info", "[ds1] nope.qcow2"}, []string{"not found", "nope.qcow2"}},
		{"grow by, unknown disk", []string{"disk", "grow", "[ds1] nope.qcow2", "+1G"}, []string{"not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := fvctl(t, nil, append(base, tc.args...)...)
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("fvctl %q = %v (exit %d), want exit 1", tc.args, err, exitCode(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("fvctl %q error %q lacks %q", tc.args, err, w)
				}
			}
		})
	}
}

func TestDiskUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"disk"},
		{"disk", "frob"},
		{"disk", "import", "[ds1] a.vmdk"},
		{"disk", "import", "[ds1]", "a.vmdk", "[ds1] b.qcow2"}, // unquoted reference
		{"disk", "import", "a.vmdk", "[ds1] b.qcow2"},
		{"disk", "clone", "[ds1] a.qcow2", "b.qcow2"},
		{"disk", "clone", "[ds1] a.qcow2", "[ds1] b.qcow2", "--sparse"},
		{"disk", "grow", "[ds1] a.qcow2"},
		{"disk", "grow", "[ds1] a.qcow2", "big"},
		{"disk", "grow", "[ds1] a.qcow2", "0G"},
		{"disk", "grow", "[ds1] a.qcow2", "-5G"},
		{"disk", "grow", "a.qcow2", "20G"},
		{"disk", "info"},
		{"disk", "info", "a.qcow2"},
	} {
		var out, errb strings.Builder
		err := run(t.Context(), append([]string{"--config", t.TempDir(), "--host", "h"}, args...), &out, &errb)
		if exitCode(err) != 2 {
			t.Errorf("fvctl %q = %v, exit %d, want exit 2", args, err, exitCode(err))
		}
	}
	for _, cmd := range []string{"disk import", "disk clone", "disk grow", "disk info"} {
		if !strings.Contains(usageText, "  "+cmd+" ") {
			t.Errorf("usage text lacks %q", cmd)
		}
	}
}

func TestParseSizeMiB(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // 0: an error
	}{
		{"20G", 20480}, {"20g", 20480}, {"20GiB", 20480}, {"20GB", 20480},
		{"512M", 512}, {"512", 512}, {"2T", 2 << 20}, {"1TiB", 1 << 20},
		{"0G", 0}, {"-1G", 0}, {"", 0}, {"G", 0}, {"1.5G", 0}, {"9999999999999T", 0}, {"10P", 0},
	} {
		got, err := parseSizeMiB(tc.in)
		if (err != nil) != (tc.want == 0) || got != tc.want {
			t.Errorf("parseSizeMiB(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
}
