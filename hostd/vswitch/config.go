package vswitch

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// Limits.
const (
	// MaxNameLen bounds port group names (vSphere allows 80 too).
	MaxNameLen = 80
	// MaxVLAN is the highest access VLAN (4095 is reserved).
	MaxVLAN = 4094
	// Module is the standalone switch's module number: its uplinks are
	// Eth3/P, like the first VEM of a Nexus 1000V.
	Module = 3
	// uplinkProfile is the ethernet profile of every uplink; port group
	// names cannot start with "fv-".
	uplinkProfile = "fv-uplink"
	// maxMACs is the port-security maximum (the VEM's MaxMACsPerPort).
	maxMACs = 64
	// minRate is the lowest rate limit (8 kbit/s).
	minRate    = 8000
	maxVeth    = 4096
	maxUplinks = 32
	// configVersion is the only file format this code reads.
	configVersion = 1
)

// Config is the standalone switch's configuration (VEM-7), persisted as
// JSON on the state partition: the desired state hostd turns into the
// VEM's SwitchConfig.
type Config struct {
	Version      int                  `json:"version"`
	Uplinks      []api.Uplink         `json:"uplinks"`
	PortChannels []api.PortChannel    `json:"port_channels"`
	PortGroups   []api.PortGroup      `json:"port_groups"`
	VMKNICs      []api.VMKNIC         `json:"vmknics"`
	Veths        []api.VethAssignment `json:"veths"`
}

func (c Config) clone() Config {
	d := c
	d.Uplinks = slices.Clone(c.Uplinks)
	d.PortChannels = slices.Clone(c.PortChannels)
	for i := range d.PortChannels {
		d.PortChannels[i].Members = slices.Clone(d.PortChannels[i].Members)
	}
	d.PortGroups = slices.Clone(c.PortGroups)
	d.VMKNICs = slices.Clone(c.VMKNICs)
	for i := range d.VMKNICs {
		d.VMKNICs[i].Services = slices.Clone(d.VMKNICs[i].Services)
	}
	d.Veths = slices.Clone(c.Veths)
	return d
}

func (c *Config) portGroup(name string) *api.PortGroup {
	for i := range c.PortGroups {
		if c.PortGroups[i].Name == name {
			return &c.PortGroups[i]
		}
	}
	return nil
}

func (c *Config) vmknic(name string) *api.VMKNIC {
	for i := range c.VMKNICs {
		if c.VMKNICs[i].Name == name {
			return &c.VMKNICs[i]
		}
	}
	return nil
}

func (c *Config) uplink(nic string) *api.Uplink {
	for i := range c.Uplinks {
		if c.Uplinks[i].NIC == nic {
			return &c.Uplinks[i]
		}
	}
	return nil
}

// ProfileName is the VEM port profile of a port group: the VEM's profile
// names have no spaces, so each space becomes '_' ("VM Network" ->
// "VM_Network"); Check refuses two port groups that would share one.
func ProfileName(pg string) string { return strings.ReplaceAll(pg, " ", "_") }

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("must be 1-%d characters", MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return errors.New("must start with a letter or digit")
		}
		if !alnum && strings.IndexByte(" ._-()", c) < 0 {
			return fmt.Errorf("%q not allowed: use letters, digits, space, '.', '_', '-', '(' and ')'", string(rune(c)))
		}
	}
	if name[len(name)-1] == ' ' {
		return errors.New("must not end with a space")
	}
	if strings.HasPrefix(name, "fv-") {
		return errors.New(`names starting with "fv-" are reserved`)
	}
	return nil
}

// CheckPortGroup validates one port group on its own. The VLAN lists of
// trunks are checked by the VEM when the configuration is applied.
func CheckPortGroup(pg api.PortGroup) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("port group %q: %w: %s", pg.Name, netseam.ErrInvalid, fmt.Sprintf(format, args...))
	}
	if err := checkName(pg.Name); err != nil {
		return fmt.Errorf("port group name %q: %w: %w", pg.Name, netseam.ErrInvalid, err)
	}
	if pg.VLAN < 0 || pg.VLAN > MaxVLAN {
		return bad("VLAN %d: must be 0 (none) to %d", pg.VLAN, MaxVLAN)
	}
	if !pg.Trunk && (pg.AllowedVLANs != "" || pg.NativeVLAN != 0) {
		return bad("allowed VLANs and native VLAN are for trunk port groups")
	}
	if pg.Trunk && pg.VLAN != 0 {
		return bad("a trunk port group has no access VLAN (use allowed VLANs and native VLAN)")
	}
	if pg.NativeVLAN < 0 || pg.NativeVLAN > MaxVLAN {
		return bad("native VLAN %d: must be 0 (none) to %d", pg.NativeVLAN, MaxVLAN)
	}
	if pg.MaxMACs < 0 || pg.MaxMACs > maxMACs {
		return bad("max MACs %d: must be 0 (no port security) to %d", pg.MaxMACs, maxMACs)
	}
	switch pg.Violation {
	case "", api.ViolationShutdown, api.ViolationProtect:
	default:
		return bad("violation %q: must be %q or %q", pg.Violation, api.ViolationShutdown, api.ViolationProtect)
	}
	if pg.Violation != "" && pg.MaxMACs == 0 {
		return bad("a violation action needs max MACs (port security)")
	}
	for dir, r := range map[string]*api.RateLimit{"ingress": pg.Ingress, "egress": pg.Egress} {
		if r != nil && r.BitsPerSecond < minRate {
			return bad("%s rate %d bit/s: at least %d", dir, r.BitsPerSecond, minRate)
		}
	}
	if pg.System && pg.Trunk {
		return bad("a system port group must be an access port group")
	}
	return nil
}

