package hostd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/internal/layout"
)

func TestCertPersists(t *testing.T) {
	e := newEnv(t)
	s1, err := New(e.opts)
	if err != nil {
		t.Fatalf("first New() = %v", err)
	}
	keyPath := filepath.Join(e.stateDir(), layout.TLSKeyFile)
	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", st.Mode().Perm())
	}
	s2, err := New(e.opts)
	if err != nil {
		t.Fatalf("second New() = %v", err)
	}
	if s1.Fingerprint() != s2.Fingerprint() {
		t.Errorf("second start fingerprint = %s, want %s (the same)", s2.Fingerprint(), s1.Fingerprint())
	}

	// The certificate: SANs and key type.
	b, err := os.ReadFile(filepath.Join(e.stateDir(), layout.TLSCertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := client.Fingerprint(blk.Bytes); got != s1.Fingerprint() {
		t.Errorf("client.Fingerprint(cert) = %s, want hostd's %s", got, s1.Fingerprint())
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"10.0.2.15", "127.0.0.1", "::1"}, ips); diff != "" {
		t.Errorf("certificate IP SANs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"esx1"}, c.DNSNames); diff != "" {
		t.Errorf("certificate DNS SANs (-want +got):\n%s", diff)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm = %v, want ECDSA", c.PublicKeyAlgorithm)
	}
	if c.NotAfter.Year() < 2100 {
		t.Errorf("NotAfter = %v, want far future", c.NotAfter)
	}
}

func TestCertMissingIsReissuedForSameKey(t *testing.T) {
	e := newEnv(t)
	if _, err := New(e.opts); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(e.stateDir(), layout.TLSKeyFile)
	key1, _ := os.ReadFile(keyPath)
	os.Remove(filepath.Join(e.stateDir(), layout.TLSCertFile))
	if _, err := New(e.opts); err != nil {
		t.Fatalf("New() without certificate = %v", err)
	}
	key2, _ := os.ReadFile(keyPath)
	if !bytes.Equal(key1, key2) {
		t.Error("key was replaced, want the existing key reused")
	}
}

func TestCorruptIdentityRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string // under the state dir
		data string
	}{
		{"garbage key", layout.TLSKeyFile, "not a key"},
		{"truncated key", layout.TLSKeyFile, "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"},
		{"garbage cert", layout.TLSCertFile, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
		{"other key's cert", layout.TLSCertFile, ""}, // filled below
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if _, err := New(e.opts); err != nil {
				t.Fatal(err)
			}
			data := tc.data
			if data == "" { // a certificate from another identity
				other := newEnv(t)
				if _, err := New(other.opts); err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(filepath.Join(other.stateDir(), layout.TLSCertFile))
				data = string(b)
			}
			p := filepath.Join(e.stateDir(), tc.file)
			writeFile(t, p, data)
			keyBefore, _ := os.ReadFile(filepath.Join(e.stateDir(), layout.TLSKeyFile))
			_, err := New(e.opts)
			if !errors.Is(err, ErrCorruptKey) {
				t.Fatalf("New() with %s = %v, want ErrCorruptKey", tc.name, err)
			}
			got, _ := os.ReadFile(p)
			if string(got) != data {
				t.Errorf("%s was rewritten, want it untouched", tc.file)
			}
			keyAfter, _ := os.ReadFile(filepath.Join(e.stateDir(), layout.TLSKeyFile))
			if !bytes.Equal(keyBefore, keyAfter) {
				t.Error("key changed, want it untouched")
			}
		})
	}
}

func hashFile(t *testing.T, e *env) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.stateDir(), layout.TokenHashFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestTokenFromCmdline(t *testing.T) {
	e := newEnv(t)
	s, ts := e.start(t)
	if got := hashFile(t, e); got != sha(testToken) {
		t.Errorf("stored hash = %s, want sha256(cmdline token) %s", got, sha(testToken))
	}
	if _, err := apiClient(t, s, ts, testToken).Host(context.Background()); err != nil {
		t.Errorf("Host() with cmdline token = %v", err)
	}
	if strings.Contains(e.logBuf.String(), testToken) || strings.Contains(e.console.String(), testToken) {
		t.Errorf("cmdline token appears in the log or console:\nlog:\n%s\nconsole:\n%s", e.logBuf, e.console)
	}
	if strings.Contains(e.console.String(), TokenLinePrefix) {
		t.Errorf("console shows a token line for a cmdline token:\n%s", e.console)
	}
	st, _ := os.Stat(filepath.Join(e.stateDir(), layout.TokenHashFile))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("hash file mode = %v, want 0600", st.Mode().Perm())
	}
	// A restart with the same token does not rewrite the file (flash wear).
	mt := st.ModTime()
	os.Chtimes(filepath.Join(e.stateDir(), layout.TokenHashFile), mt.Add(-time.Hour), mt.Add(-time.Hour))
	if _, err := New(e.opts); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(filepath.Join(e.stateDir(), layout.TokenHashFile))
	if !st2.ModTime().Equal(mt.Add(-time.Hour)) {
		t.Error("hash file rewritten with unchanged content")
	}
}

