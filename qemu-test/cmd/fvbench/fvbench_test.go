package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUpdateSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	if err := updateSection(p, "a", "A", "one\n"); err != nil {
		t.Fatal(err)
	}
	if err := updateSection(p, "b", "B", "two\n"); err != nil {
		t.Fatal(err)
	}
	if err := updateSection(p, "a", "A", "three\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	if strings.Contains(s, "one") || !strings.Contains(s, "three") || !strings.Contains(s, "two") ||
		strings.Index(s, "three") > strings.Index(s, "two") {
		t.Errorf("updateSection result:\n%s\nwant section a replaced in place and section b kept", s)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]time.Duration{5, 1, 3}); got != 3 {
		t.Errorf("median(5,1,3) = %v, want 3", got)
	}
}