// Check validates a whole configuration: each port group, unique names and
// profile names, uplinks on distinct NICs with distinct ports, port-channels
// of existing uplinks, vEths on existing port groups with unique numbers
// and MACs.
func (c *Config) Check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", netseam.ErrInvalid, fmt.Sprintf(format, args...)))
	}
	profiles := map[string]string{}
	for _, pg := range c.PortGroups {
		if err := CheckPortGroup(pg); err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := profiles[ProfileName(pg.Name)]; dup {
			if other == pg.Name {
				errs = append(errs, fmt.Errorf("port group %q: %w", pg.Name, netseam.ErrExists))
			} else {
				bad("port group %q: too close to %q (they differ only in spaces and underscores)", pg.Name, other)
			}
		}
		profiles[ProfileName(pg.Name)] = pg.Name
	}
	if len(c.Uplinks) > maxUplinks {
		bad("%d uplinks: at most %d", len(c.Uplinks), maxUplinks)
	}
	nics, ports := map[string]bool{}, map[string]bool{}
	for _, u := range c.Uplinks {
		if !validIfName(u.NIC) {
			bad("uplink %q: not an interface name", u.NIC)
		}
		if nics[u.NIC] {
			bad("uplink %s: listed twice", u.NIC)
		}
		nics[u.NIC] = true
		if n, ok := ethNumber(u.Port); !ok || n < 1 || n > maxUplinks {
			bad("uplink %s: port %q: want Eth%d/1-%d", u.NIC, u.Port, Module, maxUplinks)
		} else if ports[u.Port] {
			bad("uplink %s: port %s already used", u.NIC, u.Port)
		}
		ports[u.Port] = true
	}
	pcs := map[string]bool{}
	for _, pc := range c.PortChannels {
		n, ok := numbered(pc.Name, "Po")
		if !ok || n < 1 || n > 4096 {
			bad("port-channel %q: want Po1-Po4096", pc.Name)
		}
		if pcs[pc.Name] {
			bad("port-channel %s: defined twice", pc.Name)
		}
		pcs[pc.Name] = true
		switch pc.Mode {
		case "", api.ChannelActiveBackup, api.ChannelLACP, api.ChannelMACPinning:
		default:
			bad("port-channel %s: mode %q: want %s, %s or %s", pc.Name, pc.Mode, api.ChannelActiveBackup, api.ChannelLACP, api.ChannelMACPinning)
		}
		if len(pc.Members) == 0 {
			bad("port-channel %s: no members", pc.Name)
		}
		for _, m := range pc.Members {
			u := c.uplink(m)
			if u == nil {
				bad("port-channel %s: member %s is not an uplink", pc.Name, m)
			} else if u.PortChannel != pc.Name {
				bad("port-channel %s: member %s is in %q", pc.Name, m, u.PortChannel)
			}
		}
	}
	for _, u := range c.Uplinks {
		if u.PortChannel != "" && !pcs[u.PortChannel] {
			bad("uplink %s: port-channel %s does not exist", u.NIC, u.PortChannel)
		}
	}
	veths, macs, vnics := map[string]bool{}, map[string]string{}, map[string]string{}
	if len(c.Veths) > maxVeth {
		bad("%d vEth ports: at most %d", len(c.Veths), maxVeth)
	}
	for _, v := range c.Veths {
		if n, ok := numbered(v.Port, "Veth"); !ok || n < 1 {
			bad("vEth %q: want VethN", v.Port)
		}
		if veths[v.Port] {
			bad("%s: assigned twice", v.Port)
		}
		veths[v.Port] = true
		if c.portGroup(v.PortGroup) == nil {
			errs = append(errs, fmt.Errorf("%s: port group %q: %w", v.Port, v.PortGroup, netseam.ErrNoPortGroup))
		}
		hw, err := net.ParseMAC(v.MAC)
		if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			bad("%s: MAC %q: not a unicast Ethernet address", v.Port, v.MAC)
		} else if other, dup := macs[hw.String()]; dup {
			bad("%s: MAC %s already on %s", v.Port, hw, other)
		} else {
			macs[hw.String()] = v.Port
		}
		key := v.VM + "\x00" + strconv.Itoa(v.NIC)
		if v.VMKNIC != "" {
			key = "\x00vmknic " + v.VMKNIC
			if v.VM != "" {
				bad("%s: both a VM's and vmknic %s's", v.Port, v.VMKNIC)
			}
			if c.vmknic(v.VMKNIC) == nil {
				bad("%s: vmknic %s is not configured", v.Port, v.VMKNIC)
			}
		} else if v.VM == "" {
			bad("%s: neither a VM's nor a vmknic's", v.Port)
		}
		if other, dup := vnics[key]; dup {
			bad("%s: %s already has %s", v.Port, strings.TrimPrefix(key, "\x00"), other)
		}
		vnics[key] = v.Port
	}
	if err := vmknic.Validate(c.VMKNICs); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", netseam.ErrInvalid, err))
	}
	for _, k := range c.VMKNICs {
		if c.portGroup(k.PortGroup) == nil {
			errs = append(errs, fmt.Errorf("vmknic %s: port group %q: %w", k.Name, k.PortGroup, netseam.ErrNoPortGroup))
		}
		if k.MAC == "" {
			bad("vmknic %s: no MAC assigned", k.Name)
		}
		if !slices.ContainsFunc(c.Veths, func(v api.VethAssignment) bool { return v.VMKNIC == k.Name }) {
			bad("vmknic %s: no vEth", k.Name)
		}
	}
	return errors.Join(errs...)
}

