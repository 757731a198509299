package vmconfig

import (
	"os"
	"strings"
	"testing"
)

// TestOperatorGuideExample keeps the example in the operator guide valid
// and in Format's own layout.
func TestOperatorGuideExample(t *testing.T) {
	guide, err := os.ReadFile("../../docs/operator-guide.md")
	if err != nil {
		t.Skipf("operator guide not found: %v", err)
	}
	_, section, ok := strings.Cut(string(guide), "\n## VM parameter file\n")
	if !ok {
		t.Fatal(`operator guide has no "## VM parameter file" section`)
	}
	_, block, ok := strings.Cut(section, "Example:\n\n```\n")
	if !ok {
		t.Fatal("no example block in the VM parameter file section")
	}
	example, _, _ := strings.Cut(block, "```")
	spec, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("Parse(operator guide example) = %v", err)
	}
	if got := string(Format(spec)); got != example {
		t.Errorf("Format(Parse(example)) =\n%s\nwant the example as written:\n%s", got, example)
	}
}
