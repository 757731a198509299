package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

var (
	web01 = api.VM{
		Spec:      api.VMSpec{Name: "web01", VCPUs: 2, MemoryMiB: 2048, Firmware: api.FirmwareBIOS, SerialConsole: true},
		Datastore: "ds1", Path: "web01/web01.fvx",
		Status: api.VMStatus{State: api.VMPoweredOn, PID: 4242, Accel: "kvm"},
	}
	db01 = api.VM{
		Spec:      api.VMSpec{Name: "db01", VCPUs: 8, MemoryMiB: 16384, Firmware: api.FirmwareUEFI},
		Datastore: "ds1", Path: "db01/db01.fvx",
		Status: api.VMStatus{State: api.VMCrashed, Reason: "guest-panicked"},
	}
	pngBytes = []byte("\x89PNG\r\n\x1a\nfake")
)

// newVMHost is a fake host with the VM, port group, datastore file and
// task endpoints. Every operation answers a running task that the first
// wait finds finished; powering on db01 fails with admission.
func newVMHost(t *testing.T) (base []string, requests func() []string) {
	t.Helper()
	var mu sync.Mutex
	var reqs []string
	tasks := map[string]api.Task{}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	notFound := func(w http.ResponseWriter, what string) {
		reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no such VM: " + what})
	}
	// start answers 202 with a running task that ends as result or err.
	start := func(w http.ResponseWriter, kind, target string, result any, err *api.Error) {
		mu.Lock()
		id := fmt.Sprintf("task-%d", len(tasks)+1)
		done := api.Task{ID: id, Kind: kind, Target: target, State: api.TaskSuccess, Started: t0, Finished: &t1}
		if err != nil {
			done.State, done.Error = api.TaskError, err
		} else if result != nil {
			done.Result = mustJSON(result)
		}
		tasks[id] = done
		mu.Unlock()
		reply(w, 202, api.Task{ID: id, Kind: kind, Target: target, State: api.TaskRunning, Started: t0})
	}
	vms := map[string]api.VM{"web01": web01, "db01": db01}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/vms", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, []api.VM{db01, web01}) })
	mux.HandleFunc("GET /api/v1/vms/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := vms[r.PathValue("name")]
		if !ok {
			notFound(w, r.PathValue("name"))
			return
		}
		reply(w, 200, v)
	})
	mux.HandleFunc("POST /api/v1/vms", func(w http.ResponseWriter, r *http.Request) {
		var req api.VMCreateRequest
		json.NewDecoder(r.Body).Decode(&req)
		if req.Spec.VCPUs > 64 {
			reply(w, 400, api.Error{Code: api.ErrBadRequest, Message: `numvcpus = "65": must be 1-64`})
			return
		}
		start(w, "vm.create", req.Spec.Name, api.VM{Spec: req.Spec, Datastore: req.Datastore, Path: req.Spec.Name + "/" + req.Spec.Name + ".fvx", Status: api.VMStatus{State: api.VMPoweredOff}}, nil)
	})
	mux.HandleFunc("PUT /api/v1/vms/{name}", func(w http.ResponseWriter, r *http.Request) {
		var spec api.VMSpec
		json.NewDecoder(r.Body).Decode(&spec)
		if spec.Name != "web01" {
			reply(w, 409, api.Error{Code: api.ErrState, Message: "reconfigure " + spec.Name + ": memory hot-add is off"})
			return
		}
		reply(w, 200, api.VM{Spec: spec, Status: api.VMStatus{State: api.VMPoweredOn, HotAddedMemoryMiB: spec.MemoryMiB - 2048}})
	})
	mux.HandleFunc("POST /api/v1/vms/register", func(w http.ResponseWriter, r *http.Request) {
		var req api.VMRegisterRequest
		json.NewDecoder(r.Body).Decode(&req)
		v := db01
		v.Spec.Name, v.Datastore, v.Path = "old", req.Datastore, req.Path
		reply(w, 200, v)
	})
	mux.HandleFunc("POST /api/v1/vms/{name}/unregister", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "web01" {
			reply(w, 409, api.Error{Code: api.ErrState, Message: "unregister web01: operation not allowed in the VM's state: it is poweredOn"})
			return
		}
		reply(w, 200, api.Accepted{Message: r.PathValue("name") + " unregistered; its files are kept"})
	})
	mux.HandleFunc("DELETE /api/v1/vms/{name}", func(w http.ResponseWriter, r *http.Request) {
		start(w, "vm.destroy", r.PathValue("name"), nil, nil)
	})
	mux.HandleFunc("POST /api/v1/vms/{name}/power/{op}", func(w http.ResponseWriter, r *http.Request) {
		name, op := r.PathValue("name"), r.PathValue("op")
		v, ok := vms[name]
		if !ok {
			notFound(w, name)
			return
		}
		if name == "db01" && op == "on" {
			start(w, "vm.power_on", name, nil, &api.Error{Code: api.ErrAdmission, Message: "power on db01: power-on refused by memory admission"})
			return
		}
		v.Status.State = map[string]string{"on": api.VMPoweredOn, "reset": api.VMPoweredOn, "suspend": api.VMSuspended}[op]
		if v.Status.State == "" {
			v.Status.State = api.VMPoweredOff
		}
		start(w, "vm.power_"+op, name, v, nil)
	})
	mux.HandleFunc("GET /api/v1/vms/{name}/snapshots", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Snapshot{
			{Name: "base", Created: t0, Memory: false},
			{Name: "pre-upgrade", Description: "before the 12.4 upgrade", Created: t1, Parent: "base", Memory: true},
		})
	})
	mux.HandleFunc("POST /api/v1/vms/{name}/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req api.SnapshotRequest
		json.NewDecoder(r.Body).Decode(&req)
		start(w, "vm.snapshot_create", r.PathValue("name"), api.Snapshot{Name: req.Name, Description: req.Description, Created: t1}, nil)
	})
	mux.HandleFunc("POST /api/v1/vms/{name}/snapshots/{snap}/revert", func(w http.ResponseWriter, r *http.Request) {
		start(w, "vm.snapshot_revert", r.PathValue("name"), nil, nil)
	})
	mux.HandleFunc("DELETE /api/v1/vms/{name}/snapshots/{snap}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("snap") == "nope" {
			start(w, "vm.snapshot_delete", r.PathValue("name"), nil, &api.Error{Code: api.ErrNotFound, Message: `no such snapshot: "nope"`})
			return
		}
		start(w, "vm.snapshot_delete", r.PathValue("name"), nil, nil)
	})
	mux.HandleFunc("GET /api/v1/vms/{name}/screenshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(pngBytes)
	})
	mux.HandleFunc("GET /api/v1/tasks/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tk, ok := tasks[r.PathValue("id")]
		mu.Unlock()
		if !ok {
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no such task"})
			return
		}
		reply(w, 200, tk)
	})
	mux.HandleFunc("GET /api/v1/portgroups", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.PortGroup{{Name: "VM Network"}, {Name: "dmz", VLAN: 100, MaxMACs: 1}})
	})
	mux.HandleFunc("POST /api/v1/portgroups", func(w http.ResponseWriter, r *http.Request) {
		var pg api.PortGroup
		json.NewDecoder(r.Body).Decode(&pg)
		if pg.Name == "dmz" {
			reply(w, 409, api.Error{Code: api.ErrExists, Message: `port group already exists: "dmz"`})
			return
		}
		reply(w, 201, pg)
	})
	mux.HandleFunc("DELETE /api/v1/portgroups/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "dmz" {
			reply(w, 409, api.Error{Code: api.ErrInUse, Message: `port group in use: "dmz" is used by web01 ethernet0`})
			return
		}
		w.WriteHeader(204)
	})
	mux.HandleFunc("PUT /api/v1/datastores/{name}/files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "off" {
			reply(w, 409, api.Error{Code: api.ErrState, Message: "datastore off is unmounted"})
			return
		}
		reply(w, 201, api.DatastoreEntry{Name: filepath.Base(r.PathValue("path")), Size: r.ContentLength, Modified: t1})
	})
	mux.HandleFunc("GET /api/v1/datastores/{name}/files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("path") {
		case "":
			reply(w, 200, []api.DatastoreEntry{{Name: "iso", Dir: true, Size: 4096, Modified: t0}, {Name: "web01", Dir: true, Size: 4096, Modified: t1}})
		case "iso":
			reply(w, 200, []api.DatastoreEntry{{Name: "debian-12.iso", Size: 658505728, Modified: t0}})
		default:
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "open " + r.PathValue("path") + ": no such file or directory"})
		}
	})
	addDiskHandlers(mux, reply, start)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		mu.Lock()
		reqs = append(reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(bytes.TrimSpace(b))))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			reply(w, 401, api.Error{Code: api.ErrUnauthorized, Message: "missing or invalid bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	base = []string{"--host", ts.Listener.Addr().String(), "--token", token, "--fingerprint", client.Fingerprint(ts.Certificate().Raw)}
	return base, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reqs...)
	}
}

