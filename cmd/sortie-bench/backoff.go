package main

import (
	"math"
	"math/rand/v2"
	"time"
)

// The agent's reconnect policy (issue 3, quality.md): 1 s, x1.6, ±20% jitter, capped at
// 120 s, reset after a stable minute. The agent package keeps its implementation
// unexported (the agent imports only gen and client-go), so the simulator repeats it here.
const (
	backoffInitial = time.Second
	backoffFactor  = 1.6
	backoffJitter  = 0.2
	backoffMax     = 120 * time.Second
	stableAfter    = 60 * time.Second
)

// backoff computes reconnect delays for one simulated agent.
type backoff struct {
	attempt int // delays handed out since the last reset, until the cap is reached
}

func newBackoff() *backoff { return &backoff{} }

// Next returns the next delay: initial * factor^attempt, capped, spread by ±jitter and never
// above the cap.
func (b *backoff) Next() time.Duration {
	base := float64(backoffInitial) * math.Pow(backoffFactor, float64(b.attempt))
	if base >= float64(backoffMax) {
		base = float64(backoffMax)
	} else {
		b.attempt++
	}
	return min(time.Duration(base*(1+backoffJitter*(2*rand.Float64()-1))), backoffMax)
}

// Reset starts the sequence over.
func (b *backoff) Reset() { b.attempt = 0 }
