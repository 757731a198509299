package vsmlink_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
	"github.com/flashvisor/flashvisor/vem/vsmlink/vsmlinktest"
	"github.com/google/go-cmp/cmp"
)

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

func testJoin(t testing.TB) (api.VSMJoin, *vsmlinktest.CA) {
	ca := vsmlinktest.NewCA(t)
	cert, key := ca.Issue(t, "host", false)
	return api.VSMJoin{
		Opaque: api.VSMOpaque{DomainID: 7, SwitchName: "dvs", VSMs: []string{"10.0.0.5:2001", "[fd00::5]:2001"}, Mode: api.SVSModeL3},
		CACert: ca.PEM, Cert: cert, Key: key,
		Uplinks: []api.VSMUplink{{Interface: "eth1", Profile: "dvs-uplink"}},
	}, ca
}

func TestValidateJoin(t *testing.T) {
	good, _ := testJoin(t)
	other := vsmlinktest.NewCA(t)
	otherCert, otherKey := other.Issue(t, "host", false)
	serverCert, serverKey := other.Issue(t, "vsm", true)
	for _, tc := range []struct {
		name   string
		change func(*api.VSMJoin)
		want   string
	}{
		{"valid", func(*api.VSMJoin) {}, ""},
		{"domain 0", func(j *api.VSMJoin) { j.Opaque.DomainID = 0 }, "domain id 0"},
		{"domain 4096", func(j *api.VSMJoin) { j.Opaque.DomainID = 4096 }, "domain id 4096"},
		{"L2 without control vlan", func(j *api.VSMJoin) { j.Opaque.Mode = api.SVSModeL2 }, "control vlan 0"},
		{"L2", func(j *api.VSMJoin) { j.Opaque.Mode, j.Opaque.ControlVLAN = api.SVSModeL2, 260 }, ""},
		{"mode L4", func(j *api.VSMJoin) { j.Opaque.Mode = "L4" }, `"L4"`},
		{"no VSM", func(j *api.VSMJoin) { j.Opaque.VSMs = nil }, "no VSM address"},
		{"no port", func(j *api.VSMJoin) { j.Opaque.VSMs = []string{"10.0.0.5"} }, `"10.0.0.5"`},
		{"port 0", func(j *api.VSMJoin) { j.Opaque.VSMs = []string{"vsm:0"} }, "port"},
		{"bad uplink", func(j *api.VSMJoin) { j.Uplinks[0].Interface = "eth/1" }, "eth/1"},
		{"uplink without profile", func(j *api.VSMJoin) { j.Uplinks[0].Profile = "" }, "profile"},
		{"uplink twice", func(j *api.VSMJoin) { j.Uplinks = append(j.Uplinks, j.Uplinks[0]) }, "twice"},
		{"no CA", func(j *api.VSMJoin) { j.CACert = "" }, "CA certificate"},
		{"CA not a CA", func(j *api.VSMJoin) { j.CACert = j.Cert }, "not a CA"},
		{"other CA's cert", func(j *api.VSMJoin) { j.Cert, j.Key = otherCert, otherKey }, "does not chain"},
		{"key mismatch", func(j *api.VSMJoin) { j.Key = otherKey }, "key"},
		{"garbage key", func(j *api.VSMJoin) { j.Key = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n" }, "key"},
		{"other CA, both usages", func(j *api.VSMJoin) { j.CACert, j.Cert, j.Key = other.PEM, serverCert, serverKey }, ""},
	} {
		j := good
		j.Uplinks = append([]api.VSMUplink(nil), good.Uplinks...)
		tc.change(&j)
		tcfg, err := vsmlink.ValidateJoin(j)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: ValidateJoin = %v, want ok", tc.name, err)
		case tc.want == "" && (tcfg.ServerName != "vsm" || tcfg.MinVersion != 0x0304 || len(tcfg.Certificates) != 1):
			t.Errorf("%s: TLS config = %+v", tc.name, tcfg)
		case tc.want != "" && (!errors.Is(err, vem.ErrBadRequest) || !contains(err, tc.want)):
			t.Errorf("%s: ValidateJoin = %v, want an ErrBadRequest with %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error quotes the key: %v", tc.name, err)
		}
	}
}

func TestJoinFile(t *testing.T) {
	j, _ := testJoin(t)
	path := filepath.Join(t.TempDir(), "vem", "vsm-join.json")
	if _, err := vsmlink.LoadJoin(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadJoin(none) = %v, want ErrNotExist", err)
	}
	if err := vsmlink.SaveJoin(path, j); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("join file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	got, err := vsmlink.LoadJoin(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(j, got); d != "" {
		t.Errorf("LoadJoin (-want +got):\n%s", d)
	}
	os.WriteFile(path, []byte(`{"opaque":{"domain_id":7},"frob":1}`), 0o600)
	if _, err := vsmlink.LoadJoin(path); !errors.Is(err, vem.ErrBadRequest) {
		t.Errorf("LoadJoin(unknown field) = %v", err)
	}
}

func FuzzParseJoin(f *testing.F) {
	j, _ := testJoin(f)
	good, _ := json.Marshal(j)
	f.Add(good)
	f.Add([]byte(`{"opaque":{"domain_id":1,"vsms":["a:1"]}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"opaque":{}} {}`))
	f.Add([]byte(`{"ca_cert":"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := vsmlink.ParseJoin(data)
		if err != nil {
			if !errors.Is(err, vem.ErrBadRequest) {
				t.Fatalf("ParseJoin error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		// Whatever parsed survives a round trip unchanged.
		again, _ := json.Marshal(j)
		j2, err := vsmlink.ParseJoin(again)
		if err != nil {
			t.Fatalf("ParseJoin(Marshal(ParseJoin(x))) = %v", err)
		}
		if d := cmp.Diff(j, j2); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}
