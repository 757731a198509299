package boot

import (
	"strings"
	"testing"
)

func TestStepsAreNamedAndUnique(t *testing.T) {
	m := &Machine{}
	seen := map[string]bool{}
	steps := m.Steps()
	if len(steps) == 0 || steps[0].Name != "mount" || !steps[0].Critical {
		t.Fatalf("first step = %+v, want the critical mount step", steps[0])
	}
	for _, s := range steps {
		if s.Name == "" || seen[s.Name] || s.Do == nil {
			t.Errorf("step %+v: empty, duplicate or without Do", s.Name)
		}
		seen[s.Name] = true
	}
	// Dependencies between steps, as an operator reads them in the log.
	order := map[string]int{}
	for i, s := range steps {
		order[s.Name] = i
	}
	for _, dep := range [][2]string{{"modules", "state"}, {"state", "identity"}, {"identity", "hostname"}, {"modules", "network"}, {"cmdline", "network"}} {
		if order[dep[0]] > order[dep[1]] {
			t.Errorf("step %s runs after %s, want before", dep[0], dep[1])
		}
	}
}

func TestParseServices(t *testing.T) {
	good := `[{"name":"hostd","path":"/usr/lib/flashvisor/hostd"},{"name":"vem","path":"/usr/lib/flashvisor/vem","args":["-x"]}]`
	specs, err := ParseServices([]byte(good))
	if err != nil || len(specs) != 2 || specs[1].Args[0] != "-x" {
		t.Fatalf("ParseServices(good) = %+v, %v", specs, err)
	}
	for _, tc := range []struct{ in, mention string }{
		{`{`, "services"},
		{`[{"name":"Bad Name","path":"/x"}]`, "invalid name"},
		{`[{"name":"a","path":"/x"},{"name":"a","path":"/y"}]`, "duplicate"},
		{`[{"name":"a","path":"x"}]`, "not absolute"},
	} {
		if _, err := ParseServices([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseServices(%s) = %v, want error mentioning %q", tc.in, err, tc.mention)
		}
	}
}

func FuzzParseServices(f *testing.F) {
	f.Add(`[{"name":"hostd","path":"/usr/lib/flashvisor/hostd"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		specs, err := ParseServices([]byte(in))
		if err != nil {
			return
		}
		for _, s := range specs {
			if !serviceNameRE.MatchString(s.Name) || !strings.HasPrefix(s.Path, "/") {
				t.Errorf("accepted invalid spec %+v", s)
			}
		}
	})
}
