package cli

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// The show commands print the layouts Nexus 1000V operators know
// (reference/nexus1000v-cli.md), with our product's names.

const (
	modelVSM = "Flashvisor-VSM"
	modelVEM = "Flashvisor-VEM"
	dashes80 = "--------------------------------------------------------------------------------"
)

func showTree() *node {
	ifForms := func(h handler) []*node {
		return []*node{
			arg("if", ifArg, "Interface name: VethN, EthM/P, PoN").do(h),
			kw("vethernet", "Vethernet interface", arg("veth", numArg(1, 999999999), "Vethernet number").do(h)),
			kw("ethernet", "Ethernet interface", arg("eth", ethNumArg, "Module/port").do(h)),
			kw("port-channel", "Port-channel interface", arg("po", numArg(1, 4096), "Port-channel number").do(h)),
		}
	}
	return kw("show", "Show running system information",
		kw("module", "Show module information").do(showModule),
		kw("interface", "Show interface information",
			append(ifForms(showInterface), kw("brief", "Show brief info of interface").do(showInterfaceBrief))...).do(showInterface),
		kw("mac", "MAC configuration", kw("address-table", "Show the MAC address tables of the VEMs",
			kw("vlan", "Only this VLAN", arg("vlan", vlanArg, "VLAN ID").do(showMACs)),
			kw("interface", "Only this interface", ifForms(showMACs)...),
			kw("module", "Only this module", arg("slot", numArg(1, api.VSMSlots), "Module number").do(showMACs)),
		).do(showMACs)),
		kw("cdp", "Show CDP information", kw("neighbors", "Show CDP neighbor information",
			kw("detail", "Show detailed CDP neighbor information").do(showCDPNeighborsDetail),
			kw("interface", "Only neighbors on this interface", ifForms(showCDPNeighbors)...),
		).do(showCDPNeighbors)),
		kw("ip", "Display IP information", kw("igmp", "IGMP information", kw("snooping", "IGMP snooping information",
			kw("groups", "Show the groups the VEMs heard reports for",
				kw("vlan", "Only this VLAN", arg("vlan", vlanArg, "VLAN ID").do(showIGMPGroups)),
			).do(showIGMPGroups)))),
		kw("port-profile", "Show port profile information",
			kw("name", "Show one port profile", arg("name", profileNameArg, "Port profile name").do(showPortProfile)),
			kw("usage", "Show the interfaces using each port profile",
				kw("name", "One port profile", arg("name", profileNameArg, "Port profile name").do(showPortProfileUsage))).do(showPortProfileUsage),
			kw("brief", "Show a summary of the port profiles").do(showPortProfileBrief),
		).do(showPortProfile),
		kw("system", "Show system information", kw("redundancy", "Show redundancy information",
			kw("status", "Redundancy status").do(showRedundancy))),
		kw("running-config", "Current operating configuration",
			kw("port-profile", "Port profiles only",
				arg("name", profileNameArg, "Port profile name").do(showRunningConfig)).do(showRunningConfig),
		).do(showRunningConfig),
		kw("svs", "Show SVS information", kw("domain", "Domain configuration").do(showSVSDomain)),
		kw("vlan", "Show VLAN information", kw("brief", "VLAN summary").do(showVLAN)).do(showVLAN),
		kw("version", "Show the software version").do(showVersion),
	)
}

// ifName is the interface a show command names, in short form.
func ifName(a *args) string {
	switch {
	case a.str("veth") != "":
		return "Veth" + a.str("veth")
	case a.str("eth") != "":
		return a.str("eth")
	case a.str("po") != "":
		return "Po" + a.str("po")
	}
	return a.str("if")
}

func dotMAC(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return s
	}
	return fmt.Sprintf("%02x%02x.%02x%02x.%02x%02x", hw[0], hw[1], hw[2], hw[3], hw[4], hw[5])
}

func orNA(s string) string { return cmp.Or(s, "NA") }

