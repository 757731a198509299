package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/config"
)

// ParseConfig rebuilds a configuration from its text (what Render and
// `show running-config` print) by replaying every line in configuration
// mode, starting from config.Default. Exec-only lines (show, copy) are
// refused: a configuration file changes nothing but the configuration.
func ParseConfig(text string) (config.Config, error) {
	sw := &memSwitch{cfg: config.Default()}
	s := NewSession(sw, Options{})
	s.mode = modeConfig
	for n, line := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(line); t == "" || t[0] == '!' {
			continue
		}
		if first := tokenize(line)[0].text; len(first) >= 2 && (strings.HasPrefix("show", strings.ToLower(first)) ||
			strings.HasPrefix("copy", strings.ToLower(first)) || strings.HasPrefix("do", strings.ToLower(first))) {
			return config.Config{}, fmt.Errorf("line %d: %q: not a configuration command", n+1, strings.TrimSpace(line))
		}
		if _, err := s.Exec(line); err != nil {
			return config.Config{}, fmt.Errorf("line %d: %w", n+1, err)
		}
		if s.mode == modeExec {
			// `end` or `exit` left configuration mode: later lines are
			// configuration too.
			s.mode = modeConfig
		}
	}
	return sw.cfg, nil
}

// LoadStartup reads and parses a saved configuration (config.Save's
// file). A missing file is an error that matches os.ErrNotExist.
func LoadStartup(path string) (config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return config.Config{}, fmt.Errorf("load startup config: %w", err)
	}
	c, err := ParseConfig(string(b))
	if err != nil {
		return config.Config{}, fmt.Errorf("load startup config %s: %w", path, err)
	}
	return c, nil
}

// memSwitch is the Switch ParseConfig replays into: a configuration and
// nothing else.
type memSwitch struct{ cfg config.Config }

func (m *memSwitch) Config() config.Config { return m.cfg.Clone() }

func (m *memSwitch) Update(f func(*config.Config) error) error {
	c := m.cfg.Clone()
	if err := f(&c); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	m.cfg = c
	return nil
}

func (m *memSwitch) SaveStartup() error                { return fmt.Errorf("not a running switch") }
func (m *memSwitch) Modules() []api.VSMModule          { return nil }
func (m *memSwitch) Interfaces() []Interface           { return nil }
func (m *memSwitch) MACs() []MAC                       { return nil }
func (m *memSwitch) CDPNeighbors() []CDPNeighbor       { return nil }
func (m *memSwitch) IGMPGroups() []IGMPGroup           { return nil }
func (m *memSwitch) Switchover() error                 { return errors.New("not during startup") }
func (m *memSwitch) Redundancy() api.VSMRedundancy     { return api.VSMRedundancy{} }
func (m *memSwitch) ProfileUsage() map[string][]string { return nil }
