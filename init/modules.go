package boot

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// Alias is one "alias PATTERN MODULE" line of modules.alias.
type Alias struct {
	Pattern, Module string
}

// ParseAliases reads modules.alias.
func ParseAliases(r *bufio.Scanner) ([]Alias, error) {
	var out []Alias
	for r.Scan() {
		f := strings.Fields(r.Text())
		if len(f) != 3 || f[0] != "alias" {
			continue
		}
		out = append(out, Alias{Pattern: f[1], Module: f[2]})
	}
	return out, r.Err()
}

// MatchAliases returns the modules whose alias patterns match modalias, in
// a stable order.
func MatchAliases(aliases []Alias, modalias string) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range aliases {
		if ok, _ := path.Match(a.Pattern, modalias); ok && !seen[a.Module] {
			seen[a.Module] = true
			out = append(out, a.Module)
		}
	}
	return out
}

// Modules loads kernel modules by name with their dependencies
// (u-root's kmodule reads modules.dep and modules.builtin), and by device
// modalias (coldplug), since the stock kernel's drivers are modules and
// nothing like udev runs on the host.
type Modules struct {
	Log *slog.Logger
	Dir string // /lib/modules/<release>
	// Params are the options of each module (by name, '-' as '_') from
	// the kernel command line (ModuleParams), given when init loads the
	// module by name, as modprobe does on Debian.
	Params  map[string]string
	prober  *kmodule.Prober
	aliases []Alias
	tried   map[string]bool
}

// ErrNotApplicable marks a module that refused to load because its
// hardware is absent (kvm_intel on AMD): not a failure.
var ErrNotApplicable = errors.New("module not applicable to this machine")

// NewModules reads the module database of the running kernel.
func NewModules(log *slog.Logger, dir string) (*Modules, error) {
	return newModules(log, dir, nil)
}

// newModules takes a dry-run hook for tests: it receives module paths
// instead of loading them.
func newModules(log *slog.Logger, dir string, dryRun func(string)) (*Modules, error) {
	rel := filepath.Base(dir)
	p, err := kmodule.NewProber(kmodule.ProbeOpts{RootDir: strings.TrimSuffix(dir, filepath.Join("/lib/modules", rel)), KVer: rel, DryRunCB: dryRun, IgnoreProcMods: dryRun != nil})
	if err != nil {
		return nil, fmt.Errorf("module database %s: %w", dir, err)
	}
	m := &Modules{Log: log, Dir: dir, prober: p, tried: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		m.aliases, err = ParseAliases(sc)
		if err != nil {
			return nil, fmt.Errorf("modules.alias: %w", err)
		}
	}
	return m, nil
}

// ModuleParams collects the module options of a kernel command line:
// "kvm_amd.npt=0 bonding.max_bonds=0" gives kvm_amd "npt=0" and bonding
// "max_bonds=0" (module names with '-' as '_', options in order). Quoted
// values are not supported; the kernel itself applies such options only to
// built-in modules, modprobe to the others.
func ModuleParams(cmdline string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		key, _, hasValue := strings.Cut(f, "=")
		mod, param, ok := strings.Cut(key, ".")
		if !ok || mod == "" || param == "" || strings.ContainsAny(mod, "/\"") || !hasValue && strings.Contains(param, ".") {
			continue
		}
		param = f[len(mod)+1:] // with its value
		mod = strings.ReplaceAll(mod, "-", "_")
		if strings.HasPrefix(mod, "flashvisor") {
			continue // our own keys, not a module's
		}
		if out[mod] != "" {
			out[mod] += " "
		}
		out[mod] += param
	}
	return out
}

// Load loads one module and its dependencies, with its command line
// options (Params).
func (m *Modules) Load(name string) error {
	m.tried[name] = true
	err := m.prober.Probe(name, m.Params[strings.ReplaceAll(name, "-", "_")])
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%s: %w (%v)", name, ErrNotApplicable, err)
	default:
		return fmt.Errorf("load module %s: %w", name, err)
	}
}

// LoadList loads the modules named in a modules.load file (one per line,
// '#' comments). Modules for absent hardware are logged, not failures.
func (m *Modules) LoadList(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		name := strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
		if name == "" {
			continue
		}
		if err := m.Load(name); err != nil {
			if errors.Is(err, ErrNotApplicable) {
				m.Log.Info("module skipped", "module", name, "why", err)
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Coldplug loads the drivers for every device in sysfs, repeating while new
// devices appear (virtio_pci's devices need virtio_net, and so on). It
// returns the modules it loaded.
func (m *Modules) Coldplug(sysBus string) ([]string, error) {
	var loaded []string
	var errs []error
	for pass := 0; pass < 4; pass++ {
		want := map[string]bool{}
		// Every device sits on a bus; walking the bus links is far cheaper
		// than all of /sys/devices (seconds under emulation).
		files, _ := filepath.Glob(filepath.Join(sysBus, "*", "devices", "*", "modalias"))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			for _, mod := range MatchAliases(m.aliases, strings.TrimSpace(string(b))) {
				if !m.tried[mod] {
					want[mod] = true
				}
			}
		}
		if len(want) == 0 {
			break
		}
		names := make([]string, 0, len(want))
		for n := range want {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := m.Load(n); err != nil {
				if !errors.Is(err, ErrNotApplicable) {
					errs = append(errs, err)
				}
				continue
			}
			loaded = append(loaded, n)
		}
	}
	return loaded, errors.Join(errs...)
}

// Modprobe is what the kernel runs for request_module() (fs-ext4,
// crypto-crc32c, nft-chain-..., net-pf-...): /sbin/modprobe is a link to
// init. It resolves a name or alias and loads it, quietly.
func Modprobe(args []string, dir string) int {
	var names []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		names = append(names, a)
	}
	m, err := NewModules(slog.New(slog.DiscardHandler), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "modprobe:", err)
		return 1
	}
	rc := 0
	for _, n := range names {
		if m.Load(n) == nil {
			continue
		}
		mods := MatchAliases(m.aliases, n)
		if len(mods) == 0 {
			rc = 1
			continue
		}
		for _, mod := range mods {
			if err := m.Load(mod); err != nil {
				rc = 1
			}
		}
	}
	return rc
}
