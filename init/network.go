package boot

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
	"github.com/flashvisor/flashvisor/internal/cmdline"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// NIC is what management NIC selection needs to know about an interface.
type NIC struct {
	Name     string
	MAC      string
	Physical bool // backed by a device (not lo, bridges, taps)
	Ethernet bool
}

// ErrNoNIC means no interface matches the management NIC selection.
var ErrNoNIC = errors.New("no management NIC")

// PickMgmtNIC chooses the management NIC: the one named by want (interface
// name or MAC), else the first physical Ethernet NIC by name, the way an
// installer picks vmnic0.
func PickMgmtNIC(nics []NIC, want string) (NIC, error) {
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	if want != "" {
		for _, n := range nics {
			if n.Name == want || strings.EqualFold(n.MAC, want) {
				return n, nil
			}
		}
		return NIC{}, fmt.Errorf("%w: %q not found", ErrNoNIC, want)
	}
	for _, n := range nics {
		if n.Physical && n.Ethernet {
			return n, nil
		}
	}
	return NIC{}, fmt.Errorf("%w: no physical Ethernet interface", ErrNoNIC)
}

// ListNICs reads interfaces from sysfs (sysNet is /sys/class/net).
func ListNICs(sysNet string) ([]NIC, error) {
	ents, err := os.ReadDir(sysNet)
	if err != nil {
		return nil, err
	}
	var out []NIC
	for _, e := range ents {
		dir := filepath.Join(sysNet, e.Name())
		typ, _ := os.ReadFile(filepath.Join(dir, "type"))
		mac, _ := os.ReadFile(filepath.Join(dir, "address"))
		_, devErr := os.Stat(filepath.Join(dir, "device"))
		out = append(out, NIC{
			Name:     e.Name(),
			MAC:      strings.TrimSpace(string(mac)),
			Physical: devErr == nil,
			Ethernet: strings.TrimSpace(string(typ)) == "1",
		})
	}
	return out, nil
}

// Network brings up the management interface (INIT-4, VMK-1 will move it
// onto the virtual switch as vswif0).
type Network struct {
	Log     *slog.Logger
	SysNet  string // /sys/class/net
	Resolv  string // /etc/resolv.conf
	NICWait time.Duration

	// Lease is the duration of the last DHCP lease, for RenewLoop.
	Lease time.Duration
}

// Up configures lo and the management NIC and returns what it did.
func (n *Network) Up(ctx context.Context, cfg cmdline.Config) (api.MgmtInfo, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	nic, err := n.waitNIC(ctx, cfg.MgmtNIC)
	if err != nil {
		return api.MgmtInfo{}, err
	}
	link, err := netlink.LinkByName(nic.Name)
	if err != nil {
		return api.MgmtInfo{}, fmt.Errorf("link %s: %w", nic.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return api.MgmtInfo{}, fmt.Errorf("link %s up: %w", nic.Name, err)
	}
	if cfg.MgmtVLAN > 0 {
		vl := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("%s.%d", nic.Name, cfg.MgmtVLAN), ParentIndex: link.Attrs().Index}, VlanId: cfg.MgmtVLAN}
		if err := netlink.LinkAdd(vl); err != nil && !errors.Is(err, os.ErrExist) {
			return api.MgmtInfo{}, fmt.Errorf("vlan %d on %s: %w", cfg.MgmtVLAN, nic.Name, err)
		}
		if link, err = netlink.LinkByName(vl.Name); err != nil {
			return api.MgmtInfo{}, err
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return api.MgmtInfo{}, fmt.Errorf("link %s up: %w", vl.Name, err)
		}
	}
	info := api.MgmtInfo{NIC: link.Attrs().Name, MAC: nic.MAC, Uplink: nic.Name, VLAN: cfg.MgmtVLAN}
	mgmt := cmdline.Mgmt{DHCP: true}
	if cfg.Mgmt != nil {
		mgmt = *cfg.Mgmt
	}
	if !mgmt.DHCP {
		info.Mode = "static"
		if err := applyAddress(link, mgmt.Address, mgmt.Gateway); err != nil {
			return info, err
		}
		info.Address = mgmt.Address.String()
		if mgmt.Gateway.IsValid() {
			info.Gateway = mgmt.Gateway.String()
		}
		return info, nil
	}
	info.Mode = "dhcp"
	lease, err := n.dhcp(ctx, link.Attrs().Name)
	if err != nil {
		return info, err
	}
	return n.applyLease(link, lease, info)
}

