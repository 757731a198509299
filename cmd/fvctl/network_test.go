package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

var (
	netView = api.SwitchView{
		Uplinks: []api.Uplink{
			{NIC: "eth1", Port: "Eth3/1", PortChannel: "Po1"},
			{NIC: "eth2", Port: "Eth3/2", PortChannel: "Po1"},
			{NIC: "eth3", Port: "Eth3/3"},
		},
		PortChannels: []api.PortChannel{{Name: "Po1", Members: []string{"eth1", "eth2"}, Mode: api.ChannelLACP}},
		PortGroups:   netPortGroups,
		Veths: []api.VethAssignment{
			{Port: "Veth1", VM: "web01", NIC: 0, PortGroup: "dmz", MAC: "00:50:56:40:00:01"},
			{Port: "Veth2", VM: "db01", NIC: 1, PortGroup: "VM Network", MAC: "00:50:56:40:00:02"},
		},
		Ports: netPorts,
	}
	netPortGroups = []api.PortGroup{
		{Name: "Management Network", System: true},
		{Name: "VM Network"},
		{Name: "dmz", VLAN: 100, MaxMACs: 2, Violation: api.ViolationProtect,
			Ingress: &api.RateLimit{BitsPerSecond: 100_000_000}, Egress: &api.RateLimit{BitsPerSecond: 1_000_000_000, BurstBytes: 65536}},
		{Name: "trunk", Trunk: true, AllowedVLANs: "10-20,30", NativeVLAN: 5, Shutdown: true},
	}
	netPorts = []api.PortStatus{
		{Name: "Eth3/1", Kind: api.PortEth, Profile: "fv-uplink", Interface: "eth1", State: api.PortUp, Mode: api.ModeTrunk, VLANs: "all", Owner: "eth1",
			Counters: api.PortCounters{RxPackets: 1200, RxBytes: 1_500_000, TxPackets: 900, TxBytes: 80_000, BPDUDrops: 3}},
		{Name: "Eth3/2", Kind: api.PortEth, Profile: "fv-uplink", Interface: "eth2", State: api.PortDown, Mode: api.ModeTrunk, VLANs: "all", Owner: "eth2"},
		{Name: "Eth3/3", Kind: api.PortEth, Profile: "fv-uplink", Interface: "eth3", State: api.PortUp, Mode: api.ModeTrunk, VLANs: "all", Owner: "eth3"},
		{Name: "Po1", Kind: api.PortPortChannel, Profile: "fv-uplink", Interface: "fvpo1", State: api.PortUp, Mode: api.ModeTrunk, VLANs: "all"},
		{Name: "Veth1", Kind: api.PortVeth, Profile: "dmz", Interface: "fvt1", State: api.PortErrDisabled, Reason: "port-security violation",
			Mode: api.ModeAccess, VLANs: "100", Owner: "web01 nic 0", Counters: api.PortCounters{RxPackets: 10, SecurityViolations: 4, IngressPoliced: 2}},
		{Name: "Veth2", Kind: api.PortVeth, Profile: "VM_Network", Interface: "fvt2", State: api.PortDown, Mode: api.ModeAccess, VLANs: "1", Owner: "db01 nic 1"},
		{Name: "Veth3", Kind: api.PortVeth, Profile: "Management_Network", Interface: "fvk-vswif0", State: api.PortUp, Mode: api.ModeAccess, VLANs: "1", Owner: "vswif0"},
	}
	netCard = api.VEMCard{
		HostUUID: "4225e800-d334-720d-e73e-d3a8d500a201", Hostname: "esx1", Mode: api.SwitchStandalone, Module: 3,
		Programmed: true, Restored: true, Ports: map[string]int{"veth": 3, "eth": 3, "po": 1},
		LastReconcile: "2025-03-04T05:06:07Z", Changes: 42, Bridge: "fvbr0", Version: "v1.2.3",
	}
	netMACs = []api.MACEntry{
		{VLAN: 1, MAC: "52:54:00:12:34:56", Type: "static", Port: "Veth3"},
		{VLAN: 100, MAC: "00:50:56:40:00:01", Type: "static", Port: "Veth1"},
		{VLAN: 100, MAC: "00:0c:29:09:a7:fc", Type: "dynamic", Port: "Po1", AgeSeconds: 12},
	}
	netVMKNICs = []api.VMKNICStatus{
		{Name: "vswif0", PortGroup: "Management Network", MAC: "52:54:00:12:34:56", MTU: 1500, Switchport: "fvk-vswif0",
			Address: "10.0.2.15/24", Gateway: "10.0.2.2", Mode: api.VMKIPv4Static, Services: []string{api.VMKServiceManagement}, Up: true},
		{Name: "vmk1", PortGroup: "storage", MAC: "00:50:56:6a:bc:de", MTU: 9000, Switchport: "fvk-vmk1",
			Address: "10.9.0.5/16", Mode: api.VMKIPv4DHCP, Services: []string{api.VMKServiceNFS, api.VMKServiceISCSI}, Up: true},
		{Name: "vmk2", PortGroup: "VM Network", MAC: "00:50:56:6a:00:02", MTU: 1500, Switchport: "fvk-vmk2", Mode: api.VMKIPv4None},
	}
)

// netHost is a fake hostd with the network, vmknic and VEM endpoints.
// A vmknic change is guarded (202) when it names a vswif or carries the
// management service; its change ID is "chg-NAME". So are changes to the
// port group "Management Network" (chg-pg), removing uplink eth0
// (chg-eth0), a port-channel with eth0 (chg-po) and removing Po1
// (chg-Po1). Confirming chg-vswif9 answers not_found (rolled back
// already); removing vmk7 conflicts with a pending change.
type netHost struct {
	addr string
	base []string // global flags pinning the host

	mu           sync.Mutex
	reqs         []string
	vemDown      bool
	view         *api.SwitchView // GET /network answers this instead of netView
	confirmFails int             // confirm answers 503 this many times first
}

