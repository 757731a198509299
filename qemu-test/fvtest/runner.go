package fvtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Well-known paths inside the host: qemutest.RunGoTests puts its files
// under Dir, and the runner reads SpecFile.
const (
	Dir      = "/fvtest"
	SpecFile = Dir + "/spec.json"
	Runner   = Dir + "/fvtestrun"
	// PortName is the name of the virtio serial port the frames go to
	// (/sys/class/virtio-ports/vportNpM/name).
	PortName = "org.flashvisor.fvtest"
)

// Spec tells the runner what to run.
type Spec struct {
	// RunID marks this run's frames (random per run).
	RunID string `json:"run_id"`
	// Port is the virtio serial port name for the frames; empty or absent
	// means the runner's stdout.
	Port string `json:"port,omitempty"`
	// Tests run one after the other, in order; frame stream i is Tests[i].
	Tests []Test `json:"tests"`
	// PowerOff asks init to power the host off once every test has run.
	PowerOff bool `json:"power_off,omitempty"`
}

// Test is one test binary.
type Test struct {
	Name   string   `json:"name"`          // for messages: the package path
	Binary string   `json:"binary"`        // absolute path
	Dir    string   `json:"dir,omitempty"` // working directory (its testdata is there)
	Args   []string `json:"args,omitempty"`
	Env    []string `json:"env,omitempty"` // added to the runner's environment
}

// ParseSpec decodes and checks a spec.
func ParseSpec(b []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("spec: %w", err)
	}
	if s.RunID == "" || strings.ContainsAny(s.RunID, " \t\r\n") {
		return Spec{}, fmt.Errorf("spec: run_id %q: want a non-empty word", s.RunID)
	}
	for i, t := range s.Tests {
		if !filepath.IsAbs(t.Binary) {
			return Spec{}, fmt.Errorf("spec: tests[%d] (%s): binary %q is not absolute", i, t.Name, t.Binary)
		}
	}
	return s, nil
}

// Sender writes frames of one run, numbering them. It is safe for
// concurrent use; after the first write error it drops everything.
type Sender struct {
	mu  sync.Mutex
	w   io.Writer
	run string
	seq uint64
	err error
}

// NewSender frames lines of run onto w.
func NewSender(w io.Writer, run string) *Sender { return &Sender{w: w, run: run} }

// Send writes one frame.
func (s *Sender) Send(stream int, kind Kind, payload string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	line := Encode(Frame{Run: s.run, Seq: s.seq, Stream: stream, Kind: kind, Payload: payload}) + "\n"
	s.seq++
	// One write per frame: a terminal then never mixes it with another
	// writer's line.
	_, s.err = io.WriteString(s.w, line)
	return s.err
}

// Run runs every test of spec in order, framing their output onto s, and
// ends with the KindDone frame. echo, when not nil, gets each output line
// as plain text (the console, for people reading the VM log). It returns
// the first framing error; test failures are reported in frames only.
func Run(ctx context.Context, spec Spec, s *Sender, echo io.Writer) error {
	for i, t := range spec.Tests {
		if err := runOne(ctx, i, t, s, echo); err != nil {
			return err
		}
	}
	return s.Send(-1, KindDone, "")
}

func runOne(ctx context.Context, i int, t Test, s *Sender, echo io.Writer) error {
	start := time.Now()
	if echo != nil {
		fmt.Fprintf(echo, "fvtestrun: running %s: %s %s\n", t.Name, t.Binary, strings.Join(t.Args, " "))
	}
	cmd := exec.CommandContext(ctx, t.Binary, t.Args...)
	cmd.Dir = t.Dir
	cmd.Env = append(os.Environ(), t.Env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		if serr := s.Send(i, KindError, fmt.Sprintf("start %s: %v", t.Binary, err)); serr != nil {
			return serr
		}
		return s.Send(i, KindExit, "-1")
	}
	sendErr := pump(pr, i, s, echo)
	pr.Close()
	werr := cmd.Wait()
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			code = ee.ExitCode() // -1 when killed by a signal
		} else {
			code = -1
		}
		if code == -1 {
			if err := s.Send(i, KindError, fmt.Sprintf("%s: %v", t.Binary, werr)); err != nil {
				return err
			}
		}
	}
	if sendErr != nil {
		return sendErr
	}
	if echo != nil {
		fmt.Fprintf(echo, "fvtestrun: %s exited %d after %.1fs\n", t.Name, code, time.Since(start).Seconds())
	}
	return s.Send(i, KindExit, strconv.Itoa(code))
}

// pump frames r's output line by line, cutting lines longer than MaxPayload.
func pump(r io.Reader, stream int, s *Sender, echo io.Writer) error {
	br := bufio.NewReaderSize(r, MaxPayload)
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line := string(chunk[:len(chunk)-1])
			if echo != nil {
				// test2json's framing byte (^V) means nothing to a reader.
				fmt.Fprintf(echo, "%s\n", strings.ReplaceAll(line, "\x16", ""))
			}
			if err := s.Send(stream, KindLine, line); err != nil {
				return err
			}
		case errors.Is(err, bufio.ErrBufferFull):
			if err := s.Send(stream, KindPart, string(chunk)); err != nil {
				return err
			}
		default: // EOF (or a read error: the pipe is gone either way)
			if len(chunk) > 0 {
				return s.Send(stream, KindPart, string(chunk))
			}
			return nil
		}
	}
}

// FindPort returns the device of the virtio serial port called name, looking
// in sysDir (/sys/class/virtio-ports) and devDir (/dev).
func FindPort(sysDir, devDir, name string) (string, error) {
	ents, err := os.ReadDir(sysDir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("virtio serial port %q: %w", name, os.ErrNotExist)
}
