package identity

import (
	"context"
	"sync"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// Failed token requests are limited per (client id, address) pair and per address. Keying the
// client's limit by address too means an attacker failing on purpose for a client id blocks
// only itself, never the legitimate client calling from elsewhere. Client secrets are 256
// random bits, so no per-client limit across addresses is needed against guessing.
//
// When the store is shared by replicas (Redis) it counts, so the limits hold across all of
// them; otherwise memoryCounter counts in this process.

// memoryCounter counts failures per key in fixed windows, in memory.
type memoryCounter struct {
	now func() time.Time

	mu      sync.Mutex // guards entries
	entries map[string]*failureWindow
}

type failureWindow struct {
	count int64
	until time.Time
}

var _ store.FailureCounter = (*memoryCounter)(nil)

// maxTrackedKeys bounds the counter's memory; expired entries are swept past it.
const maxTrackedKeys = 100_000

func newMemoryCounter(now func() time.Time) *memoryCounter {
	return &memoryCounter{now: now, entries: map[string]*failureWindow{}}
}

// Failures implements store.FailureCounter.
func (l *memoryCounter) Failures(_ context.Context, keys ...string) ([]store.FailureCount, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	out := make([]store.FailureCount, len(keys))
	for i, key := range keys {
		if e, ok := l.entries[key]; ok && now.Before(e.until) {
			out[i] = store.FailureCount{Count: e.count, Left: e.until.Sub(now)}
		}
	}
	return out, nil
}

// AddFailure implements store.FailureCounter.
func (l *memoryCounter) AddFailure(_ context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, ok := l.entries[key]
	if !ok || !now.Before(e.until) {
		if len(l.entries) >= maxTrackedKeys {
			l.sweepLocked(now)
		}
		e = &failureWindow{until: now.Add(window)}
		l.entries[key] = e
	}
	e.count++
	return e.count, e.until.Sub(now), nil
}

func (l *memoryCounter) sweepLocked(now time.Time) {
	for k, e := range l.entries {
		if !now.Before(e.until) {
			delete(l.entries, k)
		}
	}
	if len(l.entries) >= maxTrackedKeys {
		// Still full of live entries: forget them all rather than grow without bound.
		clear(l.entries)
	}
}