// consoleToken extracts the generated token from the console output.
func consoleToken(t *testing.T, console string) string {
	t.Helper()
	var toks []string
	for _, l := range strings.Split(console, "\n") {
		if tok, ok := strings.CutPrefix(l, TokenLinePrefix); ok {
			toks = append(toks, tok)
		}
	}
	if len(toks) != 1 {
		t.Fatalf("console has %d token lines, want 1:\n%s", len(toks), console)
	}
	return toks[0]
}

func TestTokenPrecedence(t *testing.T) {
	e := newEnv(t)
	writeFile(t, e.opts.CmdlineFile, "console=ttyS0 quiet")

	// No cmdline token, no hash: generated, printed once, hash stored.
	s, ts := e.start(t)
	gen := consoleToken(t, e.console.String())
	if len(gen) < 40 {
		t.Errorf("generated token %d characters, want >= 40 (32 random bytes)", len(gen))
	}
	if got := hashFile(t, e); got != sha(gen) {
		t.Errorf("stored hash = %s, want sha256(generated)", got)
	}
	if _, err := apiClient(t, s, ts, gen).Host(context.Background()); err != nil {
		t.Errorf("Host() with generated token = %v", err)
	}
	if strings.Contains(e.logBuf.String(), gen) {
		t.Error("generated token appears in the log")
	}

	// Stored hash: the same token works, nothing is printed.
	e.console = &syncBuffer{}
	e.opts.Console = e.console
	s, ts = e.start(t)
	if strings.Contains(e.console.String(), TokenLinePrefix) {
		t.Errorf("token printed again on the second start:\n%s", e.console)
	}
	if _, err := apiClient(t, s, ts, gen).Host(context.Background()); err != nil {
		t.Errorf("Host() with stored token = %v", err)
	}

	// Cmdline beats the stored hash, and replaces it.
	writeFile(t, e.opts.CmdlineFile, "flashvisor.token="+testToken)
	s, ts = e.start(t)
	if _, err := apiClient(t, s, ts, testToken).Host(context.Background()); err != nil {
		t.Errorf("Host() with cmdline token = %v", err)
	}
	var ae *client.APIError
	if _, err := apiClient(t, s, ts, gen).Host(context.Background()); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("Host() with the replaced token = %v, want 401", err)
	}
	if got := hashFile(t, e); got != sha(testToken) {
		t.Errorf("stored hash = %s, want sha256(cmdline token)", got)
	}

	// Removed from the cmdline: the stored hash keeps it valid.
	writeFile(t, e.opts.CmdlineFile, "quiet")
	s, ts = e.start(t)
	if _, err := apiClient(t, s, ts, testToken).Host(context.Background()); err != nil {
		t.Errorf("Host() with formerly cmdline token = %v", err)
	}
	if strings.Contains(e.logBuf.String(), testToken) {
		t.Error("cmdline token appears in the log")
	}
}

func TestCorruptTokenHashRefused(t *testing.T) {
	e := newEnv(t)
	writeFile(t, e.opts.CmdlineFile, "")
	writeFile(t, filepath.Join(e.stateDir(), layout.TokenHashFile), "xyz\n")
	if _, err := New(e.opts); err == nil {
		t.Error("New() with a corrupt token hash = nil, want error")
	}
}

func TestNoManagementAddress(t *testing.T) {
	e := newEnv(t)
	boot := testBoot
	boot.Management.Address = ""
	boot.StateDir = e.stateDir()
	writeJSONFile(t, e.opts.BootInfoFile, boot)
	e.opts.Listen = ""
	if _, err := New(e.opts); !errors.Is(err, ErrNoManagementAddress) {
		t.Errorf("New() without management address = %v, want ErrNoManagementAddress", err)
	}
}

func TestDefaultListenIsManagementAddress(t *testing.T) {
	e := newEnv(t)
	e.opts.Listen = ""
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != "10.0.2.15:443" {
		t.Errorf("listen = %q, want 10.0.2.15:443", s.listen)
	}
}

