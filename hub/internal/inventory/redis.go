package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// batch is how many objects go into one HSET.
const batch = 500

// timeout bounds one Redis round trip the store makes on its own behalf (writes, repairs).
const timeout = 2 * time.Second

// RedisKey is the hash holding k's inventory, object key -> hubv1.Resource (protobuf). It
// shares the hash tag {t:<org>/<env>} of the tenant's other keys, so a tenant's keys stay in
// one Redis Cluster slot.
func RedisKey(k Key) string {
	return "sortie:{t:" + url.PathEscape(k.Tenant.OrgID) + "/" + url.PathEscape(k.Tenant.EnvID) + "}:hub:inventory:" + k.Account
}

// Redis is an inventory in Redis, shared by the replicas using it. Each inventory expires
// ttl after its last write or Keep, so the inventories of a dead replica's agents leave by
// themselves. The replica keeps a copy of the inventories it writes until Release, to
// rewrite what Redis lost (Repair).
type Redis struct {
	log   *slog.Logger
	rdb   redis.UniversalClient
	ttl   time.Duration
	local *objects
}

// NewRedis returns an inventory in rdb whose entries live ttl (an hour when ttl <= 0).
func NewRedis(log *slog.Logger, rdb redis.UniversalClient, ttl time.Duration) *Redis {
	if ttl <= 0 {
		ttl = defaultTTL
	}
	return &Redis{log: log, rdb: rdb, ttl: ttl, local: newObjects()}
}

// unavailableError wraps a Redis failure without repeating its text (which may name the
// server).
type unavailableError struct {
	op    string
	cause error
}

func (e *unavailableError) Error() string   { return e.op + ": " + ErrUnavailable.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

func unavailable(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	return &unavailableError{op: op, cause: err}
}

// Replace implements Store. A failed write is retried by Repair.
func (s *Redis) Replace(ctx context.Context, k Key, objects map[string]*hubv1.Resource) error {
	s.local.replace(k, objects)
	if err := s.write(ctx, k, objects); err != nil {
		s.local.markDirty(k)
		return err
	}
	return nil
}

func (s *Redis) write(ctx context.Context, k Key, objects map[string]*hubv1.Resource) error {
	key := RedisKey(k)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		fields := make([]any, 0, 2*batch)
		for name, r := range objects {
			b, err := proto.Marshal(r)
			if err != nil {
				return err
			}
			fields = append(fields, name, b)
			if len(fields) == cap(fields) {
				p.HSet(ctx, key, fields...)
				fields = make([]any, 0, 2*batch)
			}
		}
		if len(fields) > 0 {
			p.HSet(ctx, key, fields...)
		}
		p.PExpire(ctx, key, s.ttl)
		return nil
	})
	if err != nil {
		return unavailable(ctx, "store inventory", err)
	}
	return nil
}

// Apply implements Store. A failed write is retried by Repair.
func (s *Redis) Apply(ctx context.Context, k Key, upserts map[string]*hubv1.Resource, deletions []string) error {
	s.local.apply(k, upserts, deletions)
	key := RedisKey(k)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(upserts) > 0 {
			fields := make([]any, 0, 2*len(upserts))
			for name, r := range upserts {
				b, err := proto.Marshal(r)
				if err != nil {
					return err
				}
				fields = append(fields, name, b)
			}
			p.HSet(ctx, key, fields...)
		}
		if len(deletions) > 0 {
			p.HDel(ctx, key, deletions...)
		}
		p.PExpire(ctx, key, s.ttl)
		return nil
	})
	if err != nil {
		s.local.markDirty(k)
		return unavailable(ctx, "store inventory change", err)
	}
	return nil
}

// List implements Store. Unreadable entries are skipped.
func (s *Redis) List(ctx context.Context, k Key) ([]*hubv1.Resource, error) {
	fields, err := s.rdb.HGetAll(ctx, RedisKey(k)).Result()
	if err != nil {
		return nil, unavailable(ctx, "read inventory", err)
	}
	out := make([]*hubv1.Resource, 0, len(fields))
	for _, v := range fields {
		r := &hubv1.Resource{}
		if err := proto.Unmarshal([]byte(v), r); err != nil || r.GetRef() == nil {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Get implements Store: one HGET.
func (s *Redis) Get(ctx context.Context, k Key, key string) (*hubv1.Resource, error) {
	v, err := s.rdb.HGet(ctx, RedisKey(k), key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, unavailable(ctx, "read inventory object", err)
	}
	r := &hubv1.Resource{}
	if err := proto.Unmarshal(v, r); err != nil || r.GetRef() == nil {
		s.log.Warn("ignoring an unreadable inventory object in Redis", "tenant", k.Tenant.String(), "agent", k.Account)
		return nil, nil
	}
	return r, nil
}

// Keep implements Store: it renews the TTL of each inventory. One this replica has a copy
// of but Redis lost (Redis restarted) is marked for Repair.
func (s *Redis) Keep(ctx context.Context, keys []Key) ([]Key, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.BoolCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.PExpire(ctx, RedisKey(k), s.ttl)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(ctx, "keep inventories", err)
	}
	var missing []Key
	for i, c := range cmds {
		if exists, err := c.Result(); err == nil && !exists {
			missing = append(missing, keys[i])
			s.local.markDirty(keys[i])
		}
	}
	return missing, nil
}

// Release implements Store: Redis keeps the inventory until its TTL, this replica no copy.
func (s *Redis) Release(k Key) { s.local.drop(k) }

// Drop implements Store.
func (s *Redis) Drop(k Key) { s.local.drop(k) }

// Repair implements Store.
func (s *Redis) Repair(ctx context.Context, all bool) ([]Key, error) {
	if all {
		s.local.markAllDirty()
	}
	var done []Key
	for _, k := range s.local.dirtyKeys() {
		objects, ok := s.local.copyOf(k)
		if !ok {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := s.write(wctx, k, objects)
		cancel()
		if err != nil {
			return done, fmt.Errorf("rewrite inventory of tenant %s account '%s': %w", k.Tenant, k.Account, err)
		}
		s.local.clean(k)
		done = append(done, k)
	}
	return done, nil
}
