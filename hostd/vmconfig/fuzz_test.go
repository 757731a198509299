package vmconfig

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse: Parse never panics, and whatever it accepts is valid and
// survives Format then Parse unchanged.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/full.fvx"); err == nil {
		f.Add(data)
	}
	f.Add(withValid())
	f.Add(withValid(`directBoot.kernel = "k"`, `directBoot.cmdline = "a \"b\" \\"`))
	f.Add(withValid(`ethernet0.virtualDev = "virtio"`, `ethernet0.networkName = "pg"`, `ethernet0.addressType = "static"`, `ethernet0.address = "00:50:56:00:00:01"`))
	f.Add(withValid(`sata0:0.fileName = "[iso] a.iso"`, `sata0:0.startConnected = "TRUE"`))
	f.Add(withValid(`mem.hotadd = "TRUE"`, `mem.maxSize = "448"`))
	f.Add([]byte("config.version = \"1\"\nscsi0:0.fileName = \"a\"\n"))
	f.Add([]byte("x-a = \"\\\"\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse(data)
		if err != nil {
			return
		}
		if err := Validate(spec); err != nil {
			t.Fatalf("Parse(%q) accepted a spec that Validate refuses: %v", data, err)
		}
		out := Format(spec)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Format(Parse(%q))) = %v\n%s", data, err, out)
		}
		if diff := cmp.Diff(spec, again); diff != "" {
			t.Fatalf("Parse(Format(spec)) mismatch (-want +got):\n%s", diff)
		}
		if out2 := Format(again); string(out2) != string(out) {
			t.Fatalf("Format is not stable:\n%s\n---\n%s", out, out2)
		}
	})
}
