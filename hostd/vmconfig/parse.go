package vmconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flashvisor/flashvisor/api"
)

// entry is one `key = "value"` line.
type entry struct {
	line  int
	key   string // as written
	value string // unescaped
}

// Parse reads a parameter file. It reports every problem it finds, each
// with its line, key, value and reason, joined into one error; a file with
// any problem gives no spec. Keys are matched without regard to case, as
// ESXi does; unknown keys, duplicate keys and a missing or unknown
// config.version are errors. Whatever Parse accepts passes Validate, and
// Format of the result parses back to the same spec.
func Parse(data []byte) (api.VMSpec, error) {
	if len(data) > MaxFileSize {
		return api.VMSpec{}, &Error{Reason: fmt.Sprintf("file is %d bytes, more than the %d allowed", len(data), MaxFileSize)}
	}
	entries, errs := lex(data)
	syntaxOK := len(errs) == 0
	byKey := map[string]entry{} // lower-case key -> first occurrence
	var unique []entry
	for _, e := range entries {
		k := strings.ToLower(e.key)
		if first, dup := byKey[k]; dup {
			errs = append(errs, &Error{Line: e.line, Key: e.key, Value: e.value,
				Reason: fmt.Sprintf("duplicate key (first set on line %d)", first.line)})
			continue
		}
		byKey[k] = e
		unique = append(unique, e)
	}
	if err := checkVersion(byKey); err != nil {
		// A file from a newer Flashvisor may use keys this host does not
		// know: listing them as unknown would only hide the real problem.
		return api.VMSpec{}, joinErrors(append(errs, err))
	}
	p := parser{devices: map[device]map[string]entry{}}
	for _, e := range unique {
		if strings.EqualFold(e.key, VersionKey) {
			continue
		}
		if err := p.add(e); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.build()...)
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	if len(errs) > 0 && (!syntaxOK || p.gaps) {
		return api.VMSpec{}, joinErrors(errs)
	}
	// With only bad values, still check the rest so that one read shows
	// every problem; but a value already reported (its zero value now in
	// the spec) is not reported a second time.
	reported := map[string]bool{}
	for _, e := range errs {
		reported[strings.ToLower(e.Key)] = true
	}
	for _, e := range validate(p.spec) {
		if !reported[strings.ToLower(e.Key)] {
			e.Line = lineOf(unique, e.Key)
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return api.VMSpec{}, joinErrors(errs)
	}
	return p.spec, nil
}

// lex splits data into entries. Syntax: blank lines, lines starting with
// '#', and `key = "value"` lines, where value may hold `\"` and `\\` and the
// line may end with a '#' comment.
func lex(data []byte) ([]entry, []*Error) {
	var entries []entry
	var errs []*Error
	for n, raw := range strings.Split(string(data), "\n") {
		ln := n + 1
		if !utf8.ValidString(raw) {
			errs = append(errs, &Error{Line: ln, Reason: "not UTF-8 text"})
			continue
		}
		s := strings.Trim(strings.TrimSuffix(raw, "\r"), " \t")
		if s == "" || s[0] == '#' {
			continue
		}
		key, rest, ok := strings.Cut(s, "=")
		key = strings.TrimRight(key, " \t")
		if !ok {
			errs = append(errs, &Error{Line: ln, Reason: `want key = "value"`})
			continue
		}
		if !validKey(key) {
			errs = append(errs, &Error{Line: ln, Reason: fmt.Sprintf("bad key %q: use letters, digits and . : _ -", key)})
			continue
		}
		value, err := unquote(strings.TrimLeft(rest, " \t"))
		if err != "" {
			errs = append(errs, &Error{Line: ln, Key: key, Reason: err})
			continue
		}
		entries = append(entries, entry{line: ln, key: key, value: value})
	}
	return entries, errs
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".:_-", c) >= 0) {
			return false
		}
	}
	return true
}

