package apitoken

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token.sha256")
	log := slog.New(slog.DiscardHandler)
	var console bytes.Buffer

	// No token, nothing stored: a new one is printed once and its hash stored.
	h, err := Resolve(path, "", "test", "TOKEN: ", &console, log)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(strings.TrimSpace(console.String()), "TOKEN: ")
	if !ok || !h.Matches(tok) || h.Matches(tok+"x") {
		t.Fatalf("console %q: want the new token, matching the hash", console.String())
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), tok) {
		t.Errorf("the token itself was stored")
	}
	// Stored: loaded, nothing printed.
	console.Reset()
	if h2, err := Resolve(path, "", "test", "TOKEN: ", &console, log); err != nil || h2 != h || console.Len() != 0 {
		t.Errorf("Resolve(stored) = %v, %v, console %q", h2, err, console.String())
	}
	// Given: it wins and replaces the stored hash.
	if h3, err := Resolve(path, "given-token-0123456789", "test", "TOKEN: ", &console, log); err != nil || !h3.Matches("given-token-0123456789") {
		t.Errorf("Resolve(given) = %v, %v", h3, err)
	}
	if h4, err := Resolve(path, "", "test", "TOKEN: ", &console, log); err != nil || !h4.Matches("given-token-0123456789") {
		t.Errorf("Resolve after a given token = %v, %v; want the given token's hash kept", h4, err)
	}
	// A corrupt file is an error, never silently replaced.
	os.WriteFile(path, []byte("zz\n"), 0o600)
	if _, err := Resolve(path, "", "test", "TOKEN: ", &console, log); err == nil || !strings.Contains(err.Error(), "not a hex SHA-256") {
		t.Errorf("Resolve(corrupt) = %v", err)
	}
}
