package qemutest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/qemu-test/fvtest"
	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestAppendInitramfs(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	baseBytes := bytes.Repeat([]byte{0xfe}, 1001) // stands in for the zstd archive
	if err := os.WriteFile(base, baseBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pkg.test")
	if err := os.WriteFile(bin, []byte("\x7fELF binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := []cpioFile{
		{Name: "/fvtest", Mode: cpio.S_IFDIR | 0o755},
		{Name: "/fvtest/0/pkg.test", Mode: cpio.S_IFREG | 0o755, Src: bin},
		{Name: "/etc/flashvisor/services.json", Mode: cpio.S_IFREG | 0o644, Data: []byte(`[]`)},
		{Name: "/fvtest/0/testdata/link", Mode: cpio.S_IFLNK | 0o777, Data: []byte("target")},
	}
	out := filepath.Join(dir, "initrd.img")
	if err := appendInitramfs(out, base, files); err != nil {
		t.Fatalf("appendInitramfs() = %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:1001], baseBytes) {
		t.Fatal("the base archive is not copied unchanged at the start")
	}
	if !bytes.Equal(b[1001:1024], make([]byte, 23)) || string(b[1024:1030]) != "070701" {
		t.Fatalf("bytes 1001-1030 = %q, want zero padding to 1024 then the newc magic", b[1001:1030])
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b[1024:])))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range recs {
		content := ""
		if r.ReaderAt != nil {
			c, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			content = string(c)
		}
		got[r.Name] = fmt.Sprintf("%o %s", r.Mode, content)
	}
	want := map[string]string{
		"fvtest":                       "40755 ",
		"fvtest/0/pkg.test":            "100755 \x7fELF binary",
		"etc/flashvisor/services.json": "100644 []",
		"fvtest/0/testdata/link":       "120777 target",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
}

func TestTestdataFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "testdata")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "golden.txt"), []byte("x"), 0o600)
	os.Symlink("sub/golden.txt", filepath.Join(src, "alias"))
	got, err := testdataFiles(src, "/fvtest/0/testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := []cpioFile{
		{Name: "/fvtest/0/testdata", Mode: cpio.S_IFDIR | 0o755},
		{Name: "/fvtest/0/testdata/alias", Mode: cpio.S_IFLNK | 0o777, Data: []byte("sub/golden.txt")},
		{Name: "/fvtest/0/testdata/sub", Mode: cpio.S_IFDIR | 0o755},
		{Name: "/fvtest/0/testdata/sub/golden.txt", Mode: cpio.S_IFREG | 0o600, Src: filepath.Join(src, "sub", "golden.txt")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("testdataFiles (-want +got):\n%s", diff)
	}
	if none, err := testdataFiles(filepath.Join(t.TempDir(), "absent"), "/x"); err != nil || none != nil {
		t.Errorf("testdataFiles(absent) = %v, %v; want nothing", none, err)
	}
}

func TestGoTestName(t *testing.T) {
	for _, tc := range []struct {
		gt   GoTest
		want string
	}{
		{GoTest{Pkg: "./internal/atomicfile"}, "internal.atomicfile"},
		{GoTest{Pkg: "./vem/"}, "vem"},
		{GoTest{Pkg: "."}, "root"},
		{GoTest{Pkg: "./vem", Name: "switch"}, "switch"},
	} {
		if got := goTestName(tc.gt); got != tc.want {
			t.Errorf("goTestName(%+v) = %q, want %q", tc.gt, got, tc.want)
		}
	}
}

func TestVirtioPortArgs(t *testing.T) {
	got := strings.Join(virtioPortArgs("/state/a,b/gotest.frames", fvtest.PortName), " ")
	want := "-device virtio-serial-pci,id=fvtestser -chardev file,id=fvtestport,path=/state/a,,b/gotest.frames " +
		"-device virtserialport,bus=fvtestser.0,chardev=fvtestport,name=org.flashvisor.fvtest"
	if got != want {
		t.Errorf("virtioPortArgs() = %q, want %q", got, want)
	}
}

// recT records what replaying does, standing in for *testing.T.
type recT struct {
	name     string
	failed   bool
	skipped  bool
	errors   []string
	out      bytes.Buffer
	children []*recT
}

type skipNow struct{}

func (r *recT) Run(name string, f func(replayT)) bool {
	c := &recT{name: name}
	r.children = append(r.children, c)
	func() {
		defer func() {
			if v := recover(); v != nil && v != (skipNow{}) {
				panic(v)
			}
		}()
		f(c)
	}()
	if c.failed {
		r.failed = true
	}
	return !c.failed
}
func (r *recT) Errorf(format string, args ...any) {
	r.failed = true
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recT) Logf(format string, args ...any) { fmt.Fprintf(&r.out, format+"\n", args...) }
func (r *recT) Fail()                           { r.failed = true }
func (r *recT) SkipNow()                        { r.skipped = true; panic(skipNow{}) }
func (r *recT) Output() io.Writer               { return &r.out }

// summary renders the recorded tree: name, result, output.
func (r *recT) summary(indent string, b *strings.Builder) {
	res := "pass"
	switch {
	case r.failed:
		res = "fail"
	case r.skipped:
		res = "skip"
	}
	fmt.Fprintf(b, "%s%s %s %q %q\n", indent, r.name, res, r.out.String(), r.errors)
	for _, c := range r.children {
		c.summary(indent+"  ", b)
	}
}

