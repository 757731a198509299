package cli_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/cli/clitest"
)

func sampleInterfaces() []cli.Interface {
	return []cli.Interface{
		{Name: "Veth3", Module: 4, Profile: "WEB", Status: api.PortDown, Reason: "VM powered off", Mode: api.ModeAccess, VLAN: "100"},
		{Name: "Veth1", Module: 3, Profile: "WEB", Status: api.PortUp, Mode: api.ModeAccess, VLAN: "100",
			Owner: `VM "web01", adapter is nic0`, Description: "web01, nic0", MAC: "00:50:56:b3:25:2b",
			Counters: api.PortCounters{RxPackets: 10, RxBytes: 1000, TxPackets: 20, TxBytes: 2000, RxDropped: 1, BPDUDrops: 2}},
		{Name: "Eth3/2", Module: 3, Profile: "UPLINK", Status: api.PortUp, Mode: api.ModeTrunk, VLAN: "1,100", PortChannel: "Po1", Speed: 1000},
		{Name: "Po1", Module: 3, Profile: "UPLINK", Status: api.PortUp, Mode: api.ModeTrunk, VLAN: "1,100", Speed: 1000},
	}
}

func sampleMACs() []cli.MAC {
	return []cli.MAC{
		{VLAN: 100, MAC: "00:0c:29:09:a7:fc", Type: "dynamic", Age: 12, Port: "Eth3/2", Module: 3},
		{VLAN: 100, MAC: "00:50:56:b3:25:2b", Type: "static", Port: "Veth1", Module: 3},
		{VLAN: 100, MAC: "00:13:f5:01:00:21", Type: "dynamic", Age: 164, Port: "Eth4/2", Module: 4},
	}
}

func showFake(t *testing.T) (*cli.Session, *clitest.Fake) {
	t.Helper()
	s, f := newSession(t)
	f.ModuleList = append(f.ModuleList,
		api.VSMModule{Slot: 4, Ports: 248, Status: "ok", Version: "1.0", HostUUID: uuid2, Hostname: "esx-02", Address: "10.1.1.22"},
		api.VSMModule{Slot: 3, Ports: 248, Status: "ok", Version: "1.0", HostUUID: uuid1, Address: "10.1.1.21"})
	f.Ifaces = sampleInterfaces()
	f.MACTable = sampleMACs()
	f.Usage = map[string][]string{"WEB": {"Veth3", "Veth1"}, "UPLINK": {"Po1"}}
	run(t, s, "conf t", "vlan 100", "name WEB", "port-profile type ethernet UPLINK", "capability uplink", "sw mode trunk",
		"sw trunk allowed vlan 1,100", "state enabled", "port-profile WEB", "sw acc vlan 100", "state enabled", "end")
	return s, f
}

