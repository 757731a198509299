package qemutest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/qemu-test/fvtest"
	"github.com/u-root/u-root/pkg/cpio"
)

// GoTest is one Go package whose tests RunGoTests runs inside a host.
type GoTest struct {
	// Pkg is the package directory relative to the repository root, as
	// for go test: "./vem".
	Pkg string
	// Name names the package's subtest; default: Pkg without "./", with
	// '/' turned into '.' ("internal.atomicfile"), since a '/' in a
	// subtest name would read as another level.
	Name string
	// Tags are build tags for go test -c (e.g. "fvhost").
	Tags []string
	// Args go to the test binary after the harness's own
	// (-test.v=test2json -test.timeout=...), e.g. "-test.run=TestBridge".
	Args []string
	// Timeout is the binary's -test.timeout (default 10 minutes): it
	// panics with every goroutine's stack rather than hang the host.
	Timeout time.Duration
}

// DefaultGoTestTimeout is a test binary's -test.timeout unless GoTest.Timeout
// says otherwise.
const DefaultGoTestTimeout = 10 * time.Minute

// gotestBootBudget is added to the binaries' timeouts for the default VM
// deadline: boot, module loading and power-off under emulation.
const gotestBootBudget = 10 * time.Minute

// TestEvent is one event of go test -json (cmd/test2json's TestEvent).
type TestEvent struct {
	Time    time.Time `json:",omitempty"`
	Action  string
	Package string  `json:",omitempty"`
	Test    string  `json:",omitempty"`
	Elapsed float64 `json:",omitempty"`
	Output  string  `json:",omitempty"`
}

// GoTestResult is what one test binary did inside the host.
type GoTestResult struct {
	Name string
	Pkg  string
	// Ended is false when the binary never finished (the host died or
	// the VM deadline passed); ExitCode is then -1.
	Ended    bool
	ExitCode int
	// Events are the binary's test2json events; Output its raw output.
	Events []TestEvent
	Output []byte
}

// Passed reports whether the binary ran to the end and exited 0.
func (r GoTestResult) Passed() bool { return r.Ended && r.ExitCode == 0 }

// RunGoTest runs one package's tests inside a host; see RunGoTests.
func RunGoTest(t *testing.T, pkg string, opts ...Option) GoTestResult {
	t.Helper()
	return RunGoTests(t, []GoTest{{Pkg: pkg}}, opts...)[0]
}

// RunGoTests runs Go test binaries inside one emulated host, for tests that
// need the host kernel's features (bridge VLAN filtering, 802.1Q, bonding,
// tc) rather than those of the machine running go test:
//
//  1. each package is built with go test -c (CGO_ENABLED=0, its Tags) on
//     this machine, with the fvtestrun runner;
//  2. they go into an extra newc cpio (/fvtest/N/pkg.test, the package's
//     testdata beside it, /fvtest/spec.json, and an
//     /etc/flashvisor/services.json naming the runner as the only service,
//     so hostd does not run), appended to the host's initramfs: the kernel
//     unpacks the archives in turn, a later file replacing an earlier one;
//  3. the host boots (Start, VM name "gotest") with a virtio serial port
//     for results; init starts the runner, which runs the binaries one
//     after the other with -test.v=test2json, frames their output onto
//     the port (fvtest), echoes it on the console, then powers off;
//  4. the frames are checked (run ID, sequence, CRC), each binary's output
//     goes through go tool test2json, and its tests are replayed as
//     subtests of t: t/<Name>/<TestX>/<sub> pass, fail or skip as they did
//     inside, with their output.
//
// t fails when a binary fails, does not finish, or a frame was lost or
// damaged. The options are Start's: by default the kernel and initramfs
// are HostImage's (WithKernel/WithInitrd name others), the VM deadline is
// the binaries' timeouts plus 10 minutes, and -no-reboot is set. The
// frames are kept in the state folder as gotest.frames.
func RunGoTests(t *testing.T, tests []GoTest, opts ...Option) []GoTestResult {
	t.Helper()
	if len(tests) == 0 {
		t.Fatal("RunGoTests: no packages")
	}
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatalf("RunGoTests: %v", err)
	}
	given := buildConfig(opts)
	kernel, initrd := given.kernel, given.initrd
	if kernel == "" || initrd == "" {
		hk, hi := HostImage(t)
		if kernel == "" {
			kernel = hk
		}
		if initrd == "" {
			initrd = hi
		}
	}
	stateDir := given.stateDir
	if stateDir == "" {
		stateDir = filepath.Join(DefaultStateRoot(), sanitize(t.Name()))
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatalf("RunGoTests: %v", err)
	}
	work := t.TempDir()

	start := time.Now()
	runID, err := randomRunID()
	if err != nil {
		t.Fatal(err)
	}
	spec, files, err := buildGoTests(root, work, runID, tests)
	if err != nil {
		t.Fatalf("RunGoTests: %v", err)
	}
	combined := filepath.Join(work, "initrd.img")
	if err := appendInitramfs(combined, initrd, files); err != nil {
		t.Fatalf("RunGoTests: %v", err)
	}
	t.Logf("RunGoTests: built %d test binaries and the runner in %.1fs", len(tests), time.Since(start).Seconds())

	framesPath := filepath.Join(stateDir, "gotest.frames")
	if err := os.WriteFile(framesPath, nil, 0o644); err != nil {
		t.Fatalf("RunGoTests: %v", err)
	}
	var budget time.Duration
	for _, gt := range tests {
		budget += goTestTimeout(gt)
	}
	base := []Option{WithNoReboot(), WithTimeout(budget + gotestBootBudget)}
	final := []Option{
		WithKernel(kernel), WithInitrd(combined), WithStateDir(stateDir),
		WithExtraArgs(virtioPortArgs(framesPath, fvtest.PortName)...),
	}
	all := append(append(base, opts...), final...)
	bootStart := time.Now()
	vm := Start(t, "gotest", all...)

	c := waitFrames(vm, framesPath, runID)
	t.Logf("RunGoTests: host booted and ran the tests in %.1fs (frames done: %v)", time.Since(bootStart).Seconds(), c.Done)
	if c.Done {
		// The runner powers off; give it a moment so the log shows a
		// clean end, then Close kills whatever is left.
		select {
		case <-vm.Exited():
		case <-time.After(20 * time.Second):
		}
	}
	return reportGoTests(adaptT{t}, spec, tests, c, vm.tail(tailLines))
}

