package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{nil, "usage"},
		{[]string{"frobnicate"}, "usage"},
		{[]string{"build", "-profile", "nosuch"}, `unknown profile "nosuch"`},
		{[]string{"lock", "-bogus"}, "flag provided but not defined"},
	} {
		err := run(context.Background(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("run(%q) = %v, want error containing %q", tc.args, err, tc.err)
		}
	}
}