// Uplink brings lo and the management NIC up without addresses: the
// management address is vswif0's, on the switch the NIC is an uplink of.
func (n *Network) Uplink(ctx context.Context, cfg cmdline.Config) (api.MgmtInfo, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	nic, err := n.waitNIC(ctx, cfg.MgmtNIC)
	if err != nil {
		return api.MgmtInfo{}, err
	}
	info := api.MgmtInfo{NIC: nic.Name, MAC: nic.MAC, Mode: api.MgmtVswif, Uplink: nic.Name, VLAN: cfg.MgmtVLAN}
	link, err := netlink.LinkByName(nic.Name)
	if err != nil {
		return info, fmt.Errorf("link %s: %w", nic.Name, err)
	}
	if err := freeMAC(link); err != nil {
		return info, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return info, fmt.Errorf("link %s up: %w", nic.Name, err)
	}
	return info, nil
}

// Release removes what Up configured on the management NIC (its IPv4
// addresses, and the VLAN sub-interface if there is one), leaving the
// physical NIC up, so the switch can take it as an uplink.
func (n *Network) Release(info api.MgmtInfo) error {
	if info.NIC == "" {
		return nil
	}
	// Released already (hostd restarted during the handoff): nothing to
	// do but the MAC.
	if link, err := netlink.LinkByName(info.NIC); err == nil {
		if info.Uplink != "" && info.NIC != info.Uplink {
			if err := netlink.LinkDel(link); err != nil {
				return fmt.Errorf("release %s: delete VLAN sub-interface: %w", info.NIC, err)
			}
		} else {
			addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
			if err != nil {
				return fmt.Errorf("release %s: %w", info.NIC, err)
			}
			for _, a := range addrs {
				// Routes through the address go with it.
				if err := netlink.AddrDel(link, &a); err != nil {
					return fmt.Errorf("release %s: remove %s: %w", info.NIC, a.IPNet, err)
				}
			}
		}
	}
	uplink := cmp.Or(info.Uplink, info.NIC)
	link, err := netlink.LinkByName(uplink)
	if err != nil {
		return fmt.Errorf("release %s: %w", uplink, err)
	}
	return freeMAC(link)
}

// UplinkMAC is the MAC the management NIC takes once it is an uplink: its
// burned-in MAC goes to vswif0 (as ESXi's vmk0 takes vmnic0's, so DHCP
// reservations keep working), and a Linux bridge delivers frames for a
// port's own MAC to the bridge itself, so the NIC must not keep it. The
// first byte becomes 02 (locally administered; 06 if it was 02 already),
// the rest stays, so the NIC is still recognisable.
func UplinkMAC(burnedIn net.HardwareAddr) net.HardwareAddr {
	m := slices.Clone(burnedIn)
	if len(m) != 6 {
		return m
	}
	if m[0] == 0x02 {
		m[0] = 0x06
	} else {
		m[0] = 0x02
	}
	return m
}

// freeMAC gives the NIC its uplink MAC, unless it has one already (its
// MAC differs from its permanent one).
func freeMAC(link netlink.Link) error {
	hw, perm := link.Attrs().HardwareAddr, link.Attrs().PermHWAddr
	if len(perm) == 0 {
		perm = hw
	}
	if len(hw) != 6 || !bytes.Equal(hw, perm) {
		return nil
	}
	if err := netlink.LinkSetHardwareAddr(link, UplinkMAC(hw)); err != nil {
		return fmt.Errorf("uplink MAC on %s: %w", link.Attrs().Name, err)
	}
	return nil
}

