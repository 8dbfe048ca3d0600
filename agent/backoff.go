package agent

import (
	"math"
	"time"
)

// The reconnect policy of quality.md: 1 s, x1.6, 20% jitter, capped at 120 s, reset after a
// stable minute.
const (
	backoffInitial     = time.Second
	backoffFactor      = 1.6
	backoffJitter      = 0.2
	backoffMax         = 120 * time.Second
	backoffStableAfter = 60 * time.Second
)

// Backoff computes reconnect delays with the agent's policy. It is used by one goroutine at
// a time; simulators of many agents (sortie-bench) use it too, so they reconnect as real
// agents do.
type Backoff struct {
	initial, max, stableAfter time.Duration
	factor, jitter            float64
	// rand returns a number in [0, 1); injected so tests can check the sequence.
	rand func() float64
	// attempt counts delays handed out since the last reset, until the cap is reached.
	attempt int
}

// NewBackoff returns the policy of quality.md; rand returns a number in [0, 1) and spreads
// the delays.
func NewBackoff(rand func() float64) *Backoff {
	return &Backoff{
		initial:     backoffInitial,
		max:         backoffMax,
		stableAfter: backoffStableAfter,
		factor:      backoffFactor,
		jitter:      backoffJitter,
		rand:        rand,
	}
}

// Next returns the next delay: initial * factor^attempt, capped at max, spread by ±jitter
// (and never above max, so the herd still spreads once everyone is at the cap).
func (b *Backoff) Next() time.Duration {
	base := float64(b.initial) * math.Pow(b.factor, float64(b.attempt))
	if base >= float64(b.max) {
		base = float64(b.max)
	} else {
		b.attempt++
	}
	d := time.Duration(base * (1 + b.jitter*(2*b.rand()-1)))
	return min(d, b.max)
}

// Reset starts the sequence over.
func (b *Backoff) Reset() { b.attempt = 0 }

// After returns the delay before the next attempt, given how long the last stream stayed
// connected: a stream that lived stableAfter or longer resets the sequence first.
func (b *Backoff) After(connectedFor time.Duration) time.Duration {
	if connectedFor >= b.stableAfter {
		b.Reset()
	}
	return b.Next()
}
