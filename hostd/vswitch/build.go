package vswitch

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// vlanOf maps a port group's VLAN to the switch's: "no VLAN" is VLAN 1,
// which the uplinks carry untagged (their native VLAN), as a standard
// switch sends a VLAN-0 port group's frames untagged.
func vlanOf(v int) int {
	if v == 0 {
		return 1
	}
	return v
}

// Build turns the standalone configuration into the VEM's programming
// (pure). Each port group becomes a vethernet profile; every uplink and
// port-channel shares one ethernet trunk profile carrying every VLAN the
// port groups use, VLAN 1 untagged; each vEth assignment becomes a VethN
// port with the vNIC's MAC as its static entry, and each vmknic's vEth is
// the switch end of its veth pair, with the vmknic's MAC.
func Build(c Config) api.SwitchConfig {
	sc := api.SwitchConfig{Module: Module}
	var uplinkVLANs []string
	var systemVLANs []string
	for _, pg := range c.PortGroups {
		p := api.PortProfile{
			Name: ProfileName(pg.Name), Type: api.ProfileVethernet, Enabled: true,
			Shutdown: pg.Shutdown, Ingress: pg.Ingress, Egress: pg.Egress,
			Description: "port group " + pg.Name,
		}
		if pg.Trunk {
			p.Mode, p.AllowedVLANs, p.NativeVLAN = api.ModeTrunk, cmpOr(pg.AllowedVLANs, "all"), pg.NativeVLAN
			uplinkVLANs = append(uplinkVLANs, p.AllowedVLANs)
		} else {
			p.Mode, p.AccessVLAN = api.ModeAccess, vlanOf(pg.VLAN)
			uplinkVLANs = append(uplinkVLANs, strconv.Itoa(p.AccessVLAN))
			if pg.System {
				p.SystemVLANs = strconv.Itoa(p.AccessVLAN)
				systemVLANs = append(systemVLANs, p.SystemVLANs)
			}
		}
		if pg.MaxMACs > 0 {
			p.PortSecurity = &api.PortSecurity{MaxMACs: pg.MaxMACs, Violation: cmpOr(pg.Violation, api.ViolationShutdown)}
		}
		sc.Profiles = append(sc.Profiles, p)
	}
	if len(c.Uplinks) > 0 {
		allowed := "1"
		if len(uplinkVLANs) > 0 {
			allowed = "1," + strings.Join(uplinkVLANs, ",")
		}
		if strings.Contains(allowed, "all") {
			allowed = "all"
		}
		sc.Profiles = append(sc.Profiles, api.PortProfile{
			Name: uplinkProfile, Type: api.ProfileEthernet, Mode: api.ModeTrunk, Enabled: true,
			AllowedVLANs: allowed, NativeVLAN: 1, CapabilityUplink: true,
			SystemVLANs: strings.Join(systemVLANs, ","),
			Description: "standalone switch uplinks",
		})
	}
	for _, u := range c.Uplinks {
		p := api.Port{Name: u.Port, Kind: api.PortEth, Interface: u.NIC, Owner: u.NIC}
		if u.PortChannel == "" {
			p.Profile = uplinkProfile
		}
		sc.Ports = append(sc.Ports, p)
	}
	for _, pc := range c.PortChannels {
		p := api.Port{Name: pc.Name, Kind: api.PortPortChannel, Profile: uplinkProfile, ChannelMode: cmpOr(pc.Mode, api.ChannelActiveBackup)}
		for _, m := range pc.Members {
			p.Members = append(p.Members, c.uplink(m).Port)
		}
		sc.Ports = append(sc.Ports, p)
	}
	for _, v := range c.Veths {
		p := api.Port{
			Name: v.Port, Kind: api.PortVeth, Profile: ProfileName(v.PortGroup),
			MACs: []string{v.MAC}, Owner: fmt.Sprintf("%s nic %d", v.VM, v.NIC),
		}
		if v.VMKNIC != "" {
			p.Interface, p.Owner = vmknic.SwitchportName(v.VMKNIC), v.VMKNIC
		}
		sc.Ports = append(sc.Ports, p)
	}
	return sc
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
