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
	// Failures returns the count in key's current window and how long it still lasts; zero
	// and zero when no window is open.
	Failures(ctx context.Context, key string) (count int64, left time.Duration, err error)
}
