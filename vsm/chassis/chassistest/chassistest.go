// Package chassistest provides fakes for the chassis: a clock that moves
// only when told and an in-memory Store that can be made to fail.
package chassistest

import (
	"slices"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/vsm/chassis"
)

// Clock is a chassis.Clock that stands still until Advance.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to a fixed, arbitrary instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Store is an in-memory chassis.Store.
type Store struct {
	mu    sync.Mutex
	state chassis.State
	saves int
	err   error
}

// Load returns the last saved state.
func (s *Store) Load() (chassis.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Bindings = slices.Clone(st.Bindings)
	return st, nil
}

// Save stores st, or fails with the error given to SetErr.
func (s *Store) Save(st chassis.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	st.Bindings = slices.Clone(st.Bindings)
	s.state = st
	s.saves++
	return nil
}

// Saves counts successful saves.
func (s *Store) Saves() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves
}

// SetErr makes later saves fail with err (nil: succeed again).
func (s *Store) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}