func validIfName(s string) bool {
	return s != "" && len(s) <= 15 && !strings.ContainsAny(s, "/ \t\n:") && s != "." && s != ".."
}

func numbered(s, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || rest == "" || strings.TrimLeft(rest, "0123456789") != "" || rest[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

func ethNumber(port string) (int, bool) {
	return numbered(port, fmt.Sprintf("Eth%d/", Module))
}

// Sort puts every list in a stable order (by name, by number).
func (c *Config) Sort() {
	slices.SortFunc(c.Uplinks, func(a, b api.Uplink) int {
		x, _ := ethNumber(a.Port)
		y, _ := ethNumber(b.Port)
		return cmp.Compare(x, y)
	})
	slices.SortFunc(c.PortChannels, func(a, b api.PortChannel) int {
		x, _ := numbered(a.Name, "Po")
		y, _ := numbered(b.Name, "Po")
		return cmp.Compare(x, y)
	})
	slices.SortFunc(c.PortGroups, func(a, b api.PortGroup) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Veths, func(a, b api.VethAssignment) int {
		x, _ := numbered(a.Port, "Veth")
		y, _ := numbered(b.Port, "Veth")
		return cmp.Compare(x, y)
	})
}

// Load reads the configuration from path: (zero, false, nil) if there is
// none (first boot); anything unreadable or invalid is ErrCorrupt, and the
// file is left as it is for the operator to look at.
func Load(path string) (Config, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("read switch configuration: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return Config{}, false, fmt.Errorf("%s: %w: %w", path, netseam.ErrCorrupt, err)
	}
	if dec.More() {
		return Config{}, false, fmt.Errorf("%s: %w: data after the JSON object", path, netseam.ErrCorrupt)
	}
	if c.Version != configVersion {
		return Config{}, false, fmt.Errorf("%s: %w: version %d, this hostd reads version %d", path, netseam.ErrCorrupt, c.Version, configVersion)
	}
	if err := c.Check(); err != nil {
		return Config{}, false, fmt.Errorf("%s: %w: %w", path, netseam.ErrCorrupt, err)
	}
	c.Sort()
	return c, true, nil
}

// Save writes the configuration atomically (only when it changed: flash
// media).
func Save(path string, c Config) error {
	c.Version = configVersion
	for _, l := range []*[]api.Uplink{&c.Uplinks} {
		if *l == nil {
			*l = []api.Uplink{}
		}
	}
	if c.PortChannels == nil {
		c.PortChannels = []api.PortChannel{}
	}
	if c.PortGroups == nil {
		c.PortGroups = []api.PortGroup{}
	}
	if c.Veths == nil {
		c.Veths = []api.VethAssignment{}
	}
	if c.VMKNICs == nil {
		c.VMKNICs = []api.VMKNIC{}
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode switch configuration: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("save switch configuration: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save switch configuration: %w", err)
	}
	return nil
}
