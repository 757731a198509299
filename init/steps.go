package boot

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Step is one named boot step. Boot is a list of them (INIT-2): data that
// can be printed, tested and reordered without touching the steps.
type Step struct {
	Name string
	Do   func() error
	// Critical steps stop the list when they fail: later steps depend on
	// them (nothing works without /proc). Others are reported and skipped.
	Critical bool
}

// StepResult records how a step went.
type StepResult struct {
	Name     string
	Err      error
	Duration time.Duration
}

// RunSteps runs steps in order, logging each with its duration. A failing
// step is printed on the console with its error; boot continues unless the
// step is critical, so the host comes up far enough to be reached.
func RunSteps(steps []Step, log *slog.Logger, console io.Writer) []StepResult {
	var res []StepResult
	for _, s := range steps {
		start := time.Now()
		err := safeDo(s.Do)
		d := time.Since(start)
		res = append(res, StepResult{Name: s.Name, Err: err, Duration: d})
		if err != nil {
			log.Error("boot step failed", "step", s.Name, "err", err, "took", d.Round(time.Millisecond))
			fmt.Fprintf(console, "flashvisor: boot step %q FAILED: %v\n", s.Name, err)
			if s.Critical {
				break
			}
			continue
		}
		log.Info("boot step done", "step", s.Name, "took", d.Round(time.Millisecond))
	}
	return res
}

// safeDo turns a panicking step into a failed one.
func safeDo(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// Failed names the failed steps.
func Failed(res []StepResult) []string {
	var out []string
	for _, r := range res {
		if r.Err != nil {
			out = append(out, r.Name)
		}
	}
	return out
}