// unquote reads `"value"` plus an optional comment; it returns the reason
// when s is not that.
func unquote(s string) (string, string) {
	if s == "" || s[0] != '"' {
		return "", "value must be in double quotes"
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) || s[i+1] != '"' && s[i+1] != '\\' {
				return "", `only \" and \\ may follow a backslash`
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			if tail := strings.TrimLeft(s[i+1:], " \t"); tail != "" && tail[0] != '#' {
				return "", fmt.Sprintf("unexpected %q after the closing quote", tail)
			}
			if len(b.String()) > MaxValueLen {
				return "", fmt.Sprintf("value longer than %d bytes", MaxValueLen)
			}
			return b.String(), ""
		case isControl(rune(c)):
			return "", "control character in value"
		default:
			b.WriteByte(c)
		}
	}
	return "", "missing closing quote"
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func checkVersion(byKey map[string]entry) *Error {
	e, ok := byKey[strings.ToLower(VersionKey)]
	if !ok {
		return &Error{Key: VersionKey, Reason: "missing: not a Flashvisor VM parameter file, or damaged", Err: ErrVersion}
	}
	n, err := strconv.Atoi(e.value)
	switch {
	case err == nil && n == Version:
		return nil
	case err == nil && n > Version:
		return &Error{Line: e.line, Key: e.key, Value: e.value, Err: ErrVersion,
			Reason: fmt.Sprintf("written by a newer Flashvisor; this host reads version %d", Version)}
	default:
		return &Error{Line: e.line, Key: e.key, Value: e.value, Err: ErrVersion,
			Reason: fmt.Sprintf("unknown version; this host reads version %d", Version)}
	}
}

// device names one device of the file: kind plus numbers.
type device struct {
	kind devKind
	bus  string // disks only
	n, m int
}

func (d device) String() string {
	switch d.kind {
	case devController:
		return controllerName(d.n)
	case devNIC:
		return nicName(d.n)
	case devCDROM:
		return cdromName
	}
	return DiskName(api.VirtualDisk{Bus: d.bus, Controller: d.n, Unit: d.m})
}

type parser struct {
	spec api.VMSpec
	// gaps: a missing device in a numbered sequence; the spec's devices do
	// not mean much then, so Validate's findings would only add noise.
	gaps    bool
	devices map[device]map[string]entry // property (canonical spelling) -> entry
}

// add files one entry under its scalar key, device or user namespace.
func (p *parser) add(e entry) *Error {
	bad := func(reason string) *Error { return &Error{Line: e.line, Key: e.key, Value: e.value, Reason: reason} }
	if isUserKey(e.key) {
		if p.spec.Extra == nil {
			p.spec.Extra = map[string]string{}
		}
		p.spec.Extra[e.key] = e.value
		return nil
	}
	for _, f := range slices.Concat(scalars(), trailers()) {
		if strings.EqualFold(e.key, f.key) {
			if err := f.set(&p.spec, e.value); err != nil {
				return bad(err.Error())
			}
			return nil
		}
	}
	name, prop, ok := strings.Cut(e.key, ".")
	if !ok {
		return bad("unknown key")
	}
	dev, reason := parseDevice(strings.ToLower(name))
	if reason != "" {
		return bad(reason)
	}
	i := slices.IndexFunc(props(dev.kind), func(p string) bool { return strings.EqualFold(p, prop) })
	if i < 0 {
		return bad("unknown key")
	}
	if p.devices[dev] == nil {
		p.devices[dev] = map[string]entry{}
	}
	p.devices[dev][props(dev.kind)[i]] = e
	return nil
}