// innerOutput is what a test binary prints with -test.v=test2json (from a
// real one: ^V marks the lines test2json interprets).
const innerOutput = "\x16=== RUN   TestPass\n" +
	"    a_test.go:3: hello\n" +
	"\x16=== RUN   TestPass/sub\n" +
	"    a_test.go:3: in sub\n" +
	"\x16--- PASS: TestPass/sub (0.00s)\n" +
	"\x16=== NAME  TestPass\n" +
	"\x16--- PASS: TestPass (0.00s)\n" +
	"\x16=== NAME  \n" +
	"\x16=== RUN   TestFail\n" +
	"    a_test.go:4: boom\n" +
	"\x16--- FAIL: TestFail (0.00s)\n" +
	"\x16=== NAME  \n" +
	"\x16=== RUN   TestSkip\n" +
	"    a_test.go:5: not here\n" +
	"\x16--- SKIP: TestSkip (0.00s)\n" +
	"\x16=== NAME  \n" +
	"\x16FAIL\n"

func TestReportGoTests(t *testing.T) {
	var frames bytes.Buffer
	s := fvtest.NewSender(&frames, "run")
	for _, l := range strings.SplitAfter(innerOutput, "\n") {
		if l != "" {
			s.Send(0, fvtest.KindLine, strings.TrimSuffix(l, "\n"))
		}
	}
	s.Send(0, fvtest.KindExit, "1")
	s.Send(1, fvtest.KindLine, "\x16=== RUN   TestPass")
	s.Send(1, fvtest.KindLine, "    a_test.go:3: hello")
	s.Send(1, fvtest.KindLine, "\x16--- PASS: TestPass (0.00s)")
	s.Send(1, fvtest.KindLine, "\x16PASS")
	s.Send(1, fvtest.KindExit, "0")
	s.Send(2, fvtest.KindLine, "\x16=== RUN   TestHang")
	// Stream 2 never ends and the done frame never comes: the host died.
	c := fvtest.NewCollector("run")
	for _, l := range strings.Split(frames.String(), "\n") {
		c.Add(l)
	}
	spec := fvtest.Spec{RunID: "run", Tests: []fvtest.Test{{Name: "a"}, {Name: "b"}, {Name: "c"}}}
	tests := []GoTest{{Pkg: "./a"}, {Pkg: "./b"}, {Pkg: "./c"}}
	rec := &recT{name: "Outer"}
	res := reportGoTests(rec, spec, tests, c, []string{"last console line"})

	var b strings.Builder
	rec.summary("", &b)
	want := `Outer fail "" ["RunGoTests: the runner's end marker never came; last console lines:\nlast console line"]
  a fail "" ["a (./a) failed inside the host: exit code 1; its package output:\nFAIL"]
    TestPass pass "a_test.go:3: hello\n" []
      sub pass "a_test.go:3: in sub\n" []
    TestFail fail "a_test.go:4: boom\n" []
    TestSkip skip "a_test.go:5: not here\n" []
  b pass "" []
    TestPass pass "a_test.go:3: hello\n" []
  c fail "" ["c (./c) did not finish inside the host; its last output:\n"]
    TestHang fail "" ["TestHang never ended: the host stopped or the deadline passed during it"]
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("replayed tests (-want +got):\n%s", diff)
	}
	if len(res) != 3 || res[0].Passed() || !res[1].Passed() || res[2].Passed() || res[2].Ended || res[2].ExitCode != -1 {
		t.Errorf("results = %v, want a failed, b passed, c not ended", res)
	}
	if len(res[0].Events) == 0 || res[0].Events[0].Action != "start" {
		t.Errorf("a's events = %+v, want test2json's, starting with start", res[0].Events)
	}
}

func TestCollectFramesFallsBackToConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gotest.frames")
	os.WriteFile(path, nil, 0o644)
	var b bytes.Buffer
	s := fvtest.NewSender(&b, "r")
	s.Send(0, fvtest.KindLine, "hi")
	s.Send(-1, fvtest.KindDone, "")
	var console []string
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		console = append(console, "[fvtest] "+l)
	}
	c := collectFrames(path, "r", console)
	if !c.Done || string(c.Stream(0).Output) != "hi\n" {
		t.Errorf("collectFrames(empty file, console) = done %v output %q, want the console's frames", c.Done, c.Stream(0).Output)
	}
	// Frames in the file win over the console.
	os.WriteFile(path, []byte(fvtest.Encode(fvtest.Frame{Run: "r", Kind: fvtest.KindDone, Stream: -1})+"\n"), 0o644)
	if c := collectFrames(path, "r", console); !c.Done || len(c.Streams) != 0 {
		t.Errorf("collectFrames(file) = %+v, want only the file's done frame", c)
	}
}

// waitFrames returns as soon as the done frame is in (here on the console of
// a fake QEMU that would otherwise run on), and when QEMU exits without one.
func TestWaitFrames(t *testing.T) {
	var b bytes.Buffer
	s := fvtest.NewSender(&b, "w1")
	s.Send(0, fvtest.KindLine, "output")
	s.Send(0, fvtest.KindExit, "0")
	frames := b.String()
	s.Send(-1, fvtest.KindDone, "")
	withDone := b.String()

	for _, tc := range []struct {
		name, body string
		done       bool
	}{
		{"done", "cat <<'EOF'\n" + withDone + "EOF\nexec sleep 60", true},
		{"exited", "cat <<'EOF'\n" + frames + "EOF\nexit 0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu, _ := fakeQEMU(t, tc.body)
			path := filepath.Join(t.TempDir(), "gotest.frames")
			os.WriteFile(path, nil, 0o644)
			vm := Start(t, "gotest", WithQEMU(qemu), WithStateDir(t.TempDir()), WithTimeout(time.Minute))
			start := time.Now()
			c := waitFrames(vm, path, "w1")
			if c.Done != tc.done || string(c.Stream(0).Output) != "output\n" || !c.Stream(0).Ended {
				t.Errorf("waitFrames() = done %v, stream %+v; want done %v and the output", c.Done, c.Stream(0), tc.done)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("waitFrames took %v", d)
			}
		})
	}
}
