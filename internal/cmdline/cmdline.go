// Package cmdline parses the kernel command line and the flashvisor.* keys
// that configure a host at boot (SPEC INIT-4). It is pure: callers pass the
// text of /proc/cmdline.
package cmdline

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Prefix starts every key of ours.
const Prefix = "flashvisor."

// Split splits a kernel command line into key=value pairs the way the kernel
// does: whitespace separates parameters, double quotes may enclose spaces.
// A parameter without '=' maps to "".
func Split(line string) map[string]string {
	out := map[string]string{}
	var cur strings.Builder
	inQuote := false
	flush := func() {
		p := cur.String()
		cur.Reset()
		if p == "" {
			return
		}
		k, v, _ := strings.Cut(p, "=")
		out[k] = v
	}
	for _, r := range line {
		switch {
		case r == '"':
			inQuote = !inQuote
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}

// Mgmt is the management address configuration.
type Mgmt struct {
	DHCP    bool
	Address netip.Prefix // static only
	Gateway netip.Addr   // static only, may be invalid (no default route)
}

// String renders m in the command line syntax.
func (m Mgmt) String() string {
	if m.DHCP {
		return "dhcp"
	}
	if m.Gateway.IsValid() {
		return m.Address.String() + "," + m.Gateway.String()
	}
	return m.Address.String()
}

// Config is the host configuration found on the command line. Zero values
// mean "not given".
type Config struct {
	Hostname  string
	Token     string // API bearer token; a secret: never log it
	Mgmt      *Mgmt
	MgmtNIC   string // interface name (eth0) or MAC address
	MgmtVLAN  int    // 0 = untagged
	InitState string // device to initialise as state partition when blank
	Shell     bool   // emergency shell on the console
	NTP       []string
	Syslog    string
	// VSM image only (VSM-1): the switch's domain ID for a fresh
	// configuration, the redundancy role, the address(es) hosts reach this
	// VSM at (host:port; default its management address) and the HA peer.
	VSMDomain    int
	VSMRole      string
	VSMAdvertise []string
	VSMPeer      string
	// VSMControlNIC is the VSM VM's control NIC (its first vNIC): svs mode
	// L2 reaches the hosts over its IPv6 link-local address.
	VSMControlNIC string
	// VSMPacketNIC is the VSM VM's packet NIC (its third vNIC): in svs
	// mode L2 the hosts relay CDP/IGMP frames to it on the packet VLAN.
	VSMPacketNIC string
}

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)
	nicRE      = regexp.MustCompile(`^[a-zA-Z0-9_.:-]{1,17}$`)
	tokenRE    = regexp.MustCompile(`^[\x21-\x7e]{16,256}$`)
)

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid kernel command line")

// Parse extracts and validates the flashvisor.* keys. Unknown flashvisor.*
// keys are an error so a typo is not silently ignored; all other keys belong
// to the kernel and are skipped. Every problem is reported, joined.
func Parse(line string) (Config, error) {
	var c Config
	var errs []error
	bad := func(key, val, why string) {
		if key == Prefix+"token" {
			val = "<redacted>"
		}
		errs = append(errs, fmt.Errorf("%w: %s=%q: %s", ErrInvalid, key, val, why))
	}
	for k, v := range Split(line) {
		if !strings.HasPrefix(k, Prefix) {
			continue
		}
		switch strings.TrimPrefix(k, Prefix) {
		case "hostname":
			if len(v) > 253 || !hostnameRE.MatchString(v) {
				bad(k, v, "not a valid host name")
				continue
			}
			c.Hostname = v
		case "token":
			if !tokenRE.MatchString(v) {
				bad(k, v, "token must be 16-256 printable ASCII characters without spaces")
				continue
			}
			c.Token = v
		case "mgmt":
			m, err := ParseMgmt(v)
			if err != nil {
				bad(k, v, err.Error())
				continue
			}
			c.Mgmt = &m
		case "mgmtnic":
			if !nicRE.MatchString(v) {
				bad(k, v, "not an interface name or MAC address")
				continue
			}
			c.MgmtNIC = v
		case "mgmtvlan":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 4094 {
				bad(k, v, "VLAN must be 0 (untagged) to 4094")
				continue
			}
			c.MgmtVLAN = n
		case "initstate":
			if !strings.HasPrefix(v, "/dev/") || strings.Contains(v, "..") {
				bad(k, v, "must be a device path under /dev/")
				continue
			}
			c.InitState = v
		case "shell":
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad(k, v, "must be true or false")
				continue
			}
			c.Shell = b
		case "ntp":
			for _, s := range strings.Split(v, ",") {
				if s == "" || len(s) > 253 {
					bad(k, v, "empty or overlong NTP server")
					continue
				}
				c.NTP = append(c.NTP, s)
			}
		case "syslog":
			if v == "" || len(v) > 260 {
				bad(k, v, "must be host[:port]")
				continue
			}
			c.Syslog = v
		case "vsm.domain":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 4095 {
				bad(k, v, "domain ID must be 1-4095")
				continue
			}
			c.VSMDomain = n
		case "vsm.role":
			if v != "standalone" && v != "primary" && v != "secondary" {
				bad(k, v, "must be standalone, primary or secondary")
				continue
			}
			c.VSMRole = v
		case "vsm.advertise":
			for _, s := range strings.Split(v, ",") {
				if _, _, err := net.SplitHostPort(s); err != nil {
					bad(k, v, "want host:port[,host:port]")
					continue
				}
				c.VSMAdvertise = append(c.VSMAdvertise, s)
			}
		case "vsm.peer":
			if _, _, err := net.SplitHostPort(v); err != nil {
				bad(k, v, "want host:port")
				continue
			}
			c.VSMPeer = v
		case "vsm.controlnic":
			if !nicRE.MatchString(v) || strings.Contains(v, ":") {
				bad(k, v, "want an interface name")
				continue
			}
			c.VSMControlNIC = v
		case "vsm.packetnic":
			if !nicRE.MatchString(v) || strings.Contains(v, ":") {
				bad(k, v, "want an interface name")
				continue
			}
			c.VSMPacketNIC = v
		default:
			bad(k, v, "unknown key")
		}
	}
	return c, errors.Join(errs...)
}

// ParseMgmt parses "dhcp" or "ADDR/PREFIX[,GATEWAY]".
func ParseMgmt(v string) (Mgmt, error) {
	if v == "dhcp" {
		return Mgmt{DHCP: true}, nil
	}
	addr, gw, hasGW := strings.Cut(v, ",")
	p, err := netip.ParsePrefix(addr)
	if err != nil {
		return Mgmt{}, fmt.Errorf("want dhcp or ADDR/PREFIX,GATEWAY: %w", err)
	}
	if !p.Addr().Is4() && !p.Addr().Is6() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
		return Mgmt{}, fmt.Errorf("%s is not a usable host address", p.Addr())
	}
	m := Mgmt{Address: p}
	if hasGW {
		g, err := netip.ParseAddr(gw)
		if err != nil {
			return Mgmt{}, fmt.Errorf("gateway: %w", err)
		}
		if !p.Masked().Contains(g) {
			return Mgmt{}, fmt.Errorf("gateway %s is not in %s", g, p.Masked())
		}
		m.Gateway = g
	}
	return m, nil
}
