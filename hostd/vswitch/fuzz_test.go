package vswitch_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/flashvisor/flashvisor/hostd/vswitch"
)

// FuzzLoad: whatever is on disk, Load either returns a configuration that
// passes Check or refuses it as corrupt; it never panics.
func FuzzLoad(f *testing.F) {
	f.Add(`{"version":1,"uplinks":[{"nic":"eth0","port":"Eth3/1"}],"port_channels":[],"port_groups":[{"name":"VM Network","vlan":0}],"vmknics":[],"veths":[]}`)
	f.Add(`{"version":1,"port_groups":[{"name":"a","vlan":5}],"veths":[{"port":"Veth1","vm":"x","nic":0,"port_group":"a","mac":"00:50:56:00:00:01"}]}`)
	f.Add(`{"version":2}`)
	f.Add(`{"version":1,"port_channels":[{"name":"Po1","members":["eth9"]}]}`)
	f.Add(`not json`)
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "switch.json")
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		c, ok, err := vswitch.Load(path)
		switch {
		case err != nil:
			if !errors.Is(err, netseam.ErrCorrupt) {
				t.Fatalf("Load error %v is not ErrCorrupt", err)
			}
		case !ok:
			t.Fatalf("an existing file reported as missing")
		default:
			if err := c.Check(); err != nil {
				t.Fatalf("loaded a configuration that fails Check: %v", err)
			}
		}
	})
}
