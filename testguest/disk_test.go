package guest

import (
	"errors"
	"testing"
)

func TestFirstDisk(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"vda"}, "/dev/vda"},
		{[]string{"vdb", "vdaa", "vda"}, "/dev/vda"},
		{[]string{"vdaa", "vdb"}, "/dev/vdb"},
		{[]string{"sda", "vda"}, "/dev/vda"},
		{[]string{"sr0", "loop0", "sdb", "sda"}, "/dev/sda"},
		{[]string{"nvme0n1", "sr0"}, "/dev/nvme0n1"},
		{[]string{"nvme0n1", "sda"}, "/dev/sda"},
		{[]string{"vda1", "sda"}, "/dev/sda"}, // never a partition
	} {
		got, err := FirstDisk(tc.names)
		if err != nil || got != tc.want {
			t.Errorf("FirstDisk(%q) = %q, %v; want %q", tc.names, got, err, tc.want)
		}
	}
	for _, names := range [][]string{nil, {"sr0", "loop0", "ram0", "zram0", "nvme0c0n1"}} {
		if got, err := FirstDisk(names); !errors.Is(err, ErrNoDisk) {
			t.Errorf("FirstDisk(%q) = %q, %v; want ErrNoDisk", names, got, err)
		}
	}
}