func newNetHost(t *testing.T) *netHost {
	t.Helper()
	h := &netHost{}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	guarded := func(w http.ResponseWriter, v api.VMKNIC, status int, done any) {
		if strings.HasPrefix(v.Name, "vswif") || slices.Contains(v.Services, api.VMKServiceManagement) {
			reply(w, 202, api.NetworkChange{ID: "chg-" + v.Name, RollbackAt: t1.Add(time.Minute), What: "vmknic " + v.Name})
			return
		}
		if done == nil {
			w.WriteHeader(status)
			return
		}
		reply(w, status, done)
	}
	vem := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			h.mu.Lock()
			down := h.vemDown
			h.mu.Unlock()
			if down {
				reply(w, 502, api.Error{Code: api.ErrUnavailable, Message: "VEM agent: dial unix /run/vemd.sock: connection refused"})
				return
			}
			reply(w, 200, v)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/network", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		v := h.view
		h.mu.Unlock()
		if v == nil {
			v = &netView
		}
		reply(w, 200, v)
	})
	mux.HandleFunc("GET /api/v1/portgroups", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, netPortGroups) })
	mux.HandleFunc("POST /api/v1/portgroups", func(w http.ResponseWriter, r *http.Request) {
		var pg api.PortGroup
		json.NewDecoder(r.Body).Decode(&pg)
		if pg.Name == "dmz" {
			reply(w, 409, api.Error{Code: api.ErrExists, Message: `port group already exists: "dmz"`})
			return
		}
		reply(w, 201, pg)
	})
	change := func(w http.ResponseWriter, id string) {
		reply(w, 202, api.NetworkChange{ID: id, RollbackAt: t1.Add(time.Minute), What: id})
	}
	mux.HandleFunc("PUT /api/v1/portgroups/{name}", func(w http.ResponseWriter, r *http.Request) {
		var pg api.PortGroup
		json.NewDecoder(r.Body).Decode(&pg)
		if pg.Name == "Management Network" {
			change(w, "chg-pg")
			return
		}
		reply(w, 200, pg)
	})
	mux.HandleFunc("DELETE /api/v1/portgroups/{name}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("POST /api/v1/network/uplinks", func(w http.ResponseWriter, r *http.Request) {
		var u api.Uplink
		json.NewDecoder(r.Body).Decode(&u)
		reply(w, 201, api.Uplink{NIC: u.NIC, Port: "Eth3/4"})
	})
	mux.HandleFunc("DELETE /api/v1/network/uplinks/{nic}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("nic") {
		case "eth1":
			reply(w, 409, api.Error{Code: api.ErrInUse, Message: "uplink eth1 in use: a member of Po1"})
		case "eth0":
			change(w, "chg-eth0")
		default:
			w.WriteHeader(204)
		}
	})
	mux.HandleFunc("POST /api/v1/network/portchannels", func(w http.ResponseWriter, r *http.Request) {
		var pc api.PortChannel
		json.NewDecoder(r.Body).Decode(&pc)
		if slices.Contains(pc.Members, "eth0") {
			change(w, "chg-po")
			return
		}
		reply(w, 201, pc)
	})
	mux.HandleFunc("DELETE /api/v1/network/portchannels/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "Po1" {
			change(w, "chg-Po1")
			return
		}
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /api/v1/vem/card", vem(netCard))
	mux.HandleFunc("GET /api/v1/vem/ports", vem(netPorts))
	mux.HandleFunc("GET /api/v1/vem/macs", vem(netMACs))
	mux.HandleFunc("GET /api/v1/network/vmknics", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, netVMKNICs) })
	mux.HandleFunc("POST /api/v1/network/vmknics", func(w http.ResponseWriter, r *http.Request) {
		var v api.VMKNIC
		json.NewDecoder(r.Body).Decode(&v)
		guarded(w, v, 201, v)
	})
	mux.HandleFunc("PUT /api/v1/network/vmknics/{name}", func(w http.ResponseWriter, r *http.Request) {
		var v api.VMKNIC
		json.NewDecoder(r.Body).Decode(&v)
		guarded(w, v, 200, v)
	})
	mux.HandleFunc("DELETE /api/v1/network/vmknics/{name}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("name") {
		case "vmk9":
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: `no vmknic "vmk9"`})
			return
		case "vmk7":
			reply(w, 409, api.Error{Code: api.ErrConflict, Message: "change pending: netchg-1 (vmknic vswif0), until 2025-03-04T05:07:08Z"})
			return
		}
		i := slices.IndexFunc(netVMKNICs, func(s api.VMKNICStatus) bool { return s.Name == r.PathValue("name") })
		v := api.VMKNIC{Name: r.PathValue("name")}
		if i >= 0 {
			v.Services = netVMKNICs[i].Services
		}
		guarded(w, v, 204, nil)
	})
	mux.HandleFunc("POST /api/v1/network/confirm", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConfirmRequest
		json.NewDecoder(r.Body).Decode(&req)
		h.mu.Lock()
		fail := h.confirmFails > 0
		h.confirmFails--
		h.mu.Unlock()
		switch {
		case fail:
			reply(w, 503, api.Error{Code: api.ErrUnavailable, Message: "not ready"})
		case req.ID == "chg-vswif9":
			reply(w, 404, api.Error{Code: api.ErrNotFound, Message: "no pending network change chg-vswif9"})
		default:
			w.WriteHeader(204)
		}
	})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.mu.Lock()
		h.reqs = append(h.reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(bytes.TrimSpace(b))))
		h.mu.Unlock()
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
	h.addr = ts.Listener.Addr().String()
	h.base = []string{"--host", h.addr, "--token", token, "--fingerprint", client.Fingerprint(ts.Certificate().Raw)}
	return h
}