func TestMissingManifestIsUnknownVersion(t *testing.T) {
	e := newEnv(t)
	e.opts.ManifestFile = filepath.Join(e.dir, "nope.json")
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.hostInfo().Version; got != "unknown" {
		t.Errorf("version = %q, want unknown", got)
	}
	if !strings.Contains(e.logBuf.String(), "manifest") {
		t.Error("missing manifest not logged")
	}
}

func TestMissingBootInfo(t *testing.T) {
	e := newEnv(t)
	e.opts.BootInfoFile = filepath.Join(e.dir, "nope.json")
	if _, err := New(e.opts); err == nil {
		t.Error("New() without boot.json = nil, want error")
	}
}

func TestServeBannerAndStop(t *testing.T) {
	e := newEnv(t)
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	addr := ln.Addr().String()
	c, err := client.New(client.Options{Addr: addr, Fingerprint: s.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.Healthz(context.Background()) == nil })
	fp, err := client.FetchFingerprint(context.Background(), addr)
	if err != nil || fp != s.Fingerprint() {
		t.Errorf("FetchFingerprint() = %s, %v, want %s", fp, err, s.Fingerprint())
	}
	con := e.console.String()
	for _, want := range []string{
		"Flashvisor host esx1 (v0.1.0-test)",
		"API URL:             https://" + addr + "/",
		"Certificate SHA-256: " + s.Fingerprint(),
	} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q:\n%s", want, con)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve() did not stop")
	}
}

func TestBannerOnPort443(t *testing.T) {
	e := newEnv(t)
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	got := s.BannerLines(&net.TCPAddr{IP: net.ParseIP("10.0.2.15"), Port: 443})
	want := []string{
		"Flashvisor host esx1 (v0.1.0-test)",
		"  API URL:             https://10.0.2.15/",
		"  Certificate SHA-256: " + s.Fingerprint(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BannerLines(10.0.2.15:443) mismatch (-want +got):\n%s", diff)
	}
	got = s.BannerLines(&net.TCPAddr{IP: net.ParseIP("fd00::5"), Port: 443})
	if got[1] != "  API URL:             https://[fd00::5]/" {
		t.Errorf("BannerLines(fd00::5) URL line = %q", got[1])
	}
}

func TestSysInfoParsers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, tc := range []struct {
		name, data string
		check      func() (any, error)
		want       any
		wantErr    bool
	}{
		{"uptime", "12.34 56.78\n", func() (any, error) { return uptime(p) }, 12.34, false},
		{"uptime empty", "", func() (any, error) { return uptime(p) }, 0.0, true},
		{"uptime garbage", "x y", func() (any, error) { return uptime(p) }, 0.0, true},
		{"meminfo", "MemFree: 1 kB\nMemTotal:  2048 kB\n", func() (any, error) { return memTotal(p) }, uint64(2048 * 1024), false},
		{"meminfo missing", "MemFree: 1 kB\n", func() (any, error) { return memTotal(p) }, uint64(0), true},
		{"meminfo garbage", "MemTotal: lots kB\n", func() (any, error) { return memTotal(p) }, uint64(0), true},
		{"cpuinfo", "processor : 0\nmodel name : X\nprocessor : 1\nmodel name : Y\n", func() (any, error) {
			m, n, err := cpuInfo(p)
			return []any{m, n}, err
		}, []any{"X", 2}, false},
		{"cpuinfo arm64 (no model name)", "processor\t: 0\nBogoMIPS\t: 50.00\n", func() (any, error) {
			m, n, err := cpuInfo(p)
			return []any{m, n}, err
		}, []any{"", 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, p, tc.data)
			got, err := tc.check()
			if (err != nil) != tc.wantErr {
				t.Fatalf("%s(%q) error = %v, want error %v", tc.name, tc.data, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s(%q) mismatch (-want +got):\n%s", tc.name, tc.data, diff)
			}
		})
	}
	if kvmUsable(filepath.Join(dir, "nope")) {
		t.Error("kvmUsable(missing) = true, want false")
	}
}

func TestSelfSignIncludesLoopback(t *testing.T) {
	e := newEnv(t)
	hc, err := loadOrCreateCert(t.TempDir(), "", nil, time.Now(), e.opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(hc.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for _, ip := range c.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		got = append(got, a.Unmap())
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("IP SANs without a management address (-want +got):\n%s", diff)
	}
	if c.Subject.CommonName != "flashvisor-host" || len(c.DNSNames) != 0 {
		t.Errorf("subject %q, DNS SANs %v, want flashvisor-host and none", c.Subject.CommonName, c.DNSNames)
	}
}
