package macaddr

import "testing"

// FuzzParse: Parse never panics, and Format gives back what it accepted.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"00:50:56:40:00:01", "00:50:56:AB:CD:EF", "00-50-56-00-00-01", "", "::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(Format(mac))
		if err != nil || again != mac {
			t.Fatalf("Parse(Format(Parse(%q))) = %v, %v, want %v", s, again, err, mac)
		}
	})
}
