// Package cli is the VSM's NX-OS-style command line (SPEC VSM-4), free of
// any transport: the SSH and HTTP front ends feed it lines and print what it
// returns. A Session keeps the mode (exec, config, and the port-profile,
// vlan, svs-domain and vem sub-modes) from line to line, like a terminal.
//
// The grammar is a tree of words; any unique prefix of a keyword works
// (`conf t`, `sh run`, `sw mode acc`), `?` help and tab completion walk the
// same tree, and errors point at the bad word with NX-OS's caret. Each
// configuration command is one small mutation passed to Switch.Update, so
// the server validates, applies and pushes every change by itself.
//
// The running configuration is read back with the same grammar
// (ParseConfig, LoadStartup): what `show running-config` prints, the CLI
// accepts.
//
// Where our syntax differs from or extends the Nexus 1000V's:
//
//   - Rate limits are set on the profile directly, not through a
//     policy-map and `service-policy`:
//     `rate-limit {input|output} RATE [bps|kbps|mbps|gbps] [burst BYTES]`
//     (input: traffic from the port into the switch; RATE in bit/s unless a
//     unit follows) and `no rate-limit {input|output}`.
//   - Hosts are pinned with `vem N` then `host id UUID` (the original's
//     `host vmware id`), or in one line with the spec's
//     `host UUID module N`; `no host id`, `no vem N`, `no host UUID`.
//   - `port-group [NAME]` is the original's `vmware port-group [NAME]`: the
//     name hosts see. A profile is published when `state enabled` alone.
//   - `channel-group auto mode on` makes an active-backup bond (our VEM has
//     no static-xor mode); `on mac-pinning` and `active` (LACP) as usual.
//   - `vlan N name NAME` names a VLAN in one line; `svs mode L3` takes
//     `interface {mgmt0|control0}` (default mgmt0).
//   - `system redundancy role` works in exec and configuration mode and is
//     part of the running configuration.
//   - `show interface`, `show mac address-table` and `show port-profile`
//     print our counters and fields (no NX-OS-only lines such as
//     `capability l3control`); `show ... | include|exclude|begin RE`,
//     `| count` and `| last N` filter any show.
//   - Prompt() ends with a space ("vsm# "), ready for a terminal.
package cli

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/flashvisor/flashvisor/vsm/config"
)

type mode int

const (
	modeExec mode = iota
	modeConfig
	modePortProfile
	modeVLAN
	modeSVSDomain
	modeVEM
	modeVethIf
)

// Options tune a Session.
type Options struct {
	// Now is the clock for `!Time:` lines (default time.Now).
	Now func() time.Time
	// Version is the software version for `show version` (default: the
	// active VSM module's, else "unknown").
	Version string
}

// Session is one operator's CLI session. It is not safe for concurrent
// use; the Switch behind it is shared.
type Session struct {
	sw   Switch
	opts Options

	mode    mode
	profile string // port-profile sub-mode: the profile edited
	vlans   []int  // vlan sub-mode: the VLANs edited
	slot    int    // vem sub-mode: the slot
	veth    int    // interface sub-mode: the vEth number
	done    bool

	trees map[mode][]*node
}

// NewSession starts a session in exec mode.
func NewSession(sw Switch, opts Options) *Session {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Session{sw: sw, opts: opts}
	s.trees = grammar()
	return s
}

// Prompt is the NX-OS prompt of the current mode: "vsm#",
// "vsm(config-port-prof)#".
func (s *Session) Prompt() string {
	c := s.sw.Config()
	suffix := map[mode]string{
		modeExec:        "",
		modeConfig:      "(config)",
		modePortProfile: "(config-port-prof)",
		modeVLAN:        "(config-vlan)",
		modeSVSDomain:   "(config-svs-domain)",
		modeVEM:         "(config-vem-slot)",
		modeVethIf:      "(config-if)",
	}[s.mode]
	return c.SwitchName + suffix + "# "
}

// Done reports whether the operator left the session (`exit` in exec
// mode); the front end then closes it.
func (s *Session) Done() bool { return s.done }

// Exec runs one line and returns what to print. A syntax error is a
// *SyntaxError; a refused change or a failed action an error whose text
// starts with "ERROR: ". Empty lines and `!` comments do nothing. A line
// ending in `?` returns the help for the rest.
func (s *Session) Exec(line string) (string, error) {
	line = strings.TrimRight(line, " \t\r\n\v\f")
	trimmed := strings.TrimLeft(line, " \t\v\f")
	if trimmed == "" || trimmed[0] == '!' {
		return "", nil
	}
	if strings.HasSuffix(line, "?") {
		return s.Help(strings.TrimSuffix(line, "?")), nil
	}
	cmd, filter, err := splitPipe(line)
	if err != nil {
		return "", err
	}
	n, a, err := parse(s.trees[s.mode], cmd)
	if err != nil && s.mode > modeConfig {
		// NX-OS runs a global configuration command typed in a sub-mode
		// and leaves the sub-mode; replayed configs rely on it.
		if pn, pa, perr := parse(s.trees[modeConfig], cmd); perr == nil {
			n, a, err = pn, pa, nil
			s.mode = modeConfig
		}
	}
	if err != nil {
		return "", err
	}
	out, err := n.run(s, a)
	if err != nil {
		return out, err
	}
	return filter(out), nil
}

