package store

import (
	"context"
	"time"
)

// FailureCounter counts events (failed authentication attempts) per key in fixed windows.
// It is optional: a store shared by several server replicas (Redis) implements it so that
// limits hold across replicas; for a store of one process, counting in memory is the same.
type FailureCounter interface {
	// AddFailure counts one event for key and returns the count in key's current window and
	// how long that window still lasts. The first event of a window starts it, window long.
	AddFailure(ctx context.Context, key string, window time.Duration) (count int64, left time.Duration, err error)
	// Failures returns the count of each key in its current window, one FailureCount per key
	// in the order given (the zero FailureCount when no window is open). It reads all keys
	// at once, so that checking several limits costs one round trip to a shared store.
	Failures(ctx context.Context, keys ...string) ([]FailureCount, error)
}

// FailureCount is a key's count of events in its current window and how long that window
// still lasts; both zero when no window is open.
type FailureCount struct {
	Count int64
	Left  time.Duration
}
