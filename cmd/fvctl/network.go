package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
)

// networkCommand runs "network ...": the host's standalone switch (VEM-7:
// port groups, uplinks, port-channels, the vEths of vNICs) and the vmknics
// (VMK-1..3). A bare "network" shows the switch.
func (a *app) networkCommand(ctx context.Context, rest []string) error {
	sub := "show"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	switch sub {
	case "show":
		return a.networkShow(ctx, rest)
	case "portgroup", "portgroups", "pg":
		return a.portGroupCommand(ctx, rest)
	case "uplink", "uplinks":
		return a.uplinkCommand(ctx, rest)
	case "portchannel", "portchannels", "port-channel":
		return a.portChannelCommand(ctx, rest)
	case "vmknic", "vmknics", "vmk":
		return a.vmknicCommand(ctx, rest)
	case "confirm":
		return a.networkConfirm(ctx, rest)
	}
	return usagef("network %s: unknown command (want show, portgroup, uplink, portchannel, vmknic or confirm)", sub)
}

// explainNet is explain with advice for the switch's own failures.
func (a *app) explainNet(err error) error {
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Code == api.ErrUnavailable:
		return fmt.Errorf("host refused (%d %s): %s\nThe host's switch or its VEM agent is not working: see fvctl services, fvctl services log vemd and fvctl services log hostd", ae.Status, ae.Code, ae.Message)
	case errors.As(err, &ae) && ae.Code == api.ErrConflict:
		return fmt.Errorf("host refused (%d %s): %s\nA management network change waits for confirmation: confirm it (fvctl network confirm ID) or let the host roll it back first", ae.Status, ae.Code, ae.Message)
	}
	return a.explain(err)
}

// The opt* flag values remember whether they were given, so "set"
// commands change only what the command line names.

type optString struct {
	v   string
	set bool
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(s string) error { o.v, o.set = s, true; return nil }

type optInt struct {
	v   int
	set bool
}

func (o *optInt) String() string { return strconv.Itoa(o.v) }
func (o *optInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("want a whole number")
	}
	o.v, o.set = n, true
	return nil
}

type optBool struct{ v, set bool }

func (o *optBool) String() string   { return strconv.FormatBool(o.v) }
func (o *optBool) IsBoolFlag() bool { return true }
func (o *optBool) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	o.v, o.set = b, true
	return nil
}

// optRate is a rate in bits per second; 0 is "no limit".
type optRate struct {
	bps uint64
	set bool
}

func (o *optRate) String() string { return formatRate(o.bps) }
func (o *optRate) Set(s string) error {
	n, err := parseRate(s)
	if err != nil {
		return err
	}
	o.bps, o.set = n, true
	return nil
}

