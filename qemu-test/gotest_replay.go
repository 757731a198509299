package qemutest

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/qemu-test/fvtest"
)

// replayT is the part of *testing.T that replaying results needs, so the
// replay can be tested with a recorder (a real failing subtest would fail
// the test that checks it).
type replayT interface {
	Run(name string, f func(replayT)) bool
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Fail()
	SkipNow()
	Output() io.Writer
}

type adaptT struct{ *testing.T }

func (a adaptT) Run(name string, f func(replayT)) bool {
	return a.T.Run(name, func(t *testing.T) { f(adaptT{t}) })
}

// testNode is one inner test, its subtests in the order they started.
type testNode struct {
	name     string // full name, TestA/sub
	action   string // pass, fail, skip; "" if it never ended
	elapsed  float64
	output   []string
	children []*testNode
}

// eventTree arranges events into top-level tests with their subtests and
// returns the package's own output (outside any test) and result action.
func eventTree(evs []TestEvent) (tops []*testNode, pkgOutput []string, pkgAction string) {
	nodes := map[string]*testNode{}
	var node func(name string) *testNode
	node = func(name string) *testNode {
		if n := nodes[name]; n != nil {
			return n
		}
		n := &testNode{name: name}
		nodes[name] = n
		if i := strings.LastIndex(name, "/"); i > 0 {
			p := node(name[:i])
			p.children = append(p.children, n)
		} else {
			tops = append(tops, n)
		}
		return n
	}
	for _, e := range evs {
		if e.Test == "" {
			switch e.Action {
			case "output":
				pkgOutput = append(pkgOutput, e.Output)
			case "pass", "fail", "skip":
				pkgAction = e.Action
			}
			continue
		}
		n := node(e.Test)
		switch e.Action {
		case "output":
			n.output = append(n.output, e.Output)
		case "pass", "fail", "skip":
			n.action, n.elapsed = e.Action, e.Elapsed
		}
	}
	return tops, pkgOutput, pkgAction
}

// isFraming tells the lines go test prints around a test's own output
// (=== RUN, --- PASS: ...), which the outer test prints for itself.
func isFraming(line string) bool {
	l := strings.TrimLeft(line, " ")
	for _, p := range []string{"=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME ", "--- PASS: ", "--- FAIL: ", "--- SKIP: "} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// replay runs n as a subtest of t that ends like the inner test did.
func replay(t replayT, n *testNode, binaryEnded bool) {
	short := n.name[strings.LastIndex(n.name, "/")+1:]
	t.Run(short, func(t replayT) {
		w := t.Output()
		for _, o := range n.output {
			if isFraming(o) {
				continue
			}
			// With -test.v=test2json every test's lines carry one
			// level of indentation; t's writer adds its own.
			io.WriteString(w, strings.TrimPrefix(o, "    "))
		}
		for _, c := range n.children {
			replay(t, c, binaryEnded)
		}
		switch n.action {
		case "fail":
			t.Fail()
		case "skip":
			t.SkipNow()
		case "":
			if binaryEnded {
				t.Errorf("%s never ended inside the host (the test binary died during it)", n.name)
			} else {
				t.Errorf("%s never ended: the host stopped or the deadline passed during it", n.name)
			}
		}
	})
}

// reportGoTests turns a run's frames into results and subtests of t.
func reportGoTests(t replayT, spec fvtest.Spec, tests []GoTest, c *fvtest.Collector, consoleTail []string) []GoTestResult {
	for _, e := range c.Errors {
		t.Errorf("RunGoTests: %s", e)
	}
	if !c.Done {
		t.Errorf("RunGoTests: the runner's end marker never came; last console lines:\n%s", strings.Join(consoleTail, "\n"))
	}
	results := make([]GoTestResult, len(tests))
	for i, gt := range tests {
		name := spec.Tests[i].Name
		s := c.Stream(i)
		r := GoTestResult{Name: name, Pkg: gt.Pkg, Ended: s.Ended, ExitCode: s.ExitCode, Output: s.Output}
		if !s.Ended {
			r.ExitCode = -1
		}
		evs, err := test2json(name, s.Output)
		r.Events = evs
		results[i] = r
		t.Run(name, func(t replayT) {
			for _, e := range s.Errors {
				t.Errorf("runner: %s", e)
			}
			if err != nil {
				t.Errorf("%v", err)
			}
			tops, pkgOut, pkgAction := eventTree(evs)
			for _, n := range tops {
				replay(t, n, s.Ended)
			}
			switch {
			case !s.Ended:
				t.Errorf("%s (%s) did not finish inside the host; its last output:\n%s", name, gt.Pkg, lastLines(pkgOut, 40))
			case s.ExitCode != 0 || pkgAction == "fail":
				t.Errorf("%s (%s) failed inside the host: exit code %d; its package output:\n%s", name, gt.Pkg, s.ExitCode, lastLines(pkgOut, 40))
			case len(tops) == 0:
				t.Logf("%s (%s) ran no tests", name, gt.Pkg)
			}
		})
	}
	return results
}

func lastLines(out []string, n int) string {
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.TrimRight(strings.Join(out, ""), "\n")
}

// String summarises a result for logs.
func (r GoTestResult) String() string {
	if !r.Ended {
		return fmt.Sprintf("%s: did not finish", r.Name)
	}
	return fmt.Sprintf("%s: exit code %d, %d events", r.Name, r.ExitCode, len(r.Events))
}
