package agent

import (
	"testing"
	"time"
)

func TestBackoffSequence(t *testing.T) {
	t.Parallel()
	// With rand 0.5 the jitter is zero: the bare sequence 1s, 1.6s, 2.56s ... capped at 120s.
	b := NewBackoff(func() float64 { return 0.5 })
	want := []time.Duration{
		1 * time.Second, 1600 * time.Millisecond, 2560 * time.Millisecond, 4096 * time.Millisecond,
		6553600 * time.Microsecond, 10485760 * time.Microsecond,
	}
	for i, w := range want {
		if got := b.Next(); !within(got, w, time.Microsecond) {
			t.Fatalf("delay %d = %s, want %s", i+1, got, w)
		}
	}
	var last time.Duration
	for range 20 {
		last = b.Next()
		if last > backoffMax {
			t.Fatalf("delay %s exceeds the cap %s", last, backoffMax)
		}
	}
	if last != backoffMax {
		t.Fatalf("after many attempts the delay is %s, want the cap %s", last, backoffMax)
	}
}

func TestBackoffJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rand  float64
		first time.Duration // the first delay
		atCap time.Duration // a delay once capped
	}{
		{name: "lowest", rand: 0, first: 800 * time.Millisecond, atCap: 96 * time.Second},
		{name: "middle", rand: 0.5, first: time.Second, atCap: 120 * time.Second},
		// Just below 1 would be +20%, but never above the cap.
		{name: "highest", rand: 0.999999, first: 1200 * time.Millisecond, atCap: 120 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewBackoff(func() float64 { return tt.rand })
			if got := b.Next(); !within(got, tt.first, time.Millisecond) {
				t.Errorf("first delay = %s, want %s", got, tt.first)
			}
			var got time.Duration
			for range 30 {
				got = b.Next()
			}
			if !within(got, tt.atCap, time.Millisecond) {
				t.Errorf("capped delay = %s, want %s", got, tt.atCap)
			}
		})
	}
}

func TestBackoffJitterSpread(t *testing.T) {
	t.Parallel()
	// A deterministic stream of "random" numbers covering [0, 1).
	i := 0
	r := func() float64 { i++; return float64(i%100) / 100 }
	b := NewBackoff(r)
	base := float64(time.Second)
	for n := range 12 {
		d := b.Next()
		lo, hi := time.Duration(base*0.8), min(time.Duration(base*1.2), backoffMax)
		if d < lo || d > hi {
			t.Fatalf("delay %d = %s, want within ±20%% of %s", n+1, d, time.Duration(base))
		}
		base = min(base*1.6, float64(backoffMax))
	}
}

func TestBackoffResetAfterStableConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		connectedFor time.Duration
		want         time.Duration
	}{
		{name: "never connected", connectedFor: 0, want: 4096 * time.Millisecond},
		{name: "short-lived stream", connectedFor: 59 * time.Second, want: 4096 * time.Millisecond},
		{name: "stable for a minute", connectedFor: 60 * time.Second, want: time.Second},
		{name: "stable for hours", connectedFor: 5 * time.Hour, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewBackoff(func() float64 { return 0.5 })
			for range 3 { // 1s, 1.6s, 2.56s
				b.After(0)
			}
			if got := b.After(tt.connectedFor); !within(got, tt.want, time.Microsecond) {
				t.Errorf("after(%s) = %s, want %s", tt.connectedFor, got, tt.want)
			}
		})
	}
}

func within(got, want, tolerance time.Duration) bool {
	d := got - want
	return d >= -tolerance && d <= tolerance
}
