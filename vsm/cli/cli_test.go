package cli_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/cli"
	"github.com/flashvisor/flashvisor/vsm/cli/clitest"
	"github.com/flashvisor/flashvisor/vsm/config"
)

const (
	uuid1 = "80c34566-7e89-b601-b4f9-001a64dc9054"
	uuid2 = "c0c2ea8e-7b89-b601-dcdb-001a64dc9024"
)

var fixedNow = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }

func newSession(t *testing.T) (*cli.Session, *clitest.Fake) {
	t.Helper()
	f := clitest.New()
	return cli.NewSession(f, cli.Options{Now: fixedNow}), f
}

// run executes lines and fails the test on any error.
func run(t *testing.T, s *cli.Session, lines ...string) string {
	t.Helper()
	var out strings.Builder
	for _, l := range lines {
		o, err := s.Exec(l)
		if err != nil {
			t.Fatalf("Exec(%q) = %v", l, err)
		}
		out.WriteString(o)
	}
	return out.String()
}

var equateEmpty = cmpopts.EquateEmpty()

func TestConfigCommands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  func(c *config.Config)
	}{
		{"hostname", []string{"conf t", "hostname n1", "end"}, func(c *config.Config) { c.SwitchName = "n1" }},
		{"no hostname", []string{"conf", "hostname n1", "no hostname"}, func(c *config.Config) {}},
		{"vlans and names", []string{"conf t", "vlan 100-102,200", "vlan 100", "name WEB", "vlan 200 name DB", "no vlan 102"},
			func(c *config.Config) { c.VLANs[100], c.VLANs[101], c.VLANs[200] = "WEB", "", "DB" }},
		{"no name", []string{"conf t", "vlan 100", "name WEB", "no name"}, func(c *config.Config) { c.VLANs[100] = "" }},
		{"svs-domain", []string{"conf t", "svs-domain", "domain id 34", "control vlan 260", "packet vlan 261", "svs mode L2"},
			func(c *config.Config) {
				c.SVSDomain = config.SVSDomain{ID: 34, ControlVLAN: 260, PacketVLAN: 261, Mode: api.SVSModeL2}
			}},
		{"svs-domain L3 control0 and no", []string{"conf t", "svs-domain", "domain id 34", "control vlan 5", "no control vlan", "svs mode l3 int control0"},
			func(c *config.Config) {
				c.SVSDomain = config.SVSDomain{ID: 34, Mode: api.SVSModeL3, L3Interface: config.L3Control0}
			}},
		{"pins", []string{"conf t", "vem 3", "host id " + strings.ToUpper(uuid1), "host " + uuid2 + " module 10"},
			func(c *config.Config) { c.HostModules = map[string]int{uuid1: 3, uuid2: 10} }},
		{"unpin", []string{"conf t", "vem 3", "host id " + uuid1, "no host id", "host " + uuid2 + " module 10", "no host " + uuid2},
			func(c *config.Config) {}},
		{"redundancy in exec and config", []string{"system redundancy role primary", "conf t", "sys red role secondary"},
			func(c *config.Config) { c.Redundancy = config.RoleSecondary }},
		{"vethernet profile", []string{"conf t", "port-profile type vethernet WEB", "sw mode acc", "sw acc vlan 100",
			"switchport port-security", "switchport port-security maximum 3", "switchport port-security violation protect",
			"rate-limit input 100 mbps", "rate-limit output 8000 burst 1500", "max-ports 64", "description web  servers",
			"port-group web-pg", "shutdown", "state enabled"},
			func(c *config.Config) {
				c.PutProfile(config.Profile{Name: "WEB", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100,
					PortSecurity: config.PortSecurity{Enabled: true, Maximum: 3, Violation: api.ViolationProtect},
					Ingress:      &api.RateLimit{BitsPerSecond: 100e6}, Egress: &api.RateLimit{BitsPerSecond: 8000, BurstBytes: 1500},
					MaxPorts: 64, Description: "web  servers", PortGroup: "web-pg", Shutdown: true, Enabled: true})
			}},
		{"profile no forms", []string{"conf t", "port-profile WEB", "sw mode trunk", "sw acc vlan 100", "sw trunk native vlan 5",
			"sw trunk allowed vlan 5,6", "switchport port-security", "switchport port-security max 3", "rate-limit input 1 gbps",
			"description x", "port-group", "shutdown", "state enabled", "max-ports 3",
			"no sw mode", "no sw acc vlan", "no sw trunk native vlan 5", "no sw trunk allowed vlan", "no sw port-security",
			"no switchport port-security maximum", "no rate-limit input", "no description", "no port-group", "no shutdown",
			"no state enabled", "no max-ports"},
			func(c *config.Config) { c.PutProfile(config.Profile{Name: "WEB", Type: api.ProfileVethernet}) }},
		{"trunk allowed list edits", []string{"conf t", "port-profile type ethernet UP", "sw mode trunk",
			"sw trunk allowed vlan 100-110", "sw trunk allowed vlan add 120,121", "sw trunk allowed vlan remove 105",
			"system vlan 120", "capability uplink", "channel-group auto mode active"},
			func(c *config.Config) {
				c.PutProfile(config.Profile{Name: "UP", Type: api.ProfileEthernet, Mode: api.ModeTrunk,
					AllowedVLANs: "100-104,106-110,120-121", SystemVLANs: "120", CapabilityUplink: true, ChannelGroup: api.ChannelLACP})
			}},
		{"allowed except, none, all", []string{"conf t", "port-profile type ethernet UP", "sw mode trunk",
			"sw trunk allowed vlan except 1-4093", "port-profile type ethernet UP2", "sw trunk allowed vlan none",
			"port-profile type ethernet UP3", "sw trunk allowed vlan 5", "sw trunk allowed vlan all", "channel-group auto mode on",
			"port-profile type ethernet UP4", "channel-group auto mode on mac-pinning", "no channel-group"},
			func(c *config.Config) {
				c.PutProfile(config.Profile{Name: "UP", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "4094"})
				c.PutProfile(config.Profile{Name: "UP2", Type: api.ProfileEthernet, AllowedVLANs: "none"})
				c.PutProfile(config.Profile{Name: "UP3", Type: api.ProfileEthernet, ChannelGroup: api.ChannelActiveBackup})
				c.PutProfile(config.Profile{Name: "UP4", Type: api.ProfileEthernet})
			}},
		{"delete profile", []string{"conf t", "port-profile A", "port-profile type ethernet B", "no port-profile A", "no port-profile type ethernet B"},
			func(c *config.Config) { c.Profiles = nil }},
		{"interface vethernet", []string{"conf t", "interface vethernet 5", "description web01 frontend", "shutdown", "exit",
			"interface Veth7", "shutdown", "no shutdown", "interface Vethernet9", "shutdown", "no interface veth9",
			"int veth 12", "description x", "no description"},
			func(c *config.Config) {
				c.Veths = map[int]config.Veth{5: {Description: "web01 frontend", Shutdown: true}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newSession(t)
			run(t, s, tc.lines...)
			want := config.Default()
			tc.want(&want)
			if diff := cmp.Diff(want, f.Config(), equateEmpty); diff != "" {
				t.Errorf("config after %q (-want +got):\n%s", tc.lines, diff)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		setup []string
		line  string
		kind  error // nil: a semantic error
		text  string
	}{
		{nil, "ip adress 10.0.0.1/24", cli.ErrInvalid, "ip adress 10.0.0.1/24\n^\n% Invalid command at '^' marker."},
		{[]string{"conf t", "port-profile WEB"}, "switchport mode acess", cli.ErrInvalid,
			"switchport mode acess\n                ^\n% Invalid command at '^' marker."},
		{[]string{"conf t", "port-profile WEB"}, "switchport mode", cli.ErrIncomplete,
			"switchport mode\n               ^\n% Incomplete command at '^' marker."},
		{[]string{"conf t", "port-profile WEB"}, "s", cli.ErrAmbiguous, "s\n^\n% Ambiguous command at '^' marker."},
		{[]string{"conf t"}, "vlan 4095", cli.ErrRange, "vlan 4095\n     ^\nInvalid range at '^' marker."},
		{[]string{"conf t"}, "vlan 10-5", cli.ErrRange, ""},
		{nil, "port-profile WEB", cli.ErrInvalid, ""},
		{[]string{"conf t", "port-profile WEB"}, "system vlan 200", nil,
			"ERROR: port-profile WEB: system vlan 200 is not carried by the profile (switchport mode access, vlans 1)"},
		{[]string{"conf t", "port-profile WEB"}, "capability uplink", nil, "ERROR: capability uplink is only for ethernet port-profiles"},
		{[]string{"conf t", "port-profile type ethernet UP"}, "switchport port-security", nil,
			"ERROR: port-profile UP: port-security is only for vethernet port-profiles"},
		{[]string{"conf t", "port-profile WEB"}, "port-profile type ethernet WEB", nil, "ERROR: port-profile WEB exists with type vethernet"},
		{[]string{"conf t"}, "no port-profile NOPE", nil, "ERROR: port-profile NOPE does not exist"},
		{[]string{"conf t"}, "no vlan 1", nil, "ERROR: the default VLAN 1 cannot be deleted"},
		{[]string{"conf t"}, "vlan 1 name x", nil, "ERROR: the default VLAN 1 cannot be renamed"},
		{[]string{"conf t", "vlan 5-6"}, "name x", nil, "ERROR: a name applies to one VLAN (editing 2)"},
		{[]string{"conf t", "vem 3", "host id " + uuid1}, "host " + uuid2 + " module 3", nil,
			"ERROR: module 3 is pinned to host " + uuid1 + " (no host id " + uuid1 + " first)"},
		{[]string{"conf t", "port-profile WEB"}, "rate-limit input 7999", nil, "ERROR: rate-limit: 7999 bps: must be 8000-34359738360"},
		{[]string{"conf t", "port-profile WEB"}, "description why?", nil, ""},
		{nil, "show interface Veth9", nil, "ERROR: interface Vethernet9 does not exist"},
		{[]string{"conf t"}, "interface Ethernet3/2", nil,
			"ERROR: interface Ethernet3/2: only vethernet interfaces are configured here (Ethernet and port-channel ports take their settings from their port profile)"},
		{[]string{"conf t"}, "interface vethernet 0", cli.ErrRange, ""},
		{[]string{"conf t", "interface vethernet 2"}, "switchport mode trunk", cli.ErrInvalid, ""},
		{nil, "show run | foo", cli.ErrInvalid, "show run | foo\n           ^\n% Invalid command at '^' marker."},
	} {
		t.Run(tc.line, func(t *testing.T) {
			s, _ := newSession(t)
			run(t, s, tc.setup...)
			_, err := s.Exec(tc.line)
			if err == nil {
				if tc.text != "" || tc.kind != nil {
					t.Fatalf("Exec(%q) = nil, want an error", tc.line)
				}
				return // "description why?" is help, not an error
			}
			var se *cli.SyntaxError
			if tc.kind != nil && (!errors.Is(err, tc.kind) || !errors.As(err, &se)) {
				t.Errorf("Exec(%q) = %v, want a SyntaxError of kind %v", tc.line, err, tc.kind)
			}
			if tc.kind == nil && errors.As(err, &se) {
				t.Errorf("Exec(%q) = syntax error %v, want a semantic one", tc.line, err)
			}
			if tc.text != "" && err.Error() != tc.text {
				t.Errorf("Exec(%q) error text:\n%s\nwant:\n%s", tc.line, err, tc.text)
			}
		})
	}
}

func TestUpdateErrorsAreShown(t *testing.T) {
	s, f := newSession(t)
	f.UpdateErr = errors.New("port-profile WEB is in use by Veth1\nsecond problem")
	run(t, s, "conf t")
	_, err := s.Exec("hostname x")
	if want := "ERROR: port-profile WEB is in use by Veth1\nERROR: second problem"; err == nil || err.Error() != want {
		t.Errorf("Exec(hostname x) = %v, want %q", err, want)
	}
	if !errors.Is(err, f.UpdateErr) {
		t.Errorf("the Update error is not wrapped: %v", err)
	}
}

func TestModesAndPrompts(t *testing.T) {
	s, _ := newSession(t)
	for _, step := range []struct{ line, prompt string }{
		{"", "vsm# "},
		{"conf t", "vsm(config)# "},
		{"port-profile WEB", "vsm(config-port-prof)# "},
		{"exit", "vsm(config)# "},
		{"vlan 10", "vsm(config-vlan)# "},
		{"svs-domain", "vsm(config-svs-domain)# "}, // a global command leaves the sub-mode
		{"vem 3", "vsm(config-vem-slot)# "},
		{"interface vethernet 4", "vsm(config-if)# "},
		{"vlan 11", "vsm(config-vlan)# "},
		{"interface Veth4", "vsm(config-if)# "},
		{"hostname n1k", "n1k(config)# "},
		{"port-profile WEB", "n1k(config-port-prof)# "},
		{"end", "n1k# "},
		{"configure terminal", "n1k(config)# "},
		{"exit", "n1k# "},
	} {
		run(t, s, step.line)
		if got := s.Prompt(); got != step.prompt {
			t.Fatalf("after %q Prompt() = %q, want %q", step.line, got, step.prompt)
		}
	}
	if s.Done() {
		t.Fatalf("Done() before exit in exec mode")
	}
	run(t, s, "exit")
	if !s.Done() {
		t.Errorf("Done() = false after exit in exec mode")
	}
}

func TestHelp(t *testing.T) {
	s, _ := newSession(t)
	for _, tc := range []struct {
		mode       []string
		line, want string
	}{
		{nil, "co", "  configure  Enter configuration mode\n  copy       Copy from one file to another\n"},
		{nil, "configure ", "  terminal  Configure from the terminal\n  <CR>\n"},
		{nil, "show system ", "  redundancy  Show redundancy information\n"},
		{[]string{"conf t", "port-profile WEB"}, "switchport access vlan ", "  <1-4094>  VLAN ID\n"},
		{nil, "bogus ", "bogus \n^\n% Invalid command at '^' marker.\n"},
	} {
		run(t, s, "end")
		run(t, s, tc.mode...)
		if got := s.Help(tc.line); got != tc.want {
			t.Errorf("Help(%q) =\n%s\nwant:\n%s", tc.line, got, tc.want)
		}
	}
	if out, err := s.Exec("show ?"); err != nil || !strings.Contains(out, "running-config") {
		t.Errorf("Exec(show ?) = %q, %v, want the show help", out, err)
	}
}

func TestComplete(t *testing.T) {
	s, _ := newSession(t)
	for _, tc := range []struct {
		line, want string
		cands      []string
	}{
		{"conf", "configure ", nil},
		{"sh run", "sh running-config ", nil},
		{"co", "co", []string{"configure", "copy"}},
		{"show port-profile ", "show port-profile ", []string{"brief", "name", "usage"}},
		{"show xyz", "show xyz", nil},
		{"bogus x", "bogus x", nil},
	} {
		got, cands := s.Complete(tc.line)
		if got != tc.want || !cmp.Equal(cands, tc.cands, equateEmpty) {
			t.Errorf("Complete(%q) = %q, %q; want %q, %q", tc.line, got, cands, tc.want, tc.cands)
		}
	}
}

func TestCopyRunStart(t *testing.T) {
	s, f := newSession(t)
	out := run(t, s, "conf t", "hostname n1", "end", "copy run start")
	if !strings.Contains(out, "100%") || f.Startup == nil || f.Startup.SwitchName != "n1" {
		t.Errorf("copy run start: out %q, startup %+v", out, f.Startup)
	}
	f.SaveErr = errors.New("disk full")
	if _, err := s.Exec("copy running-config startup-config"); err == nil || err.Error() != "ERROR: disk full" {
		t.Errorf("copy with a failing save = %v, want ERROR: disk full", err)
	}
}

func TestNoPortProfileInUse(t *testing.T) {
	s, f := newSession(t)
	run(t, s, "conf t", "port-profile WEB", "exit")
	f.Usage = map[string][]string{"WEB": {"Veth1", "Veth2"}}
	if _, err := s.Exec("no port-profile WEB"); err == nil || err.Error() != "ERROR: port-profile WEB is in use by Veth1, Veth2" {
		t.Errorf("no port-profile WEB in use = %v", err)
	}
}

// richLines configure a bit of everything.
var richLines = []string{
	"configure terminal",
	"hostname n1kv-a",
	"system redundancy role primary",
	"vlan 100-110,260,261",
	"vlan 100", "name WEB",
	"vlan 260", "name control",
	"vem 4", "host id " + uuid2,
	"host " + uuid1 + " module 3",
	"port-profile type ethernet SYSTEM-UPLINK",
	"port-group",
	"capability uplink",
	"switchport mode trunk",
	"switchport trunk allowed vlan 1,100-110,260-261",
	"switchport trunk native vlan 1",
	"channel-group auto mode on mac-pinning",
	"system vlan 260,261",
	"state enabled",
	"port-profile type vethernet WebServers",
	"port-group web-servers",
	"switchport access vlan 100",
	"switchport mode access",
	"switchport port-security",
	"switchport port-security maximum 2",
	"switchport port-security violation shutdown",
	"rate-limit input 10 mbps burst 100000",
	"rate-limit output 12345",
	"description web tier, Network Adapter 1",
	"max-ports 100",
	"state enabled",
	"port-profile type vethernet L3-CONTROL",
	"switchport mode access",
	"switchport access vlan 260",
	"system vlan 260",
	"shutdown",
	"interface vethernet 3",
	"description db01, Network Adapter 2",
	"shutdown",
	"interface Veth4",
	"shutdown",
	"svs-domain",
	"domain id 34",
	"control vlan 260",
	"packet vlan 261",
	"svs mode L3 interface control0",
	"end",
}

func TestRoundTrip(t *testing.T) {
	s, f := newSession(t)
	run(t, s, richLines...)
	want := f.Config()
	text := want.Render()
	got, err := cli.ParseConfig(text)
	if err != nil {
		t.Fatalf("ParseConfig(Render()) = %v\n%s", err, text)
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("ParseConfig(Render()) (-want +got):\n%s\n%s", diff, text)
	}
	// show running-config (with its !Command header) replays too.
	out := run(t, s, "show running-config")
	if got, err := cli.ParseConfig(out); err != nil || !cmp.Equal(want, got, equateEmpty) {
		t.Errorf("ParseConfig(show running-config) = %v, diff %s", err, cmp.Diff(want, got, equateEmpty))
	}
	// And a replay of the rendered text into a live session changes nothing.
	s2, f2 := newSession(t)
	run(t, s2, "conf t")
	for _, l := range strings.Split(text, "\n") {
		run(t, s2, l)
	}
	if diff := cmp.Diff(want, f2.Config(), equateEmpty); diff != "" {
		t.Errorf("replay through a session (-want +got):\n%s", diff)
	}
}

func TestParseConfigRefusesExecCommands(t *testing.T) {
	for _, text := range []string{"show module\n", "copy run start\n", "hostname ok\nbogus\n", "do show run\n"} {
		if _, err := cli.ParseConfig(text); err == nil {
			t.Errorf("ParseConfig(%q) = nil, want an error", text)
		}
	}
}

func TestLoadStartup(t *testing.T) {
	s, f := newSession(t)
	run(t, s, richLines...)
	want := f.Config()
	path := filepath.Join(t.TempDir(), "startup-config")
	if err := want.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := cli.LoadStartup(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("LoadStartup (-want +got):\n%s", diff)
	}
	if _, err := cli.LoadStartup(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadStartup(missing) = %v, want os.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte("hostname ok\nvlan 5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.LoadStartup(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("LoadStartup(bad) = %v, want an error naming line 2", err)
	}
}

// FuzzExec feeds arbitrary lines to a session: it must never panic, the
// running configuration must stay valid, and it must survive a Render ->
// ParseConfig round trip.
func FuzzExec(f *testing.F) {
	for _, l := range richLines {
		f.Add("conf t\nport-profile WEB\n" + l)
	}
	for _, l := range []string{"sh run | inc vlan", "show int brief", "show mac address-table vlan 5", "?", "sw?", "\x00", "conf t\nvlan 1-4094",
		"conf t\nport-profile type ethernet U\nsw trunk allowed vlan except 5\nsystem vlan 6", "show port-profile usage name x",
		"conf t\nport-profile WEB\ndescription ~!@#$%^&*()", "show | last 2", "do do do show ver",
		"conf t\ninterface vethernet 3\nshutdown\ndescription a b\nno shutdown\nno description"} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, script string) {
		fake := clitest.New()
		fake.Ifaces = sampleInterfaces()
		fake.MACTable = sampleMACs()
		s := cli.NewSession(fake, cli.Options{Now: fixedNow})
		for _, line := range strings.Split(script, "\n") {
			s.Exec(line)
			s.Help(line)
			s.Complete(line)
			s.Prompt()
		}
		c := fake.Config()
		if err := c.Validate(); err != nil {
			t.Fatalf("running config invalid after %q: %v", script, err)
		}
		got, err := cli.ParseConfig(c.Render())
		if err != nil {
			t.Fatalf("ParseConfig(Render()) after %q: %v\n%s", script, err, c.Render())
		}
		if diff := cmp.Diff(c, got, equateEmpty); diff != "" {
			t.Fatalf("round trip after %q (-want +got):\n%s", script, diff)
		}
	})
}

// FuzzParseConfig: any text either fails to parse or gives a valid
// configuration that survives a Render -> ParseConfig round trip.
func FuzzParseConfig(f *testing.F) {
	c := config.Default()
	f.Add(c.Render())
	f.Add(strings.Join(richLines, "\n"))
	f.Add("vlan 1-4094\nport-profile X\n  system vlan 1\nend\nhostname y\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := cli.ParseConfig(text)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig(%q) gave an invalid config: %v", text, err)
		}
		again, err := cli.ParseConfig(c.Render())
		if err != nil || !cmp.Equal(c, again, equateEmpty) {
			t.Fatalf("round trip of ParseConfig(%q): %v %s", text, err, cmp.Diff(c, again, equateEmpty))
		}
	})
}

func TestSystemSwitchover(t *testing.T) {
	s, f := newSession(t)
	if out, err := s.Exec("system switchover"); err != nil || !strings.Contains(out, "Switchover started") || f.Switchovers != 1 {
		t.Errorf("system switchover = %q, %v (%d calls)", out, err, f.Switchovers)
	}
	f.SwitchoverErr = errors.New("no standby supervisor: nothing to switch over to")
	if _, err := s.Exec("system switchover"); err == nil || !strings.Contains(err.Error(), "no standby") {
		t.Errorf("system switchover without a standby = %v", err)
	}
	// Not a configuration command.
	run(t, s, "configure terminal")
	if _, err := s.Exec("system switchover"); err == nil {
		t.Error("system switchover worked in configuration mode")
	}
}