func showModule(s *Session, _ *args) (string, error) {
	mods := slices.Clone(s.sw.Modules())
	slices.SortFunc(mods, func(a, b api.VSMModule) int { return a.Slot - b.Slot })
	vsm := func(m api.VSMModule) bool { return m.Slot < api.VSMFirstVEMSlot }
	var b strings.Builder
	b.WriteString("Mod  Ports  Module-Type                      Model              Status\n")
	b.WriteString("---  -----  -------------------------------- ------------------ ------------\n")
	for _, m := range mods {
		typ, model := "Virtual Ethernet Module", modelVEM
		if vsm(m) {
			typ, model = "Virtual Supervisor Module", modelVSM
		}
		fmt.Fprintf(&b, "%-3d  %-5d  %-32s %-18s %s\n", m.Slot, m.Ports, cmp.Or(m.Type, typ), cmp.Or(m.Model, model), m.Status)
	}
	b.WriteString("\nMod  Sw                Hw\n")
	b.WriteString("---  ----------------  ----------------------------------------------\n")
	for _, m := range mods {
		hw := "0.0"
		if !vsm(m) {
			hw = "Flashvisor KVM host"
		}
		fmt.Fprintf(&b, "%-3d  %-16s  %s\n", m.Slot, orNA(m.Version), hw)
	}
	b.WriteString("\nMod  MAC-Address(es)                         Serial-Num\n")
	b.WriteString("---  --------------------------------------  ----------\n")
	for _, m := range mods {
		fmt.Fprintf(&b, "%-3d  02-00-0c-00-%02x-00 to 02-00-0c-00-%02x-80  NA\n", m.Slot, m.Slot, m.Slot)
	}
	b.WriteString("\nMod  Server-IP        Server-UUID                           Server-Name\n")
	b.WriteString("---  ---------------  ------------------------------------  --------------------\n")
	for _, m := range mods {
		uuid, name := "NA", "NA"
		if !vsm(m) {
			uuid, name = orNA(m.HostUUID), orNA(cmp.Or(m.Hostname, m.Address))
		}
		fmt.Fprintf(&b, "%-3d  %-15s  %-36s  %s\n", m.Slot, orNA(m.Address), uuid, name)
	}
	b.WriteString("\n* this terminal session\n")
	return b.String(), nil
}

func sortedInterfaces(s *Session) []Interface {
	ifs := slices.Clone(s.sw.Interfaces())
	slices.SortFunc(ifs, func(a, b Interface) int { return compareIfNames(a.Name, b.Name) })
	return ifs
}

// CompareIfNames orders interface short names by kind (Eth, Po, Veth),
// then numerically.
func CompareIfNames(a, b string) int { return compareIfNames(a, b) }