// parseDevice reads a device name such as "scsi0", "scsi0:1", "nvme1:0",
// "virtioblk2", "sata0:0", "ethernet3". The reason is empty when it is one.
func parseDevice(name string) (device, string) {
	const unknown = "unknown key"
	prefix := strings.TrimRight(name, "0123456789:")
	nums := strings.Split(name[len(prefix):], ":")
	var ns []int
	for _, s := range nums {
		// No leading zeros: "scsi01" would otherwise be a second spelling of
		// "scsi0" and slip past the duplicate check.
		if s == "" || len(s) > 3 || len(s) > 1 && s[0] == '0' {
			return device{}, unknown
		}
		n, _ := strconv.Atoi(s)
		ns = append(ns, n)
	}
	switch {
	case prefix == "scsi" && len(ns) == 1:
		if ns[0] >= MaxSCSIControllers {
			return device{}, fmt.Sprintf("at most %d SCSI controllers (scsi0-scsi%d)", MaxSCSIControllers, MaxSCSIControllers-1)
		}
		return device{kind: devController, n: ns[0]}, ""
	case prefix == "scsi" && len(ns) == 2:
		return device{kind: devDisk, bus: api.DiskBusSCSI, n: ns[0], m: ns[1]}, ""
	case prefix == "nvme" && len(ns) == 2:
		return device{kind: devDisk, bus: api.DiskBusNVMe, n: ns[0], m: ns[1]}, ""
	case prefix == "virtioblk" && len(ns) == 1:
		return device{kind: devDisk, bus: api.DiskBusVirtio, n: ns[0]}, ""
	case prefix == "sata" && len(ns) == 2:
		if ns[0] != 0 || ns[1] != 0 {
			return device{}, "only sata0:0 (the CD-ROM) is supported"
		}
		return device{kind: devCDROM}, ""
	case prefix == "ethernet" && len(ns) == 1:
		if ns[0] >= MaxNICs {
			return device{}, fmt.Sprintf("at most %d vNICs (ethernet0-ethernet%d)", MaxNICs, MaxNICs-1)
		}
		return device{kind: devNIC, n: ns[0]}, ""
	}
	return device{}, unknown
}

// build turns the collected devices into the spec's devices.
func (p *parser) build() []*Error {
	var errs []*Error
	var ctrls, nics []int
	for dev, ps := range p.devices {
		if e, ok := ps["present"]; ok {
			var present bool
			if err := setBool(&present, e.value); err != nil {
				errs = append(errs, &Error{Line: e.line, Key: e.key, Value: e.value, Reason: err.Error()})
			} else if !present {
				errs = append(errs, &Error{Line: e.line, Key: e.key, Value: e.value,
					Reason: fmt.Sprintf("not supported: delete the %s keys to remove the device", dev)})
			}
		}
		switch dev.kind {
		case devController:
			ctrls = append(ctrls, dev.n)
		case devNIC:
			nics = append(nics, dev.n)
		case devDisk:
			d, err := buildDisk(dev, ps)
			if err != nil {
				errs = append(errs, err)
			}
			p.spec.Disks = append(p.spec.Disks, d)
		case devCDROM:
			c, err := buildCDROM(ps)
			errs = append(errs, err...)
			p.spec.CDROM = c
		}
	}
	p.spec.Disks = SortDisks(p.spec.Disks)
	if e := gap(ctrls, func(n int) map[string]entry { return p.devices[device{kind: devController, n: n}] },
		"SCSI controllers are numbered from scsi0 without gaps", controllerName); e != nil {
		errs = append(errs, e)
		p.gaps = true
	}
	for n := range len(ctrls) {
		ps := p.devices[device{kind: devController, n: n}]
		p.spec.SCSIControllers = append(p.spec.SCSIControllers, api.SCSIController{
			Model: enum(ps["virtualDev"].value, api.SCSIVirtio, api.SCSILSILogic),
		})
	}
	if e := gap(nics, func(n int) map[string]entry { return p.devices[device{kind: devNIC, n: n}] },
		"vNICs are numbered from ethernet0 without gaps", nicName); e != nil {
		errs = append(errs, e)
		p.gaps = true
	}
	for n := range len(nics) {
		nic, err := buildNIC(p.devices[device{kind: devNIC, n: n}])
		errs = append(errs, err...)
		p.spec.NICs = append(p.spec.NICs, nic)
	}
	return errs
}

