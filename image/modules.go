package image

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
)

// kmod is one loadable kernel module of the kernel package.
type kmod struct {
	name    string   // canonical name: '-' spelled '_'
	rel     string   // path relative to /lib/modules/KVER
	depends []string // hard dependencies (modinfo depends=)
	soft    []string // softdep targets resolved to module names
	softdep []string // raw softdep= values, for modules.softdep
	aliases []string
}

// modName is the canonical spelling of a module name or file name.
func modName(s string) string {
	s = path.Base(s)
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// kernelModules is the module set of one kernel release.
type kernelModules struct {
	dir     string // /usr/lib/modules/KVER in the index
	mods    map[string]*kmod
	builtin map[string]bool
}

// scanModules reads every module's .modinfo. Debian 12 ships plain .ko files
// (CONFIG_MODULE_COMPRESS_NONE) and no depmod output: modules.dep, .alias and
// .softdep are generated here from the modinfo that modpost recorded, which
// is what depmod would compute.
func scanModules(ix *index, dir string) (*kernelModules, error) {
	km := &kernelModules{dir: dir, mods: map[string]*kmod{}, builtin: map[string]bool{}}
	prefix := dir + "/kernel/"
	for p, e := range ix.entries {
		if !strings.HasPrefix(p, prefix) || e.kind != kindFile {
			continue
		}
		if strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst") || strings.HasSuffix(p, ".ko.gz") {
			return nil, fmt.Errorf("%s: compressed modules are not supported yet (decompress them at build time)", p)
		}
		if !strings.HasSuffix(p, ".ko") {
			continue
		}
		info, err := readModinfo(e.src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		m := &kmod{name: modName(p), rel: strings.TrimPrefix(p, dir+"/")}
		for _, kv := range info {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "depends":
				for _, d := range strings.Split(v, ",") {
					if d != "" {
						m.depends = append(m.depends, modName(d))
					}
				}
			case "alias":
				m.aliases = append(m.aliases, v)
			case "softdep":
				m.softdep = append(m.softdep, v)
			}
		}
		km.mods[m.name] = m
	}
	if len(km.mods) == 0 {
		return nil, fmt.Errorf("no modules under %s", dir)
	}
	// Softdeps name modules or aliases (ext4: "pre: crypto-crc32c").
	byAlias := map[string][]string{}
	for _, m := range km.mods {
		for _, a := range m.aliases {
			byAlias[a] = append(byAlias[a], m.name)
		}
	}
	for _, m := range km.mods {
		for _, sd := range m.softdep {
			for _, w := range strings.Fields(sd) {
				if strings.HasSuffix(w, ":") {
					continue
				}
				if _, ok := km.mods[modName(w)]; ok {
					m.soft = append(m.soft, modName(w))
				}
				m.soft = append(m.soft, byAlias[w]...)
			}
		}
		slices.Sort(m.soft)
	}
	if e, ok := ix.entries[dir+"/modules.builtin"]; ok {
		b, err := os.ReadFile(e.src)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Fields(string(b)) {
			km.builtin[modName(l)] = true
		}
	}
	return km, nil
}

func readModinfo(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	var kv []string
	for _, f := range bytes.Split(b, []byte{0}) {
		if len(f) > 0 {
			kv = append(kv, string(f))
		}
	}
	return kv, nil
}

// moduleClosure returns the modules to ship, in load order (dependencies
// first, otherwise by name): the wanted ones with their hard and soft
// dependencies. Built-in modules are skipped; a wanted module that is neither
// present nor built in is an error unless optional.
func moduleClosure(edges func(string) ([]string, bool), builtin map[string]bool, want, optional []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("module dependency cycle through %s", n)
		case 2:
			return nil
		}
		deps, ok := edges(n)
		if !ok {
			return fmt.Errorf("module %s: not found", n)
		}
		state[n] = 1
		for _, d := range slices.Sorted(slices.Values(deps)) {
			if builtin[d] {
				continue
			}
			if err := visit(d); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	roots := map[string]bool{}
	for _, n := range want {
		roots[modName(n)] = true
	}
	for _, n := range optional {
		if _, ok := edges(modName(n)); ok {
			roots[modName(n)] = true
		}
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for r := range roots {
			if !yield(r) {
				return
			}
		}
	}) {
		if builtin[n] {
			continue
		}
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// depFiles renders modules.dep, modules.alias, modules.softdep and
// modules.order for the shipped modules, in depmod's formats. A modules.dep
// line lists all of a module's dependencies, each before its own
// dependencies, so loading the line right to left works.
func (km *kernelModules) depFiles(ship []string, order []byte) map[string][]byte {
	shipped := map[string]bool{}
	for _, n := range ship {
		shipped[n] = true
	}
	var dep, alias, soft, ord bytes.Buffer
	for _, n := range slices.Sorted(slices.Values(ship)) {
		m := km.mods[n]
		deps, _ := moduleClosure(func(x string) ([]string, bool) {
			mm, ok := km.mods[x]
			if !ok {
				return nil, false
			}
			return mm.depends, true
		}, km.builtin, []string{n}, nil)
		fmt.Fprintf(&dep, "%s:", m.rel)
		for i := len(deps) - 2; i >= 0; i-- { // the last one is n itself
			fmt.Fprintf(&dep, " %s", km.mods[deps[i]].rel)
		}
		dep.WriteByte('\n')
		for _, a := range m.aliases {
			fmt.Fprintf(&alias, "alias %s %s\n", a, n)
		}
		for _, s := range m.softdep {
			fmt.Fprintf(&soft, "softdep %s %s\n", n, s)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(order))
	for sc.Scan() {
		if shipped[modName(sc.Text())] {
			fmt.Fprintln(&ord, sc.Text())
		}
	}
	return map[string][]byte{
		"modules.dep":     dep.Bytes(),
		"modules.alias":   alias.Bytes(),
		"modules.softdep": soft.Bytes(),
		"modules.order":   ord.Bytes(),
	}
}