func TestVMCommands(t *testing.T) {
	base, requests := newVMHost(t)
	dir := t.TempDir()
	iso := filepath.Join(dir, "debian.iso")
	if err := os.WriteFile(iso, []byte("ISO9660"), 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "web01.png")
	createSpec := func(extra string) string {
		return `POST /api/v1/vms {"datastore":"ds1","spec":{"name":"app01","vcpus":4,"memory_mib":4096,"firmware":"uefi",` + extra + `"serial_console":true,"vnc_console":true,"autostart":{"enabled":true,"order":2}}}`
	}
	for _, tc := range []struct {
		name     string
		args     []string
		want     string // stdout; "" is not checked
		wantReqs []string
	}{
		{"vm list", []string{"vm", "list"}, `NAME   STATE      CPUS  MEMORY     FILE                   NOTE
db01   crashed    8     16384 MiB  [ds1] db01/db01.fvx    guest-panicked
web01  poweredOn  2     2048 MiB   [ds1] web01/web01.fvx  
`, []string{"GET /api/v1/vms"}},
		{"vm alone lists", []string{"vm"}, "", []string{"GET /api/v1/vms"}},
		{"vms ls", []string{"vms", "ls"}, "", []string{"GET /api/v1/vms"}},
		{"vm show", []string{"vm", "show", "web01"}, string(mustIndent(web01)), []string{"GET /api/v1/vms/web01"}},
		{"vm create from flags", []string{"vm", "create", "app01", "--datastore", "ds1", "--cpus", "4", "--memory", "4096", "--firmware", "uefi",
			"--disk", "20G", "--nic", "VM Network", "--nic", "dmz,e1000", "--vnc", "--autostart", "2"},
			"vm.create app01: success\n",
			[]string{createSpec(`"scsi_controllers":[{"model":"virtio-scsi"}],"disks":[{"bus":"scsi","controller":0,"unit":0,"file":"app01.qcow2","provisioning":"thin","size_mib":20480}],` +
				`"nics":[{"model":"virtio","port_group":"VM Network","address_type":"generated"},{"model":"e1000","port_group":"dmz","address_type":"generated"}],`),
				"GET /api/v1/tasks/task-1/wait?timeout=30s"}},
		{"vm create kernel boot, no wait", []string{"vm", "create", "--no-wait", "app01", "--datastore=ds1", "--cpus=4", "--memory=4096", "--firmware=uefi",
			"--kernel", "[iso] vmlinuz", "--initrd", "[iso] initrd", "--cmdline", "console=ttyS0", "--vnc", "--autostart=2", "--disk", "512M,thick"},
			"Task task-2 started (vm.create app01). Follow it with: fvctl task wait task-2\n",
			[]string{createSpec(`"kernel_boot":{"kernel":"[iso] vmlinuz","initrd":"[iso] initrd","cmdline":"console=ttyS0"},` +
				`"scsi_controllers":[{"model":"virtio-scsi"}],"disks":[{"bus":"scsi","controller":0,"unit":0,"file":"app01.img","provisioning":"thick","size_mib":512}],`)}},
		{"vm reconfigure memory", []string{"vm", "reconfigure", "web01", "--memory", "3072"}, "web01 reconfigured: 3072 MiB of memory (1024 MiB hot-added since power-on)\n",
			[]string{"GET /api/v1/vms/web01", `PUT /api/v1/vms/web01 {"name":"web01","vcpus":2,"memory_mib":3072,"firmware":"bios","serial_console":true,"vnc_console":false,"autostart":{"enabled":false}}`}},
		{"vm register", []string{"vm", "register", "ds2", "old/old.fvx"}, "registered old from [ds2] old/old.fvx\n",
			[]string{`POST /api/v1/vms/register {"datastore":"ds2","path":"old/old.fvx"}`}},
		{"vm unregister", []string{"vm", "unregister", "db01"}, "vm unregister db01: done\n", []string{"POST /api/v1/vms/db01/unregister"}},
		{"vm destroy", []string{"vm", "destroy", "db01"}, "vm.destroy db01: success\n",
			[]string{"DELETE /api/v1/vms/db01", "GET /api/v1/tasks/task-3/wait?timeout=30s"}},
		{"vm power on", []string{"vm", "power", "on", "web01"}, "vm.power_on web01: success\n",
			[]string{"POST /api/v1/vms/web01/power/on", "GET /api/v1/tasks/task-4/wait?timeout=30s"}},
		{"vm power shutdown with timeout", []string{"vm", "power", "shutdown", "web01", "--timeout", "2m"}, "vm.power_shutdown web01: success\n",
			[]string{"POST /api/v1/vms/web01/power/shutdown?timeout=2m", "GET /api/v1/tasks/task-5/wait?timeout=30s"}},
		{"vm power suspend, no wait", []string{"vm", "power", "suspend", "--no-wait", "web01"},
			"Task task-6 started (vm.power_suspend web01). Follow it with: fvctl task wait task-6\n",
			[]string{"POST /api/v1/vms/web01/power/suspend"}},
		{"vm snapshot list", []string{"vm", "snapshot", "list", "web01"}, `NAME         CREATED              MEMORY  PARENT  DESCRIPTION
base         2025-03-04 05:06:07  no      -       
pre-upgrade  2025-03-04 05:06:08  yes     base    before the 12.4 upgrade
`, []string{"GET /api/v1/vms/web01/snapshots"}},
		{"vm snapshot create", []string{"vm", "snapshot", "create", "web01", "pre-upgrade", "--description", "before the 12.4 upgrade"},
			"vm.snapshot_create web01: success\n",
			[]string{`POST /api/v1/vms/web01/snapshots {"name":"pre-upgrade","description":"before the 12.4 upgrade"}`, "GET /api/v1/tasks/task-7/wait?timeout=30s"}},
		{"vm snapshot revert", []string{"vm", "snapshot", "revert", "web01", "base"}, "vm.snapshot_revert web01: success\n",
			[]string{"POST /api/v1/vms/web01/snapshots/base/revert", "GET /api/v1/tasks/task-8/wait?timeout=30s"}},
		{"vm snapshot delete", []string{"vm", "snapshot", "delete", "web01", "base"}, "vm.snapshot_delete web01: success\n",
			[]string{"DELETE /api/v1/vms/web01/snapshots/base", "GET /api/v1/tasks/task-9/wait?timeout=30s"}},
		{"vm screenshot", []string{"vm", "screenshot", "web01", shot}, fmt.Sprintf("wrote %s (%d bytes)\n", shot, len(pngBytes)),
			[]string{"GET /api/v1/vms/web01/screenshot"}},
		{"network portgroup list", []string{"network", "portgroup", "list"}, `NAME        VLAN  PORT SECURITY    INGRESS  EGRESS  FLAGS
VM Network  none  -                -        -       -
dmz         100   1 MAC, shutdown  -        -       -
`, []string{"GET /api/v1/portgroups"}},
		{"network portgroups alone lists", []string{"net", "portgroups"}, "", []string{"GET /api/v1/portgroups"}},
		{"network portgroup add", []string{"network", "portgroup", "add", "lab", "--vlan", "7", "--ingress-rate", "100M"}, "Port group lab added (VLAN 7).\n",
			[]string{`POST /api/v1/portgroups {"name":"lab","vlan":7,"ingress":{"bits_per_second":100000000}}`}},
		{"network portgroup add untagged", []string{"network", "portgroup", "add", "VM Network 2"}, "Port group VM Network 2 added (untagged).\n",
			[]string{`POST /api/v1/portgroups {"name":"VM Network 2","vlan":0}`}},
		{"network portgroup remove", []string{"network", "portgroup", "rm", "VM Network 2"}, "Port group VM Network 2 removed.\n",
			[]string{"DELETE /api/v1/portgroups/VM%20Network%202"}},
		{"datastore upload", []string{"datastore", "upload", "ds1", iso, "iso/debian 12.iso"}, fmt.Sprintf("uploaded %s to [ds1] iso/debian 12.iso (7 bytes)\n", iso),
			[]string{"PUT /api/v1/datastores/ds1/files/iso/debian%2012.iso ISO9660"}},
		{"datastore browse root", []string{"datastore", "browse", "ds1"}, `NAME    SIZE     MODIFIED
iso/    4.0 KiB  2025-03-04 05:06
web01/  4.0 KiB  2025-03-04 05:06
`, []string{"GET /api/v1/datastores/ds1/files/"}},
		{"datastore ls dir", []string{"datastore", "ls", "ds1", "iso"}, `NAME           SIZE       MODIFIED
debian-12.iso  628.0 MiB  2025-03-04 05:06
`, []string{"GET /api/v1/datastores/ds1/files/iso"}},
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
	if b, err := os.ReadFile(shot); err != nil || !bytes.Equal(b, pngBytes) {
		t.Errorf("screenshot file = %q, %v, want the PNG", b, err)
	}
}

func mustIndent(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

func TestVMJSON(t *testing.T) {
	base, _ := newVMHost(t)
	out, _, err := fvctl(t, nil, append(base, "vm", "list", "--json")...)
	var vms []api.VM
	if err != nil || json.Unmarshal([]byte(out), &vms) != nil || len(vms) != 2 || vms[1].Status.PID != 4242 {
		t.Errorf("vm list --json = %q, %v, want the two api.VMs", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "vm", "create", "app01", "--datastore", "ds1", "--json")...)
	var tk api.Task
	var v api.VM
	if err != nil || json.Unmarshal([]byte(out), &tk) != nil || tk.State != api.TaskSuccess || json.Unmarshal(tk.Result, &v) != nil || v.Spec.Name != "app01" {
		t.Errorf("vm create --json = %q, %v, want the finished task with the VM", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "vm", "snapshot", "list", "web01", "--json")...)
	var snaps []api.Snapshot
	if err != nil || json.Unmarshal([]byte(out), &snaps) != nil || len(snaps) != 2 {
		t.Errorf("vm snapshot list --json = %q, %v, want 2 api.Snapshots", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "network", "portgroup", "list", "--json")...)
	var pgs []api.PortGroup
	if err != nil || json.Unmarshal([]byte(out), &pgs) != nil || len(pgs) != 2 || pgs[1].VLAN != 100 {
		t.Errorf("network portgroup list --json = %q, %v, want 2 api.PortGroups", out, err)
	}
	out, _, err = fvctl(t, nil, append(base, "datastore", "browse", "ds1", "iso", "--json")...)
	var ents []api.DatastoreEntry
	if err != nil || json.Unmarshal([]byte(out), &ents) != nil || len(ents) != 1 || ents[0].Size != 658505728 {
		t.Errorf("datastore browse --json = %q, %v, want 1 api.DatastoreEntry", out, err)
	}
}

func TestVMCreateSpecFile(t *testing.T) {
	base, requests := newVMHost(t)
	spec := filepath.Join(t.TempDir(), "spec.json")
	// The file's name is overridden by the command line's.
	if err := os.WriteFile(spec, []byte(`{"name":"other","vcpus":1,"memory_mib":256,"firmware":"bios","cdrom":{"file":"[iso] debian.iso","start_connected":true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := fvctl(t, nil, append(base, "vm", "create", "app02", "--datastore", "ds1", "--spec", spec, "--no-wait")...); err != nil {
		t.Fatalf("vm create --spec = %v (stderr %s)", err, errOut)
	}
	want := `POST /api/v1/vms {"datastore":"ds1","spec":{"name":"app02","vcpus":1,"memory_mib":256,"firmware":"bios","cdrom":{"file":"[iso] debian.iso","start_connected":true},"serial_console":true,"vnc_console":false,"autostart":{"enabled":false}}}`
	if got := requests(); len(got) != 1 || got[0] != want {
		t.Errorf("requests = %q, want [%s]", got, want)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"vcpus":`), 0o644)
	if _, _, err := fvctl(t, nil, append(base, "vm", "create", "app02", "--datastore", "ds1", "--spec", bad)...); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("vm create --spec bad.json = %v, want an error naming the file", err)
	}
}

func TestVMFailures(t *testing.T) {
	base, _ := newVMHost(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"power on refused in the task", []string{"vm", "power", "on", "db01"}, []string{errTaskFailed.Error(), "vm.power_on db01", api.ErrAdmission, "memory admission"}},
		{"power unknown VM", []string{"vm", "power", "off", "nope"}, []string{"not found", "nope"}},
		{"show unknown VM", []string{"vm", "show", "nope"}, []string{"not found", "nope"}},
		{"grow memory without hot-add", []string{"vm", "reconfigure", "db01", "--memory", "32768"}, []string{"409", api.ErrState, "hot-add is off"}},
		{"invalid spec", []string{"vm", "create", "big", "--datastore", "ds1", "--cpus", "65"}, []string{"400", "numvcpus"}},
		{"unregister running", []string{"vm", "unregister", "web01"}, []string{"409", api.ErrState, "poweredOn"}},
		{"delete unknown snapshot", []string{"vm", "snapshot", "delete", "web01", "nope"}, []string{errTaskFailed.Error(), "no such snapshot"}},
		{"add existing port group", []string{"network", "portgroup", "add", "dmz"}, []string{"409", api.ErrExists}},
		{"remove used port group", []string{"network", "portgroup", "remove", "dmz"}, []string{api.ErrInUse, "web01 ethernet0"}},
		{"upload to unmounted", []string{"datastore", "upload", "off", "vm_test.go", "x.go"}, []string{"409", api.ErrState, "unmounted"}},
		{"upload missing local file", []string{"datastore", "upload", "ds1", "/nonexistent/file.iso", "x.iso"}, []string{"no such file"}},
		{"browse unknown dir", []string{"datastore", "browse", "ds1", "nope"}, []string{"not found", "no such file"}},
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

func TestVMUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"vm", "explode"},
		{"vm", "show"},
		{"vm", "show", "a", "b"},
		{"vm", "list", "extra"},
		{"vm", "create", "app01"}, // no datastore
		{"vm", "create", "--datastore", "ds1"},
		{"vm", "create", "app01", "--datastore", "ds1", "--disk", "big"},
		{"vm", "create", "app01", "--datastore", "ds1", "--disk", "10G,sparse"},
		{"vm", "create", "app01", "--datastore", "ds1", "--cpus", "many"},
		{"vm", "register", "ds1"},
		{"vm", "reconfigure", "web01"}, // no --memory
		{"vm", "reconfigure", "--memory", "512"},
		{"vm", "unregister"},
		{"vm", "destroy", "a", "b"},
		{"vm", "power"},
		{"vm", "power", "web01", "on"}, // operation first
		{"vm", "power", "on"},
		{"vm", "power", "on", "web01", "--timeout", "2m"}, // only shutdown has one
		{"vm", "snapshot"},
		{"vm", "snapshot", "frob", "web01"},
		{"vm", "snapshot", "create", "web01"},
		{"vm", "snapshot", "list"},
		{"vm", "screenshot", "web01"},
		{"network", "vswitch", "list"},
		{"network", "portgroup", "frob"},
		{"network", "portgroup", "add"},
		{"network", "portgroup", "add", "lab", "--vlan", "seven"},
		{"network", "portgroup", "remove"},
		{"datastore", "upload", "ds1", "local"},
		{"datastore", "browse"},
		{"datastore", "browse", "ds1", "a", "b"},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"--config", t.TempDir(), "--host", "h"}, args...), &out, &errb)
		if exitCode(err) != 2 {
			t.Errorf("fvctl %q = %v, exit %d, want exit 2", args, err, exitCode(err))
		}
	}
}