// gap reports the first missing number in ns (which must be 0..len-1).
func gap(ns []int, props func(int) map[string]entry, why string, name func(int) string) *Error {
	slices.Sort(ns)
	for i, n := range ns {
		if n != i {
			first := firstEntry(props(n))
			return &Error{Line: first.line, Key: name(n), Reason: fmt.Sprintf("%s is missing: %s", name(i), why)}
		}
	}
	return nil
}

func firstEntry(ps map[string]entry) entry {
	var first entry
	for _, e := range ps {
		if first.line == 0 || e.line < first.line {
			first = e
		}
	}
	return first
}

func buildDisk(dev device, ps map[string]entry) (api.VirtualDisk, *Error) {
	d := api.VirtualDisk{
		Bus:          dev.bus,
		Controller:   dev.n,
		Unit:         dev.m,
		File:         ps["fileName"].value,
		Provisioning: enum(ps["provisioning"].value, api.ProvisionThin, api.ProvisionThick, api.ProvisionExisting),
		Format:       enum(ps["format"].value, api.DiskQcow2, api.DiskRaw),
	}
	if e, ok := ps["sizeMiB"]; ok {
		if err := setInt64(&d.SizeMiB, e.value); err != nil {
			return d, &Error{Line: e.line, Key: e.key, Value: e.value, Reason: err.Error()}
		}
	}
	return d, nil
}

func buildCDROM(ps map[string]entry) (*api.CDROM, []*Error) {
	var errs []*Error
	c := &api.CDROM{File: ps["fileName"].value}
	if e, ok := ps["deviceType"]; ok && !strings.EqualFold(e.value, cdromDeviceType) {
		errs = append(errs, &Error{Line: e.line, Key: e.key, Value: e.value,
			Reason: fmt.Sprintf("only %s (an ISO image) is supported", oneOf(cdromDeviceType))})
	}
	if e, ok := ps["startConnected"]; ok {
		if err := setBool(&c.StartConnected, e.value); err != nil {
			errs = append(errs, &Error{Line: e.line, Key: e.key, Value: e.value, Reason: err.Error()})
		}
	}
	return c, errs
}

func buildNIC(ps map[string]entry) (api.NIC, []*Error) {
	n := api.NIC{
		Model:       enum(ps["virtualDev"].value, api.NICVirtio, api.NICE1000, api.NICVmxnet3),
		PortGroup:   ps["networkName"].value,
		AddressType: enum(ps["addressType"].value, api.MACGenerated, api.MACStatic),
	}
	gen, hasGen := ps["generatedAddress"]
	st, hasStatic := ps["address"]
	var errs []*Error
	switch {
	case n.AddressType == api.MACStatic && hasGen:
		errs = append(errs, &Error{Line: gen.line, Key: gen.key, Value: gen.value,
			Reason: "the vNIC's addressType is static: its MAC goes in " + strings.TrimSuffix(gen.key, ".generatedAddress") + ".address"})
	case n.AddressType == api.MACGenerated && hasStatic:
		errs = append(errs, &Error{Line: st.line, Key: st.key, Value: st.value,
			Reason: "the vNIC's addressType is generated: its MAC goes in " + strings.TrimSuffix(st.key, ".address") + ".generatedAddress"})
	case hasGen && hasStatic:
		errs = append(errs, &Error{Line: st.line, Key: st.key, Value: st.value,
			Reason: "set either address (static) or generatedAddress, not both"})
	case hasStatic:
		n.MAC = st.value
	case hasGen:
		n.MAC = gen.value
	}
	return n, errs
}

// lineOf finds where key is set: Validate knows keys, the file knows
// lines. For a device name ("scsi0:1") it is the device's first line. 0
// when key is not in the file (a missing key).
func lineOf(entries []entry, key string) int {
	line := 0
	for _, e := range entries {
		if strings.EqualFold(e.key, key) {
			return e.line
		}
		isDevice := !strings.Contains(key, ".") && len(e.key) > len(key) && strings.EqualFold(e.key[:len(key)+1], key+".")
		if isDevice && (line == 0 || e.line < line) {
			line = e.line
		}
	}
	return line
}