func goTestTimeout(gt GoTest) time.Duration {
	if gt.Timeout > 0 {
		return gt.Timeout
	}
	return DefaultGoTestTimeout
}

func goTestName(gt GoTest) string {
	if gt.Name != "" {
		return gt.Name
	}
	n := strings.Trim(strings.TrimPrefix(gt.Pkg, "./"), "/")
	if n == "" || n == "." {
		return "root"
	}
	return strings.ReplaceAll(n, "/", ".")
}

func randomRunID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// virtioPortArgs adds a virtio serial port called name whose output QEMU
// appends to path.
func virtioPortArgs(path, name string) []string {
	return []string{
		"-device", "virtio-serial-pci,id=fvtestser",
		"-chardev", "file,id=fvtestport,path=" + qemuEscape(path),
		"-device", "virtserialport,bus=fvtestser.0,chardev=fvtestport,name=" + qemuEscape(name),
	}
}

// cpioFile is one entry of the extra initramfs.
type cpioFile struct {
	Name string // path inside the host, absolute
	Mode uint64 // cpio.S_IFDIR|0755, cpio.S_IFREG|0755, cpio.S_IFLNK|0777
	Src  string // regular file: copy this file
	Data []byte // regular file without Src; symlink target
}

// buildGoTests builds the runner and every test binary into work and returns
// the runner's spec and the files of the extra initramfs.
func buildGoTests(root, work, runID string, tests []GoTest) (fvtest.Spec, []cpioFile, error) {
	spec := fvtest.Spec{RunID: runID, Port: fvtest.PortName, PowerOff: true}
	files := []cpioFile{
		{Name: "/etc", Mode: cpio.S_IFDIR | 0o755},
		{Name: "/etc/flashvisor", Mode: cpio.S_IFDIR | 0o755},
		{Name: fvtest.Dir, Mode: cpio.S_IFDIR | 0o755},
	}
	runner := filepath.Join(work, "fvtestrun")
	if err := goCmd(root, "build", "-o", runner, "./qemu-test/cmd/fvtestrun"); err != nil {
		return spec, nil, err
	}
	files = append(files, cpioFile{Name: fvtest.Runner, Mode: cpio.S_IFREG | 0o755, Src: runner})
	names := map[string]bool{}
	for i, gt := range tests {
		name := goTestName(gt)
		if names[name] {
			return spec, nil, fmt.Errorf("two packages named %q: set GoTest.Name", name)
		}
		names[name] = true
		bin := filepath.Join(work, fmt.Sprintf("%d.test", i))
		args := []string{"test", "-c", "-o", bin}
		if len(gt.Tags) > 0 {
			args = append(args, "-tags", strings.Join(gt.Tags, ","))
		}
		if err := goCmd(root, append(args, gt.Pkg)...); err != nil {
			return spec, nil, err
		}
		if _, err := os.Stat(bin); err != nil {
			return spec, nil, fmt.Errorf("go test -c %s wrote no binary (no test files?): %w", gt.Pkg, err)
		}
		dir := fmt.Sprintf("%s/%d", fvtest.Dir, i)
		files = append(files,
			cpioFile{Name: dir, Mode: cpio.S_IFDIR | 0o755},
			cpioFile{Name: dir + "/pkg.test", Mode: cpio.S_IFREG | 0o755, Src: bin})
		td, err := testdataFiles(filepath.Join(root, gt.Pkg, "testdata"), dir+"/testdata")
		if err != nil {
			return spec, nil, err
		}
		files = append(files, td...)
		spec.Tests = append(spec.Tests, fvtest.Test{
			Name:   name,
			Binary: dir + "/pkg.test",
			Dir:    dir,
			Args: append([]string{"-test.v=test2json", "-test.timeout=" + goTestTimeout(gt).String()},
				gt.Args...),
		})
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return spec, nil, err
	}
	files = append(files, cpioFile{Name: fvtest.SpecFile, Mode: cpio.S_IFREG | 0o644, Data: b})
	svc, err := json.Marshal([]api.ServiceSpec{{Name: "fvtest", Path: fvtest.Runner, Args: []string{fvtest.SpecFile}}})
	if err != nil {
		return spec, nil, err
	}
	files = append(files, cpioFile{Name: "/etc/flashvisor/services.json", Mode: cpio.S_IFREG | 0o644, Data: svc})
	return spec, files, nil
}