func (h *netHost) setView(v *api.SwitchView) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.view = v
}

func (h *netHost) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.reqs...)
}

func TestNetworkCommands(t *testing.T) {
	h := newNetHost(t)
	for _, tc := range []struct {
		name     string
		args     []string
		want     string // stdout; "" is not checked
		wantReqs []string
	}{
		{"network show", []string{"network", "show"}, `Uplinks:
PORT    NIC   PORT-CHANNEL  STATE
Eth3/1  eth1  Po1           up
Eth3/2  eth2  Po1           down
Eth3/3  eth3  -             up

Port-channels:
PORT  MODE  MEMBERS    STATE
Po1   lacp  eth1,eth2  up

Port groups:
NAME                VLAN                     PORT SECURITY    INGRESS    EGRESS   FLAGS
Management Network  none                     -                -          -        system
VM Network          none                     -                -          -        -
dmz                 100                      2 MACs, protect  100Mbit/s  1Gbit/s  -
trunk               trunk 10-20,30 native 5  -                -          -        shutdown

vEths:
PORT   VM      NIC     PORT GROUP          MAC                STATE
Veth1  web01   0       dmz                 00:50:56:40:00:01  err-disabled (port-security violation)
Veth2  db01    1       VM Network          00:50:56:40:00:02  down
Veth3  (host)  vswif0  Management Network  -                  up
`, []string{"GET /api/v1/network"}},
		{"network alone shows", []string{"net"}, "", []string{"GET /api/v1/network"}},
		{"portgroup list", []string{"network", "portgroup", "list"}, `NAME                VLAN                     PORT SECURITY    INGRESS    EGRESS   FLAGS
Management Network  none                     -                -          -        system
VM Network          none                     -                -          -        -
dmz                 100                      2 MACs, protect  100Mbit/s  1Gbit/s  -
trunk               trunk 10-20,30 native 5  -                -          -        shutdown
`, []string{"GET /api/v1/portgroups"}},
		{"portgroup add trunk with security and shaping",
			[]string{"network", "portgroup", "add", "lab", "--trunk", "--allowed-vlans", "10-20,30", "--native-vlan", "5",
				"--max-macs", "2", "--violation", "protect", "--egress-rate", "1.5G", "--ingress-rate", "500kbit/s", "--shutdown"},
			"Port group lab added (trunk 10-20,30 native 5).\n",
			[]string{`POST /api/v1/portgroups {"name":"lab","vlan":0,"trunk":true,"allowed_vlans":"10-20,30","native_vlan":5,"max_macs":2,"violation":"protect","ingress":{"bits_per_second":500000},"egress":{"bits_per_second":1500000000},"shutdown":true}`}},
		{"portgroup add system VLAN", []string{"network", "pg", "add", "storage", "--vlan", "20", "--system"}, "Port group storage added (VLAN 20).\n",
			[]string{`POST /api/v1/portgroups {"name":"storage","vlan":20,"system":true}`}},
		{"portgroup set keeps what is not named", []string{"network", "portgroup", "set", "dmz", "--vlan", "200", "--ingress-rate", "none", "--max-macs", "0"},
			"Port group dmz changed.\n",
			[]string{"GET /api/v1/portgroups", `PUT /api/v1/portgroups/dmz {"name":"dmz","vlan":200,"egress":{"bits_per_second":1000000000,"burst_bytes":65536}}`}},
		{"portgroup set rate keeps the burst", []string{"network", "portgroup", "set", "dmz", "--egress-rate", "500k"}, "Port group dmz changed.\n",
			[]string{"GET /api/v1/portgroups", `PUT /api/v1/portgroups/dmz {"name":"dmz","vlan":100,"max_macs":2,"violation":"protect","ingress":{"bits_per_second":100000000},"egress":{"bits_per_second":500000,"burst_bytes":65536}}`}},
		{"portgroup set access VLAN on a trunk", []string{"network", "portgroup", "set", "trunk", "--vlan", "30", "--shutdown=false"}, "Port group trunk changed.\n",
			[]string{"GET /api/v1/portgroups", `PUT /api/v1/portgroups/trunk {"name":"trunk","vlan":30}`}},
		{"portgroup set trunk", []string{"network", "portgroup", "set", "VM Network", "--trunk"}, "Port group VM Network changed.\n",
			[]string{"GET /api/v1/portgroups", `PUT /api/v1/portgroups/VM%20Network {"name":"VM Network","vlan":0,"trunk":true}`}},
		{"portgroup remove", []string{"network", "portgroup", "remove", "lab"}, "Port group lab removed.\n", []string{"DELETE /api/v1/portgroups/lab"}},
		{"uplink add", []string{"network", "uplink", "add", "eth4"}, "Uplink eth4 added as Eth3/4.\n", []string{`POST /api/v1/network/uplinks {"nic":"eth4"}`}},
		{"uplink remove", []string{"network", "uplink", "rm", "eth3"}, "Uplink eth3 removed.\n", []string{"DELETE /api/v1/network/uplinks/eth3"}},
		{"portchannel add lacp", []string{"network", "portchannel", "add", "po2", "--mode", "lacp", "eth3", "eth4"}, "Port-channel Po2 (lacp) added: eth3, eth4.\n",
			[]string{`POST /api/v1/network/portchannels {"name":"Po2","members":["eth3","eth4"],"mode":"802.3ad"}`}},
		{"portchannel add default mode", []string{"network", "portchannel", "add", "Po3", "eth5"}, "Port-channel Po3 (active-backup) added: eth5.\n",
			[]string{`POST /api/v1/network/portchannels {"name":"Po3","members":["eth5"]}`}},
		{"portchannel add mac-pinning", []string{"network", "portchannel", "add", "Po4", "eth5", "eth6", "--mode=mac-pinning"}, "Port-channel Po4 (mac-pinning) added: eth5, eth6.\n",
			[]string{`POST /api/v1/network/portchannels {"name":"Po4","members":["eth5","eth6"],"mode":"mac-pinning"}`}},
		{"portchannel remove", []string{"network", "portchannel", "remove", "Po2"}, "Port-channel Po2 removed; its NICs stay uplinks.\n",
			[]string{"DELETE /api/v1/network/portchannels/Po2"}},
		{"vmknic list", []string{"network", "vmknic", "list"}, `INTERFACE  PORT GROUP          IP ADDRESS  NETMASK        MAC ADDRESS        MTU   ENABLED  TYPE    SERVICES
vswif0     Management Network  10.0.2.15   255.255.255.0  52:54:00:12:34:56  1500  true     STATIC  management
vmk1       storage             10.9.0.5    255.255.0.0    00:50:56:6a:bc:de  9000  true     DHCP    nfs,iscsi
vmk2       VM Network          -           -              00:50:56:6a:00:02  1500  false    NONE    -
`, []string{"GET /api/v1/network/vmknics"}},
		{"vmknic add static", []string{"network", "vmknic", "add", "vmk3", "--portgroup", "storage", "--ip", "10.9.0.7/16", "--gateway", "10.9.0.1",
			"--mtu", "9000", "--services", "nfs, iscsi"}, "vmknic vmk3 added.\n",
			[]string{`POST /api/v1/network/vmknics {"name":"vmk3","port_group":"storage","mtu":9000,"ipv4":{"mode":"static","address":"10.9.0.7/16","gateway":"10.9.0.1"},"services":["nfs","iscsi"]}`}},
		{"vmknic add dhcp with a MAC", []string{"network", "vmk", "add", "vmk4", "--portgroup", "VM Network", "--dhcp", "--mac", "00:50:56:6A:00:01"}, "vmknic vmk4 added.\n",
			[]string{`POST /api/v1/network/vmknics {"name":"vmk4","port_group":"VM Network","mac":"00:50:56:6a:00:01","ipv4":{"mode":"dhcp"}}`}},
		{"vmknic add without an address", []string{"network", "vmknic", "add", "vmk5", "--portgroup", "VM Network", "--ip", "none"}, "vmknic vmk5 added.\n",
			[]string{`POST /api/v1/network/vmknics {"name":"vmk5","port_group":"VM Network","ipv4":{"mode":"none"}}`}},
		{"vmknic set keeps what is not named", []string{"network", "vmknic", "set", "vmk1", "--mtu", "1500"}, "vmknic vmk1 changed.\n",
			[]string{"GET /api/v1/network/vmknics",
				`PUT /api/v1/network/vmknics/vmk1 {"name":"vmk1","port_group":"storage","mac":"00:50:56:6a:bc:de","mtu":1500,"ipv4":{"mode":"dhcp"},"services":["nfs","iscsi"]}`}},
		{"vmknic set static from none", []string{"network", "vmknic", "set", "vmk2", "--ip", "192.168.5.2/24", "--gateway", "192.168.5.1", "--services", "migration", "--mac", "auto"},
			"vmknic vmk2 changed.\n",
			[]string{"GET /api/v1/network/vmknics",
				`PUT /api/v1/network/vmknics/vmk2 {"name":"vmk2","port_group":"VM Network","mtu":1500,"ipv4":{"mode":"static","address":"192.168.5.2/24","gateway":"192.168.5.1"},"services":["migration"]}`}},
		{"vmknic remove", []string{"network", "vmknic", "remove", "vmk2"}, "vmknic vmk2 removed.\n", []string{"DELETE /api/v1/network/vmknics/vmk2"}},
		{"guarded change confirmed on the same server", []string{"network", "vmknic", "set", "vswif0", "--mtu", "9000"},
			"vmknic vswif0: a management network change, applied under the rollback guard (change chg-vswif0).\n" +
				"The host rolls it back at 2025-03-04T05:07:08Z unless it is confirmed.\n" +
				"Confirming through " + h.addr + "...\n" +
				"Confirmed: the change is kept.\n",
			[]string{"GET /api/v1/network/vmknics",
				`PUT /api/v1/network/vmknics/vswif0 {"name":"vswif0","port_group":"Management Network","mac":"52:54:00:12:34:56","mtu":9000,"ipv4":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2"},"services":["management"]}`,
				`POST /api/v1/network/confirm {"id":"chg-vswif0"}`}},
		{"guarded removal confirmed", []string{"network", "vmknic", "remove", "vswif0"}, "",
			[]string{"DELETE /api/v1/network/vmknics/vswif0", `POST /api/v1/network/confirm {"id":"chg-vswif0"}`}},
		{"guarded change left unconfirmed", []string{"network", "vmknic", "add", "vmk6", "--portgroup", "Management Network", "--dhcp", "--services", "management", "--no-confirm"},
			"vmknic vmk6: a management network change, applied under the rollback guard (change chg-vmk6).\n" +
				"The host rolls it back at 2025-03-04T05:07:08Z unless it is confirmed.\n" +
				"Not confirmed (--no-confirm): the host will roll back at 2025-03-04T05:07:08Z. To keep the change: fvctl --host " + h.addr + " network confirm chg-vmk6\n",
			[]string{`POST /api/v1/network/vmknics {"name":"vmk6","port_group":"Management Network","ipv4":{"mode":"dhcp"},"services":["management"]}`}},
		{"confirm", []string{"network", "confirm", "chg-vmk6"}, "Change chg-vmk6 confirmed: it is kept.\n", []string{`POST /api/v1/network/confirm {"id":"chg-vmk6"}`}},
		{"guarded port group change left unconfirmed", []string{"network", "portgroup", "set", "Management Network", "--vlan", "10", "--no-confirm"},
			"chg-pg: a management network change, applied under the rollback guard (change chg-pg).\n" +
				"The host rolls it back at 2025-03-04T05:07:08Z unless it is confirmed.\n" +
				"Not confirmed (--no-confirm): the host will roll back at 2025-03-04T05:07:08Z. To keep the change: fvctl --host " + h.addr + " network confirm chg-pg\n",
			[]string{"GET /api/v1/portgroups", `PUT /api/v1/portgroups/Management%20Network {"name":"Management Network","vlan":10,"system":true}`}},
		{"guarded uplink removal confirmed", []string{"network", "uplink", "remove", "eth0"}, "",
			[]string{"DELETE /api/v1/network/uplinks/eth0", `POST /api/v1/network/confirm {"id":"chg-eth0"}`}},
		{"guarded port-channel confirmed", []string{"network", "portchannel", "add", "Po5", "eth0", "eth3", "--mode", "active-backup"},
			"chg-po: a management network change, applied under the rollback guard (change chg-po).\n" +
				"The host rolls it back at 2025-03-04T05:07:08Z unless it is confirmed.\n" +
				"Confirming through " + h.addr + "...\n" +
				"Confirmed: the change is kept.\n",
			[]string{`POST /api/v1/network/portchannels {"name":"Po5","members":["eth0","eth3"],"mode":"active-backup"}`, `POST /api/v1/network/confirm {"id":"chg-po"}`}},
		{"guarded port-channel removal left unconfirmed", []string{"network", "portchannel", "rm", "Po1", "--no-confirm"}, "",
			[]string{"DELETE /api/v1/network/portchannels/Po1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(h.requests())
			out, errOut, err := fvctl(t, nil, append(h.base, tc.args...)...)
			if err != nil {
				t.Fatalf("fvctl %q = %v (stderr %s)", tc.args, err, errOut)
			}
			if tc.want != "" {
				if diff := cmp.Diff(tc.want, out); diff != "" {
					t.Errorf("fvctl %q output (-want +got):\n%s", tc.args, diff)
				}
			}
			if diff := cmp.Diff(tc.wantReqs, h.requests()[n:]); diff != "" {
				t.Errorf("fvctl %q requests (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

// TestGuardedChangeNewServer: a change that moves the management address
// is confirmed through --new-server, on a new connection that pins the
// certificate the host presented before; the confirmation is retried
// while the new address is not ready, and known_hosts learns the new
// address.
func TestGuardedChangeNewServer(t *testing.T) {
	old, moved := newNetHost(t), newNetHost(t)
	moved.confirmFails = 1
	cfg := t.TempDir()
	env := map[string]string{"FVCTL_TOKEN": token}
	// Trust on first use of the old address, as an operator would.
	if _, errOut, err := fvctl(t, env, "--host", old.addr, "--config", cfg, "network", "vmknic", "list"); err != nil {
		t.Fatalf("vmknic list = %v (stderr %s)", err, errOut)
	}
	out, errOut, err := fvctl(t, env, "--host", old.addr, "--config", cfg,
		"network", "vmknic", "set", "vswif0", "--ip", "10.0.2.20/24", "--new-server", moved.addr)
	if err != nil {
		t.Fatalf("vmknic set vswif0 --new-server = %v (stderr %s)", err, errOut)
	}
	want := "vmknic vswif0: a management network change, applied under the rollback guard (change chg-vswif0).\n" +
		"The host rolls it back at 2025-03-04T05:07:08Z unless it is confirmed.\n" +
		"Confirming through " + moved.addr + "...\n" +
		"Confirmed: the change is kept.\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	wantOld := []string{
		"GET /api/v1/network/vmknics",
		"GET /api/v1/network/vmknics",
		// The gateway still fits the new address: it is kept.
		`PUT /api/v1/network/vmknics/vswif0 {"name":"vswif0","port_group":"Management Network","mac":"52:54:00:12:34:56","mtu":1500,"ipv4":{"mode":"static","address":"10.0.2.20/24","gateway":"10.0.2.2"},"services":["management"]}`,
	}
	if diff := cmp.Diff(wantOld, old.requests()); diff != "" {
		t.Errorf("old address requests (-want +got):\n%s", diff)
	}
	wantMoved := []string{`POST /api/v1/network/confirm {"id":"chg-vswif0"}`, `POST /api/v1/network/confirm {"id":"chg-vswif0"}`}
	if diff := cmp.Diff(wantMoved, moved.requests()); diff != "" {
		t.Errorf("new address requests (-want +got):\n%s", diff)
	}
	kh, err := os.ReadFile(filepath.Join(cfg, knownHostsFile))
	if err != nil {
		t.Fatal(err)
	}
	fp := old.base[len(old.base)-1]
	if got, want := string(kh), old.addr+" "+fp+"\n"+moved.addr+" "+fp+"\n"; got != want {
		t.Errorf("known_hosts = %q, want %q", got, want)
	}
	if !strings.Contains(errOut, "Stored "+moved.addr) {
		t.Errorf("stderr %q does not say the new address was stored", errOut)
	}
}

// TestNetworkShowBare: a fresh switch, and one whose VEM did not report
// its ports.
func TestNetworkShowBare(t *testing.T) {
	h := newNetHost(t)
	h.setView(&api.SwitchView{})
	out, errOut, err := fvctl(t, nil, append(h.base, "network")...)
	want := "Uplinks: none\n\nPort-channels: none\n\nPort groups: none\n\nvEths: none\n"
	if err != nil || out != want || errOut != "" {
		t.Errorf("network show of an empty switch = %q, stderr %q, %v, want %q", out, errOut, err, want)
	}
	h.setView(&api.SwitchView{Uplinks: netView.Uplinks[2:], PortGroups: netPortGroups[1:2], Veths: netView.Veths[1:]})
	out, errOut, err = fvctl(t, nil, append(h.base, "network", "show")...)
	want = `Uplinks:
PORT    NIC   PORT-CHANNEL  STATE
Eth3/3  eth3  -             -

Port-channels: none

Port groups:
NAME        VLAN  PORT SECURITY  INGRESS  EGRESS  FLAGS
VM Network  none  -              -        -       -

vEths:
PORT   VM    NIC  PORT GROUP  MAC                STATE
Veth2  db01  1    VM Network  00:50:56:40:00:02  -
`
	if diff := cmp.Diff(want, out); err != nil || diff != "" {
		t.Errorf("network show without port states = %v (-want +got):\n%s", err, diff)
	}
	if !strings.Contains(errOut, "Port states unavailable") {
		t.Errorf("network show without port states: stderr %q does not say so", errOut)
	}
}

func TestNetworkFailures(t *testing.T) {
	h := newNetHost(t)
	down := newNetHost(t)
	down.vemDown = true
	for _, tc := range []struct {
		name string
		base []string
		args []string
		want []string // in the error
	}{
		{"add existing port group", h.base, []string{"network", "portgroup", "add", "dmz"}, []string{"409", api.ErrExists, "dmz"}},
		{"set unknown port group", h.base, []string{"network", "portgroup", "set", "nope", "--vlan", "5"}, []string{"not found", `"nope"`}},
		{"remove a port-channel member", h.base, []string{"network", "uplink", "remove", "eth1"}, []string{api.ErrInUse, "Po1"}},
		{"set unknown vmknic", h.base, []string{"network", "vmknic", "set", "vmk9", "--mtu", "1500"}, []string{"not found", `"vmk9"`}},
		{"remove unknown vmknic", h.base, []string{"network", "vmknic", "rm", "vmk9"}, []string{"not found", "vmk9"}},
		{"guarded change rolled back before the confirmation", h.base, []string{"network", "vmknic", "remove", "vswif9"},
			[]string{"chg-vswif9", "rolled back"}},
		{"confirm a rolled back change", h.base, []string{"network", "confirm", "chg-vswif9"}, []string{"no such pending change", "rolled back"}},
		{"a management change is pending", h.base, []string{"network", "vmknic", "remove", "vmk7"}, []string{"409", api.ErrConflict, "netchg-1", "fvctl network confirm"}},
		{"VEM agent down", down.base, []string{"vem", "show", "card"}, []string{"502", "connection refused", "services log vemd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := fvctl(t, nil, append(tc.base, tc.args...)...)
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("fvctl %q = %v (exit %d), want exit 1", tc.args, err, exitCode(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("fvctl %q error %q lacks %q", tc.args, err, w)
				}
			}
			if tc.name == "guarded change rolled back before the confirmation" && !strings.Contains(out, "rolls it back at") {
				t.Errorf("fvctl %q output %q does not report the guarded change", tc.args, out)
			}
		})
	}
}

func TestNetworkUsageErrors(t *testing.T) {
	h := newNetHost(t)
	for _, tc := range []struct {
		args []string
		want string // in the message
	}{
		{[]string{"network", "frob"}, "unknown command"},
		{[]string{"network", "portgroup", "frob"}, "unknown command"},
		{[]string{"network", "portgroup", "add"}, "want 1 argument"},
		{[]string{"network", "portgroup", "add", "lab", "--ingress-rate", "fast"}, "bits per second"},
		{[]string{"network", "portgroup", "add", "lab", "--egress-rate", "100MB"}, "bits per second"},
		{[]string{"network", "portgroup", "add", "lab", "--egress-rate", "-5M"}, "bits per second"},
		{[]string{"network", "portgroup", "add", "lab", "--egress-rate", "0.5"}, "whole number"},
		{[]string{"network", "portgroup", "add", "lab", "--egress-rate", "1e9"}, "bits per second"},
		{[]string{"network", "portgroup", "add", "lab", "--egress-rate", "99999999999T"}, "at most"},
		{[]string{"network", "portgroup", "add", "lab", "--vlan", "seven"}, "whole number"},
		{[]string{"network", "portgroup", "add", "lab", "--trunk", "--vlan", "5"}, "--allowed-vlans"},
		{[]string{"network", "portgroup", "add", "lab", "--allowed-vlans", "10"}, "add --trunk"},
		{[]string{"network", "portgroup", "add", "lab", "--max-macs", "2", "--violation", "drop"}, "shutdown or protect"},
		{[]string{"network", "portgroup", "add", "lab", "--violation", "protect"}, "--max-macs"},
		{[]string{"network", "portgroup", "add", "lab", "--shutdown=maybe"}, "true or false"},
		{[]string{"network", "portgroup", "set", "dmz"}, "nothing to change"},
		{[]string{"network", "portgroup", "add", "lab", "--no-confirm"}, "not defined"},
		{[]string{"network", "portgroup", "set", "dmz", "--vlan", "5", "--new-server", "a/b"}, "--new-server"},
		{[]string{"network", "uplink", "remove", "eth0", "--new-server", "a b"}, "--new-server"},
		{[]string{"network", "uplink", "add", "eth0", "--no-confirm"}, "not defined"},
		{[]string{"network", "portchannel", "remove", "Po1", "--new-server", "h:99999"}, "--new-server"},
		{[]string{"network", "portgroup", "remove"}, "want 1 argument"},
		{[]string{"network", "uplink"}, "want add NIC or remove NIC"},
		{[]string{"network", "uplink", "add"}, "want 1 argument"},
		{[]string{"network", "uplink", "add", "eth1", "eth2"}, "want 1 argument"},
		{[]string{"network", "portchannel"}, "want add"},
		{[]string{"network", "portchannel", "add", "Po1"}, "want 2 to"},
		{[]string{"network", "portchannel", "add", "Po1", "--mode", "round-robin", "eth1"}, "lacp, active-backup or mac-pinning"},
		{[]string{"network", "portchannel", "add", "bond0", "eth1"}, "PoN"},
		{[]string{"network", "portchannel", "add", "Po0", "eth1"}, "PoN"},
		{[]string{"network", "portchannel", "add", "Po01", "eth1"}, "PoN"},
		{[]string{"network", "portchannel", "remove"}, "want 1 argument"},
		{[]string{"network", "vmknic", "frob"}, "unknown command"},
		{[]string{"network", "vmknic", "add", "vmk1"}, "--portgroup"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg"}, "--dhcp, --ip CIDR or --ip none"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--ip", "10.0.0.1/24"}, "not both"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--ip", "10.0.0.1"}, "prefix length"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--ip", "fe80::1/64"}, "IPv4"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--gateway", "10.0.0.1"}, "static address"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--ip", "10.0.0.2/24", "--gateway", "router"}, "IPv4 address"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--services", "nfs,vmotion"}, `unknown service "vmotion"`},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--mac", "zz"}, "MAC"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--mtu", "big"}, "whole number"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--new-server", "a b"}, "--new-server"},
		{[]string{"network", "vmknic", "add", "vmk1", "--portgroup", "pg", "--dhcp", "--new-server", "h2", "--no-confirm"}, "--no-confirm"},
		{[]string{"network", "vmknic", "set", "vmk1"}, "nothing to change"},
		{[]string{"network", "vmknic", "set", "vmk1", "--dhcp=false"}, "--ip CIDR"},
		{[]string{"network", "vmknic", "set", "vmk1", "--gateway", "10.9.0.1"}, "static address"},
		// Checked against the current configuration, before any change:
		// a new address must not silently lose the gateway.
		{[]string{"network", "vmknic", "set", "vswif0", "--ip", "192.168.1.5/24"}, "current gateway 10.0.2.2 is outside it"},
		{[]string{"network", "vmknic", "remove"}, "want 1 argument"},
		{[]string{"network", "confirm"}, "want 1 argument"},
		{[]string{"vem"}, "want show card"},
		{[]string{"vem", "card"}, "want show card"},
		{[]string{"vem", "show"}, "want show card"},
		{[]string{"vem", "show", "ltl"}, "unknown"},
		{[]string{"vem", "show", "card", "extra"}, "unexpected argument"},
	} {
		n := len(h.requests())
		var out, errb bytes.Buffer
		err := run(t.Context(), append(append([]string{}, h.base...), tc.args...), &out, &errb)
		if exitCode(err) != 2 {
			t.Errorf("fvctl %q = %v, exit %d, want exit 2", tc.args, err, exitCode(err))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fvctl %q error %q lacks %q", tc.args, err, tc.want)
		}
		if !strings.Contains(errb.String(), "Usage: fvctl") {
			t.Errorf("fvctl %q stderr lacks the usage text", tc.args)
		}
		for _, r := range h.requests()[n:] {
			if !strings.HasPrefix(r, "GET ") {
				t.Errorf("fvctl %q changed something before refusing: %s", tc.args, r)
			}
		}
	}
}

