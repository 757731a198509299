package vsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// Join errors.
var (
	// ErrBadJoin: the request is malformed (host UUID, uplinks).
	ErrBadJoin = errors.New("bad join request")
	// ErrNoDomain: no `domain id` is configured yet.
	ErrNoDomain = errors.New("svs-domain has no domain id")
)

// JoinBundle issues what a host needs to join the switch (VSM-6): a client
// certificate for its UUID (CN = the UUID, signed by the domain CA, with a
// new key), the CA certificate, the domain's opaque data and the chassis
// slot reserved for the host (chassis.Reserve; only the active VSM issues
// bundles). Uplinks are echoed for the host to store; they are checked
// when its VEM says hello.
// The bundle holds a private key: callers never log it.
func (s *Server) JoinBundle(hostUUID string, uplinks []api.VSMUplink) (api.VSMJoin, error) {
	if !api.ValidHostUUID(hostUUID) {
		return api.VSMJoin{}, fmt.Errorf("%w: host uuid %q is not a UUID", ErrBadJoin, hostUUID)
	}
	if len(uplinks) > 32 {
		return api.VSMJoin{}, fmt.Errorf("%w: %d uplinks, at most 32", ErrBadJoin, len(uplinks))
	}
	for _, u := range uplinks {
		if u.Interface == "" || len(u.Interface) > 15 || strings.ContainsAny(u.Interface, "/ \t\n") || u.Profile == "" {
			return api.VSMJoin{}, fmt.Errorf("%w: uplink %q (profile %q)", ErrBadJoin, u.Interface, u.Profile)
		}
	}
	s.mu.Lock()
	opaque := s.opaqueLocked()
	s.mu.Unlock()
	if opaque.DomainID == 0 {
		return api.VSMJoin{}, fmt.Errorf("%w: configure it first (svs-domain, domain id N)", ErrNoDomain)
	}
	if !s.active() {
		// Only the active's chassis is the pair's: a slot reserved on the
		// standby would be overwritten by the next sync.
		return api.VSMJoin{}, ErrStandby
	}
	hostUUID = strings.ToLower(hostUUID)
	// The slot first (a full chassis refuses the host here, before it
	// stores anything): the host names its system uplinks EthM/P with it
	// and brings them up before its first contact (VEM-6).
	slot, err := s.chassis.Reserve(hostUUID)
	if err != nil {
		return api.VSMJoin{}, err
	}
	s.kickSync()
	certPEM, keyPEM, err := s.trust.issueClient(hostUUID)
	if err != nil {
		return api.VSMJoin{}, err
	}
	return api.VSMJoin{
		Opaque: *opaque, CACert: string(s.trust.caPEM), Cert: string(certPEM), Key: string(keyPEM),
		Uplinks: append([]api.VSMUplink(nil), uplinks...), Module: slot,
	}, nil
}