// TestUsageNamesEveryCommand keeps the usage text in step with the
// command switch.
func TestUsageNamesEveryCommand(t *testing.T) {
	for _, cmd := range []string{
		"vm list", "vm show", "vm create", "vm reconfigure", "vm register", "vm unregister", "vm destroy", "vm power",
		"vm snapshot list", "vm snapshot create", "vm snapshot revert|delete", "vm screenshot", "vm console", "vm vnc",
		"network portgroup list", "network portgroup add", "network portgroup remove",
		"datastore upload", "datastore browse",
	} {
		if !strings.Contains(usageText, "  "+cmd+" ") {
			t.Errorf("usage text lacks %q", cmd)
		}
	}
}

func TestParseDiskFlag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    api.VirtualDisk
		wantErr bool
	}{
		{"20G", api.VirtualDisk{Bus: api.DiskBusSCSI, File: "vm1.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 20480}, false},
		{"512M,thick", api.VirtualDisk{Bus: api.DiskBusSCSI, File: "vm1.img", Provisioning: api.ProvisionThick, SizeMiB: 512}, false},
		{"100,thin", api.VirtualDisk{Bus: api.DiskBusSCSI, File: "vm1.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 100}, false},
		{"0G", api.VirtualDisk{}, true},
		{"-5M", api.VirtualDisk{}, true},
		{"10T", api.VirtualDisk{}, true},
		{"10G,existing", api.VirtualDisk{}, true},
		{"", api.VirtualDisk{}, true},
	} {
		got, err := parseDiskFlag("vm1", tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseDiskFlag(vm1, %q) = %+v, %v, want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParseDiskFlag(f *testing.F) {
	for _, s := range []string{"20G", "512M,thick", "1,thin", "0G", "G", ",", "9223372036854775807G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDiskFlag("vm1", s)
		if err != nil {
			if d != (api.VirtualDisk{}) {
				t.Errorf("parseDiskFlag(%q) = %+v with error %v", s, d, err)
			}
			return
		}
		if d.SizeMiB <= 0 || d.Bus != api.DiskBusSCSI || (d.Provisioning != api.ProvisionThin && d.Provisioning != api.ProvisionThick) {
			t.Errorf("parseDiskFlag(%q) accepted %+v", s, d)
		}
	})
}