func (n *Network) waitNIC(ctx context.Context, want string) (NIC, error) {
	// Drivers bind asynchronously after their module loads: poll.
	deadline := time.Now().Add(n.NICWait)
	for {
		nics, err := ListNICs(n.SysNet)
		if err == nil {
			nic, err := PickMgmtNIC(nics, want)
			if err == nil || time.Now().After(deadline) {
				return nic, err
			}
		} else if time.Now().After(deadline) {
			return NIC{}, err
		}
		select {
		case <-ctx.Done():
			return NIC{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Network) dhcp(ctx context.Context, ifname string) (*nclient4.Lease, error) {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("dhcp client on %s: %w", ifname, err)
	}
	defer c.Close()
	var last error
	for attempt := 1; attempt <= 5; attempt++ {
		lease, err := c.Request(ctx)
		if err == nil {
			return lease, nil
		}
		last = err
		n.Log.Warn("dhcp attempt failed", "nic", ifname, "attempt", attempt, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dhcp on %s: %w", ifname, last)
}

func (n *Network) applyLease(link netlink.Link, lease *nclient4.Lease, info api.MgmtInfo) (api.MgmtInfo, error) {
	ack := lease.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok {
		return info, fmt.Errorf("dhcp: lease without address")
	}
	ones, _ := ack.SubnetMask().Size()
	if ack.SubnetMask() == nil {
		ones = 24
	}
	prefix := netip.PrefixFrom(ip, ones)
	var gw netip.Addr
	if r := ack.Router(); len(r) > 0 {
		gw, _ = netip.AddrFromSlice(r[0].To4())
	}
	if err := applyAddress(link, prefix, gw); err != nil {
		return info, err
	}
	info.Address = prefix.String()
	if gw.IsValid() {
		info.Gateway = gw.String()
	}
	for _, d := range ack.DNS() {
		info.DNS = append(info.DNS, d.String())
	}
	if len(info.DNS) > 0 && n.Resolv != "" {
		var b strings.Builder
		for _, d := range info.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if err := atomicfile.WriteFile(n.Resolv, []byte(b.String()), 0o644); err != nil {
			n.Log.Warn("writing resolv.conf", "err", err)
		}
	}
	n.Lease = leaseTime(ack)
	n.Log.Info("dhcp lease", "nic", link.Attrs().Name, "address", info.Address, "gateway", info.Gateway,
		"lease", ack.IPAddressLeaseTime(0), "server", ack.ServerIdentifier())
	return info, nil
}

// RenewLoop keeps a DHCP lease alive: it requests again at half the lease
// time and re-applies what it gets.
func (n *Network) RenewLoop(ctx context.Context, ifname string, lease time.Duration) {
	for {
		if lease <= 0 {
			lease = time.Hour
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lease / 2):
		}
		l, err := n.dhcp(ctx, ifname)
		if err != nil {
			n.Log.Error("dhcp renew failed", "nic", ifname, "err", err)
			lease = 2 * time.Minute
			continue
		}
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			continue
		}
		if _, err := n.applyLease(link, l, api.MgmtInfo{NIC: ifname}); err != nil {
			n.Log.Error("dhcp renew apply failed", "nic", ifname, "err", err)
		}
		lease = l.ACK.IPAddressLeaseTime(time.Hour)
	}
}

func applyAddress(link netlink.Link, p netip.Prefix, gw netip.Addr) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, link.Attrs().Name, err)
	}
	if gw.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// leaseTime extracts the lease duration for RenewLoop.
func leaseTime(ack *dhcpv4.DHCPv4) time.Duration { return ack.IPAddressLeaseTime(time.Hour) }