var rateUnits = []struct {
	suffix string
	mult   uint64
}{{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}

// parseRate reads a rate in bits per second: a number with an optional
// k, M, G or T (powers of 1000, as tc and ESXi's traffic shaping count)
// and an optional "bit/s", "bit" or "bps": 500k, 100M, 1.5G, 250000,
// 100Mbit/s. "none", "off" and 0 mean no limit (0).
func parseRate(s string) (uint64, error) {
	bad := func() (uint64, error) {
		return 0, fmt.Errorf("rate %q: want bits per second such as 500k, 100M or 1G (none: no limit)", s)
	}
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "none", "off", "0":
		return 0, nil
	}
	for _, suf := range []string{"bit/s", "bits", "bit", "bps"} {
		if u, ok := strings.CutSuffix(t, suf); ok {
			t = u
			break
		}
	}
	mult := uint64(1)
	for _, u := range rateUnits {
		if n, ok := strings.CutSuffix(t, strings.ToLower(u.suffix)); ok {
			t, mult = n, u.mult
			break
		}
	}
	if t == "" || strings.Count(t, ".") > 1 || strings.Trim(t, "0123456789.") != "" || t == "." {
		return bad()
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok {
		return bad()
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	if !r.IsInt() || r.Sign() <= 0 || !r.Num().IsUint64() {
		return 0, fmt.Errorf("rate %q: want a whole number of bits per second above 0, at most %d", s, uint64(math.MaxUint64))
	}
	return r.Num().Uint64(), nil
}

// formatRate renders bits per second in the largest unit that divides
// them: 100M, 1500k, 8001.
func formatRate(bps uint64) string {
	if bps == 0 {
		return "none"
	}
	for i := len(rateUnits) - 1; i >= 0; i-- {
		if u := rateUnits[i]; bps%u.mult == 0 {
			return strconv.FormatUint(bps/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(bps, 10)
}

func rateCell(r *api.RateLimit) string {
	if r == nil || r.BitsPerSecond == 0 {
		return "-"
	}
	return formatRate(r.BitsPerSecond) + "bit/s"
}

// pgFlags are the settings flags of "portgroup add" and "portgroup set".
type pgFlags struct {
	vlan, nativeVLAN, maxMACs optInt
	allowedVLANs, violation   optString
	trunk, shutdown, system   optBool
	ingress, egress           optRate
}

func (f *pgFlags) define(fs *flag.FlagSet) {
	fs.Var(&f.vlan, "vlan", "access VLAN (0 = untagged)")
	fs.Var(&f.trunk, "trunk", "trunk ports: the guest tags its frames")
	fs.Var(&f.allowedVLANs, "allowed-vlans", "a trunk's VLANs: 10-20,30 or all")
	fs.Var(&f.nativeVLAN, "native-vlan", "a trunk's VLAN of untagged frames")
	fs.Var(&f.maxMACs, "max-macs", "port security: source MACs per port (0: off)")
	fs.Var(&f.violation, "violation", "shutdown or protect")
	fs.Var(&f.ingress, "ingress-rate", "limit on what a port sends into the switch, bit/s")
	fs.Var(&f.egress, "egress-rate", "limit on what the switch sends to a port, bit/s")
	fs.Var(&f.shutdown, "shutdown", "take every port of the group down")
	fs.Var(&f.system, "system", "a system VLAN: up at boot before anything else")
}

func (f *pgFlags) any() bool {
	for _, set := range []bool{f.vlan.set, f.nativeVLAN.set, f.maxMACs.set, f.allowedVLANs.set, f.violation.set,
		f.trunk.set, f.shutdown.set, f.system.set, f.ingress.set, f.egress.set} {
		if set {
			return true
		}
	}
	return false
}

// apply changes pg by the flags given. An access setting (--vlan) makes a
// trunk port group an access one and --trunk=false drops the trunk's
// VLAN lists; the host checks the rest (VLAN ranges, minimum rates).
func (f *pgFlags) apply(cmd string, pg *api.PortGroup) error {
	if f.trunk.set {
		if f.trunk.v && f.vlan.set {
			return usagef("%s: --vlan is an access port group's VLAN; a trunk has --allowed-vlans and --native-vlan", cmd)
		}
		pg.Trunk = f.trunk.v
		if pg.Trunk {
			pg.VLAN = 0
		}
	}
	if f.vlan.set {
		pg.VLAN, pg.Trunk = f.vlan.v, false
	}
	if !pg.Trunk {
		pg.AllowedVLANs, pg.NativeVLAN = "", 0
	}
	if f.allowedVLANs.set || f.nativeVLAN.set {
		if !pg.Trunk {
			return usagef("%s: --allowed-vlans and --native-vlan are for trunk port groups: add --trunk", cmd)
		}
		if f.allowedVLANs.set {
			pg.AllowedVLANs = f.allowedVLANs.v
		}
		if f.nativeVLAN.set {
			pg.NativeVLAN = f.nativeVLAN.v
		}
	}
	if f.maxMACs.set {
		pg.MaxMACs = f.maxMACs.v
		if pg.MaxMACs == 0 && !f.violation.set {
			pg.Violation = "" // port security off: no action either
		}
	}
	if f.violation.set {
		switch f.violation.v {
		case api.ViolationShutdown, api.ViolationProtect:
		default:
			return usagef("%s: --violation %q: want %s or %s", cmd, f.violation.v, api.ViolationShutdown, api.ViolationProtect)
		}
		if pg.MaxMACs == 0 {
			return usagef("%s: --violation needs port security: add --max-macs N", cmd)
		}
		pg.Violation = f.violation.v
	}
	if f.ingress.set {
		pg.Ingress = withRate(pg.Ingress, f.ingress.bps)
	}
	if f.egress.set {
		pg.Egress = withRate(pg.Egress, f.egress.bps)
	}
	if f.shutdown.set {
		pg.Shutdown = f.shutdown.v
	}
	if f.system.set {
		pg.System = f.system.v
	}
	return nil
}

// withRate sets a limit's rate, keeping its burst; 0 removes the limit.
func withRate(cur *api.RateLimit, bps uint64) *api.RateLimit {
	if bps == 0 {
		return nil
	}
	r := api.RateLimit{BitsPerSecond: bps}
	if cur != nil {
		r.BurstBytes = cur.BurstBytes
	}
	return &r
}

func (a *app) portGroupCommand(ctx context.Context, rest []string) error {
	sub := "list"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	switch sub {
	case "list", "ls":
		return a.portGroupList(ctx, rest)
	case "add", "set":
		return a.portGroupChange(ctx, sub, rest)
	case "remove", "rm":
		pos, err := a.subArgs("network portgroup remove", rest, 1, nil)
		if err != nil {
			return err
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		if err := c.RemovePortGroup(ctx, pos[0]); err != nil {
			return a.explainNet(err)
		}
		fmt.Fprintf(a.stdout, "Port group %s removed.\n", pos[0])
		return nil
	}
	return usagef("network portgroup %s: unknown command (want list, add, set or remove)", sub)
}

func (a *app) portGroupList(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("network portgroup list", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	list, err := c.PortGroups(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, list)
	}
	return a.portGroupTable(list)
}

func (a *app) portGroupTable(list []api.PortGroup) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	portGroupRows(tw, list)
	return tw.Flush()
}

// portGroupRows writes the port group table to a tabwriter.
func portGroupRows(tw io.Writer, list []api.PortGroup) {
	fmt.Fprintln(tw, "NAME\tVLAN\tPORT SECURITY\tINGRESS\tEGRESS\tFLAGS")
	for _, pg := range list {
		sec := "-"
		if pg.MaxMACs > 0 {
			sec = fmt.Sprintf("%d MACs, %s", pg.MaxMACs, orDefault(pg.Violation, api.ViolationShutdown))
			if pg.MaxMACs == 1 {
				sec = "1 MAC, " + orDefault(pg.Violation, api.ViolationShutdown)
			}
		}
		var flags []string
		if pg.System {
			flags = append(flags, "system")
		}
		if pg.Shutdown {
			flags = append(flags, "shutdown")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pg.Name, vlanCell(pg), sec, rateCell(pg.Ingress), rateCell(pg.Egress), orDash(strings.Join(flags, ",")))
	}
}

// vlanCell says what a port group carries: "none", "100", "trunk all",
// "trunk 10-20,30 native 5".
func vlanCell(pg api.PortGroup) string {
	if pg.Trunk {
		s := "trunk " + orDefault(pg.AllowedVLANs, "all")
		if pg.NativeVLAN != 0 {
			s += fmt.Sprintf(" native %d", pg.NativeVLAN)
		}
		return s
	}
	if pg.VLAN == 0 {
		return "none"
	}
	return strconv.Itoa(pg.VLAN)
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// portGroupChange runs "portgroup add" (a new port group from the flags)
// and "portgroup set" (the current one with the flags given applied; the
// host replaces the whole port group).
func (a *app) portGroupChange(ctx context.Context, sub string, args []string) error {
	cmd := "network portgroup " + sub
	var f pgFlags
	var g guardFlags
	pos, err := a.subArgs(cmd, args, 1, func(fs *flag.FlagSet) {
		f.define(fs)
		if sub == "set" {
			g.define(fs) // a new port group carries nothing yet
		}
	})
	if err != nil {
		return err
	}
	if err := g.check(cmd); err != nil {
		return err
	}
	if sub == "set" && !f.any() {
		return usagef("%s: nothing to change: give at least one setting flag", cmd)
	}
	pg := api.PortGroup{Name: pos[0]}
	if sub == "add" {
		if err := f.apply(cmd, &pg); err != nil {
			return err
		}
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	if sub == "add" {
		if err := c.AddPortGroup(ctx, pg); err != nil {
			return a.explainNet(err)
		}
		carries := vlanCell(pg)
		switch {
		case pg.Trunk:
		case pg.VLAN == 0:
			carries = "untagged"
		default:
			carries = "VLAN " + carries
		}
		fmt.Fprintf(a.stdout, "Port group %s added (%s).\n", pg.Name, carries)
		return nil
	}
	list, err := c.PortGroups(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	i := slices.IndexFunc(list, func(p api.PortGroup) bool { return p.Name == pg.Name })
	if i < 0 {
		return fmt.Errorf("not found: no port group %q (see fvctl network portgroup list)", pg.Name)
	}
	pg = list[i]
	if err := f.apply(cmd, &pg); err != nil {
		return err
	}
	nc, err := c.UpdatePortGroup(ctx, pg)
	if err != nil {
		return a.explainNet(err)
	}
	return a.done(ctx, nc, g, "Port group %s changed.", pg.Name)
}

func (a *app) uplinkCommand(ctx context.Context, rest []string) error {
	if len(rest) == 0 || (rest[0] != "add" && rest[0] != "remove" && rest[0] != "rm") {
		return usagef("network uplink: want add NIC or remove NIC")
	}
	if rest[0] == "add" {
		pos, err := a.subArgs("network uplink add", rest[1:], 1, nil)
		if err != nil {
			return err
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		u, err := c.AddUplink(ctx, pos[0])
		if err != nil {
			return a.explainNet(err)
		}
		fmt.Fprintf(a.stdout, "Uplink %s added as %s.\n", u.NIC, u.Port)
		return nil
	}
	return a.guardedRemove(ctx, "network uplink remove", rest[1:], nil, (*client.Client).RemoveUplink, "Uplink %s removed.")
}

// channelModes maps --mode to the API's port-channel modes.
var channelModes = map[string]string{
	"lacp":                api.ChannelLACP,
	api.ChannelLACP:       api.ChannelLACP,
	"active-backup":       api.ChannelActiveBackup,
	api.ChannelMACPinning: api.ChannelMACPinning,
}

// channelModeName is a port-channel mode as --mode spells it.
func channelModeName(mode string) string {
	switch mode {
	case "":
		return api.ChannelActiveBackup
	case api.ChannelLACP:
		return "lacp"
	}
	return mode
}

// portChannelName checks "PoN" (any case) and returns it as "PoN".
func portChannelName(cmd, s string) (string, error) {
	n, ok := strings.CutPrefix(strings.ToLower(s), "po")
	if v, err := strconv.Atoi(n); !ok || err != nil || v < 1 || n != strconv.Itoa(v) {
		return "", usagef("%s: %q: want a port-channel name PoN, such as Po1", cmd, s)
	}
	return "Po" + n, nil
}

func (a *app) portChannelCommand(ctx context.Context, rest []string) error {
	if len(rest) == 0 || (rest[0] != "add" && rest[0] != "remove" && rest[0] != "rm") {
		return usagef("network portchannel: want add PoN --mode MODE NIC... or remove PoN")
	}
	if rest[0] != "add" {
		const cmd = "network portchannel remove"
		return a.guardedRemove(ctx, cmd, rest[1:], func(n string) (string, error) { return portChannelName(cmd, n) },
			(*client.Client).RemovePortChannel, "Port-channel %s removed; its NICs stay uplinks.")
	}
	var g guardFlags
	const cmd = "network portchannel add"
	var mode string
	pos, err := a.subArgsRange(cmd, rest[1:], 2, math.MaxInt, func(fs *flag.FlagSet) {
		fs.StringVar(&mode, "mode", "", "lacp, active-backup or mac-pinning")
		g.define(fs)
	})
	if err != nil {
		return err
	}
	if err := g.check(cmd); err != nil {
		return err
	}
	name, err := portChannelName(cmd, pos[0])
	if err != nil {
		return err
	}
	pc := api.PortChannel{Name: name, Members: pos[1:]}
	if mode != "" {
		m, ok := channelModes[strings.ToLower(mode)]
		if !ok {
			return usagef("%s: --mode %q: want lacp, active-backup or mac-pinning", cmd, mode)
		}
		pc.Mode = m
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	nc, err := c.AddPortChannel(ctx, pc)
	if err != nil {
		return a.explainNet(err)
	}
	return a.done(ctx, nc, g, "Port-channel %s (%s) added: %s.", pc.Name, channelModeName(pc.Mode), strings.Join(pc.Members, ", "))
}

// portState is a port's state for the tables: "up", "err-disabled
// (port-security violation)", "-" when the VEM did not say.
func portState(states map[string]api.PortStatus, name string) string {
	p, ok := states[name]
	if !ok || p.State == "" {
		return "-"
	}
	if p.Reason != "" {
		return p.State + " (" + p.Reason + ")"
	}
	return p.State
}

func (a *app) networkShow(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("network show", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	v, err := c.Network(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, v)
	}
	states := map[string]api.PortStatus{}
	for _, p := range v.Ports {
		states[p.Name] = p
	}
	// vEths: those of vNICs (kept while their VM is off), then the ones
	// the switch carries for others (the vmknics').
	type vethRow struct{ port, vm, nic, pg, mac string }
	var veths []vethRow
	known := map[string]bool{}
	for _, e := range v.Veths {
		known[e.Port] = true
		veths = append(veths, vethRow{e.Port, e.VM, strconv.Itoa(e.NIC), e.PortGroup, e.MAC})
	}
	for _, p := range v.Ports {
		if p.Kind == api.PortVeth && !known[p.Name] {
			veths = append(veths, vethRow{p.Name, "(host)", orDefault(p.Owner, p.Interface), portGroupOf(v.PortGroups, p.Profile), "-"})
		}
	}
	for i, sec := range []struct {
		title string
		n     int
		table func(tw io.Writer)
	}{
		{"Uplinks", len(v.Uplinks), func(tw io.Writer) {
			fmt.Fprintln(tw, "PORT\tNIC\tPORT-CHANNEL\tSTATE")
			for _, u := range v.Uplinks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Port, u.NIC, orDash(u.PortChannel), portState(states, u.Port))
			}
		}},
		{"Port-channels", len(v.PortChannels), func(tw io.Writer) {
			fmt.Fprintln(tw, "PORT\tMODE\tMEMBERS\tSTATE")
			for _, pc := range v.PortChannels {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", pc.Name, channelModeName(pc.Mode), strings.Join(pc.Members, ","), portState(states, pc.Name))
			}
		}},
		{"Port groups", len(v.PortGroups), func(tw io.Writer) { portGroupRows(tw, v.PortGroups) }},
		{"vEths", len(veths), func(tw io.Writer) {
			fmt.Fprintln(tw, "PORT\tVM\tNIC\tPORT GROUP\tMAC\tSTATE")
			for _, r := range veths {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.port, r.vm, orDash(r.nic), r.pg, r.mac, portState(states, r.port))
			}
		}},
	} {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		if sec.n == 0 {
			fmt.Fprintf(a.stdout, "%s: none\n", sec.title)
			continue
		}
		fmt.Fprintf(a.stdout, "%s:\n", sec.title)
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		sec.table(tw)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(v.Ports) == 0 && len(v.Uplinks)+len(v.Veths) > 0 {
		fmt.Fprintln(a.stderr, "Port states unavailable: the VEM agent did not answer (see fvctl vem show card).")
	}
	return nil
}

// portGroupOf names the port group of a VEM profile for display: hostd
// names a port group's profile after it, spaces made underscores. A
// profile that matches none is shown as it is.
func portGroupOf(pgs []api.PortGroup, profile string) string {
	for _, pg := range pgs {
		if pg.Name == profile || strings.ReplaceAll(pg.Name, " ", "_") == profile {
			return pg.Name
		}
	}
	return orDash(profile)
}

// vmknicFlags are the flags of "vmknic add|set|remove".
type vmknicFlags struct {
	portGroup, ip, gateway, mac, services optString
	dhcp                                  optBool
	mtu                                   optInt
	guard                                 guardFlags
}

func (f *vmknicFlags) define(fs *flag.FlagSet) {
	fs.Var(&f.portGroup, "portgroup", "the port group the vmknic sits on")
	fs.Var(&f.dhcp, "dhcp", "get the IPv4 address by DHCP")
	fs.Var(&f.ip, "ip", "static IPv4 address as CIDR (10.0.0.5/24), or none")
	fs.Var(&f.gateway, "gateway", "default gateway through this vmknic (static only; none to drop)")
	fs.Var(&f.mtu, "mtu", "MTU, 1280-9000 (0: 1500)")
	fs.Var(&f.mac, "mac", "MAC address (auto: the host's generated one)")
	fs.Var(&f.services, "services", "what the vmknic is for: management,nfs,iscsi,migration,vsm-control (none: nothing)")
	f.guard.define(fs)
}

func (f *vmknicFlags) any() bool {
	for _, set := range []bool{f.portGroup.set, f.ip.set, f.gateway.set, f.mac.set, f.services.set, f.dhcp.set, f.mtu.set} {
		if set {
			return true
		}
	}
	return false
}

var vmkServices = []string{api.VMKServiceManagement, api.VMKServiceNFS, api.VMKServiceISCSI, api.VMKServiceMigration, api.VMKServiceVSMControl}

// apply changes v by the flags given; the host checks the rest (name,
// MTU range, address inside its subnet, one management vmknic).
func (f *vmknicFlags) apply(cmd string, v *api.VMKNIC) error {
	if f.portGroup.set {
		if f.portGroup.v == "" {
			return usagef("%s: --portgroup: want a port group name", cmd)
		}
		v.PortGroup = f.portGroup.v
	}
	if f.dhcp.set && f.ip.set {
		return usagef("%s: give --dhcp or --ip, not both", cmd)
	}
	switch {
	case f.dhcp.set && f.dhcp.v:
		if f.gateway.set {
			return usagef("%s: --gateway is for a static address (--ip CIDR); DHCP brings its own", cmd)
		}
		v.IPv4 = api.VMKIPv4{Mode: api.VMKIPv4DHCP}
	case f.dhcp.set:
		return usagef("%s: --dhcp=false: give the address instead (--ip CIDR or --ip none)", cmd)
	case f.ip.set && strings.EqualFold(f.ip.v, "none"):
		if f.gateway.set && !isNone(f.gateway.v) {
			return usagef("%s: --gateway needs a static address (--ip CIDR)", cmd)
		}
		v.IPv4 = api.VMKIPv4{Mode: api.VMKIPv4None}
	case f.ip.set:
		p, err := netip.ParsePrefix(f.ip.v)
		if err != nil || !p.Addr().Is4() {
			return usagef("%s: --ip %q: want an IPv4 address with its prefix length, such as 10.0.0.5/24 (or none)", cmd, f.ip.v)
		}
		gw := ""
		if v.IPv4.Mode == api.VMKIPv4Static && v.IPv4.Gateway != "" && !f.gateway.set {
			// set: keep the gateway if it still fits, never drop it silently.
			if g, err := netip.ParseAddr(v.IPv4.Gateway); err != nil || !p.Masked().Contains(g) {
				return usagef("%s: --ip %s: the current gateway %s is outside it: give --gateway GW (or --gateway none)", cmd, f.ip.v, v.IPv4.Gateway)
			}
			gw = v.IPv4.Gateway
		}
		v.IPv4 = api.VMKIPv4{Mode: api.VMKIPv4Static, Address: p.String(), Gateway: gw}
	}
	if f.gateway.set && v.IPv4.Mode == api.VMKIPv4Static {
		if isNone(f.gateway.v) {
			v.IPv4.Gateway = ""
		} else if g, err := netip.ParseAddr(f.gateway.v); err != nil || !g.Is4() {
			return usagef("%s: --gateway %q: want an IPv4 address (or none)", cmd, f.gateway.v)
		} else {
			v.IPv4.Gateway = g.String()
		}
	} else if f.gateway.set && !isNone(f.gateway.v) {
		return usagef("%s: --gateway needs a static address (--ip CIDR)", cmd)
	}
	if f.mtu.set {
		v.MTU = f.mtu.v
	}
	if f.mac.set {
		switch m := strings.ToLower(f.mac.v); m {
		case "", "auto":
			v.MAC = ""
		default:
			hw, err := net.ParseMAC(m)
			if err != nil || len(hw) != 6 {
				return usagef("%s: --mac %q: want a MAC such as 00:50:56:6a:bc:de (or auto)", cmd, f.mac.v)
			}
			v.MAC = hw.String()
		}
	}
	if f.services.set {
		v.Services = nil
		if !isNone(f.services.v) {
			for _, s := range strings.Split(f.services.v, ",") {
				s = strings.ToLower(strings.TrimSpace(s))
				if s == "" || slices.Contains(v.Services, s) {
					continue
				}
				if !slices.Contains(vmkServices, s) {
					return usagef("%s: --services: unknown service %q: want some of %s", cmd, s, strings.Join(vmkServices, ","))
				}
				v.Services = append(v.Services, s)
			}
		}
	}
	return nil
}

func isNone(s string) bool { return s == "" || strings.EqualFold(s, "none") }

// guardFlags say how to settle a guarded management change.
type guardFlags struct {
	newServer string
	noConfirm bool
}

func (g *guardFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&g.newServer, "new-server", "", "confirm a management change through this HOST[:PORT] (the new management address)")
	fs.BoolVar(&g.noConfirm, "no-confirm", false, "leave a management change unconfirmed: the host rolls it back")
}

// check refuses a bad --new-server before anything is changed.
func (g *guardFlags) check(cmd string) error {
	if g.newServer == "" {
		return nil
	}
	if g.noConfirm {
		return usagef("%s: --new-server is where to confirm; --no-confirm does not confirm", cmd)
	}
	if _, err := client.WithDefaultPort(strings.ToLower(g.newServer)); err != nil {
		return usagef("%s: --new-server: %v", cmd, err)
	}
	return nil
}

func (a *app) vmknicCommand(ctx context.Context, rest []string) error {
	sub := "list"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	switch sub {
	case "list", "ls":
		return a.vmknicList(ctx, rest)
	case "add", "set":
		return a.vmknicChange(ctx, sub, rest)
	case "remove", "rm":
		return a.vmknicRemove(ctx, rest)
	}
	return usagef("network vmknic %s: unknown command (want list, add, set or remove)", sub)
}

// vmknicList prints the vmknics as esxcfg-vmknic -l does.
func (a *app) vmknicList(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("network vmknic list", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	list, err := c.VMKNICs(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, list)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tPORT GROUP\tIP ADDRESS\tNETMASK\tMAC ADDRESS\tMTU\tENABLED\tTYPE\tSERVICES")
	for _, v := range list {
		ip, mask := "-", "-"
		if p, err := netip.ParsePrefix(v.Address); err == nil {
			ip = p.Addr().String()
			if p.Addr().Is4() {
				mask = net.IP(net.CIDRMask(p.Bits(), 32)).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%t\t%s\t%s\n", v.Name, orDash(v.PortGroup), ip, mask, orDash(v.MAC), v.MTU, v.Up,
			orDash(strings.ToUpper(v.Mode)), orDash(strings.Join(v.Services, ",")))
	}
	return tw.Flush()
}

// vmknicChange runs "vmknic add" (from the flags) and "vmknic set" (the
// current configuration with the flags given applied; the host replaces
// the whole vmknic).
func (a *app) vmknicChange(ctx context.Context, sub string, args []string) error {
	cmd := "network vmknic " + sub
	var f vmknicFlags
	pos, err := a.subArgs(cmd, args, 1, f.define)
	if err != nil {
		return err
	}
	if err := f.guard.check(cmd); err != nil {
		return err
	}
	v := api.VMKNIC{Name: pos[0]}
	if sub == "add" {
		if !f.portGroup.set {
			return usagef("%s: want --portgroup PORTGROUP", cmd)
		}
		if !f.dhcp.set && !f.ip.set {
			return usagef("%s: want --dhcp, --ip CIDR or --ip none", cmd)
		}
		if err := f.apply(cmd, &v); err != nil {
			return err
		}
	} else if !f.any() {
		return usagef("%s: nothing to change: give at least one setting flag", cmd)
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	var nc *api.NetworkChange
	if sub == "add" {
		if nc, err = c.AddVMKNIC(ctx, v); err != nil {
			return a.explainNet(err)
		}
	} else {
		list, err := c.VMKNICs(ctx)
		if err != nil {
			return a.explainNet(err)
		}
		i := slices.IndexFunc(list, func(s api.VMKNICStatus) bool { return s.Name == v.Name })
		if i < 0 {
			return fmt.Errorf("not found: no vmknic %q (see fvctl network vmknic list)", v.Name)
		}
		if v, err = vmknicConfig(list[i]); err != nil {
			return err
		}
		if err := f.apply(cmd, &v); err != nil {
			return err
		}
		if nc, err = c.UpdateVMKNIC(ctx, v); err != nil {
			return a.explainNet(err)
		}
	}
	return a.done(ctx, nc, f.guard, "vmknic %s %s.", v.Name, map[string]string{"add": "added", "set": "changed"}[sub])
}

// vmknicConfig is the configuration a vmknic runs with, as its status
// shows it: the MAC and MTU it has, the address only when static (a
// DHCP lease is not configuration).
func vmknicConfig(s api.VMKNICStatus) (api.VMKNIC, error) {
	if s.Mode == "" {
		return api.VMKNIC{}, fmt.Errorf("vmknic %s is not configured (the host is removing it)", s.Name)
	}
	v := api.VMKNIC{Name: s.Name, PortGroup: s.PortGroup, MAC: s.MAC, MTU: s.MTU, IPv4: api.VMKIPv4{Mode: s.Mode}, Services: s.Services}
	if s.Mode == api.VMKIPv4Static {
		v.IPv4.Address, v.IPv4.Gateway = s.Address, s.Gateway
	}
	return v, nil
}

func (a *app) vmknicRemove(ctx context.Context, args []string) error {
	return a.guardedRemove(ctx, "network vmknic remove", args, nil, (*client.Client).RemoveVMKNIC, "vmknic %s removed.")
}

// guardedRemove runs "CMD NAME [guard flags]": check (and maybe
// normalize) the name, call remove, and confirm the change if the host
// guarded it. done is a format with the name.
func (a *app) guardedRemove(ctx context.Context, cmd string, args []string, check func(string) (string, error),
	remove func(*client.Client, context.Context, string) (*api.NetworkChange, error), done string) error {
	var g guardFlags
	pos, err := a.subArgs(cmd, args, 1, g.define)
	if err != nil {
		return err
	}
	if err := g.check(cmd); err != nil {
		return err
	}
	name := pos[0]
	if check != nil {
		if name, err = check(name); err != nil {
			return err
		}
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	nc, err := remove(c, ctx, name)
	if err != nil {
		return a.explainNet(err)
	}
	return a.done(ctx, nc, g, done, name)
}

// Confirming a guarded change: attempts are retried (the new address may
// take a moment to answer) until shortly after the rollback, and for at
// least confirmMinWindow whatever the clocks say; each attempt is bounded.
const (
	confirmRetry     = time.Second
	confirmAttempt   = 10 * time.Second
	confirmMinWindow = 15 * time.Second
	confirmMaxWindow = 3 * time.Minute
)

// done reports a change: done as format says when the host made it for
// good (nc is nil), else settled as a guarded change.
func (a *app) done(ctx context.Context, nc *api.NetworkChange, g guardFlags, format string, args ...any) error {
	if nc == nil {
		fmt.Fprintf(a.stdout, format+"\n", args...)
		return nil
	}
	return a.settle(ctx, *nc, g)
}

// settle reports a guarded management change and confirms it through a
// fresh connection to the management address as it is now, unless
// --no-confirm.
func (a *app) settle(ctx context.Context, nc api.NetworkChange, g guardFlags) error {
	at := nc.RollbackAt.Format(time.RFC3339)
	fmt.Fprintf(a.stdout, "%s: a management network change, applied under the rollback guard (change %s).\n", orDefault(nc.What, "network"), nc.ID)
	fmt.Fprintf(a.stdout, "The host rolls it back at %s unless it is confirmed.\n", at)
	server := a.g.host
	if g.newServer != "" {
		server = g.newServer
	}
	if g.noConfirm {
		fmt.Fprintf(a.stdout, "Not confirmed (--no-confirm): the host will roll back at %s. To keep the change: fvctl --host %s network confirm %s\n", at, server, nc.ID)
		return nil
	}
	fmt.Fprintf(a.stdout, "Confirming through %s...\n", server)
	if err := a.confirmThrough(ctx, server, nc); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Confirmed: the change is kept.\n")
	return nil
}

// confirmThrough confirms a change on a new connection to server, pinning
// the certificate the host presented before the change.
func (a *app) confirmThrough(ctx context.Context, server string, nc api.NetworkChange) error {
	addr, err := client.WithDefaultPort(strings.ToLower(server))
	if err != nil {
		return usagef("--new-server: %v", err)
	}
	o := client.Options{Addr: addr, Token: a.g.token, Fingerprint: a.src.pinned, Timeout: confirmAttempt}
	if o.Fingerprint == "" {
		o.Insecure = true // --insecure, warned about already
	}
	c, err := client.New(o)
	if err != nil {
		return err
	}
	now := time.Now()
	deadline := nc.RollbackAt.Add(5 * time.Second)
	if earliest := now.Add(confirmMinWindow); deadline.Before(earliest) {
		deadline = earliest
	}
	if latest := now.Add(confirmMaxWindow); deadline.After(latest) {
		deadline = latest
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	hint := ""
	if addr == a.src.addr {
		hint = "\nIf the change moved the management address, give the new one with --new-server HOST[:PORT]."
	}
	for {
		err := c.ConfirmNetworkChange(cctx, nc.ID)
		if err == nil {
			a.rememberHost(addr)
			return nil
		}
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && ae.Code == api.ErrNotFound:
			return fmt.Errorf("confirm change %s: the host has no such pending change: it was rolled back already (%s)", nc.ID, ae.Message)
		case errors.As(err, &ae) && ae.Status != 502 && ae.Status != 503:
			return fmt.Errorf("confirm change %s: %w", nc.ID, a.explain(err))
		case errors.Is(err, client.ErrFingerprintMismatch):
			return fmt.Errorf("confirm change %s: %s presents another certificate than the host did: %w; the host rolls the change back at %s", nc.ID, addr, err, nc.RollbackAt.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped confirming change %s: the host rolls it back at %s unless confirmed: fvctl --host %s network confirm %s", nc.ID, nc.RollbackAt.Format(time.RFC3339), server, nc.ID)
		case <-cctx.Done():
			return fmt.Errorf("could not confirm change %s through %s: %v\nThe host rolls the change back at %s.%s", nc.ID, addr, err, nc.RollbackAt.Format(time.RFC3339), hint)
		case <-time.After(confirmRetry):
		}
	}
}

// rememberHost stores a new management address in known_hosts with the
// fingerprint just verified on it, so the next fvctl --host NEW needs no
// trust on first use.
func (a *app) rememberHost(addr string) {
	if a.src.path == "" || addr == a.src.addr || a.src.pinned == "" {
		return
	}
	kh, err := readKnownHosts(a.src.path)
	if err != nil {
		return
	}
	if _, ok := kh[addr]; ok {
		return
	}
	if addKnownHost(a.src.path, addr, a.src.pinned) == nil {
		fmt.Fprintf(a.stderr, "Stored %s in %s with the host's certificate fingerprint %s.\n", addr, a.src.path, a.src.pinned)
	}
}

func (a *app) networkConfirm(ctx context.Context, args []string) error {
	pos, err := a.subArgs("network confirm", args, 1, nil)
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	if err := c.ConfirmNetworkChange(ctx, pos[0]); err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Code == api.ErrNotFound {
			return fmt.Errorf("confirm change %s: the host has no such pending change: it was rolled back already, or confirmed before (%s)", pos[0], ae.Message)
		}
		return a.explainNet(err)
	}
	fmt.Fprintf(a.stdout, "Change %s confirmed: it is kept.\n", pos[0])
	return nil
}
