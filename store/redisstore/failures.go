package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
)

var _ store.FailureCounter = (*Store)(nil)

// addFailureScript increments a window's counter, starting the window on its first event,
// and returns the count and the milliseconds left. One key: it works in a cluster.
const addFailureScript = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
`

var addFailure = redis.NewScript(addFailureScript)

// failureKey is the Redis key of a counter: the key is hashed, so neither its length nor its
// text (a client id, an address) reaches Redis as such.
func failureKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sortie:failures:" + hex.EncodeToString(sum[:16])
}

// AddFailure implements store.FailureCounter.
func (s *Store) AddFailure(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	const op = "count failure"
	res, err := addFailure.Run(ctx, s.rdb, []string{failureKey(key)}, window.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, wrap(op, err)
	}
	if len(res) != 2 {
		return 0, 0, wrap(op, errors.New("unexpected script reply"))
	}
	return res[0], time.Duration(res[1]) * time.Millisecond, nil
}

// Failures implements store.FailureCounter.
func (s *Store) Failures(ctx context.Context, key string) (int64, time.Duration, error) {
	const op = "read failures"
	k := failureKey(key)
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, k)
	ttl := pipe.PTTL(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, wrap(op, err)
	}
	n, err := get.Int64()
	if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, wrap(op, err)
	}
	left := ttl.Val()
	if left <= 0 {
		return 0, 0, nil
	}
	return n, left, nil
}
