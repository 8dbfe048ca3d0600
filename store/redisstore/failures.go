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
// and returns the count and the milliseconds left. One key: it works in a cluster. A window
// with 0 ms left has ended (Failures reads it as gone) though Redis has not yet dropped the
// key: the failure starts a new window instead of counting in the old one.
const addFailureScript = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left == 0 then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
  return {1, tonumber(ARGV[1])}
end
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

// Failures implements store.FailureCounter with one pipeline of a GET and a PTTL per key.
// Not a script: the keys are hashed apart (failureKey), so in a cluster they lie in different
// slots, and the cluster client sends the pipeline's commands to each node holding some of
// them, the nodes in parallel.
func (s *Store) Failures(ctx context.Context, keys ...string) ([]store.FailureCount, error) {
	const op = "read failures"
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	gets := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	for i, key := range keys {
		k := failureKey(key)
		gets[i] = pipe.Get(ctx, k)
		ttls[i] = pipe.PTTL(ctx, k)
	}
	// Exec returns the first command's error, which may be a missing key's redis.Nil hiding
	// another's failure: each command's error is checked below.
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap(op, err)
	}
	out := make([]store.FailureCount, len(keys))
	for i := range keys {
		n, err := gets[i].Int64()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap(op, err)
		}
		left, err := ttls[i].Result()
		if err != nil {
			return nil, wrap(op, err)
		}
		if left <= 0 {
			// Expired between the GET and the PTTL, or (never written so) without expiry.
			continue
		}
		out[i] = store.FailureCount{Count: n, Left: left}
	}
	return out, nil
}