func TestVEMCommands(t *testing.T) {
	h := newNetHost(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
		req  string
	}{
		{"card", []string{"vem", "show", "card"}, `Card UUID: 4225e800-d334-720d-e73e-d3a8d500a201
Card name: esx1
Switch mode: standalone
Switch bridge: fvbr0
Card domain: 0
Card slot: 3
Card Headless Mode : No
Programmed: Yes
Restored at boot: Yes
Ports: 3 veth, 3 eth, 1 po
Last reconcile: 2025-03-04T05:06:07Z
Last error: none
Kernel changes: 42
Version: v1.2.3
`, "GET /api/v1/vem/card"},
		{"ports", []string{"vem", "show", "ports"}, `NAME    KIND  INTERFACE   MODE    VLANS  STATE         REASON                   OWNER
Eth3/1  eth   eth1        trunk   all    up            -                        eth1
Eth3/2  eth   eth2        trunk   all    down          -                        eth2
Eth3/3  eth   eth3        trunk   all    up            -                        eth3
Po1     po    fvpo1       trunk   all    up            -                        -
Veth1   veth  fvt1        access  100    err-disabled  port-security violation  web01 nic 0
Veth2   veth  fvt2        access  1      down          -                        db01 nic 1
Veth3   veth  fvk-vswif0  access  1      up            -                        vswif0
`, "GET /api/v1/vem/ports"},
		{"mac", []string{"vem", "show", "mac"}, `VLAN  MAC                TYPE     PORT   AGE
1     52:54:00:12:34:56  static   Veth3  0
100   00:50:56:40:00:01  static   Veth1  0
100   00:0c:29:09:a7:fc  dynamic  Po1    12
Total MAC Addresses: 3
`, "GET /api/v1/vem/macs"},
		{"counters", []string{"vem", "show", "counters"}, `NAME    RX PKTS  RX BYTES  TX PKTS  TX BYTES  RX DROPS  TX DROPS  BPDU DROPS  SEC VIOL  POLICED
Eth3/1  1200     1500000   900      80000     0         0         3           0         0
Eth3/2  0        0         0        0         0         0         0           0         0
Eth3/3  0        0         0        0         0         0         0           0         0
Po1     0        0         0        0         0         0         0           0         0
Veth1   10       0         0        0         0         0         0           4         2
Veth2   0        0         0        0         0         0         0           0         0
Veth3   0        0         0        0         0         0         0           0         0
`, "GET /api/v1/vem/ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(h.requests())
			out, errOut, err := fvctl(t, nil, append(h.base, tc.args...)...)
			if err != nil {
				t.Fatalf("fvctl %q = %v (stderr %s)", tc.args, err, errOut)
			}
			if diff := cmp.Diff(tc.want, out); diff != "" {
				t.Errorf("fvctl %q output (-want +got):\n%s", tc.args, diff)
			}
			if got := h.requests()[n:]; len(got) != 1 || got[0] != tc.req {
				t.Errorf("fvctl %q requests = %q, want [%s]", tc.args, got, tc.req)
			}
		})
	}
}