// compareIfNames orders by kind (Eth, Po, Veth) then numerically.
func compareIfNames(a, b string) int {
	key := func(n string) (int, []int) {
		kind := 3
		switch {
		case strings.HasPrefix(n, "Eth"):
			kind, n = 0, n[3:]
		case strings.HasPrefix(n, "Po"):
			kind, n = 1, n[2:]
		case strings.HasPrefix(n, "Veth"):
			kind, n = 2, n[4:]
		}
		var nums []int
		for part := range strings.SplitSeq(n, "/") {
			v, _ := strconv.Atoi(part)
			nums = append(nums, v)
		}
		return kind, nums
	}
	ka, na := key(a)
	kb, nb := key(b)
	if c := cmp.Compare(ka, kb); c != 0 {
		return c
	}
	if c := slices.Compare(na, nb); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func (i Interface) briefVLAN() string {
	switch {
	case i.Mode == api.ModeTrunk:
		return strconv.Itoa(max(i.NativeVLAN, 1))
	case i.VLAN != "":
		return i.VLAN
	}
	return "--"
}

func (i Interface) reason() string {
	if i.Status == api.PortUp {
		return "none"
	}
	return cmp.Or(i.Reason, i.Status)
}

func (i Interface) speed() string {
	if i.Speed == 0 {
		return "auto"
	}
	return strconv.Itoa(i.Speed)
}

func showInterfaceBrief(s *Session, _ *args) (string, error) {
	var eth, po, veth []Interface
	for _, i := range sortedInterfaces(s) {
		switch {
		case strings.HasPrefix(i.Name, "Eth"):
			eth = append(eth, i)
		case strings.HasPrefix(i.Name, "Po"):
			po = append(po, i)
		default:
			veth = append(veth, i)
		}
	}
	var b strings.Builder
	if len(eth) > 0 {
		fmt.Fprintf(&b, "%s\nEthernet      VLAN    Type Mode   Status  Reason                   Speed     Port\n", dashes80)
		fmt.Fprintf(&b, "Interface                                                                    Ch #\n%s\n", dashes80)
		for _, i := range eth {
			fmt.Fprintf(&b, "%-13s %-7s %-4s %-6s %-7s %-24s %8s   %s\n", i.Name, i.briefVLAN(), "eth", i.Mode, i.Status,
				i.reason(), i.speed(), cmp.Or(strings.TrimPrefix(i.PortChannel, "Po"), "--"))
		}
		b.WriteByte('\n')
	}
	if len(po) > 0 {
		fmt.Fprintf(&b, "%s\nPort-channel VLAN    Type Mode   Status  Reason                    Speed   Protocol\n", dashes80)
		fmt.Fprintf(&b, "Interface\n%s\n", dashes80)
		for _, i := range po {
			fmt.Fprintf(&b, "%-12s %-7s %-4s %-6s %-7s %-25s %6s   %s\n", i.Name, i.briefVLAN(), "eth", i.Mode, i.Status,
				i.reason(), i.speed(), "none")
		}
		b.WriteByte('\n')
	}
	if len(veth) > 0 {
		fmt.Fprintf(&b, "%s\nVethernet     VLAN    Type Mode   Status  Reason                   Speed\n%s\n", dashes80, dashes80)
		for _, i := range veth {
			fmt.Fprintf(&b, "%-13s %-7s %-4s %-6s %-7s %-24s %7s\n", i.Name, i.briefVLAN(), "virt", i.Mode, i.Status, i.reason(), i.speed())
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func showInterface(s *Session, a *args) (string, error) {
	want := ifName(a)
	all := sortedInterfaces(s)
	var b strings.Builder
	found := false
	for _, i := range all {
		if want != "" && i.Name != want {
			continue
		}
		found = true
		writeInterface(&b, i, all)
	}
	if want != "" && !found {
		return "", failf("interface %s does not exist", longIfName(want))
	}
	return b.String(), nil
}

func writeInterface(b *strings.Builder, i Interface, all []Interface) {
	line := func(format string, args ...any) { fmt.Fprintf(b, "  "+format+"\n", args...) }
	state := i.Status
	if i.Status != api.PortUp && i.Reason != "" {
		state += " (" + i.Reason + ")"
	}
	fmt.Fprintf(b, "%s is %s\n", longIfName(i.Name), state)
	if i.Description != "" {
		line("Port description is %s", i.Description)
	}
	mac := ""
	if i.MAC != "" {
		m := dotMAC(i.MAC)
		mac = fmt.Sprintf(", address: %s (bia %s)", m, m)
	}
	switch {
	case strings.HasPrefix(i.Name, "Veth"):
		line("Hardware: Virtual%s", mac)
		if i.Owner != "" {
			line("Owner is %s", i.Owner)
		}
	case strings.HasPrefix(i.Name, "Eth"):
		line("Hardware: Ethernet%s", mac)
	default:
		line("Hardware: Port-Channel%s", mac)
	}
	if i.Module != 0 {
		line("Active on module %d", i.Module)
	}
	if i.Profile != "" {
		line("Port-Profile is %s", i.Profile)
	}
	if !strings.HasPrefix(i.Name, "Veth") {
		line("MTU %d bytes", cmp.Or(i.MTU, 1500))
		line("Encapsulation ARPA")
	}
	if i.Mode != "" {
		line("Port mode is %s", i.Mode)
	}
	if strings.HasPrefix(i.Name, "Eth") {
		if i.Speed != 0 {
			line("full-duplex, %d Mb/s", i.Speed)
		}
		if i.PortChannel != "" {
			line("Belongs to %s", i.PortChannel)
		}
	}
	if strings.HasPrefix(i.Name, "Po") {
		var members []string
		for _, m := range all {
			if m.PortChannel == i.Name && m.Module == i.Module {
				members = append(members, m.Name)
			}
		}
		if len(members) > 0 {
			line("Members in this channel: %s", strings.Join(members, ", "))
		}
	}
	c := i.Counters
	line("Rx")
	line("  %d Input Packets", c.RxPackets)
	line("  %d Bytes", c.RxBytes)
	line("Tx")
	line("  %d Output Packets", c.TxPackets)
	line("  %d Bytes", c.TxBytes)
	line("  %d Input Packet Drops %d Output Packet Drops", c.RxDropped, c.TxDropped)
	line("  %d BPDU Drops %d Port-Security Violations %d Policed Drops", c.BPDUDrops, c.SecurityViolations, c.IngressPoliced)
	b.WriteByte('\n')
}

func showMACs(s *Session, a *args) (string, error) {
	macs := slices.Clone(s.sw.MACs())
	slices.SortFunc(macs, func(x, y MAC) int {
		return cmp.Or(cmp.Compare(x.Module, y.Module), cmp.Compare(x.VLAN, y.VLAN), strings.Compare(dotMAC(x.MAC), dotMAC(y.MAC)))
	})
	port := ifName(a)
	var b strings.Builder
	b.WriteString("VLAN      MAC Address       Type    Age       Port                           Mod\n")
	b.WriteString("---------+-----------------+-------+---------+------------------------------+---\n")
	n := 0
	for _, m := range macs {
		if (a.has("vlan") && m.VLAN != a.int("vlan")) || (port != "" && m.Port != port) || (a.has("module") && m.Module != a.int("slot")) {
			continue
		}
		fmt.Fprintf(&b, "%-9d %-17s %-7s %-9d %-30s %d\n", m.VLAN, dotMAC(m.MAC), m.Type, m.Age, m.Port, m.Module)
		n++
	}
	fmt.Fprintf(&b, "Total MAC Addresses: %d\n", n)
	return b.String(), nil
}

func typeTitle(t string) string {
	if t == api.ProfileEthernet {
		return "Ethernet"
	}
	return "Vethernet"
}

func showPortProfile(s *Session, a *args) (string, error) {
	c := s.sw.Config()
	usage := s.sw.ProfileUsage()
	profiles := c.Profiles
	if name := a.str("name"); name != "" {
		p := c.Profile(name)
		if p == nil {
			return "", failf("port-profile %s does not exist", name)
		}
		profiles = []config.Profile{*p}
	}
	var b strings.Builder
	for _, p := range profiles {
		fmt.Fprintf(&b, "port-profile %s\n", p.Name)
		fmt.Fprintf(&b, " type: %s\n", typeTitle(p.Type))
		fmt.Fprintf(&b, " description: %s\n", p.Description)
		fmt.Fprintf(&b, " status: %s\n", map[bool]string{true: "enabled", false: "disabled"}[p.Enabled])
		if p.Type == api.ProfileVethernet {
			fmt.Fprintf(&b, " max-ports: %d\n", p.EffectiveMaxPorts())
		} else {
			b.WriteString(" max-ports: -\n")
		}
		lines := p.ConfigLines()
		for _, title := range []string{"config attributes", "evaluated config attributes"} {
			fmt.Fprintf(&b, " %s:\n", title)
			for _, l := range lines {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
		b.WriteString(" assigned interfaces:\n")
		for _, i := range usage[p.Name] {
			fmt.Fprintf(&b, "  %s\n", longIfName(i))
		}
		pg := ""
		if p.Enabled {
			pg = p.PortGroupName()
		}
		fmt.Fprintf(&b, " port-group: %s\n", pg)
		fmt.Fprintf(&b, " system vlans: %s\n", cmp.Or(p.SystemVLANs, "none"))
		fmt.Fprintf(&b, " capability uplink: %s\n", map[bool]string{true: "yes", false: "no"}[p.CapabilityUplink])
		b.WriteString(" port-binding: static\n\n")
	}
	return b.String(), nil
}

func showPortProfileUsage(s *Session, a *args) (string, error) {
	c := s.sw.Config()
	usage := s.sw.ProfileUsage()
	var b strings.Builder
	name := a.str("name")
	if name != "" && c.Profile(name) == nil {
		return "", failf("port-profile %s does not exist", name)
	}
	for _, p := range c.Profiles {
		if name != "" && p.Name != name {
			continue
		}
		fmt.Fprintf(&b, "port-profile %s\n", p.Name)
		ifs := slices.Clone(usage[p.Name])
		slices.SortFunc(ifs, compareIfNames)
		for _, i := range ifs {
			fmt.Fprintf(&b, " %s\n", longIfName(i))
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func showPortProfileBrief(s *Session, _ *args) (string, error) {
	c := s.sw.Config()
	usage := s.sw.ProfileUsage()
	var b strings.Builder
	b.WriteString(dashes80 + "\n")
	b.WriteString("Port                   Profile           Conf   Eval   Assigned  Child\n")
	b.WriteString("Profile                Type       State  Items  Items  Intfs     Profs\n")
	b.WriteString(dashes80 + "\n")
	type sum struct{ assigned, total, system, used int }
	sums := map[string]*sum{api.ProfileVethernet: {}, api.ProfileEthernet: {}}
	for _, p := range c.Profiles {
		n := len(p.ConfigLines())
		state := 0
		if p.Enabled {
			state = 1
		}
		used := len(usage[p.Name])
		fmt.Fprintf(&b, "%-22s %-10s %-6d %-6d %-6d %-9d %d\n", p.Name, typeTitle(p.Type), state, n, n, used, 0)
		if t := sums[p.Type]; t != nil {
			t.assigned += used
			t.total++
			if p.IsSystem() {
				t.system++
			}
			if used > 0 {
				t.used++
			}
		}
	}
	b.WriteString(dashes80 + "\n")
	b.WriteString("Profile    Assigned  Total  Sys    Parent  Child  UsedBy\n")
	b.WriteString("Type       Intfs     Prfls  Prfls  Prfls   Prfls  Prfls\n")
	b.WriteString(dashes80 + "\n")
	for _, t := range []string{api.ProfileVethernet, api.ProfileEthernet} {
		x := sums[t]
		fmt.Fprintf(&b, "%-10s %-9d %-6d %-6d %-7d %-6d %d\n", typeTitle(t), x.assigned, x.total, x.system, x.total, 0, x.used)
	}
	return b.String(), nil
}

func showRedundancy(s *Session, _ *args) (string, error) {
	c := s.sw.Config()
	r := s.sw.Redundancy()
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%20s:   %s\n", k, v) }
	head := func(title string) { fmt.Fprintf(&b, "%s\n%s\n", title, strings.Repeat("-", len(title))) }
	peer := r.PeerState != "" && r.PeerState != "Not present"

	head("Redundancy role")
	kv("administrative", c.Redundancy)
	kv("operational", cmp.Or(r.Role, c.Redundancy))
	b.WriteByte('\n')
	head("Redundancy mode")
	kv("administrative", map[bool]string{true: "None", false: "HA"}[c.Redundancy == config.RoleStandalone])
	kv("operational", map[bool]string{true: "HA", false: "None"}[peer])
	b.WriteByte('\n')

	this, other := "sup-1", "sup-2"
	if cmp.Or(r.Role, c.Redundancy) == config.RoleSecondary {
		this, other = other, this
	}
	head("This supervisor (" + this + ")")
	if r.State == "standby" {
		kv("Redundancy state", "Standby")
		kv("Supervisor state", "HA standby")
		kv("Internal state", "HA standby")
	} else {
		kv("Redundancy state", "Active")
		kv("Supervisor state", "Active")
		kv("Internal state", map[bool]string{true: "Active with HA standby", false: "Active with no standby"}[peer])
	}
	kv("Activation epoch", strconv.FormatUint(r.Epoch, 10))
	if r.Description != "" {
		kv("Sync status", r.Description)
	}
	b.WriteByte('\n')
	head("Other supervisor (" + other + ")")
	switch {
	case !peer:
		kv("Redundancy state", "Not present")
	case r.State == "standby":
		kv("Redundancy state", "Active")
		kv("Supervisor state", "Active")
		kv("Internal state", "Active with HA standby")
		if r.PeerEpoch != 0 {
			kv("Activation epoch", strconv.FormatUint(r.PeerEpoch, 10))
		}
	default:
		kv("Redundancy state", "Standby")
		kv("Supervisor state", r.PeerState)
		kv("Internal state", r.PeerState)
		if r.PeerEpoch != 0 {
			kv("Activation epoch", strconv.FormatUint(r.PeerEpoch, 10))
		}
		if r.Revision != 0 {
			kv("State revision", strconv.FormatUint(r.Revision, 10))
		}
		kv("Synced generation", strconv.FormatUint(r.SyncedGen, 10))
	}
	return b.String(), nil
}

func (s *Session) configHeader(cmd string) string {
	return fmt.Sprintf("!Command: %s\n!Time: %s\n\n", cmd, s.opts.Now().Format("Mon Jan _2 15:04:05 2006"))
}

func showRunningConfig(s *Session, a *args) (string, error) {
	c := s.sw.Config()
	if !a.has("port-profile") {
		return s.configHeader("show running-config") + c.Render(), nil
	}
	name := a.str("name")
	cmd := strings.TrimSpace("show running-config port-profile " + name)
	var b strings.Builder
	b.WriteString(s.configHeader(cmd))
	fmt.Fprintf(&b, "version %s\n", config.FormatVersion)
	found := false
	for _, p := range c.Profiles {
		if name != "" && p.Name != name {
			continue
		}
		found = true
		fmt.Fprintf(&b, "port-profile type %s %s\n", p.Type, p.Name)
		for _, l := range p.ConfigLines() {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if name != "" && !found {
		return "", failf("port-profile %s does not exist", name)
	}
	return b.String(), nil
}

func showSVSDomain(s *Session, _ *args) (string, error) {
	d := s.sw.Config().SVSDomain
	num := func(n int) string {
		if n == 0 {
			return "NA"
		}
		return strconv.Itoa(n)
	}
	status := "Domain id not configured; no VEM is programmed."
	if d.ID != 0 {
		status = "Config push to VEMs enabled."
	}
	var b strings.Builder
	b.WriteString("SVS domain config:\n")
	fmt.Fprintf(&b, "  Domain id:    %s\n", num(d.ID))
	fmt.Fprintf(&b, "  Control vlan: %s\n", num(d.ControlVLAN))
	fmt.Fprintf(&b, "  Packet vlan:  %s\n", num(d.PacketVLAN))
	fmt.Fprintf(&b, "  L2/L3 Control mode: %s\n", d.Mode)
	fmt.Fprintf(&b, "  L3 control interface: %s\n", orNA(d.L3Interface))
	fmt.Fprintf(&b, "  Status: %s\n", status)
	return b.String(), nil
}

func showVLAN(s *Session, a *args) (string, error) {
	c := s.sw.Config()
	ports := map[int][]string{}
	for _, i := range sortedInterfaces(s) {
		var set config.VLANSet
		switch {
		case i.Mode == api.ModeTrunk:
			set, _ = config.ParseVLANs(cmp.Or(i.VLAN, "all"))
		default:
			v, _ := strconv.Atoi(i.VLAN)
			set.Add(max(v, 1))
		}
		for _, v := range set.List() {
			ports[v] = append(ports[v], i.Name)
		}
	}
	var b strings.Builder
	b.WriteString("VLAN Name                             Status    Ports\n")
	b.WriteString("---- -------------------------------- --------- -------------------------------\n")
	vlans := c.VLANSet().List()
	for _, v := range vlans {
		rows := wrapList(ports[v], 31)
		b.WriteString(strings.TrimRight(fmt.Sprintf("%-4d %-32s %-9s %s", v, c.VLANName(v), "active", rows[0]), " ") + "\n")
		for _, r := range rows[1:] {
			fmt.Fprintf(&b, "%48s%s\n", "", r)
		}
	}
	if !a.has("brief") {
		b.WriteString("\nVLAN Type\n---- -----\n")
		for _, v := range vlans {
			fmt.Fprintf(&b, "%-4d enet\n", v)
		}
	}
	return b.String(), nil
}

// wrapList joins names with ", " in rows of at most width characters
// (a name longer than width gets a row of its own); always one row.
func wrapList(names []string, width int) []string {
	rows := []string{""}
	for _, n := range names {
		last := &rows[len(rows)-1]
		switch {
		case *last == "":
			*last = n
		case len(*last)+2+len(n) <= width:
			*last += ", " + n
		default:
			*last += ","
			rows = append(rows, n)
		}
	}
	return rows
}

func showVersion(s *Session, _ *args) (string, error) {
	version := s.opts.Version
	if version == "" {
		for _, m := range s.sw.Modules() {
			if m.Slot < api.VSMFirstVEMSlot && strings.HasPrefix(m.Status, "active") {
				version = m.Version
			}
		}
	}
	var b strings.Builder
	b.WriteString("Flashvisor Virtual Supervisor Module\n\n")
	b.WriteString("Software\n")
	fmt.Fprintf(&b, "  system:    version %s\n\n", cmp.Or(version, "unknown"))
	b.WriteString("Hardware\n")
	fmt.Fprintf(&b, "  %s Chassis (\"Virtual Supervisor Module\")\n", modelVSM)
	fmt.Fprintf(&b, "  Device name: %s\n", s.sw.Config().SwitchName)
	return b.String(), nil
}
