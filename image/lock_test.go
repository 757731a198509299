package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const goodSHA = "fedd424691c08ef0739729026be298e7be8236337bf8e031b3c7ec66794e6fc2"

func TestParseLock(t *testing.T) {
	good := "# header\n\nqemu-utils 1:7.2+dfsg-7+deb12u18+b3 amd64 1292564 " + goodSHA + " # trailing comment\n" +
		"seabios 1.16.2-1 all 162656 " + goodSHA + "\n"
	l, err := ParseLock(strings.NewReader(good))
	if err != nil {
		t.Fatalf("ParseLock(good) = %v", err)
	}
	want := []Pin{
		{Name: "qemu-utils", Version: "1:7.2+dfsg-7+deb12u18+b3", Arch: "amd64", Size: 1292564, SHA256: goodSHA},
		{Name: "seabios", Version: "1.16.2-1", Arch: "all", Size: 162656, SHA256: goodSHA},
	}
	if diff := cmp.Diff(want, l.Pins); diff != "" {
		t.Errorf("ParseLock(good) mismatch (-want +got):\n%s", diff)
	}
	if got := l.Pins[0].DebFile(); got != "qemu-utils_1%3a7.2+dfsg-7+deb12u18+b3_amd64.deb" {
		t.Errorf("DebFile() = %q", got)
	}

	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"empty", "# nothing\n", "no packages"},
		{"fields", "seabios 1.16.2-1 all 162656\n", "line 1: want 5 fields"},
		{"name", "\nSeaBIOS 1.16.2-1 all 1 " + goodSHA + "\n", "line 2: bad package name"},
		{"version", "seabios v1 all 1 " + goodSHA + "\n", "line 1: bad version"},
		{"arch", "seabios 1.0 ALL 1 " + goodSHA + "\n", "line 1: bad architecture"},
		{"size", "seabios 1.0 all -3 " + goodSHA + "\n", "line 1: bad size"},
		{"sha", "seabios 1.0 all 3 deadbeef\n", "line 1: bad sha256"},
		{"dup", "seabios 1.0 all 3 " + goodSHA + "\nseabios 1.1 all 3 " + goodSHA + "\n", "line 2: package seabios already pinned on line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLock(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrLockSyntax) {
				t.Errorf("ParseLock(%q) = %v, want ErrLockSyntax containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func FuzzParseLock(f *testing.F) {
	f.Add("seabios 1.16.2-1 all 162656 " + goodSHA + "\n")
	f.Add("# c\nlibc6 2.36-9+deb12u14 amd64 2759320 " + goodSHA + " # x\n")
	f.Add("a b c d e\n")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseLock(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrLockSyntax) {
				t.Fatalf("ParseLock(%q) = %v, not ErrLockSyntax", in, err)
			}
			return
		}
		again, err := ParseLock(strings.NewReader(string(l.Format("round trip"))))
		if err != nil {
			t.Fatalf("ParseLock(Format(%q)) = %v", in, err)
		}
		if len(again.Pins) != len(l.Pins) {
			t.Fatalf("round trip of %q: %d pins, want %d", in, len(again.Pins), len(l.Pins))
		}
	})
}

func TestParseAptShow(t *testing.T) {
	out := "Package: seabios\nVersion: 1.16.2-1\nArchitecture: all\nDescription: x\n y: z\nSize: 162656\nSHA256: " + goodSHA + "\n\n"
	got, err := parseAptShow([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Pin{{Name: "seabios", Version: "1.16.2-1", Arch: "all", Size: 162656, SHA256: goodSHA}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseAptShow mismatch (-want +got):\n%s", diff)
	}
	if _, err := parseAptShow([]byte("Package: x\nVersion: 1\nArchitecture: all\nSize: 1\nSHA256: nope\n")); err == nil {
		t.Error("parseAptShow(bad sha) = nil error")
	}
}