// TestNetworkJSON: every list and show command has --json with the API's
// own types.
func TestNetworkJSON(t *testing.T) {
	h := newNetHost(t)
	for _, tc := range []struct {
		args []string
		into any
		want any
	}{
		{[]string{"network", "show", "--json"}, &api.SwitchView{}, &netView},
		{[]string{"network", "portgroup", "list", "--json"}, &[]api.PortGroup{}, &netPortGroups},
		{[]string{"network", "vmknic", "list", "--json"}, &[]api.VMKNICStatus{}, &netVMKNICs},
		{[]string{"vem", "show", "card", "--json"}, &api.VEMCard{}, &netCard},
		{[]string{"vem", "show", "ports", "--json"}, &[]api.PortStatus{}, &netPorts},
		{[]string{"vem", "show", "counters", "--json"}, &[]api.PortStatus{}, &netPorts},
		{[]string{"vem", "show", "mac", "--json"}, &[]api.MACEntry{}, &netMACs},
	} {
		out, errOut, err := fvctl(t, nil, append(h.base, tc.args...)...)
		if err != nil {
			t.Errorf("fvctl %q = %v (stderr %s)", tc.args, err, errOut)
			continue
		}
		if err := json.Unmarshal([]byte(out), tc.into); err != nil {
			t.Errorf("fvctl %q = %q: %v", tc.args, out, err)
			continue
		}
		if diff := cmp.Diff(tc.want, tc.into); diff != "" {
			t.Errorf("fvctl %q (-want +got):\n%s", tc.args, diff)
		}
	}
}

