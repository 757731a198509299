package vem_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/flashvisor/flashvisor/vem"
)

// Egress shapers used to be programmed with a bucket far too small; their
// key changed with the fix so that Plan replaces them, and only them: other
// tc programming keeps its key, and an upgraded agent leaves it alone.
func TestTCKeyReprogramsOldShapersOnly(t *testing.T) {
	oldKey := func(t vem.TC) string {
		sum := sha256.Sum256(fmt.Appendf(nil, "%t %t %q %d %d %d %d", t.DropBPDU, t.DropGroup, t.AllowSrc,
			t.IngressRate, t.IngressBurst, t.EgressRate, t.EgressBurst))
		return hex.EncodeToString(sum[:6])
	}
	for _, tc := range []vem.TC{
		{DropBPDU: true},
		{DropBPDU: true, AllowSrc: []string{"52:54:00:00:00:01"}, IngressRate: 10_000_000, IngressBurst: 65536},
		{DropGroup: true},
	} {
		if got, want := tc.Key(), oldKey(tc); got != want {
			t.Errorf("%+v.Key() = %s, want the unchanged %s", tc, got, want)
		}
	}
	shaper := vem.TC{DropBPDU: true, EgressRate: 20_000_000, EgressBurst: 65536}
	if shaper.Key() == oldKey(shaper) {
		t.Errorf("%+v.Key() = %s, the key of the old shaper programming", shaper, shaper.Key())
	}
}