// Help is the `?` help for a line: the words that may come next (or that
// complete the last, unfinished word), one per line with a description,
// and <CR> when the line is already a command.
func (s *Session) Help(line string) string {
	cands, partial, complete, err := walk(s.trees[s.mode], line)
	if err != nil {
		return err.Error() + "\n"
	}
	return helpLines(cands, partial, complete)
}

// Complete is tab completion: the line with its last word completed when
// exactly one keyword fits (plus a space), else the line extended to the
// candidates' common prefix and the candidates.
func (s *Session) Complete(line string) (string, []string) {
	cands, partial, _, err := walk(s.trees[s.mode], line)
	if err != nil {
		return line, nil
	}
	word, list := completeWord(cands, partial)
	return line[:len(line)-len(partial)] + word, list
}

// cmdError is a refused or failed command; its text is NX-OS's "ERROR: "
// lines, one per problem.
type cmdError struct{ err error }

func (e *cmdError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "ERROR: " + l
	}
	return strings.Join(lines, "\n")
}

func (e *cmdError) Unwrap() error { return e.err }

func failf(format string, args ...any) error {
	return &cmdError{fmt.Errorf(format, args...)}
}

// update runs one change through the Switch.
func (s *Session) update(f func(c *config.Config) error) (string, error) {
	if err := s.sw.Update(f); err != nil {
		var ce *cmdError
		if errors.As(err, &ce) {
			return "", err
		}
		return "", &cmdError{err}
	}
	return "", nil
}

// updateVeth changes the vEth of the interface sub-mode; a block left
// without settings is dropped.
func (s *Session) updateVeth(f func(v *config.Veth)) (string, error) {
	n := s.veth
	return s.update(func(c *config.Config) error {
		v := c.Veths[n]
		f(&v)
		if v == (config.Veth{}) {
			delete(c.Veths, n)
			return nil
		}
		if c.Veths == nil {
			c.Veths = map[int]config.Veth{}
		}
		c.Veths[n] = v
		return nil
	})
}

// updateProfile changes the profile of the port-profile sub-mode.
func (s *Session) updateProfile(f func(p *config.Profile) error) (string, error) {
	name := s.profile
	return s.update(func(c *config.Config) error {
		p := c.Profile(name)
		if p == nil {
			return fmt.Errorf("port-profile %s does not exist", name)
		}
		return f(p)
	})
}

// splitPipe splits `show ... | include RE` into the command and an output
// filter (include, exclude, begin with a regular expression; count; last
// N). Only show commands
// take one, so a `|` in a description stays text.
func splitPipe(line string) (string, func(string) string, error) {
	id := func(s string) string { return s }
	toks := tokenize(line)
	if len(toks) == 0 || len(toks[0].text) < 2 || !strings.HasPrefix("show", strings.ToLower(toks[0].text)) {
		return line, id, nil
	}
	i := strings.Index(line, "|")
	if i < 0 {
		return line, id, nil
	}
	cmd, spec := line[:i], line[i+1:]
	ftoks := tokenize(spec)
	bad := func(pos int, err error) error { return &SyntaxError{Line: line, Pos: i + 1 + pos, Err: err} }
	if len(ftoks) == 0 {
		return "", nil, bad(len(spec), ErrIncomplete)
	}
	filters := []*node{
		kw("include", "Include lines that match", arg("re", lineArg, "Text to match")),
		kw("exclude", "Exclude lines that match", arg("re", lineArg, "Text to match")),
		kw("begin", "Begin with the line that matches", arg("re", lineArg, "Text to match")),
		kw("count", "Count the lines"),
		kw("last", "Display the last lines", arg("n", numArg(1, 9999), "Number of lines")),
	}
	n, word, err := match(filters, ftoks[0].text)
	if err != nil {
		return "", nil, bad(ftoks[0].pos, err)
	}
	var param string
	var re *regexp.Regexp
	if word != "count" {
		if len(ftoks) < 2 {
			return "", nil, bad(len(spec), ErrIncomplete)
		}
		if word == "last" {
			if _, _, err := match(n.next, ftoks[1].text); err != nil {
				return "", nil, bad(ftoks[1].pos, err)
			}
			param = ftoks[1].text
		} else {
			param = strings.TrimSpace(spec[ftoks[1].pos:])
			if re, err = regexp.Compile(param); err != nil {
				return "", nil, bad(ftoks[1].pos, ErrInvalid)
			}
		}
	}
	return cmd, func(out string) string {
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		var keep []string
		switch word {
		case "include", "exclude":
			for _, l := range lines {
				if re.MatchString(l) == (word == "include") {
					keep = append(keep, l)
				}
			}
		case "begin":
			for i, l := range lines {
				if re.MatchString(l) {
					keep = lines[i:]
					break
				}
			}
		case "count":
			return fmt.Sprintf("%d\n", len(lines))
		case "last":
			var k int
			fmt.Sscan(param, &k)
			keep = lines[max(0, len(lines)-k):]
		}
		if len(keep) == 0 {
			return ""
		}
		return strings.Join(keep, "\n") + "\n"
	}, nil
}
