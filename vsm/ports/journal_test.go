package ports_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/vsm/ports"
)

// An attach appends one journal line instead of rewriting every binding;
// a restart replays the journal; every MaxJournal changes the state file
// is rewritten and the journal emptied.
func TestJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	store := ports.FileStore{Path: path}
	r := newRegistry(t, ports.Options{Store: store, MaxJournal: 3})
	for i := range 3 {
		attach(t, r, ports.AttachRequest{Owner: vm(i), Module: 3})
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("state file after 3 journaled attaches: %v, want none yet", err)
	}
	if n := lines(t, path+".journal"); n != 3 {
		t.Errorf("journal holds %d lines, want 3", n)
	}
	if err := r.Detach(vm(1), 3); err != nil { // the 4th change: a full save
		t.Fatal(err)
	}
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".journal"); !os.IsNotExist(err) {
		t.Errorf("journal after the full save: %v, want none", err)
	}
	if st.Seq != 4 || len(st.Veths) != 3 {
		t.Errorf("saved state: seq %d, %d veths; want 4 and 3", st.Seq, len(st.Veths))
	}
	attach(t, r, ports.AttachRequest{Owner: vm(7), Module: 4})
	if err := r.Release(vm(0)); err != nil {
		t.Fatal(err)
	}

	// A restart sees the state file plus the journal.
	r2 := newRegistry(t, ports.Options{Store: store, MaxJournal: 3})
	var got []string
	for _, b := range r2.Bindings() {
		got = append(got, fmt.Sprintf("%s=%s@%d/%v", b.Port, b.Owner, b.Module, b.Active))
	}
	want := []string{"Veth2=" + vm(1) + "@3/false", "Veth3=" + vm(2) + "@3/true", "Veth4=" + vm(7) + "@4/true"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after restart: %v, want %v", got, want)
	}
	if st := r2.State(); st.Seq != 6 {
		t.Errorf("seq after restart = %d, want 6", st.Seq)
	}
	// The next change continues the numbering (and reuses the freed Veth1).
	if p := attach(t, r2, ports.AttachRequest{Owner: vm(8), Module: 4}); p != "Veth1" {
		t.Errorf("attach after restart = %s, want Veth1", p)
	}
	if st, _ := store.Load(); st.Seq != 7 || len(st.Veths) != 4 {
		t.Errorf("after one more attach: seq %d, %d veths", st.Seq, len(st.Veths))
	}
}

// A crash leaves a journal whose last line was cut short (that change was
// never confirmed: dropped), or a journal next to a state file that
// already holds its records (skipped); a damaged line inside is an error.
func TestJournalCrashes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	store := ports.FileStore{Path: path}
	r := newRegistry(t, ports.Options{Store: store})
	for i := range 3 {
		attach(t, r, ports.AttachRequest{Owner: vm(i), Module: 3})
	}
	j, err := os.ReadFile(path + ".journal")
	if err != nil {
		t.Fatal(err)
	}

	torn := append(append([]byte(nil), j...), []byte(`{"seq":4,"set":{"port":"Veth4","ow`)...)
	os.WriteFile(path+".journal", torn, 0o600)
	if st, err := store.Load(); err != nil || len(st.Veths) != 3 || st.Seq != 3 {
		t.Errorf("torn last line: %d veths seq %d, %v; want the 3 confirmed", len(st.Veths), st.Seq, err)
	}

	// The state file written, the journal not yet removed: replaying it
	// again must not undo what came after it.
	if err := store.Save(r.State()); err != nil {
		t.Fatal(err)
	}
	if err := r.Detach(vm(0), 3); err != nil {
		t.Fatal(err)
	}
	st := r.State()
	st.Veths[0].Active = false
	os.WriteFile(path+".journal", j, 0o600) // seqs 1-3, already in
	if err := store.Save(st); err != nil {  // removes it again: put it back
		t.Fatal(err)
	}
	os.WriteFile(path+".journal", j, 0o600)
	got, err := store.Load()
	if err != nil || len(got.Veths) != 3 || got.Veths[0].Active {
		t.Errorf("stale journal replayed over a newer state: %+v, %v", got.Veths, err)
	}

	damaged := strings.Replace(string(j), `"seq":2`, `"seq":2,`, 1)
	os.WriteFile(path+".journal", []byte(damaged), 0o600)
	if _, err := store.Load(); !errors.Is(err, ports.ErrBadState) {
		t.Errorf("damaged middle line: %v, want ErrBadState", err)
	}
	os.WriteFile(path+".journal", []byte(`{"seq":9,"set":{"port":"Veth1"},"remove":"vm:x/nic0"}`+"\n"), 0o600)
	if _, err := store.Load(); !errors.Is(err, ports.ErrBadState) {
		t.Errorf("record both set and remove: %v, want ErrBadState", err)
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
