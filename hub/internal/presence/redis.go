package presence

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	"github.com/sortie-dev/sortie/store"
)

// Redis is the presence in Redis. The keys of a tenant share the Redis Cluster hash tag
// {t:<org>/<env>}:
//
//	sortie:{t:<org>/<env>}:hub:streams                hash stream id -> AgentRecord (protobuf)
//	sortie:{t:<org>/<env>}:hub:agent-streams:<agent>  set of the agent's stream ids in streams
//	sortie:{t:<org>/<env>}:hub:alive:<stream id>      "1" with the TTL
//	sortie:{t:<org>/<env>}:hub:accounts               hash agent identifier -> last seen (unix ms)
//	sortie:{t:<org>/<env>}:hub:reconnecting:<agent>   marker with the TTL: the agent is expected back
type Redis struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewRedis returns the presence in rdb, whose records live ttl.
func NewRedis(rdb redis.UniversalClient, ttl time.Duration) *Redis {
	return &Redis{rdb: rdb, ttl: ttl}
}

// tenantPrefix starts every hub key of a tenant; ids are path-escaped so none can leave
// the hash tag.
func tenantPrefix(t store.Tenant) string {
	return "sortie:{t:" + url.PathEscape(t.OrgID) + "/" + url.PathEscape(t.EnvID) + "}:hub:"
}

func keyStreams(t store.Tenant) string          { return tenantPrefix(t) + "streams" }
func keyAlive(t store.Tenant, id string) string { return tenantPrefix(t) + "alive:" + id }
func keyAccounts(t store.Tenant) string         { return tenantPrefix(t) + "accounts" }
func keyAgentStreams(t store.Tenant, agent string) string {
	return tenantPrefix(t) + "agent-streams:" + agent
}
func keyReconnecting(t store.Tenant, account string) string {
	return tenantPrefix(t) + "reconnecting:" + account
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

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func fromMS(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func (s *Redis) put(ctx context.Context, p redis.Pipeliner, rec *replicationv1.AgentRecord, now time.Time) error {
	b, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	t := tenantOf(rec)
	p.HSet(ctx, keyStreams(t), rec.StreamId, b)
	p.SAdd(ctx, keyAgentStreams(t, rec.AgentIdentifier), rec.StreamId)
	p.Set(ctx, keyAlive(t, rec.StreamId), "1", s.ttl)
	p.HSet(ctx, keyAccounts(t), rec.AgentIdentifier, ms(now))
	return nil
}

// Add implements Store.
func (s *Redis) Add(ctx context.Context, rec *replicationv1.AgentRecord, now time.Time) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if err := s.put(ctx, p, rec, now); err != nil {
			return err
		}
		p.Del(ctx, keyReconnecting(tenantOf(rec), rec.AgentIdentifier))
		return nil
	})
	if err != nil {
		return unavailable(ctx, "record agent stream", err)
	}
	return nil
}

// Refresh implements Store.
func (s *Redis) Refresh(ctx context.Context, streams []*replicationv1.AgentRecord, now time.Time) error {
	if len(streams) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, rec := range streams {
			if err := s.put(ctx, p, rec, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return unavailable(ctx, "refresh agent streams", err)
	}
	return nil
}

// Remove implements Store.
func (s *Redis) Remove(ctx context.Context, rec *replicationv1.AgentRecord, now time.Time, expectBack bool) error {
	t := tenantOf(rec)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, keyStreams(t), rec.StreamId)
		p.SRem(ctx, keyAgentStreams(t, rec.AgentIdentifier), rec.StreamId)
		p.Del(ctx, keyAlive(t, rec.StreamId))
		p.HSet(ctx, keyAccounts(t), rec.AgentIdentifier, ms(now))
		if expectBack {
			p.Set(ctx, keyReconnecting(t, rec.AgentIdentifier), "1", s.ttl)
		}
		return nil
	})
	if err != nil {
		return unavailable(ctx, "remove agent stream", err)
	}
	return nil
}

