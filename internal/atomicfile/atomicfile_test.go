package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("ReadFile = %q, %v, want %q", got, err, "two")
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("directory has %d entries, want 1 (temp file left behind?)", len(ents))
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "f")
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatalf("WriteFile(%s) = nil, want error", p)
	}
}

func TestWriteIfChanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	for i, tc := range []struct {
		data  string
		wrote bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		wrote, err := WriteIfChanged(p, []byte(tc.data), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if wrote != tc.wrote {
			t.Errorf("step %d: WriteIfChanged(%q) wrote = %v, want %v", i, tc.data, wrote, tc.wrote)
		}
	}
}
