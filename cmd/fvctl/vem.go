package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/flashvisor/flashvisor/api"
)

// vemCommand runs "vem show card|ports|mac|counters": the VEM agent's own
// view of the host's switch (VEM-10), laid out as vemcmd shows it on a
// Nexus 1000V host.
func (a *app) vemCommand(ctx context.Context, rest []string) error {
	const want = "want show card, show ports, show mac or show counters"
	if len(rest) == 0 || rest[0] != "show" {
		return usagef("vem: %s", want)
	}
	if len(rest) < 2 || strings.HasPrefix(rest[1], "-") {
		return usagef("vem show: %s", want)
	}
	what, args := rest[1], rest[2:]
	switch what {
	case "card":
		return a.vemShowCard(ctx, args)
	case "ports", "port":
		return a.vemShowPorts(ctx, "vem show ports", args, a.vemPortTable)
	case "counters":
		return a.vemShowPorts(ctx, "vem show counters", args, a.vemCounterTable)
	case "mac", "macs":
		return a.vemShowMACs(ctx, args)
	}
	return usagef("vem show %s: unknown (%s)", what, want)
}

func yesNoCap(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// vemShowCard prints "vemcmd show card"-like key: value lines.
func (a *app) vemShowCard(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("vem show card", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	card, err := c.VEMCard(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, card)
	}
	w := a.stdout
	fmt.Fprintf(w, "Card UUID: %s\n", orDash(card.HostUUID))
	fmt.Fprintf(w, "Card name: %s\n", orDash(card.Hostname))
	fmt.Fprintf(w, "Switch mode: %s\n", orDash(card.Mode))
	fmt.Fprintf(w, "Switch bridge: %s\n", orDash(card.Bridge))
	fmt.Fprintf(w, "Card domain: %d\n", card.DomainID)
	fmt.Fprintf(w, "Card slot: %d\n", card.Module)
	if card.Mode == api.SwitchVSM || card.VSM != "" {
		if card.ControlMode != "" {
			fmt.Fprintf(w, "VEM Tunnel Mode: %s Mode\n", card.ControlMode)
		}
		if card.ControlMode == api.SVSModeL2 {
			fmt.Fprintf(w, "Card control VLAN: %d\n", card.ControlVLAN)
		}
		fmt.Fprintf(w, "VSM address: %s\n", orDash(card.VSM))
		fmt.Fprintf(w, "VSM connected: %s\n", yesNoCap(card.Connected))
	}
	fmt.Fprintf(w, "Card Headless Mode : %s\n", yesNoCap(card.Headless))
	fmt.Fprintf(w, "Programmed: %s\n", yesNoCap(card.Programmed))
	fmt.Fprintf(w, "Restored at boot: %s\n", yesNoCap(card.Restored))
	fmt.Fprintf(w, "Ports: %s\n", portCounts(card.Ports))
	fmt.Fprintf(w, "Last reconcile: %s\n", orDash(card.LastReconcile))
	fmt.Fprintf(w, "Last error: %s\n", orDefault(card.LastError, "none"))
	fmt.Fprintf(w, "Kernel changes: %d\n", card.Changes)
	fmt.Fprintf(w, "Version: %s\n", orDash(card.Version))
	return nil
}

// portCounts renders the port counts by kind: "3 veth, 2 eth, 1 po".
func portCounts(m map[string]int) string {
	kinds := []string{api.PortVeth, api.PortEth, api.PortPortChannel}
	var others []string
	for k := range m {
		if !slices.Contains(kinds, k) {
			others = append(others, k)
		}
	}
	slices.Sort(others)
	var parts []string
	for _, k := range append(kinds, others...) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (a *app) vemShowPorts(ctx context.Context, name string, args []string, table func([]api.PortStatus) error) error {
	var asJSON bool
	if _, err := a.subArgs(name, args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	ports, err := c.VEMPorts(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, ports)
	}
	return table(ports)
}

// vemPortTable is "vemcmd show port" without the LTLs: the VEM has none.
func (a *app) vemPortTable(ports []api.PortStatus) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tINTERFACE\tMODE\tVLANS\tSTATE\tREASON\tOWNER")
	for _, p := range ports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, orDash(p.Interface), orDash(p.Mode), orDash(p.VLANs),
			orDash(p.State), orDash(p.Reason), orDash(p.Owner))
	}
	return tw.Flush()
}

// vemCounterTable prints each port's counters as the kernel counts them.
func (a *app) vemCounterTable(ports []api.PortStatus) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tRX DROPS\tTX DROPS\tBPDU DROPS\tSEC VIOL\tPOLICED")
	for _, p := range ports {
		k := p.Counters
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Name, k.RxPackets, k.RxBytes, k.TxPackets, k.TxBytes,
			k.RxDropped, k.TxDropped, k.BPDUDrops, k.SecurityViolations, k.IngressPoliced)
	}
	return tw.Flush()
}

// vemShowMACs is "show mac address-table" of one VEM.
func (a *app) vemShowMACs(ctx context.Context, args []string) error {
	var asJSON bool
	if _, err := a.subArgs("vem show mac", args, 0, jsonFlag(&asJSON)); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	macs, err := c.VEMMACs(ctx)
	if err != nil {
		return a.explainNet(err)
	}
	if asJSON {
		return writeJSON(a.stdout, macs)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VLAN\tMAC\tTYPE\tPORT\tAGE")
	for _, m := range macs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\n", m.VLAN, m.MAC, m.Type, m.Port, m.AgeSeconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Total MAC Addresses: %d\n", len(macs))
	return nil
}
