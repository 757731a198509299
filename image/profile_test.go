package image

import (
	"encoding/json"
	"path"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
)

func TestProfiles(t *testing.T) {
	for name, p := range Profiles() {
		t.Run(name, func(t *testing.T) {
			if p.Name != name || p.Lock == "" || p.Kernel == "" {
				t.Errorf("profile %q: Name %q Lock %q Kernel %q", name, p.Name, p.Lock, p.Kernel)
			}
			dests := map[string]bool{}
			for _, prog := range p.Programs {
				if !path.IsAbs(prog.Dest) || !strings.HasPrefix(prog.Pkg, "./") || dests[prog.Dest] {
					t.Errorf("program %+v: want a ./ package, an absolute unique destination", prog)
				}
				dests[prog.Dest] = true
			}
			seen := map[string]bool{}
			for _, g := range append(append([]string{}, p.Paths...), p.Exclude...) {
				if _, err := path.Match(g, ""); err != nil || seen[g] {
					t.Errorf("pattern %q: duplicate or invalid (%v)", g, err)
				}
				seen[g] = true
				if strings.Contains(g, "/") && !path.IsAbs(g) {
					t.Errorf("pattern %q: want an absolute path", g)
				}
			}
			mods := map[string]bool{}
			for _, m := range append(append([]string{}, p.Modules...), p.OptionalModules...) {
				if mods[modName(m)] {
					t.Errorf("module %s listed twice", m)
				}
				mods[modName(m)] = true
			}
			for _, m := range p.ModulesLoad {
				if !mods[modName(m)] {
					t.Errorf("modules.load names %s, which Modules lacks", m)
				}
			}
			b, err := json.Marshal(p.Services)
			if err != nil {
				t.Fatal(err)
			}
			var back []api.ServiceSpec
			if err := json.Unmarshal(b, &back); err != nil || len(back) != len(p.Services) {
				t.Errorf("services.json round trip = %v, %d entries", err, len(back))
			}
			for _, s := range p.Services {
				if s.Name == "" || !dests[s.Path] {
					t.Errorf("service %+v: want a name and the path of one of the profile's programs", s)
				}
			}
		})
	}
}
