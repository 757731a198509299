package qemutest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/flashvisor/flashvisor/api/client"
)

// apiPollInterval is how often WaitAPI tries the API while the host boots.
const apiPollInterval = time.Second

// WaitAPI waits until the host's management API, forwarded from guestPort
// (WithForward), answers GET /api/v1/host with 200 over TLS with token. It
// learns the certificate fingerprint on first contact and returns a client
// pinned to it, with the fingerprint. It fails at once when QEMU exits or
// the API rejects the token, and otherwise when ctx ends (with the last
// error seen).
func (vm *VM) WaitAPI(ctx context.Context, guestPort int, token string) (*client.Client, string, error) {
	addr := vm.HostAddr(guestPort)
	if addr == "" {
		return nil, "", fmt.Errorf("VM %s: guest port %d is not forwarded (WithForward)", vm.name, guestPort)
	}
	start := time.Now()
	var last error
	for {
		c, fp, err := tryAPI(ctx, addr, token)
		if err == nil {
			vm.logf("[%s] API ready at %s after %.1fs, fingerprint %s", vm.name, addr, time.Since(start).Seconds(), fp)
			return c, fp, nil
		}
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			// A wrong token does not get right by waiting.
			return nil, "", fmt.Errorf("VM %s: API at %s: %w", vm.name, addr, err)
		}
		last = err
		select {
		case <-vm.exited:
			return nil, "", fmt.Errorf("VM %s: QEMU exited before the API answered (%v): last API error: %w", vm.name, vm.Wait(context.Background()), last)
		case <-ctx.Done():
			return nil, "", fmt.Errorf("VM %s: API at %s not ready after %.0fs: %w (last error: %w)", vm.name, addr, time.Since(start).Seconds(), ctx.Err(), last)
		case <-time.After(apiPollInterval):
		}
	}
}

// tryAPI makes one attempt: fetch the fingerprint, pin it, ask for the host.
func tryAPI(ctx context.Context, addr, token string) (*client.Client, string, error) {
	// Short per-attempt bounds: while the guest boots, QEMU's user-mode
	// networking accepts connections that then hang or drop.
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fp, err := client.FetchFingerprint(actx, addr)
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(client.Options{Addr: addr, Token: token, Fingerprint: fp, Timeout: 10 * time.Second})
	if err != nil {
		return nil, "", err
	}
	if _, err := c.Host(actx); err != nil {
		return nil, "", err
	}
	// The returned client keeps the default per-call timeout for later use.
	c, err = client.New(client.Options{Addr: addr, Token: token, Fingerprint: fp})
	if err != nil {
		return nil, "", err
	}
	return c, fp, nil
}
