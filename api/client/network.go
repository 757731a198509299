package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/flashvisor/flashvisor/api"
)

// The host's standalone switch (VEM-7): port groups, uplinks,
// port-channels; the VEM's debug views (VEM-10); and the vmknics (VMK-1..3).
// A change that may cut the management network (its vmknic, port group,
// uplink or port-channel) is applied under a rollback guard and answered
// 202 with an api.NetworkChange to confirm; those calls return it.

func portGroupPath(name string) string { return v1("/portgroups/" + url.PathEscape(name)) }

func networkPath(tail string) string { return v1("/network" + tail) }

// PortGroups lists the host's port groups.
func (c *Client) PortGroups(ctx context.Context) ([]api.PortGroup, error) {
	var out []api.PortGroup
	err := c.do(ctx, http.MethodGet, v1("/portgroups"), nil, &out)
	return out, err
}

// AddPortGroup creates a port group.
func (c *Client) AddPortGroup(ctx context.Context, pg api.PortGroup) error {
	return c.do(ctx, http.MethodPost, v1("/portgroups"), pg, nil)
}

// UpdatePortGroup replaces the settings of the port group pg.Name (a port
// group is never renamed); the change reaches every port on it, live. A
// change to the management port group is guarded: see AddVMKNIC.
func (c *Client) UpdatePortGroup(ctx context.Context, pg api.PortGroup) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodPut, portGroupPath(pg.Name), pg)
}

// RemovePortGroup deletes an unused port group.
func (c *Client) RemovePortGroup(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, portGroupPath(name), nil, nil)
}

// Network returns the standalone switch: its configuration and the VEM's
// view of its ports (Ports is empty when the VEM did not answer).
func (c *Client) Network(ctx context.Context) (api.SwitchView, error) {
	var v api.SwitchView
	err := c.do(ctx, http.MethodGet, networkPath(""), nil, &v)
	return v, err
}

// AddUplink adds a physical NIC ("eth1") to the switch and returns the
// uplink with the Eth port the host assigned it.
func (c *Client) AddUplink(ctx context.Context, nic string) (api.Uplink, error) {
	var u api.Uplink
	err := c.do(ctx, http.MethodPost, networkPath("/uplinks"), api.Uplink{NIC: nic}, &u)
	return u, err
}

// RemoveUplink takes a NIC off the switch. Removing the management
// network's uplink is guarded: see AddVMKNIC.
func (c *Client) RemoveUplink(ctx context.Context, nic string) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodDelete, networkPath("/uplinks/"+url.PathEscape(nic)), nil)
}

// AddPortChannel bundles NICs into a port-channel. Bundling the management
// network's uplink is guarded: see AddVMKNIC.
func (c *Client) AddPortChannel(ctx context.Context, pc api.PortChannel) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodPost, networkPath("/portchannels"), pc)
}

// RemovePortChannel dissolves a port-channel; its members stay uplinks.
// Guarded when it carries the management network: see AddVMKNIC.
func (c *Client) RemovePortChannel(ctx context.Context, name string) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodDelete, networkPath("/portchannels/"+url.PathEscape(name)), nil)
}

// VEMCard returns what the VEM says about itself ("vemcmd show card").
func (c *Client) VEMCard(ctx context.Context) (api.VEMCard, error) {
	var out api.VEMCard
	err := c.do(ctx, http.MethodGet, v1("/vem/card"), nil, &out)
	return out, err
}

// VEMPorts returns every port of the VEM with its state and counters.
func (c *Client) VEMPorts(ctx context.Context) ([]api.PortStatus, error) {
	var out []api.PortStatus
	err := c.do(ctx, http.MethodGet, v1("/vem/ports"), nil, &out)
	return out, err
}

// VEMMACs returns the VEM's MAC table.
func (c *Client) VEMMACs(ctx context.Context) ([]api.MACEntry, error) {
	var out []api.MACEntry
	err := c.do(ctx, http.MethodGet, v1("/vem/macs"), nil, &out)
	return out, err
}

// VMKNICs lists the vmknics as the host observes them.
func (c *Client) VMKNICs(ctx context.Context) ([]api.VMKNICStatus, error) {
	var out []api.VMKNICStatus
	err := c.do(ctx, http.MethodGet, networkPath("/vmknics"), nil, &out)
	return out, err
}

// AddVMKNIC creates a vmknic. A change that touches the management network
// is applied under the rollback guard (VMK-3) and returned: it must be
// confirmed (ConfirmNetworkChange) before its RollbackAt, or the host puts
// the previous configuration back. nil means the change was not guarded
// and is final.
func (c *Client) AddVMKNIC(ctx context.Context, v api.VMKNIC) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodPost, networkPath("/vmknics"), v)
}

// UpdateVMKNIC replaces the configuration of the vmknic v.Name; see
// AddVMKNIC for the returned change.
func (c *Client) UpdateVMKNIC(ctx context.Context, v api.VMKNIC) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodPut, vmknicPath(v.Name), v)
}

// RemoveVMKNIC deletes a vmknic; see AddVMKNIC for the returned change.
func (c *Client) RemoveVMKNIC(ctx context.Context, name string) (*api.NetworkChange, error) {
	return c.guarded(ctx, http.MethodDelete, vmknicPath(name), nil)
}

// ConfirmNetworkChange keeps a guarded change. Call it through the
// management network as it is after the change (a new Client when the
// management address changed): that the call arrives is the proof the
// guard waits for. An APIError not_found means there is no such pending
// change: it was rolled back already (or confirmed before).
func (c *Client) ConfirmNetworkChange(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, networkPath("/confirm"), api.ConfirmRequest{ID: id}, nil)
}

func vmknicPath(name string) string { return networkPath("/vmknics/" + url.PathEscape(name)) }

// guarded sends a change that may touch the management network (VMK-3):
// 202 carries the guarded change, any other 2xx means the change is done.
func (c *Client) guarded(ctx context.Context, method, path string, in any) (*api.NetworkChange, error) {
	status, b, err := c.send(ctx, method, path, in)
	if err != nil || status != http.StatusAccepted {
		return nil, err
	}
	var nc api.NetworkChange
	if err := json.Unmarshal(b, &nc); err != nil {
		return nil, fmt.Errorf("%s %s: decode guarded change: %w", method, path, err)
	}
	if nc.ID == "" {
		// Without an ID the change cannot be confirmed and will be
		// rolled back: say so rather than report success.
		return nil, fmt.Errorf("%s %s: the host answered 202 without a change ID to confirm", method, path)
	}
	return &nc, nil
}