// TestUsageNamesEveryNetworkCommand keeps the usage text in step with the
// network and vem command switches.
func TestUsageNamesEveryNetworkCommand(t *testing.T) {
	for _, cmd := range []string{
		"network show", "network portgroup list", "network portgroup add", "network portgroup set", "network portgroup remove",
		"network uplink add|remove", "network portchannel add", "network portchannel remove",
		"network vmknic list", "network vmknic add", "network vmknic set", "network vmknic remove", "network confirm",
		"vem show card|ports|mac|counters",
	} {
		if !strings.Contains(usageText, "  "+cmd+" ") {
			t.Errorf("usage text lacks %q", cmd)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"100M", 100_000_000, false},
		{"1G", 1_000_000_000, false},
		{"500k", 500_000, false},
		{"500K", 500_000, false},
		{"1.5G", 1_500_000_000, false},
		{"1.5k", 1500, false},
		{"250000", 250_000, false},
		{"100Mbit/s", 100_000_000, false},
		{"100mbit", 100_000_000, false},
		{"10Gbps", 10_000_000_000, false},
		{"2T", 2_000_000_000_000, false},
		{" 8000 ", 8000, false},
		{"none", 0, false},
		{"off", 0, false},
		{"0", 0, false},
		{"0M", 0, true},
		{"0.5", 0, true},
		{"1.0005k", 0, true},
		{"", 0, true},
		{"M", 0, true},
		{".", 0, true},
		{".5M", 500_000, false},
		{"1..5M", 0, true},
		{"-1M", 0, true},
		{"+1M", 0, true},
		{"1e6", 0, true},
		{"100MB", 0, true},
		{"100 M", 0, true},
		{"inf", 0, true},
		{"18446744073709551615", 18446744073709551615, false},
		{"18446744073709551616", 0, true},
		{"99999999999T", 0, true},
	} {
		got, err := parseRate(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseRate(%q) = %d, %v, want %d (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestFormatRate(t *testing.T) {
	for in, want := range map[uint64]string{
		0: "none", 8000: "8k", 8001: "8001", 1_500_000: "1500k", 100_000_000: "100M", 1_000_000_000: "1G", 1_500_000_000: "1500M", 3_000_000_000_000: "3T",
	} {
		if got := formatRate(in); got != want {
			t.Errorf("formatRate(%d) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100M", "1.5G", "500kbit/s", "0", "none", "1e9", "18446744073709551615", "0.001k", "9.9999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseRate(s)
		if err != nil {
			if n != 0 {
				t.Errorf("parseRate(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n == 0 {
			return // none
		}
		// What fvctl prints, it reads back.
		if back, err := parseRate(formatRate(n)); err != nil || back != n {
			t.Errorf("parseRate(formatRate(%d) = %q) = %d, %v", n, formatRate(n), back, err)
		}
	})
}