func TestShow(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"show module", `Mod  Ports  Module-Type                      Model              Status
---  -----  -------------------------------- ------------------ ------------
1    0      Virtual Supervisor Module        Flashvisor-VSM     active *
3    248    Virtual Ethernet Module          Flashvisor-VEM     ok
4    248    Virtual Ethernet Module          Flashvisor-VEM     ok

Mod  Sw                Hw
---  ----------------  ----------------------------------------------
1    1.0               0.0
3    1.0               Flashvisor KVM host
4    1.0               Flashvisor KVM host

Mod  MAC-Address(es)                         Serial-Num
---  --------------------------------------  ----------
1    02-00-0c-00-01-00 to 02-00-0c-00-01-80  NA
3    02-00-0c-00-03-00 to 02-00-0c-00-03-80  NA
4    02-00-0c-00-04-00 to 02-00-0c-00-04-80  NA

Mod  Server-IP        Server-UUID                           Server-Name
---  ---------------  ------------------------------------  --------------------
1    NA               NA                                    NA
3    10.1.1.21        80c34566-7e89-b601-b4f9-001a64dc9054  10.1.1.21
4    10.1.1.22        c0c2ea8e-7b89-b601-dcdb-001a64dc9024  esx-02

* this terminal session
`},
		{"show interface brief", `--------------------------------------------------------------------------------
Ethernet      VLAN    Type Mode   Status  Reason                   Speed     Port
Interface                                                                    Ch #
--------------------------------------------------------------------------------
Eth3/2        1       eth  trunk  up      none                         1000   1

--------------------------------------------------------------------------------
Port-channel VLAN    Type Mode   Status  Reason                    Speed   Protocol
Interface
--------------------------------------------------------------------------------
Po1          1       eth  trunk  up      none                        1000   none

--------------------------------------------------------------------------------
Vethernet     VLAN    Type Mode   Status  Reason                   Speed
--------------------------------------------------------------------------------
Veth1         100     virt access up      none                        auto
Veth3         100     virt access down    VM powered off              auto

`},
		{"sh int veth1", `Vethernet1 is up
  Port description is web01, nic0
  Hardware: Virtual, address: 0050.56b3.252b (bia 0050.56b3.252b)
  Owner is VM "web01", adapter is nic0
  Active on module 3
  Port-Profile is WEB
  Port mode is access
  Rx
    10 Input Packets
    1000 Bytes
  Tx
    20 Output Packets
    2000 Bytes
    1 Input Packet Drops 0 Output Packet Drops
    2 BPDU Drops 0 Port-Security Violations 0 Policed Drops

`},
		{"show mac address-table", `VLAN      MAC Address       Type    Age       Port                           Mod
---------+-----------------+-------+---------+------------------------------+---
100       000c.2909.a7fc    dynamic 12        Eth3/2                         3
100       0050.56b3.252b    static  0         Veth1                          3
100       0013.f501.0021    dynamic 164       Eth4/2                         4
Total MAC Addresses: 3
`},
		{"show mac address-table module 4", `VLAN      MAC Address       Type    Age       Port                           Mod
---------+-----------------+-------+---------+------------------------------+---
100       0013.f501.0021    dynamic 164       Eth4/2                         4
Total MAC Addresses: 1
`},
		{"show port-profile usage", "port-profile UPLINK\n port-channel1\n\nport-profile WEB\n Vethernet1\n Vethernet3\n\n"},
		{"show port-profile name UPLINK", `port-profile UPLINK
 type: Ethernet
 description: 
 status: enabled
 max-ports: -
 config attributes:
  capability uplink
  switchport mode trunk
  switchport trunk allowed vlan 1,100
  no shutdown
  state enabled
 evaluated config attributes:
  capability uplink
  switchport mode trunk
  switchport trunk allowed vlan 1,100
  no shutdown
  state enabled
 assigned interfaces:
  port-channel1
 port-group: UPLINK
 system vlans: none
 capability uplink: yes
 port-binding: static

`},
		{"show svs domain", `SVS domain config:
  Domain id:    NA
  Control vlan: NA
  Packet vlan:  NA
  L2/L3 Control mode: L3
  L3 control interface: mgmt0
  Status: Domain id not configured; no VEM is programmed.
`},
		{"show vlan brief", `VLAN Name                             Status    Ports
---- -------------------------------- --------- -------------------------------
1    default                          active    Eth3/2, Po1
100  WEB                              active    Eth3/2, Po1, Veth1, Veth3
`},
		{"show running-config port-profile WEB", `!Command: show running-config port-profile WEB
!Time: Wed Mar  4 05:06:07 2026

version 1.0(1)
port-profile type vethernet WEB
  switchport access vlan 100
  no shutdown
  state enabled
`},
		{"show run | include ^vlan|access", "vlan 1,100\nvlan 100\n  switchport access vlan 100\n"},
		{"show run | exclude ^[ ]", "!Command: show running-config\n!Time: Wed Mar  4 05:06:07 2026\n\nversion 1.0(1)\nhostname vsm\nsystem redundancy role standalone\n\nvlan 1,100\nvlan 100\n\nport-profile type ethernet UPLINK\n\nport-profile type vethernet WEB\n\nsvs-domain\n"},
		{"show port-profile usage | count", "7\n"},
		{"show module | last 1", "* this terminal session\n"},
		{"show version | begin Hardware", "Hardware\n  Flashvisor-VSM Chassis (\"Virtual Supervisor Module\")\n  Device name: vsm\n"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			s, _ := showFake(t)
			got := run(t, s, tc.line)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.line, diff)
			}
		})
	}
}

