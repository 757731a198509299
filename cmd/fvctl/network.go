package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/flashvisor/flashvisor/api"
)

// networkCommand runs "network portgroup list|add|remove".
func (a *app) networkCommand(ctx context.Context, rest []string) error {
	if len(rest) == 0 || (rest[0] != "portgroup" && rest[0] != "portgroups") {
		return usagef("network: want portgroup list|add|remove")
	}
	rest = rest[1:]
	sub := "list"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	switch sub {
	case "list", "ls":
		var asJSON bool
		if _, err := a.subArgs("network portgroup list", rest, 0, jsonFlag(&asJSON)); err != nil {
			return err
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		list, err := c.PortGroups(ctx)
		if err != nil {
			return a.explainDS(err)
		}
		if asJSON {
			return writeJSON(a.stdout, list)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVLAN")
		for _, pg := range list {
			vlan := "none"
			if pg.VLAN > 0 {
				vlan = fmt.Sprint(pg.VLAN)
			}
			fmt.Fprintf(tw, "%s\t%s\n", pg.Name, vlan)
		}
		return tw.Flush()
	case "add":
		var pg api.PortGroup
		pos, err := a.subArgs("network portgroup add", rest, 1, func(fs *flag.FlagSet) {
			fs.IntVar(&pg.VLAN, "vlan", 0, "access VLAN (0 = untagged)")
		})
		if err != nil {
			return err
		}
		pg.Name = pos[0]
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		if err := c.AddPortGroup(ctx, pg); err != nil {
			return a.explainDS(err)
		}
		fmt.Fprintf(a.stdout, "port group %s added\n", pg.Name)
		return nil
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
			return a.explainDS(err)
		}
		fmt.Fprintf(a.stdout, "port group %s removed\n", pos[0])
		return nil
	}
	return usagef("network portgroup %s: unknown command", sub)
}
