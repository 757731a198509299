package vem

import "testing"

// tbf takes its bucket as the time to send it, in 64 ns scheduler ticks;
// bytes given as ticks made a 64 KiB bucket a few milliseconds deep (a
// 2 Mbit/s shaper then dropped every full-size frame).
func TestTBFBuffer(t *testing.T) {
	for _, tc := range []struct {
		rate, burst uint64
		want        uint32
	}{
		{250_000, 65536, 4_096_000},       // 2 Mbit/s, 64 KiB: 262.144 ms
		{2_500_000, 65536, 409_600},       // 20 Mbit/s: 26.2144 ms
		{1000, 1 << 30, (1<<32 - 1) / 64}, // capped at 2^32 ns, as the kernel does
		{0, 65536, 0},
	} {
		if got := tbfBuffer(tc.rate, tc.burst); got != tc.want {
			t.Errorf("tbfBuffer(%d, %d) = %d, want %d", tc.rate, tc.burst, got, tc.want)
		}
	}
}