// goCmd runs the go tool in root for a static binary of the host's
// architecture.
func goCmd(root string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// testdataFiles lists a package's testdata folder (if any) as entries under
// dest, so tests that read testdata/ work in the host too.
func testdataFiles(src, dest string) ([]cpioFile, error) {
	if _, err := os.Lstat(src); os.IsNotExist(err) {
		return nil, nil
	}
	var out []cpioFile
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := dest
		if rel != "." {
			name = dest + "/" + filepath.ToSlash(rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out = append(out, cpioFile{Name: name, Mode: cpio.S_IFDIR | 0o755})
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, cpioFile{Name: name, Mode: cpio.S_IFLNK | 0o777, Data: []byte(target)})
		case info.Mode().IsRegular():
			out = append(out, cpioFile{Name: name, Mode: cpio.S_IFREG | uint64(info.Mode().Perm()), Src: p})
		}
		return nil
	})
	return out, err
}

// writeCpio writes files as an uncompressed newc archive, in the given order
// (parents first).
func writeCpio(w io.Writer, files []cpioFile) error {
	rw := cpio.Newc.Writer(w)
	for i, f := range files {
		info := cpio.Info{Ino: uint64(i + 1), Mode: f.Mode, NLink: 1, Name: strings.TrimPrefix(f.Name, "/")}
		var rec cpio.Record
		switch {
		case f.Mode&cpio.S_IFMT == cpio.S_IFDIR:
			info.NLink = 2
			rec = cpio.Record{Info: info}
		case f.Src != "":
			fh, err := os.Open(f.Src) // closed by the cpio writer
			if err != nil {
				return err
			}
			st, err := fh.Stat()
			if err != nil {
				fh.Close()
				return err
			}
			info.FileSize = uint64(st.Size())
			rec = cpio.Record{ReaderAt: fh, Info: info}
		default:
			rec = cpio.StaticRecord(f.Data, info)
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio %s: %w", f.Name, err)
		}
	}
	return cpio.WriteTrailer(rw)
}

// appendInitramfs writes base followed by an archive of files to dst. The
// kernel looks for the next archive's magic on a 4-byte boundary and skips
// zero bytes before it, so base is padded with zeros to 512 bytes.
func appendInitramfs(dst, base string, files []cpioFile) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	in, err := os.Open(base)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	in.Close()
	if err != nil {
		return fmt.Errorf("copy %s: %w", base, err)
	}
	if pad := (512 - n%512) % 512; pad > 0 {
		if _, err := out.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	if err := writeCpio(out, files); err != nil {
		return err
	}
	return out.Close()
}

// framesPoll is how often the frames file is read while the tests run.
const framesPoll = time.Second

// waitFrames reads the frames file until the run's done frame arrives or
// QEMU exits (on its own or killed at the deadline).
func waitFrames(vm *VM, path, runID string) *fvtest.Collector {
	tick := time.NewTicker(framesPoll)
	defer tick.Stop()
	for {
		exited := false
		select {
		case <-vm.Exited():
			exited = true
			// QEMU's last console lines may still be in the pipe.
			select {
			case <-vm.consoleEOF:
			case <-time.After(10 * time.Second):
			}
		case <-tick.C:
		}
		c := collectFrames(path, runID, vm.Console())
		if c.Done || exited {
			return c
		}
	}
}

// collectFrames parses the frames file; when it holds none of this run
// (the runner found no port and used its stdout), the console instead.
func collectFrames(path, runID string, console []string) *fvtest.Collector {
	c := fvtest.NewCollector(runID)
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		c.Add(l)
	}
	if len(c.Streams) == 0 && !c.Done {
		c = fvtest.NewCollector(runID)
		for _, l := range console {
			c.Add(l)
		}
	}
	return c
}

// test2json turns a binary's -test.v=test2json output into events with
// go tool test2json.
func test2json(pkg string, output []byte) ([]TestEvent, error) {
	cmd := exec.Command("go", "tool", "test2json", "-t", "-p", pkg)
	cmd.Stdin = bytes.NewReader(output)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %w: %s", err, stderr.Bytes())
	}
	return parseEvents(out)
}

// parseEvents decodes test2json's JSON lines.
func parseEvents(b []byte) ([]TestEvent, error) {
	var evs []TestEvent
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var e TestEvent
		if err := dec.Decode(&e); err != nil {
			return evs, fmt.Errorf("test2json output: %w", err)
		}
		evs = append(evs, e)
	}
	return evs, nil
}
