package boot

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestPickMgmtNIC(t *testing.T) {
	nics := []NIC{
		{Name: "lo", MAC: "00:00:00:00:00:00", Ethernet: false},
		{Name: "eth1", MAC: "52:54:00:00:00:02", Physical: true, Ethernet: true},
		{Name: "br0", MAC: "52:54:00:00:00:09", Ethernet: true},
		{Name: "eth0", MAC: "52:54:00:00:00:01", Physical: true, Ethernet: true},
	}
	for _, tc := range []struct{ want, got string }{
		{"", "eth0"},
		{"eth1", "eth1"},
		{"52:54:00:00:00:02", "eth1"},
		{"52:54:00:00:00:0A", ""},
	} {
		n, err := PickMgmtNIC(append([]NIC(nil), nics...), tc.want)
		if tc.got == "" {
			if !errors.Is(err, ErrNoNIC) {
				t.Errorf("PickMgmtNIC(%q) = %v, %v; want ErrNoNIC", tc.want, n, err)
			}
			continue
		}
		if err != nil || n.Name != tc.got {
			t.Errorf("PickMgmtNIC(%q) = %v, %v; want %s", tc.want, n.Name, err, tc.got)
		}
	}
	if _, err := PickMgmtNIC([]NIC{{Name: "lo"}}, ""); !errors.Is(err, ErrNoNIC) {
		t.Errorf("PickMgmtNIC(lo only) = %v, want ErrNoNIC", err)
	}
}

func TestListNICs(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, typ, mac string, dev bool) {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "address"), []byte(mac+"\n"), 0o644)
		if dev {
			os.MkdirAll(filepath.Join(d, "device"), 0o755)
		}
	}
	mk("eth0", "1", "52:54:00:12:34:56", true)
	mk("lo", "772", "00:00:00:00:00:00", false)
	nics, err := ListNICs(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := PickMgmtNIC(nics, "")
	if err != nil || n.Name != "eth0" || n.MAC != "52:54:00:12:34:56" {
		t.Errorf("PickMgmtNIC(ListNICs) = %+v, %v; want eth0 with its MAC", n, err)
	}
}

func TestUplinkMAC(t *testing.T) {
	for in, want := range map[string]string{
		"52:54:00:12:34:56": "02:54:00:12:34:56",
		"00:1b:21:aa:bb:cc": "02:1b:21:aa:bb:cc",
		"02:00:00:00:00:01": "06:00:00:00:00:01",
	} {
		hw, _ := net.ParseMAC(in)
		if got := UplinkMAC(hw).String(); got != want {
			t.Errorf("UplinkMAC(%s) = %s, want %s", in, got, want)
		}
		if hw.String() != in {
			t.Errorf("UplinkMAC changed its argument")
		}
	}
}
