// Package benchdoc writes benchmark results into docs/benchmarks.md: each
// benchmark owns one section between markers, replaced in place on a
// rerun, and says which machine it ran on.
package benchdoc

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// UpdateSection replaces the text between the markers of section id, or
// appends the section, keeping the rest of the file.
func UpdateSection(path, id, title, body string) error {
	begin, end := "<!-- bench:"+id+" -->", "<!-- /bench:"+id+" -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Benchmarks\n\nFigures measured by `make bench`; each section says when and on what machine.\n")
	}
	section := begin + "\n## " + title + "\n\n" + body + end
	var out []byte
	if i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end)); i >= 0 && j > i {
		out = append(append(append([]byte{}, old[:i]...), section...), old[j+len(end):]...)
	} else {
		out = append(append(bytes.TrimRight(old, "\n"), "\n\n"...), section+"\n"...)
	}
	return os.WriteFile(path, out, 0o644)
}

// Machine is "N cores (CPU model), M GiB RAM" read from /proc; callers add
// what matters to their figures (accelerator, kernel, Go version).
func Machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := "? RAM"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d cores (%s), %s", runtime.NumCPU(), cpu, mem)
}