// List implements Store. Unreadable records are skipped.
func (s *Redis) List(ctx context.Context, t store.Tenant) (alive, expired []*replicationv1.AgentRecord, err error) {
	recs, err := s.rdb.HGetAll(ctx, keyStreams(t)).Result()
	if err != nil {
		return nil, nil, unavailable(ctx, "list agent streams", err)
	}
	if len(recs) == 0 {
		return nil, nil, nil
	}
	ids := make([]string, 0, len(recs))
	keys := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
		keys = append(keys, keyAlive(t, id))
	}
	live, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, unavailable(ctx, "list agent streams", err)
	}
	for i, id := range ids {
		rec := &replicationv1.AgentRecord{}
		if err := proto.Unmarshal([]byte(recs[id]), rec); err != nil || rec.StreamId != id || rec.AgentIdentifier == "" {
			continue
		}
		if live[i] == nil {
			expired = append(expired, rec)
		} else {
			alive = append(alive, rec)
		}
	}
	return alive, expired, nil
}

// lookupScript returns the records of one agent's streams, each followed by 1 if its alive
// key exists and 0 if not, in one round trip. KEYS[1] is the agent's stream-id set, KEYS[2]
// the tenant's streams hash; ARGV[1] is the alive keys' prefix, which shares their hash tag,
// so every key it reads lives in one Redis Cluster slot.
var lookupScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rec = redis.call('HGET', KEYS[2], id)
  if rec then
    out[#out + 1] = rec
    out[#out + 1] = redis.call('EXISTS', ARGV[1] .. id)
  end
end
return out
`)

// Lookup implements Store: one script reads the agent's stream-id set, their records and
// alive keys. Unreadable records are skipped.
func (s *Redis) Lookup(ctx context.Context, t store.Tenant, agent string) (alive, expired []*replicationv1.AgentRecord, err error) {
	res, err := lookupScript.Run(ctx, s.rdb, []string{keyAgentStreams(t, agent), keyStreams(t)}, keyAlive(t, "")).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, unavailable(ctx, "look up agent streams", err)
	}
	for i := 0; i+1 < len(res); i += 2 {
		b, _ := res[i].(string)
		live, _ := res[i+1].(int64)
		rec := &replicationv1.AgentRecord{}
		if err := proto.Unmarshal([]byte(b), rec); err != nil || rec.StreamId == "" || rec.AgentIdentifier != agent {
			continue
		}
		if live == 1 {
			alive = append(alive, rec)
		} else {
			expired = append(expired, rec)
		}
	}
	return alive, expired, nil
}

// Reap implements Store: HDEL decides which replica removed each record.
func (s *Redis) Reap(ctx context.Context, t store.Tenant, expired []*replicationv1.AgentRecord) ([]*replicationv1.AgentRecord, error) {
	if len(expired) == 0 {
		return nil, nil
	}
	dels := make([]*redis.IntCmd, len(expired))
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, rec := range expired {
			dels[i] = p.HDel(ctx, keyStreams(t), rec.StreamId)
			p.SRem(ctx, keyAgentStreams(t, rec.AgentIdentifier), rec.StreamId)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(ctx, "remove expired agent streams", err)
	}
	var out []*replicationv1.AgentRecord
	for i, c := range dels {
		if n, _ := c.Result(); n == 1 {
			out = append(out, expired[i])
		}
	}
	return out, nil
}

// Accounts implements Store.
func (s *Redis) Accounts(ctx context.Context, t store.Tenant) (map[string]time.Time, error) {
	seen, err := s.rdb.HGetAll(ctx, keyAccounts(t)).Result()
	if err != nil {
		return nil, unavailable(ctx, "list accounts", err)
	}
	out := make(map[string]time.Time, len(seen))
	for name, v := range seen {
		out[name] = fromMS(v)
	}
	return out, nil
}

// LastSeen implements Store.
func (s *Redis) LastSeen(ctx context.Context, t store.Tenant, account string) (time.Time, error) {
	v, err := s.rdb.HGet(ctx, keyAccounts(t), account).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, unavailable(ctx, "look up account", err)
	}
	return fromMS(v), nil
}

// Forget implements Store.
func (s *Redis) Forget(ctx context.Context, t store.Tenant, accounts []string) error {
	if len(accounts) == 0 {
		return nil
	}
	if err := s.rdb.HDel(ctx, keyAccounts(t), accounts...).Err(); err != nil {
		return unavailable(ctx, "forget accounts", err)
	}
	return nil
}

// ExpectedBack implements Store.
func (s *Redis) ExpectedBack(ctx context.Context, t store.Tenant, account string) (bool, error) {
	n, err := s.rdb.Exists(ctx, keyReconnecting(t, account)).Result()
	if err != nil {
		return false, unavailable(ctx, "look up agent", err)
	}
	return n > 0, nil
}
