package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
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

// IndexKey is the sorted set indexing k's inventory by kind and namespace, so that reads
// of one kind or namespace fetch only those objects. Every member has score 0 and is a
// prefix followed by the object's key in RedisKey:
//
//	k\x00<kind, lower case>\x00<namespace>\x00<object key>
//	n\x00<namespace>\x00<object key>
//
// Names hold no NUL (the hub refuses such references), so a prefix selects exactly one kind
// or namespace.
func IndexKey(k Key) string {
	return "sortie:{t:" + url.PathEscape(k.Tenant.OrgID) + "/" + url.PathEscape(k.Tenant.EnvID) + "}:hub:inventory-index:" + k.Account
}

func kindPrefix(kind string) string    { return "k\x00" + strings.ToLower(kind) + "\x00" }
func namespacePrefix(ns string) string { return "n\x00" + ns + "\x00" }

// indexMembers are the index entries of the object key names.
func indexMembers(key string, ref *hubv1.ObjectReference) [2]string {
	return [2]string{kindPrefix(ref.GetKind()) + ref.GetNamespace() + "\x00" + key, namespacePrefix(ref.GetNamespace()) + key}
}

// lexRange is the ZRANGEBYLEX range of the members starting with prefix, which ends in NUL.
func lexRange(prefix string) (string, string) {
	return "[" + prefix, "(" + prefix[:len(prefix)-1] + "\x01"
}

// selectScript returns the objects whose index members lie in a lex range, in one round
// trip. KEYS[1] is the objects hash, KEYS[2] its index (one hash tag: one Cluster slot);
// ARGV[1] and ARGV[2] are the range, ARGV[3] the length of the members' prefix; with
// ARGV[4] "1" a namespace and its NUL follow the prefix (a kind in any namespace).
var selectScript = redis.NewScript(`
local members = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2])
local skip = tonumber(ARGV[3]) + 1
local out = {}
for i = 1, #members, 1000 do
  local fields = {}
  for j = i, math.min(i + 999, #members) do
    local key = string.sub(members[j], skip)
    if ARGV[4] == '1' then
      key = string.sub(key, string.find(key, '\0', 1, true) + 1)
    end
    fields[#fields + 1] = key
  end
  for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do
    if v then out[#out + 1] = v end
  end
end
return out
`)

// namespacesScript returns the distinct namespaces of the index KEYS[1], skipping from one
// namespace to the next: one step per namespace, however many objects each holds.
var namespacesScript = redis.NewScript(`
local out = {}
local min = '[n\0'
while true do
  local m = redis.call('ZRANGEBYLEX', KEYS[1], min, '(n\1', 'LIMIT', 0, 1)
  if #m == 0 then return out end
  local e = string.find(m[1], '\0', 3, true)
  local ns = string.sub(m[1], 3, e - 1)
  if ns ~= '' then out[#out + 1] = ns end
  min = '[n\0' .. ns .. '\1'
end
`)

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
	key, index := RedisKey(k), IndexKey(k)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key, index)
		fields := make([]any, 0, 2*batch)
		members := make([]redis.Z, 0, 2*batch)
		flush := func() {
			if len(fields) > 0 {
				p.HSet(ctx, key, fields...)
				p.ZAdd(ctx, index, members...)
			}
			fields, members = make([]any, 0, 2*batch), make([]redis.Z, 0, 2*batch)
		}
		for name, r := range objects {
			b, err := proto.Marshal(r)
			if err != nil {
				return err
			}
			fields = append(fields, name, b)
			for _, m := range indexMembers(name, r.GetRef()) {
				members = append(members, redis.Z{Member: m})
			}
			if len(fields) == cap(fields) {
				flush()
			}
		}
		flush()
		p.PExpire(ctx, key, s.ttl)
		p.PExpire(ctx, index, s.ttl)
		return nil
	})
	if err != nil {
		return unavailable(ctx, "store inventory", err)
	}
	return nil
}

// Apply implements Store. A failed write is retried by Repair.
func (s *Redis) Apply(ctx context.Context, k Key, upserts map[string]*hubv1.Resource, deletions map[string]*hubv1.ObjectReference) error {
	s.local.apply(k, upserts, deletions)
	key, index := RedisKey(k), IndexKey(k)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(upserts) > 0 {
			fields := make([]any, 0, 2*len(upserts))
			members := make([]redis.Z, 0, 2*len(upserts))
			for name, r := range upserts {
				b, err := proto.Marshal(r)
				if err != nil {
					return err
				}
				fields = append(fields, name, b)
				for _, m := range indexMembers(name, r.GetRef()) {
					members = append(members, redis.Z{Member: m})
				}
			}
			p.HSet(ctx, key, fields...)
			p.ZAdd(ctx, index, members...)
		}
		if len(deletions) > 0 {
			keys := make([]string, 0, len(deletions))
			members := make([]any, 0, 2*len(deletions))
			for name, ref := range deletions {
				keys = append(keys, name)
				for _, m := range indexMembers(name, ref) {
					members = append(members, m)
				}
			}
			p.HDel(ctx, key, keys...)
			p.ZRem(ctx, index, members...)
		}
		p.PExpire(ctx, key, s.ttl)
		p.PExpire(ctx, index, s.ttl)
		return nil
	})
	if err != nil {
		s.local.markDirty(k)
		return unavailable(ctx, "store inventory change", err)
	}
	return nil
}

// List implements Store: the whole hash without a filter, otherwise the objects of the
// filter's kind or namespace through the index, in one round trip. Unreadable entries are
// skipped.
func (s *Redis) List(ctx context.Context, k Key, f Filter) ([]*hubv1.Resource, error) {
	var values []string
	var err error
	switch {
	case f.Kind == "" && f.Namespace == "":
		var fields map[string]string
		fields, err = s.rdb.HGetAll(ctx, RedisKey(k)).Result()
		values = make([]string, 0, len(fields))
		for _, v := range fields {
			values = append(values, v)
		}
	default:
		prefix := namespacePrefix(f.Namespace)
		if f.Kind != "" {
			prefix = kindPrefix(f.Kind)
			if f.Namespace != "" {
				prefix += f.Namespace + "\x00"
			}
		}
		lo, hi := lexRange(prefix)
		// A kind without a namespace spans namespaces: its members hold one more field.
		skipNamespace := "0"
		if f.Kind != "" && f.Namespace == "" {
			skipNamespace = "1"
		}
		values, err = selectScript.Run(ctx, s.rdb, []string{RedisKey(k), IndexKey(k)}, lo, hi, strconv.Itoa(len(prefix)), skipNamespace).StringSlice()
	}
	if err != nil {
		return nil, unavailable(ctx, "read inventory", err)
	}
	out := make([]*hubv1.Resource, 0, len(values))
	for _, v := range values {
		r := &hubv1.Resource{}
		if err := proto.Unmarshal([]byte(v), r); err != nil || r.GetRef() == nil || !f.match(r.GetRef()) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Namespaces implements Store: one script steps through the index's namespaces.
func (s *Redis) Namespaces(ctx context.Context, k Key) ([]string, error) {
	out, err := namespacesScript.Run(ctx, s.rdb, []string{IndexKey(k)}).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(ctx, "read inventory namespaces", err)
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
			p.PExpire(ctx, IndexKey(k), s.ttl)
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
