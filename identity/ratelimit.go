package identity

import (
	"sync"
	"time"
)

// failureLimiter counts failed authentication attempts per key in fixed windows and refuses a
// key that has failed too often, until its window ends.
type failureLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex // guards entries
	entries map[string]*failureWindow
}

type failureWindow struct {
	count int
	until time.Time
}

// maxTrackedKeys bounds the limiter's memory; expired entries are swept past it.
const maxTrackedKeys = 100_000

func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: now, entries: map[string]*failureWindow{}}
}

// blocked reports whether key has used up its failures, and for how long it stays blocked.
func (l *failureLimiter) blocked(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[key]
	now := l.now()
	if !ok || !now.Before(e.until) {
		return 0, false
	}
	return e.until.Sub(now), e.count >= l.max
}

// fail records one failure of key.
func (l *failureLimiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, ok := l.entries[key]
	if !ok || !now.Before(e.until) {
		if len(l.entries) >= maxTrackedKeys {
			l.sweepLocked(now)
		}
		e = &failureWindow{until: now.Add(l.window)}
		l.entries[key] = e
	}
	e.count++
}

func (l *failureLimiter) sweepLocked(now time.Time) {
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
