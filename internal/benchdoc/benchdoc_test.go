package benchdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdateSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	if err := UpdateSection(p, "a", "A", "one\n"); err != nil {
		t.Fatal(err)
	}
	if err := UpdateSection(p, "b", "B", "two\n"); err != nil {
		t.Fatal(err)
	}
	if err := UpdateSection(p, "a", "A", "three\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	if strings.Contains(s, "one") || !strings.Contains(s, "three") || !strings.Contains(s, "two") ||
		strings.Index(s, "three") > strings.Index(s, "two") {
		t.Errorf("UpdateSection result:\n%s\nwant section a replaced in place and section b kept", s)
	}
}

func TestMachine(t *testing.T) {
	if m := Machine(); !strings.Contains(m, "cores (") || !strings.Contains(m, "RAM") {
		t.Errorf("Machine() = %q", m)
	}
}
