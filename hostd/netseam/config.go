package netseam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Limits.
const (
	// MaxNameLen bounds port group names (vSphere allows 80 too).
	MaxNameLen = 80
	// MaxVLAN is the highest access VLAN (4095 is reserved).
	MaxVLAN = 4094
	// configVersion is the only file format this code reads.
	configVersion = 1
)

// Errors callers map to API codes.
var (
	ErrInvalid       = errors.New("invalid")
	ErrNoPortGroup   = errors.New("no such port group")
	ErrExists        = errors.New("port group already exists")
	ErrInUse         = errors.New("port group in use")
	ErrCorrupt       = errors.New("port group file is corrupt")
	ErrNameCollision = errors.New("interface name collision")
)

// CheckPortGroup validates one port group on its own: a name of 1-80
// letters, digits, space, '.', '_', '-', '(' or ')' that starts with a
// letter or digit and does not end in a space ("VM Network", "vlan-100
// (prod)"); a VLAN of 0-4094; an optional host address as a CIDR.
func CheckPortGroup(pg api.PortGroup) error {
	if err := checkName(pg.Name); err != nil {
		return fmt.Errorf("port group name %q: %w: %w", pg.Name, ErrInvalid, err)
	}
	if pg.VLAN < 0 || pg.VLAN > MaxVLAN {
		return fmt.Errorf("port group %q: VLAN %d: %w: must be 0 (none) to %d", pg.Name, pg.VLAN, ErrInvalid, MaxVLAN)
	}
	if pg.HostAddress != "" {
		p, err := netip.ParsePrefix(pg.HostAddress)
		if err != nil {
			return fmt.Errorf("port group %q: host address %q: %w: %w", pg.Name, pg.HostAddress, ErrInvalid, err)
		}
		if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.Zone() != "" {
			return fmt.Errorf("port group %q: host address %q: %w: not a usable unicast address", pg.Name, pg.HostAddress, ErrInvalid)
		}
	}
	return nil
}

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
	return nil
}

// checkPortGroups validates a whole list: each entry, unique names, and,
// when an uplink is configured, unique VLANs. The uplink rule comes from the
// bridge-per-port-group design: the uplink (VLAN 0) or its 802.1Q
// sub-interface can be a member of one bridge only. (A vSphere switch lets two
// port groups share a VLAN; the VEM's single VLAN-filtering bridge will.)
func checkPortGroups(pgs []api.PortGroup, uplink string) error {
	names := map[string]bool{}
	vlans := map[int]string{}
	for _, pg := range pgs {
		if err := CheckPortGroup(pg); err != nil {
			return err
		}
		if names[pg.Name] {
			return fmt.Errorf("port group %q: %w", pg.Name, ErrExists)
		}
		names[pg.Name] = true
		if uplink == "" {
			continue
		}
		if other, ok := vlans[pg.VLAN]; ok {
			return fmt.Errorf("port group %q: VLAN %d already used by port group %q on uplink %s: %w", pg.Name, pg.VLAN, other, uplink, ErrInvalid)
		}
		vlans[pg.VLAN] = pg.Name
	}
	return nil
}

// configFile is the persisted port group list.
type configFile struct {
	Version    int             `json:"version"`
	PortGroups []api.PortGroup `json:"port_groups"`
}

// loadConfig reads the port groups from path. A missing file is an empty
// list (first boot); anything unreadable or invalid is ErrCorrupt, and the
// file is left as it is for the operator to look at. Conflicts that only
// arise with an uplink (two port groups on one VLAN) are not corruption: the
// uplink is configured elsewhere, and reconcile reports them.
func loadConfig(path string) ([]api.PortGroup, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read port groups: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f configFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: %w: data after the JSON object", path, ErrCorrupt)
	}
	if f.Version != configVersion {
		return nil, fmt.Errorf("%s: %w: version %d, this hostd reads version %d", path, ErrCorrupt, f.Version, configVersion)
	}
	if err := checkPortGroups(f.PortGroups, ""); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	return f.PortGroups, nil
}

// saveConfig writes the port groups atomically.
func saveConfig(path string, pgs []api.PortGroup) error {
	if pgs == nil {
		pgs = []api.PortGroup{}
	}
	data, err := json.MarshalIndent(configFile{Version: configVersion, PortGroups: pgs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode port groups: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("save port groups: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save port groups: %w", err)
	}
	return nil
}
