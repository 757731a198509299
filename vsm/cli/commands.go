package cli

import (
	"cmp"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// Argument kinds.
var (
	vlanArg     = numArg(1, config.MaxVLAN)
	vlanListArg = &argKind{name: "<1-4094>", check: func(s string) (string, error) {
		if s == "" || strings.Trim(s, "0123456789,-") != "" {
			return "", errNoMatch
		}
		set, err := config.ParseVLANs(s)
		if err != nil {
			return "", ErrRange
		}
		return set.String(), nil
	}}
	profileNameArg = &argKind{name: "WORD", check: func(s string) (string, error) {
		if !config.ValidProfileName(s) {
			return "", errNoMatch
		}
		return s, nil
	}}
	vlanNameArg = &argKind{name: "WORD", check: func(s string) (string, error) {
		if !config.ValidVLANName(s) {
			return "", errNoMatch
		}
		return s, nil
	}}
	hostnameArg = &argKind{name: "WORD", check: func(s string) (string, error) {
		if !config.ValidHostname(s) {
			return "", errNoMatch
		}
		return s, nil
	}}
	uuidArg = &argKind{name: "UUID", check: func(s string) (string, error) {
		if !api.ValidHostUUID(s) {
			return "", errNoMatch
		}
		return strings.ToLower(s), nil
	}}
	slotArg = numArg(api.VSMFirstVEMSlot, api.VSMSlots)
	rateArg = &argKind{name: "<1-34359738360>", check: func(s string) (string, error) {
		if s == "" || len(s) > 12 || strings.TrimLeft(s, "0123456789") != "" {
			return "", errNoMatch
		}
		n, _ := strconv.ParseUint(s, 10, 64)
		if n < 1 || n > config.MaxRate {
			return "", ErrRange
		}
		return strconv.FormatUint(n, 10), nil
	}}
	burstArg = numArg(1, 1<<32-1)
	// ifArg is an interface name as NX-OS takes it, number attached:
	// Veth2, veth2, vethernet2, e3/2, Eth3/2, po1, port-channel1.
	ifArg = &argKind{name: "IFNAME", check: func(s string) (string, error) {
		if n, ok := shortIfName(s); ok {
			return n, nil
		}
		return "", errNoMatch
	}}
	ethNumArg = &argKind{name: "<3-66>/<1-32>", check: func(s string) (string, error) {
		if n, ok := shortIfName("Eth" + s); ok {
			return n, nil
		}
		return "", errNoMatch
	}}
)

var ifNameRE = regexp.MustCompile(`^([A-Za-z-]+)([1-9][0-9]{0,8})(?:/([1-9][0-9]{0,3}))?$`)

// shortIfName turns any accepted spelling of an interface name into its
// short form (Veth2, Eth3/2, Po1).
func shortIfName(s string) (string, bool) {
	m := ifNameRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	kind, slash := strings.ToLower(m[1]), m[3] != ""
	switch {
	case strings.HasPrefix("vethernet", kind) && !slash:
		return "Veth" + m[2], true
	case strings.HasPrefix("ethernet", kind) && slash:
		return "Eth" + m[2] + "/" + m[3], true
	case len(kind) >= 2 && strings.HasPrefix("port-channel", kind) && !slash:
		return "Po" + m[2], true
	}
	return "", false
}

// longIfName is the name NX-OS prints in full: Vethernet2, Ethernet3/2,
// port-channel1.
func longIfName(short string) string {
	switch {
	case strings.HasPrefix(short, "Veth"):
		return "Vethernet" + short[4:]
	case strings.HasPrefix(short, "Eth"):
		return "Ethernet" + short[3:]
	case strings.HasPrefix(short, "Po"):
		return "port-channel" + short[2:]
	}
	return short
}

// grammar builds the command trees of every mode.
func grammar() map[mode][]*node {
	show := showTree()
	exitNode := kw("exit", "Exit from command interpreter").do(cmdExit)
	endNode := kw("end", "Go to exec mode").do(cmdEnd)
	copyNode := kw("copy", "Copy from one file to another",
		kw("running-config", "Copy running configuration to destination",
			kw("startup-config", "Copy to startup configuration").do(cmdCopyRunStart)))
	roleNode := func() *node {
		return kw("redundancy", "Redundancy configuration",
			kw("role", "Set the redundancy role (slot 1: standalone or primary; slot 2: secondary)",
				kw(config.RoleStandalone, "Standalone VSM, no peer").do(cmdRole),
				kw(config.RolePrimary, "Primary VSM of an HA pair").do(cmdRole),
				kw(config.RoleSecondary, "Secondary VSM of an HA pair").do(cmdRole)))
	}
	redundancy := kw("system", "System management commands", roleNode())

	exec := []*node{
		kw("configure", "Enter configuration mode",
			kw("terminal", "Configure from the terminal").do(cmdConfigure)).do(cmdConfigure),
		show, copyNode,
		kw("system", "System management commands", roleNode(),
			kw("switchover", "Hand the active role to the HA standby").do(cmdSwitchover)),
		kw("terminal", "Set terminal line parameters",
			kw("length", "Set number of lines on a screen", arg("n", numArg(0, 511), "Number of lines (0: no pausing)").do(cmdNothing)),
			kw("width", "Set width of the display terminal", arg("n", numArg(24, 511), "Number of columns").do(cmdNothing))),
		exitNode, endNode,
	}
	doNode := kw("do", "Run an exec-mode command", exec...)

	common := []*node{show, copyNode, exitNode, endNode, doNode}

	cfg := append([]*node{
		kw("hostname", "Configure the switch name", arg("name", hostnameArg, "Switch name (max 63)").do(cmdHostname)),
		kw("version", "Configuration syntax version (ignored)", arg("v", lineArg, "Version").do(cmdNothing)),
		kw("vlan", "Vlan commands", arg("vlans", vlanListArg, "VLAN ID(s), e.g. 100-102,200",
			kw("name", "Name the VLAN (one VLAN)", arg("name", vlanNameArg, "VLAN name (max 32)").do(cmdVLAN))).do(cmdVLAN)),
		portProfileTree(),
		kw("svs-domain", "Configure the switch domain").do(cmdSVSDomain),
		kw("vem", "Configure a VEM slot", arg("slot", slotArg, "Module number").do(cmdVEM)),
		kw("host", "Pin a host to a module", arg("uuid", uuidArg, "Host UUID",
			kw("module", "Module number", arg("slot", slotArg, "Module number").do(cmdHostModule)))),
		redundancy,
		kw("interface", "Configure a vEth interface (its own settings over its profile's)",
			arg("if", ifArg, "Interface name: VethN").do(cmdInterface),
			kw("vethernet", "Vethernet interface", arg("veth", numArg(1, config.MaxVethNumber), "Vethernet number").do(cmdInterface))),
		kw("no", "Negate a command or set its defaults",
			kw("hostname", "Reset the switch name").do(cmdNoHostname),
			kw("interface", "Remove a vEth interface's own settings",
				arg("if", ifArg, "Interface name: VethN").do(cmdNoInterface),
				kw("vethernet", "Vethernet interface", arg("veth", numArg(1, config.MaxVethNumber), "Vethernet number").do(cmdNoInterface))),
			kw("vlan", "Delete VLANs", arg("vlans", vlanListArg, "VLAN ID(s)").do(cmdNoVLAN)),
			kw("port-profile", "Delete a port profile",
				kw("type", "Port profile type",
					kw(api.ProfileVethernet, "Vethernet type", arg("name", profileNameArg, "Port profile name").do(cmdNoPortProfile)),
					kw(api.ProfileEthernet, "Ethernet type", arg("name", profileNameArg, "Port profile name").do(cmdNoPortProfile))),
				arg("name", profileNameArg, "Port profile name").do(cmdNoPortProfile)),
			kw("vem", "Unpin a VEM slot", arg("slot", slotArg, "Module number").do(cmdNoVEM)),
			kw("host", "Unpin a host", arg("uuid", uuidArg, "Host UUID",
				kw("module", "Module number", arg("slot", slotArg, "Module number").do(cmdNoHost))).do(cmdNoHost))),
	}, common...)

	return map[mode][]*node{
		modeExec:        exec,
		modeConfig:      cfg,
		modePortProfile: append(profileCommands(), common...),
		modeVLAN: append([]*node{
			kw("name", "Name the VLAN", arg("name", vlanNameArg, "VLAN name (max 32)").do(cmdVLANName)),
			kw("no", "Negate a command or set its defaults", kw("name", "Reset the VLAN name").do(cmdVLANName)),
		}, common...),
		modeSVSDomain: append(svsDomainCommands(), common...),
		modeVethIf: append([]*node{
			kw("description", "Describe the interface (replaces the host's)", arg("text", lineArg, "Description").do(cmdVethDescription)),
			kw("shutdown", "Shut the interface down").do(cmdVethShutdown),
			kw("no", "Negate a command or set its defaults",
				kw("description", "Back to the host's description").do(cmdVethDescription),
				kw("shutdown", "Bring the interface up").do(cmdVethShutdown)),
		}, common...),
		modeVEM: append([]*node{
			kw("host", "Host on this module", kw("id", "Host UUID", arg("uuid", uuidArg, "Host UUID").do(cmdHostID))),
			kw("no", "Negate a command or set its defaults",
				kw("host", "Host on this module", kw("id", "Host UUID",
					arg("uuid", uuidArg, "Host UUID").do(cmdNoHostID)).do(cmdNoHostID))),
		}, common...),
	}
}

func portProfileTree() *node {
	types := func() []*node {
		return []*node{
			kw(api.ProfileVethernet, "Virtual ports (VM vNICs, vmknics)", arg("name", profileNameArg, "Port profile name (max 80)").do(cmdPortProfile)),
			kw(api.ProfileEthernet, "Physical ports (uplinks)", arg("name", profileNameArg, "Port profile name (max 80)").do(cmdPortProfile)),
		}
	}
	return kw("port-profile", "Configure a port profile",
		kw("type", "Port profile type", types()...),
		arg("name", profileNameArg, "Port profile name (vethernet when new)").do(cmdPortProfile))
}

func profileCommands() []*node {
	rate := func(dir string) *node {
		burst := func() *node {
			return kw("burst", "Bucket size", arg("burst", burstArg, "Bytes").do(cmdRateLimit))
		}
		units := []*node{burst()}
		for _, u := range []string{"bps", "kbps", "mbps", "gbps"} {
			units = append(units, kw(u, "Rate unit", burst()).do(cmdRateLimit))
		}
		return kw(dir, "Rate limit "+map[string]string{"input": "traffic from the port", "output": "traffic to the port"}[dir],
			arg("rate", rateArg, "Rate (bit/s unless a unit follows)", units...).do(cmdRateLimit))
	}
	vlanList := func(h handler) *node { return arg("vlans", vlanListArg, "VLAN ID(s), e.g. 100-102,200").do(h) }
	return []*node{
		kw("port-group", "Publish the profile to hosts under a name", arg("name", profileNameArg, "Port group name").do(cmdPortGroup)).do(cmdPortGroup),
		kw("switchport", "Configure switchport parameters",
			kw("mode", "Switchport mode",
				kw(api.ModeAccess, "Access mode: one untagged VLAN").do(cmdSwitchportMode),
				kw(api.ModeTrunk, "Trunk mode: tagged VLANs").do(cmdSwitchportMode)),
			kw("access", "Access mode settings", kw("vlan", "Access VLAN", arg("vlan", vlanArg, "VLAN ID").do(cmdAccessVLAN))),
			kw("trunk", "Trunk mode settings",
				kw("allowed", "Allowed VLANs", kw("vlan", "Allowed VLANs",
					vlanList(cmdAllowed),
					kw("add", "Add VLANs to the current list", vlanList(cmdAllowed)),
					kw("remove", "Remove VLANs from the current list", vlanList(cmdAllowed)),
					kw("except", "All VLANs except these", vlanList(cmdAllowed)),
					kw("all", "All VLANs").do(cmdAllowed),
					kw("none", "No VLANs").do(cmdAllowed))),
				kw("native", "Native VLAN", kw("vlan", "Native VLAN", arg("vlan", vlanArg, "VLAN ID").do(cmdNativeVLAN)))),
			kw("port-security", "Enable port security",
				kw("maximum", "Maximum secure MAC addresses", arg("n", numArg(1, config.MaxSecureMACs), "Maximum").do(cmdPortSecurity)),
				kw("violation", "Action on a violation",
					kw(api.ViolationShutdown, "Error-disable the port").do(cmdPortSecurity),
					kw(api.ViolationProtect, "Drop the offending frames").do(cmdPortSecurity))).do(cmdPortSecurity)),
		kw("system", "System profile settings", kw("vlan", "VLANs that forward without the VSM", vlanList(cmdSystemVLAN))),
		kw("capability", "Port profile capability", kw("uplink", "Uplink (ethernet) profile").do(cmdCapability)),
		kw("state", "Port profile state", kw("enabled", "Enable the profile (publish it)").do(cmdState)),
		kw("shutdown", "Administratively shut the ports down").do(cmdShutdown),
		kw("max-ports", "Maximum ports using the profile", arg("n", numArg(1, config.MaxMaxPorts), "Maximum ports").do(cmdMaxPorts)),
		kw("description", "Describe the profile", arg("text", lineArg, "Description (max 80)").do(cmdDescription)),
		kw("rate-limit", "Rate limit the ports", rate("input"), rate("output")),
		kw("channel-group", "Port channel for uplinks", kw("auto", "Bundle the uplinks of a host automatically",
			kw("mode", "Channel mode",
				kw("on", "Static channel", kw("mac-pinning", "Pin each MAC to one uplink").do(cmdChannelGroup)).do(cmdChannelGroup),
				kw("active", "LACP").do(cmdChannelGroup)))),
		kw("no", "Negate a command or set its defaults",
			kw("port-group", "Publish under the profile name").do(cmdNoPortGroup),
			kw("switchport", "Reset switchport parameters",
				kw("mode", "Reset the mode (access)").do(cmdNoSwitchport),
				kw("access", "Access mode settings", kw("vlan", "Reset the access VLAN (1)",
					arg("vlan", vlanArg, "VLAN ID").do(cmdNoSwitchport)).do(cmdNoSwitchport)),
				kw("trunk", "Trunk mode settings",
					kw("allowed", "Allowed VLANs", kw("vlan", "Reset the allowed VLANs (all)").do(cmdNoSwitchport)),
					kw("native", "Native VLAN", kw("vlan", "Reset the native VLAN (1)",
						arg("vlan", vlanArg, "VLAN ID").do(cmdNoSwitchport)).do(cmdNoSwitchport))),
				kw("port-security", "Disable port security",
					kw("maximum", "Reset the maximum (1)").do(cmdNoSwitchport),
					kw("violation", "Reset the action (shutdown)").do(cmdNoSwitchport)).do(cmdNoSwitchport)),
			kw("system", "System profile settings", kw("vlan", "Remove the system VLANs").do(cmdSystemVLAN)),
			kw("capability", "Port profile capability", kw("uplink", "Not an uplink profile").do(cmdCapability)),
			kw("state", "Port profile state", kw("enabled", "Disable the profile").do(cmdState)),
			kw("shutdown", "Bring the ports up").do(cmdShutdown),
			kw("max-ports", "Reset max-ports (32)").do(cmdMaxPorts),
			kw("description", "Remove the description").do(cmdDescription),
			kw("rate-limit", "Remove a rate limit",
				kw("input", "Traffic from the port").do(cmdNoRateLimit),
				kw("output", "Traffic to the port").do(cmdNoRateLimit)),
			kw("channel-group", "No automatic port channel").do(cmdChannelGroup)),
	}
}

func svsDomainCommands() []*node {
	l3 := kw("L3", "Layer 3 control (TLS over IP)",
		kw("interface", "VSM interface for control",
			kw(config.L3Mgmt0, "Management interface").do(cmdSVSMode),
			kw(config.L3Control0, "Control interface").do(cmdSVSMode))).do(cmdSVSMode)
	return []*node{
		kw("domain", "Domain", kw("id", "Domain ID", arg("id", numArg(1, api.VSMDomainIDMax), "Domain ID").do(cmdDomain))),
		kw("control", "Control VLAN", kw("vlan", "Control VLAN", arg("vlan", vlanArg, "VLAN ID").do(cmdDomain))),
		kw("packet", "Packet VLAN", kw("vlan", "Packet VLAN", arg("vlan", vlanArg, "VLAN ID").do(cmdDomain))),
		kw("svs", "SVS settings", kw("mode", "Control mode",
			kw("L2", "Layer 2 control (control and packet VLANs)").do(cmdSVSMode), l3)),
		kw("no", "Negate a command or set its defaults",
			kw("domain", "Domain", kw("id", "Unset the domain ID").do(cmdDomain)),
			kw("control", "Control VLAN", kw("vlan", "Unset the control VLAN").do(cmdDomain)),
			kw("packet", "Packet VLAN", kw("vlan", "Unset the packet VLAN").do(cmdDomain))),
	}
}

// Mode changes.

func cmdNothing(*Session, *args) (string, error) { return "", nil }

func cmdConfigure(s *Session, _ *args) (string, error) {
	s.mode = modeConfig
	return "Enter configuration commands, one per line. End with CNTL/Z.\n", nil
}

func cmdExit(s *Session, _ *args) (string, error) {
	switch s.mode {
	case modeExec:
		s.done = true
	case modeConfig:
		s.mode = modeExec
	default:
		s.mode = modeConfig
	}
	return "", nil
}

func cmdEnd(s *Session, _ *args) (string, error) {
	s.mode = modeExec
	return "", nil
}

func cmdCopyRunStart(s *Session, _ *args) (string, error) {
	if err := s.sw.SaveStartup(); err != nil {
		return "", &cmdError{err}
	}
	return "[########################################] 100%\nCopy complete.\n", nil
}

func cmdSwitchover(s *Session, _ *args) (string, error) {
	if err := s.sw.Switchover(); err != nil {
		return "", &cmdError{err}
	}
	return "Switchover started: the standby supervisor becomes active, this one the standby.\n" +
		"The hosts reconnect to the new active; their traffic is not interrupted.\n", nil
}

// Global configuration.

func cmdHostname(s *Session, a *args) (string, error) {
	name := a.str("name")
	return s.update(func(c *config.Config) error { c.SwitchName = name; return nil })
}

func cmdNoHostname(s *Session, _ *args) (string, error) {
	return s.update(func(c *config.Config) error { c.SwitchName = config.DefaultSwitchName; return nil })
}

func cmdRole(s *Session, a *args) (string, error) {
	role := config.RoleStandalone
	for _, r := range []string{config.RolePrimary, config.RoleSecondary} {
		if a.has(r) {
			role = r
		}
	}
	return s.update(func(c *config.Config) error { c.Redundancy = role; return nil })
}

func cmdVLAN(s *Session, a *args) (string, error) {
	set, _ := config.ParseVLANs(a.str("vlans"))
	vlans := set.List()
	name := a.str("name")
	if a.has("name") && len(vlans) != 1 {
		return "", failf("a name applies to one VLAN")
	}
	if _, err := s.update(func(c *config.Config) error {
		if c.VLANs == nil {
			c.VLANs = map[int]string{1: ""}
		}
		for _, v := range vlans {
			if _, ok := c.VLANs[v]; !ok {
				c.VLANs[v] = ""
			}
		}
		if a.has("name") {
			if vlans[0] == 1 {
				return fmt.Errorf("the default VLAN 1 cannot be renamed")
			}
			c.VLANs[vlans[0]] = name
		}
		return nil
	}); err != nil {
		return "", err
	}
	if !a.has("name") {
		s.mode, s.vlans = modeVLAN, vlans
	}
	return "", nil
}

func cmdVLANName(s *Session, a *args) (string, error) {
	if len(s.vlans) != 1 {
		return "", failf("a name applies to one VLAN (editing %d)", len(s.vlans))
	}
	v, name := s.vlans[0], a.str("name")
	return s.update(func(c *config.Config) error {
		if v == 1 && name != "" {
			return fmt.Errorf("the default VLAN 1 cannot be renamed")
		}
		if !c.HasVLAN(v) {
			return fmt.Errorf("vlan %d does not exist", v)
		}
		c.VLANs[v] = name
		return nil
	})
}

func cmdNoVLAN(s *Session, a *args) (string, error) {
	set, _ := config.ParseVLANs(a.str("vlans"))
	if set.Has(1) {
		return "", failf("the default VLAN 1 cannot be deleted")
	}
	return s.update(func(c *config.Config) error {
		for _, v := range set.List() {
			delete(c.VLANs, v)
		}
		return nil
	})
}

func cmdPortProfile(s *Session, a *args) (string, error) {
	name := a.str("name")
	typ := ""
	for _, t := range []string{api.ProfileVethernet, api.ProfileEthernet} {
		if a.has(t) {
			typ = t
		}
	}
	if _, err := s.update(func(c *config.Config) error {
		if p := c.Profile(name); p != nil {
			if typ != "" && p.Type != typ {
				return fmt.Errorf("port-profile %s exists with type %s", name, p.Type)
			}
			return nil
		}
		c.PutProfile(config.Profile{Name: name, Type: cmp.Or(typ, api.ProfileVethernet)})
		return nil
	}); err != nil {
		return "", err
	}
	s.mode, s.profile = modePortProfile, name
	return "", nil
}

func cmdNoPortProfile(s *Session, a *args) (string, error) {
	name := a.str("name")
	if used := s.sw.ProfileUsage()[name]; len(used) > 0 {
		return "", failf("port-profile %s is in use by %s", name, strings.Join(used, ", "))
	}
	return s.update(func(c *config.Config) error {
		p := c.Profile(name)
		if p == nil {
			return fmt.Errorf("port-profile %s does not exist", name)
		}
		for _, t := range []string{api.ProfileVethernet, api.ProfileEthernet} {
			if a.has(t) && p.Type != t {
				return fmt.Errorf("port-profile %s is of type %s", name, p.Type)
			}
		}
		c.DeleteProfile(name)
		return nil
	})
}

func cmdSVSDomain(s *Session, _ *args) (string, error) {
	s.mode = modeSVSDomain
	return "", nil
}

func cmdDomain(s *Session, a *args) (string, error) {
	no := a.has("no")
	return s.update(func(c *config.Config) error {
		d := &c.SVSDomain
		switch {
		case a.has("domain") && no:
			d.ID = 0
		case a.has("domain"):
			d.ID = a.int("id")
		case a.has("control"):
			d.ControlVLAN = a.int("vlan")
		case a.has("packet"):
			d.PacketVLAN = a.int("vlan")
		}
		return nil
	})
}

func cmdSVSMode(s *Session, a *args) (string, error) {
	return s.update(func(c *config.Config) error {
		d := &c.SVSDomain
		if a.has("L2") {
			d.Mode, d.L3Interface = api.SVSModeL2, ""
			return nil
		}
		d.Mode, d.L3Interface = api.SVSModeL3, config.L3Mgmt0
		if a.has(config.L3Control0) {
			d.L3Interface = config.L3Control0
		}
		return nil
	})
}

// vethOf is the vEth number an interface command names.
func vethOf(a *args) (int, error) {
	if a.has("vethernet") {
		return a.int("veth"), nil
	}
	name := a.str("if")
	n, err := strconv.Atoi(strings.TrimPrefix(name, "Veth"))
	if !strings.HasPrefix(name, "Veth") || err != nil || n < 1 || n > config.MaxVethNumber {
		return 0, failf("interface %s: only vethernet interfaces are configured here (Ethernet and port-channel ports take their settings from their port profile)", longIfName(name))
	}
	return n, nil
}

func cmdInterface(s *Session, a *args) (string, error) {
	n, err := vethOf(a)
	if err != nil {
		return "", err
	}
	s.mode, s.veth = modeVethIf, n
	return "", nil
}

func cmdNoInterface(s *Session, a *args) (string, error) {
	n, err := vethOf(a)
	if err != nil {
		return "", err
	}
	return s.update(func(c *config.Config) error {
		delete(c.Veths, n)
		return nil
	})
}

func cmdVethDescription(s *Session, a *args) (string, error) {
	text := a.str("text")
	if text != "" && !config.ValidDescription(text) {
		return "", failf("description: want 1-%d printable characters", config.MaxDescription)
	}
	return s.updateVeth(func(v *config.Veth) { v.Description = text })
}

func cmdVethShutdown(s *Session, a *args) (string, error) {
	shut := !a.has("no")
	return s.updateVeth(func(v *config.Veth) { v.Shutdown = shut })
}

func cmdVEM(s *Session, a *args) (string, error) {
	s.mode, s.slot = modeVEM, a.int("slot")
	return "", nil
}

// pin binds a host to a slot, refusing to take the slot from another host.
func pin(c *config.Config, uuid string, slot int) error {
	for u, m := range c.HostModules {
		if m == slot && u != uuid {
			return fmt.Errorf("module %d is pinned to host %s (no host id %s first)", slot, u, u)
		}
	}
	if c.HostModules == nil {
		c.HostModules = map[string]int{}
	}
	c.HostModules[uuid] = slot
	return nil
}

func cmdHostID(s *Session, a *args) (string, error) {
	slot, uuid := s.slot, a.str("uuid")
	return s.update(func(c *config.Config) error { return pin(c, uuid, slot) })
}

func cmdHostModule(s *Session, a *args) (string, error) {
	slot, uuid := a.int("slot"), a.str("uuid")
	return s.update(func(c *config.Config) error { return pin(c, uuid, slot) })
}

func cmdNoHostID(s *Session, a *args) (string, error) {
	slot, uuid := s.slot, a.str("uuid")
	return s.update(func(c *config.Config) error {
		for u, m := range c.HostModules {
			if m == slot && (uuid == "" || u == uuid) {
				delete(c.HostModules, u)
				return nil
			}
		}
		return fmt.Errorf("no host is pinned to module %d", slot)
	})
}

func cmdNoVEM(s *Session, a *args) (string, error) {
	slot := a.int("slot")
	return s.update(func(c *config.Config) error {
		for u, m := range c.HostModules {
			if m == slot {
				delete(c.HostModules, u)
			}
		}
		return nil
	})
}

func cmdNoHost(s *Session, a *args) (string, error) {
	uuid, slot := a.str("uuid"), a.int("slot")
	return s.update(func(c *config.Config) error {
		m, ok := c.HostModules[uuid]
		if !ok || (slot != 0 && m != slot) {
			return fmt.Errorf("host %s is not pinned%s", uuid, map[bool]string{true: fmt.Sprintf(" to module %d", slot)}[slot != 0])
		}
		delete(c.HostModules, uuid)
		return nil
	})
}

// Port-profile sub-mode.

func cmdPortGroup(s *Session, a *args) (string, error) {
	name := a.str("name")
	return s.updateProfile(func(p *config.Profile) error {
		p.PortGroup = cmp.Or(name, p.Name)
		return nil
	})
}

func cmdNoPortGroup(s *Session, _ *args) (string, error) {
	return s.updateProfile(func(p *config.Profile) error { p.PortGroup = ""; return nil })
}

func cmdSwitchportMode(s *Session, a *args) (string, error) {
	m := api.ModeAccess
	if a.has(api.ModeTrunk) {
		m = api.ModeTrunk
	}
	return s.updateProfile(func(p *config.Profile) error { p.Mode = m; return nil })
}

func cmdAccessVLAN(s *Session, a *args) (string, error) {
	v := a.int("vlan")
	return s.updateProfile(func(p *config.Profile) error { p.AccessVLAN = v; return nil })
}

func cmdNativeVLAN(s *Session, a *args) (string, error) {
	v := a.int("vlan")
	return s.updateProfile(func(p *config.Profile) error { p.NativeVLAN = v; return nil })
}

func cmdAllowed(s *Session, a *args) (string, error) {
	list, _ := config.ParseVLANs(cmp.Or(a.str("vlans"), "none"))
	return s.updateProfile(func(p *config.Profile) error {
		cur := config.AllVLANs()
		if p.AllowedVLANs != "" {
			cur, _ = config.ParseVLANs(p.AllowedVLANs)
		}
		switch {
		case a.has("add"):
			cur = cur.Or(list)
		case a.has("remove"):
			cur = cur.Minus(list)
		case a.has("except"):
			cur = config.AllVLANs().Minus(list)
		case a.has("all"):
			cur = config.AllVLANs()
		case a.has("none"):
			cur = config.VLANSet{}
		default:
			cur = list
		}
		p.AllowedVLANs = ""
		if !cur.IsAll() {
			p.AllowedVLANs = cur.String()
		}
		return nil
	})
}

func cmdNoSwitchport(s *Session, a *args) (string, error) {
	v := a.int("vlan")
	return s.updateProfile(func(p *config.Profile) error {
		switch {
		case a.has("mode"):
			p.Mode = ""
		case a.has("access"):
			if v != 0 && v != p.AccessVLAN {
				return fmt.Errorf("the access vlan is %d, not %d", max(p.AccessVLAN, 1), v)
			}
			p.AccessVLAN = 0
		case a.has("allowed"):
			p.AllowedVLANs = ""
		case a.has("native"):
			if v != 0 && v != p.NativeVLAN {
				return fmt.Errorf("the native vlan is %d, not %d", max(p.NativeVLAN, 1), v)
			}
			p.NativeVLAN = 0
		case a.has("maximum"):
			p.PortSecurity.Maximum = 0
		case a.has("violation"):
			p.PortSecurity.Violation = ""
		case a.has("port-security"):
			p.PortSecurity.Enabled = false
		}
		return nil
	})
}

func cmdPortSecurity(s *Session, a *args) (string, error) {
	return s.updateProfile(func(p *config.Profile) error {
		switch {
		case a.has("maximum"):
			p.PortSecurity.Maximum = a.int("n")
		case a.has(api.ViolationShutdown):
			p.PortSecurity.Violation = api.ViolationShutdown
		case a.has(api.ViolationProtect):
			p.PortSecurity.Violation = api.ViolationProtect
		default:
			p.PortSecurity.Enabled = true
		}
		return nil
	})
}

func cmdSystemVLAN(s *Session, a *args) (string, error) {
	list := a.str("vlans")
	if list == "none" {
		list = ""
	}
	return s.updateProfile(func(p *config.Profile) error { p.SystemVLANs = list; return nil })
}

func cmdCapability(s *Session, a *args) (string, error) {
	on := !a.has("no")
	return s.updateProfile(func(p *config.Profile) error {
		if on && p.Type != api.ProfileEthernet {
			return fmt.Errorf("capability uplink is only for ethernet port-profiles")
		}
		p.CapabilityUplink = on
		return nil
	})
}

func cmdState(s *Session, a *args) (string, error) {
	on := !a.has("no")
	return s.updateProfile(func(p *config.Profile) error { p.Enabled = on; return nil })
}

func cmdShutdown(s *Session, a *args) (string, error) {
	on := !a.has("no")
	return s.updateProfile(func(p *config.Profile) error { p.Shutdown = on; return nil })
}

func cmdMaxPorts(s *Session, a *args) (string, error) {
	n := a.int("n")
	return s.updateProfile(func(p *config.Profile) error {
		if n != 0 && p.Type != api.ProfileVethernet {
			return fmt.Errorf("max-ports is only for vethernet port-profiles")
		}
		p.MaxPorts = n
		return nil
	})
}

func cmdDescription(s *Session, a *args) (string, error) {
	text := a.str("text")
	if text != "" && !config.ValidDescription(text) {
		return "", failf("description: want 1-%d printable characters", config.MaxDescription)
	}
	return s.updateProfile(func(p *config.Profile) error { p.Description = text; return nil })
}

func cmdRateLimit(s *Session, a *args) (string, error) {
	rate, _ := strconv.ParseUint(a.str("rate"), 10, 64)
	for _, u := range []string{"kbps", "mbps", "gbps"} {
		if a.has(u) {
			unit := config.RateUnit(u)
			if rate > config.MaxRate/unit {
				return "", failf("rate-limit: %d %s is above %d bps", rate, u, uint64(config.MaxRate))
			}
			rate *= unit
		}
	}
	if rate < config.MinRate || rate > config.MaxRate {
		return "", failf("rate-limit: %d bps: must be %d-%d", rate, config.MinRate, uint64(config.MaxRate))
	}
	rl := &api.RateLimit{BitsPerSecond: rate, BurstBytes: uint32(a.int("burst"))}
	in := a.has("input")
	return s.updateProfile(func(p *config.Profile) error {
		if in {
			p.Ingress = rl
		} else {
			p.Egress = rl
		}
		return nil
	})
}

func cmdNoRateLimit(s *Session, a *args) (string, error) {
	in := a.has("input")
	return s.updateProfile(func(p *config.Profile) error {
		if in {
			p.Ingress = nil
		} else {
			p.Egress = nil
		}
		return nil
	})
}

func cmdChannelGroup(s *Session, a *args) (string, error) {
	mode := ""
	switch {
	case a.has("no"):
	case a.has("mac-pinning"):
		mode = api.ChannelMACPinning
	case a.has("active"):
		mode = api.ChannelLACP
	default:
		mode = api.ChannelActiveBackup
	}
	return s.updateProfile(func(p *config.Profile) error {
		if mode != "" && p.Type != api.ProfileEthernet {
			return fmt.Errorf("channel-group is only for ethernet port-profiles")
		}
		p.ChannelGroup = mode
		return nil
	})
}