func TestShowRedundancy(t *testing.T) {
	s, f := showFake(t)
	run(t, s, "conf t", "system redundancy role primary", "end")
	f.Redund = api.VSMRedundancy{Role: "primary", State: "active", PeerState: "HA standby", Epoch: 7, SyncedGen: 12}
	want := `Redundancy role
---------------
      administrative:   primary
         operational:   primary

Redundancy mode
---------------
      administrative:   HA
         operational:   HA

This supervisor (sup-1)
-----------------------
    Redundancy state:   Active
    Supervisor state:   Active
      Internal state:   Active with HA standby
    Activation epoch:   7

Other supervisor (sup-2)
------------------------
    Redundancy state:   Standby
    Supervisor state:   HA standby
      Internal state:   HA standby
   Synced generation:   12
`
	if diff := cmp.Diff(want, run(t, s, "show system redundancy status")); diff != "" {
		t.Errorf("show system redundancy status (-want +got):\n%s", diff)
	}
	f.Redund = api.VSMRedundancy{Role: "secondary", State: "standby", PeerState: "Active"}
	out := run(t, s, "show system redundancy status")
	for _, want := range []string{"This supervisor (sup-2)", "Redundancy state:   Standby", "Other supervisor (sup-1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("standby redundancy output lacks %q:\n%s", want, out)
		}
	}
}

func TestShowInterfaceForms(t *testing.T) {
	s, _ := showFake(t)
	for _, line := range []string{"show interface Eth3/2", "show int e3/2", "show interface ethernet 3/2", "sh int ethernet3/2"} {
		if out := run(t, s, line); !strings.HasPrefix(out, "Ethernet3/2 is up\n") || !strings.Contains(out, "Belongs to Po1") {
			t.Errorf("%s =\n%s", line, out)
		}
	}
	for _, line := range []string{"show interface port-channel 1", "show int po1"} {
		if out := run(t, s, line); !strings.Contains(out, "Members in this channel: Eth3/2") {
			t.Errorf("%s =\n%s", line, out)
		}
	}
	if out := run(t, s, "show interface vethernet 3"); !strings.HasPrefix(out, "Vethernet3 is down (VM powered off)\n") {
		t.Errorf("show interface vethernet 3 =\n%s", out)
	}
	out := run(t, s, "show interface | include ^[A-Za-z].* is ")
	if want := "Ethernet3/2 is up\nport-channel1 is up\nVethernet1 is up\nVethernet3 is down (VM powered off)\n"; out != want {
		t.Errorf("show interface lists:\n%s\nwant:\n%s", out, want)
	}
}

func TestShowRunningConfigHeader(t *testing.T) {
	s, f := showFake(t)
	c := f.Config()
	want := "!Command: show running-config\n!Time: Wed Mar  4 05:06:07 2026\n\n" + c.Render()
	if got := run(t, s, "sh run"); got != want {
		t.Errorf("sh run = %q, want %q", got, want)
	}
	// show works in every configuration mode without "do".
	run(t, s, "conf t", "port-profile WEB")
	if got := run(t, s, "show running-config"); got != want {
		t.Errorf("show in a sub-mode differs")
	}
	if got := run(t, s, "do show running-config"); got != want {
		t.Errorf("do show in a sub-mode differs")
	}
}
