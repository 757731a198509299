package boot

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunSteps(t *testing.T) {
	var ran []string
	mk := func(name string, err error, critical bool) Step {
		return Step{Name: name, Critical: critical, Do: func() error { ran = append(ran, name); return err }}
	}
	var console bytes.Buffer
	res := RunSteps([]Step{
		mk("a", nil, true),
		mk("b", errors.New("boom"), false),
		{Name: "c", Do: func() error { ran = append(ran, "c"); panic("oops") }},
		mk("d", errors.New("fatal"), true),
		mk("e", nil, false),
	}, testLogger(t), &console)
	if d := cmp.Diff([]string{"a", "b", "c", "d"}, ran); d != "" {
		t.Errorf("ran (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"b", "c", "d"}, Failed(res)); d != "" {
		t.Errorf("Failed (-want +got):\n%s", d)
	}
	for _, want := range []string{`"b" FAILED: boom`, `"c" FAILED: panic: oops`, `"d" FAILED: fatal`} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console = %q, want it to contain %q", console.String(), want)
		}
	}
}
