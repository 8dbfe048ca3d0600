package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/internal/record"
)

// keyPipelineTenants is the server-wide set of tenants that may have pipelines.
const keyPipelineTenants = "sortie:pipeline_tenants"

// pruneBatch bounds how many finished pipelines one prune reads per tenant and round.
const pruneBatch = 500

// createPipelineScript applies the in-progress rule and stores a new pipeline, all inside the
// tenant's hash tag. It decodes the application's active records (cjson) to tell QUEUED from
// in progress, and rewrites the JSON only of what it changes itself: the new pipeline when it
// is queued and the older QUEUED one it replaces.
//
// KEYS: 1 records, 2 events, 3 active, 4 app_active, 5-8 the new pipeline's indexes for its
// own status (all, app, status, app+status), 9-10 the QUEUED and 11-12 the REJECTED status
// indexes of the application, 13 completed.
// ARGV: 1 id, 2 record, 3 sort key, 4 rule (0 reject, 1 enqueue), 5 "1" if terminal,
// 6 CreatedAt as stored, 7 the queued event, 8 the replaced event, 9 completed key of the new
// pipeline ("" if active), 10 completed key prefix of a replaced one, 11... the caller's events.
// Returns {"conflict"}, {"in_progress", blocker id} or {"ok", record, replaced record or nil}.
const createPipelineScript = `
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[1], id) == 1 then return {'conflict'} end
local rec = ARGV[2]
local n = #ARGV - 10
local idx = {KEYS[5], KEYS[6], KEYS[7], KEYS[8]}
local queued = {}
if ARGV[5] == '0' then
  local blocker, blockerKey = nil, ''
  local act = redis.call('HGETALL', KEYS[4])
  for i = 1, #act, 2 do
    local o = cjson.decode(redis.call('HGET', KEYS[1], act[i]))
    if o.status == 'QUEUED' then
      table.insert(queued, {act[i], act[i+1], o})
    elseif act[i+1] > blockerKey then
      blocker, blockerKey = act[i], act[i+1]
    end
  end
  table.sort(queued, function(a, b) return a[2] < b[2] end)
  local blockedBy = blocker
  if blocker == nil and #queued > 0 then
    blocker = queued[1][1]
    blockedBy = queued[1][3].blocked_by
  end
  if blocker ~= nil then
    if ARGV[4] == '0' then return {'in_progress', blocker} end
    local r = cjson.decode(rec)
    r.status = 'QUEUED'
    r.blocked_by = blockedBy
    r.events = n + 1
    rec = cjson.encode(r)
    idx[3], idx[4] = KEYS[9], KEYS[10]
    redis.call('HSET', KEYS[2], id .. '/' .. (n + 1), ARGV[7])
  end
end
for i = 1, n do
  redis.call('HSET', KEYS[2], id .. '/' .. i, ARGV[10 + i])
end
redis.call('HSET', KEYS[1], id, rec)
for _, k in ipairs(idx) do redis.call('ZADD', k, 0, ARGV[3]) end
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[13], 0, ARGV[9])
else
  redis.call('HSET', KEYS[3], id, ARGV[3])
  redis.call('HSET', KEYS[4], id, ARGV[3])
end
local first = false
for i, q in ipairs(queued) do
  local o = q[3]
  o.status = 'REJECTED'
  o.blocked_by = id
  o.revision = o.revision + 1
  o.updated_at = ARGV[6]
  o.completed_at = ARGV[6]
  o.events = o.events + 1
  local enc = cjson.encode(o)
  redis.call('HSET', KEYS[2], q[1] .. '/' .. o.events, ARGV[8])
  redis.call('HSET', KEYS[1], q[1], enc)
  redis.call('ZREM', KEYS[9], q[2])
  redis.call('ZREM', KEYS[10], q[2])
  redis.call('ZADD', KEYS[11], 0, q[2])
  redis.call('ZADD', KEYS[12], 0, q[2])
  redis.call('HDEL', KEYS[3], q[1])
  redis.call('HDEL', KEYS[4], q[1])
  redis.call('ZADD', KEYS[13], 0, ARGV[10] .. q[1])
  if i == 1 then first = enc end
end
return {'ok', rec, first}
`

// updatePipelineScript replaces a pipeline's record if it is still the one the caller read
// (so its revision and indexes are as the caller saw them) and, with a fence, if the lease is
// still the fence's and unexpired; then it appends the events and moves the index entries.
//
// KEYS: 1 records, 2 events, 3 active, 4 app_active, 5 completed, 6 lease, 7-10 the old
// indexes, 11-14 the new ones.
// ARGV: 1 id, 2 the record as read, 3 the new record, 4 sort key, 5 old completed key (""
// while active), 6 new completed key ("" if active), 7 "1" with a fence, 8 holder, 9 token,
// 10 now in microseconds, 11 Seq of the first new event, 12... events.
// Returns "ok", "not_found", "stale" or "stale_lease".
const updatePipelineScript = `
local id = ARGV[1]
local cur = redis.call('HGET', KEYS[1], id)
if not cur then return 'not_found' end
if cur ~= ARGV[2] then return 'stale' end
if ARGV[7] == '1' then
  local l = redis.call('HMGET', KEYS[6], 'holder', 'token', 'expires_us')
  if not l[1] or l[1] ~= ARGV[8] or l[2] ~= ARGV[9] or tonumber(l[3]) <= tonumber(ARGV[10]) then
    return 'stale_lease'
  end
end
redis.call('HSET', KEYS[1], id, ARGV[3])
local seq = tonumber(ARGV[11])
for i = 12, #ARGV do
  redis.call('HSET', KEYS[2], id .. '/' .. seq, ARGV[i])
  seq = seq + 1
end
for i = 7, 10 do redis.call('ZREM', KEYS[i], ARGV[4]) end
for i = 11, 14 do redis.call('ZADD', KEYS[i], 0, ARGV[4]) end
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[5], ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[5], 0, ARGV[6])
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
else
  redis.call('HSET', KEYS[3], id, ARGV[4])
  redis.call('HSET', KEYS[4], id, ARGV[4])
end
return 'ok'
`

// prunePipelineScript removes one finished pipeline if it is still the record the caller
// read, with its events, lease, fencing counter and index entries.
//
// KEYS: 1 records, 2 events, 3 completed, 4 lease, 5 lease token, 6-9 indexes.
// ARGV: 1 id, 2 the record as read, 3 sort key, 4 completed key, 5 event count.
const prunePipelineScript = `
local id = ARGV[1]
if redis.call('HGET', KEYS[1], id) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], id)
for i = 1, tonumber(ARGV[5]) do redis.call('HDEL', KEYS[2], id .. '/' .. i) end
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('DEL', KEYS[4], KEYS[5])
for i = 6, 9 do redis.call('ZREM', KEYS[i], ARGV[3]) end
return 1
`

// acquireLeaseScript gives a stored pipeline's lease to a holder when it is free, expired or
// already the holder's, drawing a new token from the counter on every change of hands.
//
// KEYS: 1 records, 2 lease, 3 lease token. ARGV: 1 id, 2 holder, 3 now and 4 expiry in
// microseconds. Returns {"not_found"}, {"held", holder, expiry} or {"ok", token}.
const acquireLeaseScript = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'not_found'} end
local l = redis.call('HMGET', KEYS[2], 'holder', 'token', 'expires_us')
local token = nil
if l[1] then
  if l[1] ~= ARGV[2] and tonumber(l[3]) > tonumber(ARGV[3]) then return {'held', l[1], l[3]} end
  if l[1] == ARGV[2] then token = l[2] end
end
if not token then token = tostring(redis.call('INCR', KEYS[3])) end
redis.call('HSET', KEYS[2], 'holder', ARGV[2], 'token', token, 'expires_us', ARGV[4])
return {'ok', token}
`

// releaseLeaseScript deletes the lease if it is still the given holder's token.
const releaseLeaseScript = `
local l = redis.call('HMGET', KEYS[1], 'holder', 'token')
if l[1] == ARGV[1] and l[2] == ARGV[2] then redis.call('DEL', KEYS[1]) end
return 1
`

// pipelineScripts are the scripts of the pipeline and lease aggregates.
type pipelineScripts struct {
	create, update, prune, acquire, release *redis.Script
}

func newPipelineScripts() pipelineScripts {
	return pipelineScripts{
		create:  redis.NewScript(createPipelineScript),
		update:  redis.NewScript(updatePipelineScript),
		prune:   redis.NewScript(prunePipelineScript),
		acquire: redis.NewScript(acquireLeaseScript),
		release: redis.NewScript(releaseLeaseScript),
	}
}

// Key names of one tenant's pipelines; all carry the tenant's hash tag.
func recordsKey(t store.Tenant) string   { return tenantKey(t, "pipelines") }
func eventsKey(t store.Tenant) string    { return tenantKey(t, "pipeline_events") }
func activeKey(t store.Tenant) string    { return tenantKey(t, "pipeline_active") }
func completedKey(t store.Tenant) string { return tenantKey(t, "pipeline_completed") }
func appActiveKey(t store.Tenant, app string) string {
	return tenantKey(t, "pipeline_app_active:"+url.QueryEscape(app))
}
func indexKey(t store.Tenant, name string) string { return tenantKey(t, "pipeline_index:"+name) }
func leaseKey(t store.Tenant, id string) string   { return tenantKey(t, "lease:"+url.PathEscape(id)) }
func leaseTokenKey(t store.Tenant, id string) string {
	return tenantKey(t, "lease_token:"+url.PathEscape(id))
}

// indexKeys returns the keys of the indexes a pipeline of app in status belongs to.
func indexKeys(t store.Tenant, app, status string) []string {
	var keys []string
	for _, name := range record.IndexNames(app, status) {
		keys = append(keys, indexKey(t, name))
	}
	return keys
}

// storedTime renders t as a stored record holds it, for scripts that edit records.
func storedTime(t time.Time) (string, error) {
	b, err := json.Marshal(t.UTC())
	if err != nil {
		return "", err
	}
	return strconv.Unquote(string(b))
}

// encodeEvents returns the stored forms of events.
func encodeEvents(events []store.PipelineEvent) ([]any, error) {
	var out []any
	for _, e := range events {
		v, err := record.EncodeEvent(e)
		if err != nil {
			return nil, err
		}
		out = append(out, string(v))
	}
	return out, nil
}

// registerTenant adds t to the set ListActivePipelines and the prune walk. It runs before
// and after every creation: a prune that drops an empty tenant concurrently (see
// DeletePipelinesCompletedBefore) cannot leave a new pipeline's tenant out of the set.
func (s *Store) registerTenant(ctx context.Context, t store.Tenant) error {
	tv, err := record.EncodeTenant(t)
	if err != nil {
		return err
	}
	return s.rdb.SAdd(ctx, keyPipelineTenants, tv).Err()
}

// CreatePipeline implements store.Pipelines with one script under the tenant's hash tag.
func (s *Store) CreatePipeline(ctx context.Context, p store.Pipeline, rule store.InProgressRule, events []store.PipelineEvent) (store.CreateResult, error) {
	op := "create pipeline " + p.ID
	err := record.CheckPipeline(p)
	if err == nil {
		err = record.CheckEvents(events)
	}
	if err == nil && rule != store.RejectInProgress && rule != store.EnqueueOne {
		err = fmt.Errorf("unknown in-progress rule %d", rule)
	}
	if err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	p.Revision, p.BlockedBy = 1, ""
	rec, err := record.EncodePipeline(p, int64(len(events)))
	if err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	createdAt, err := storedTime(p.CreatedAt)
	if err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	extra, err := encodeEvents([]store.PipelineEvent{
		{Time: p.CreatedAt, Type: store.EventQueued},
		{Time: p.CreatedAt, Type: store.EventReplaced},
	})
	if err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	evs, err := encodeEvents(events)
	if err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	t := p.Tenant
	keys := []string{recordsKey(t), eventsKey(t), activeKey(t), appActiveKey(t, p.Application)}
	keys = append(keys, indexKeys(t, p.Application, p.Status)...)
	keys = append(keys, indexKeys(t, p.Application, store.StatusQueued)[2:]...)
	keys = append(keys, indexKeys(t, p.Application, store.StatusRejected)[2:]...)
	keys = append(keys, completedKey(t))
	terminal, newCompleted := "0", ""
	if store.TerminalStatus(p.Status) {
		terminal, newCompleted = "1", record.CompletedKey(p.CompletedAt, p.ID)
	}
	args := []any{p.ID, string(rec), record.SortKey(p.CreatedAt, p.ID), int(rule), terminal, createdAt,
		extra[0], extra[1], newCompleted, record.CompletedKeyBefore(p.CreatedAt)}
	args = append(args, evs...)

	if err := s.registerTenant(ctx, t); err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	reply, err := s.pipelines.create.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return store.CreateResult{}, wrap(op, err)
	}
	var res store.CreateResult
	switch status, _ := reply[0].(string); status {
	case "conflict":
		return store.CreateResult{}, wrap(op, store.ErrConflict)
	case "in_progress":
		blocker, _ := reply[1].(string)
		return store.CreateResult{}, wrap(op, &store.InProgressError{PipelineID: blocker})
	case "ok":
		v, _ := reply[1].(string)
		if res.Pipeline, _, err = record.DecodePipeline([]byte(v)); err != nil {
			return store.CreateResult{}, wrap(op, err)
		}
		if len(reply) > 2 {
			if v, isString := reply[2].(string); isString {
				r, _, err := record.DecodePipeline([]byte(v))
				if err != nil {
					return store.CreateResult{}, wrap(op, err)
				}
				res.Replaced = &r
			}
		}
	default:
		return store.CreateResult{}, wrap(op, fmt.Errorf("unexpected script reply %v", reply))
	}
	// The second registration only closes the window of a concurrent prune (see
	// DeletePipelinesCompletedBefore); the pipeline is stored, so its failure is not the
	// caller's: reporting it would make a retry fail with ErrConflict.
	_ = s.registerTenant(ctx, t)
	return res, nil
}

// getPipeline reads one pipeline of t with its event count and stored form.
func (s *Store) getPipeline(ctx context.Context, t store.Tenant, id string) (store.Pipeline, int64, string, error) {
	v, err := s.rdb.HGet(ctx, recordsKey(t), id).Result()
	if err != nil {
		return store.Pipeline{}, 0, "", err
	}
	p, n, err := record.DecodePipeline([]byte(v))
	if err != nil {
		return store.Pipeline{}, 0, "", err
	}
	if p.Tenant != t || p.ID != id {
		return store.Pipeline{}, 0, "", fmt.Errorf("stored as %s of %s but is %s of %s", id, t, p.ID, p.Tenant)
	}
	return p, n, v, nil
}

// GetPipeline implements store.Pipelines.
func (s *Store) GetPipeline(ctx context.Context, t store.Tenant, id string) (store.Pipeline, error) {
	p, _, _, err := s.getPipeline(ctx, t, id)
	return p, wrap("get pipeline "+id, err)
}

// UpdatePipeline implements store.Pipelines. It reads the record, then runs a script that
// writes only if the record is still exactly what it read; the fence is judged in the script
// against time.Now() of this process, taken just before the script runs.
func (s *Store) UpdatePipeline(ctx context.Context, p store.Pipeline, fence *store.Lease, events []store.PipelineEvent) (store.Pipeline, error) {
	op := "update pipeline " + p.ID
	err := record.CheckPipeline(p)
	if err == nil {
		err = record.CheckEvents(events)
	}
	if err == nil && fence != nil && fence.Pipeline != (store.PipelineRef{Tenant: p.Tenant, ID: p.ID}) {
		err = fmt.Errorf("the fence is the lease of pipeline %s in %s", fence.Pipeline.ID, fence.Pipeline.Tenant)
	}
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	t := p.Tenant
	old, n, oldRec, err := s.getPipeline(ctx, t, p.ID)
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	if old.Revision != p.Revision {
		return store.Pipeline{}, wrap(op, fmt.Errorf("revision %d is not the stored %d: %w", p.Revision, old.Revision, store.ErrStale))
	}
	if store.TerminalStatus(old.Status) && !store.TerminalStatus(p.Status) {
		return store.Pipeline{}, wrap(op, fmt.Errorf("pipeline is finished (%s) and cannot become %s", old.Status, p.Status))
	}
	out := old
	out.Status, out.BlockedBy, out.UpdatedAt, out.CompletedAt = p.Status, p.BlockedBy, p.UpdatedAt, p.CompletedAt
	out.State, out.Sealed = p.State, p.Sealed
	out.Revision++
	rec, err := record.EncodePipeline(out, n+int64(len(events)))
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	evs, err := encodeEvents(events)
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	keys := []string{recordsKey(t), eventsKey(t), activeKey(t), appActiveKey(t, old.Application), completedKey(t), leaseKey(t, p.ID)}
	keys = append(keys, indexKeys(t, old.Application, old.Status)...)
	keys = append(keys, indexKeys(t, old.Application, out.Status)...)
	oldCompleted, newCompleted := "", ""
	if store.TerminalStatus(old.Status) {
		oldCompleted = record.CompletedKey(old.CompletedAt, old.ID)
	}
	if store.TerminalStatus(out.Status) {
		newCompleted = record.CompletedKey(out.CompletedAt, out.ID)
	}
	fenced, holder, token := "0", "", ""
	if fence != nil {
		fenced, holder, token = "1", fence.Holder, strconv.FormatInt(fence.Token, 10)
	}
	args := []any{p.ID, oldRec, string(rec), record.SortKey(old.CreatedAt, old.ID), oldCompleted, newCompleted,
		fenced, holder, token, time.Now().UnixMicro(), n + 1}
	args = append(args, evs...)
	reply, err := s.pipelines.update.Run(ctx, s.rdb, keys, args...).Text()
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	switch reply {
	case "ok":
		return record.ClonePipeline(out), nil
	case "not_found":
		return store.Pipeline{}, wrap(op, store.ErrNotFound)
	case "stale":
		return store.Pipeline{}, wrap(op, fmt.Errorf("changed since revision %d: %w", p.Revision, store.ErrStale))
	case "stale_lease":
		return store.Pipeline{}, wrap(op, fmt.Errorf("lease token %d of %s is not current: %w", fence.Token, fence.Holder, store.ErrStale))
	}
	return store.Pipeline{}, wrap(op, fmt.Errorf("unexpected script reply %q", reply))
}

// ListPipelines implements store.Pipelines: it reads each of the filter's indexes from the
// cursor on, merges them by sort key, then reads the page's records.
func (s *Store) ListPipelines(ctx context.Context, t store.Tenant, f store.PipelineFilter) ([]store.Pipeline, string, error) {
	op := "list pipelines of " + t.String()
	limit, after, err := record.CheckFilter(f)
	if err != nil {
		return nil, "", wrap(op, err)
	}
	start := "-"
	if after != "" {
		start = "(" + after
	}
	pipe := s.rdb.Pipeline()
	var cmds []*redis.StringSliceCmd
	for _, name := range record.FilterIndexes(f) {
		cmds = append(cmds, pipe.ZRangeByLex(ctx, indexKey(t, name), &redis.ZRangeBy{Min: start, Max: "+", Count: int64(limit + 1)}))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, "", wrap(op, err)
	}
	var keys []string
	for _, c := range cmds {
		keys = append(keys, c.Val()...)
	}
	keys, more := record.MergeSortKeys(keys, limit)
	if len(keys) == 0 {
		return nil, "", nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		if ids[i], err = record.SortKeyID(k); err != nil {
			return nil, "", wrap(op, err)
		}
	}
	vs, err := s.rdb.HMGet(ctx, recordsKey(t), ids...).Result()
	if err != nil {
		return nil, "", wrap(op, err)
	}
	var page []store.Pipeline
	for _, v := range vs {
		sv, isString := v.(string)
		if !isString {
			continue // pruned since the index was read
		}
		p, _, err := record.DecodePipeline([]byte(sv))
		if err != nil {
			return nil, "", wrap(op, err)
		}
		page = append(page, p)
	}
	next := ""
	if more {
		next = record.EncodeCursor(keys[len(keys)-1])
	}
	return page, next, nil
}

// pipelineTenants returns the tenants that may have pipelines.
func (s *Store) pipelineTenants(ctx context.Context) ([]store.Tenant, error) {
	members, err := s.rdb.SMembers(ctx, keyPipelineTenants).Result()
	if err != nil {
		return nil, err
	}
	var ts []store.Tenant
	for _, m := range members {
		t, err := record.DecodeTenant([]byte(m))
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// ListActivePipelines implements store.Pipelines: one HKEYS per tenant, pipelined. Tenants
// found without any pipeline leave the tenant set, as in DeletePipelinesCompletedBefore.
func (s *Store) ListActivePipelines(ctx context.Context) ([]store.PipelineRef, error) {
	op := "list active pipelines"
	ts, err := s.pipelineTenants(ctx)
	if err != nil || len(ts) == 0 {
		return nil, wrap(op, err)
	}
	pipe := s.rdb.Pipeline()
	active := make([]*redis.StringSliceCmd, len(ts))
	stored := make([]*redis.IntCmd, len(ts))
	for i, t := range ts {
		active[i] = pipe.HKeys(ctx, activeKey(t))
		stored[i] = pipe.HLen(ctx, recordsKey(t))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap(op, err)
	}
	var refs []store.PipelineRef
	for i, c := range active {
		for _, id := range c.Val() {
			refs = append(refs, store.PipelineRef{Tenant: ts[i], ID: id})
		}
		if stored[i].Val() == 0 {
			if err := s.dropTenantIfEmpty(ctx, ts[i]); err != nil {
				return nil, wrap(op, err)
			}
		}
	}
	return refs, nil
}

// QueuedPipeline implements store.Pipelines.
func (s *Store) QueuedPipeline(ctx context.Context, t store.Tenant, application string) (store.Pipeline, error) {
	op := "queued pipeline of " + application
	ids, err := s.rdb.HKeys(ctx, appActiveKey(t, application)).Result()
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	if len(ids) == 0 {
		return store.Pipeline{}, wrap(op, store.ErrNotFound)
	}
	vs, err := s.rdb.HMGet(ctx, recordsKey(t), ids...).Result()
	if err != nil {
		return store.Pipeline{}, wrap(op, err)
	}
	var queued []store.Pipeline
	for _, v := range vs {
		if sv, isString := v.(string); isString {
			p, _, err := record.DecodePipeline([]byte(sv))
			if err != nil {
				return store.Pipeline{}, wrap(op, err)
			}
			if p.Status == store.StatusQueued {
				queued = append(queued, p)
			}
		}
	}
	if len(queued) == 0 {
		return store.Pipeline{}, wrap(op, store.ErrNotFound)
	}
	record.SortPipelines(queued)
	return queued[0], nil
}

// ListPipelineEvents implements store.Pipelines.
func (s *Store) ListPipelineEvents(ctx context.Context, t store.Tenant, id string, afterSeq int64, limit int) ([]store.PipelineEvent, error) {
	op := "list events of pipeline " + id
	_, n, _, err := s.getPipeline(ctx, t, id)
	if err != nil {
		return nil, wrap(op, err)
	}
	first := max(afterSeq, 0) + 1
	last := n
	if limit > 0 {
		last = min(n, first+int64(limit)-1)
	}
	if first > last {
		return nil, nil
	}
	fields := make([]string, 0, last-first+1)
	for seq := first; seq <= last; seq++ {
		fields = append(fields, id+"/"+strconv.FormatInt(seq, 10))
	}
	vs, err := s.rdb.HMGet(ctx, eventsKey(t), fields...).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	events := make([]store.PipelineEvent, 0, len(vs))
	for i, v := range vs {
		sv, isString := v.(string)
		if !isString {
			return nil, wrap(op, fmt.Errorf("event %d is missing", first+int64(i)))
		}
		e, err := record.DecodeEvent([]byte(sv), first+int64(i))
		if err != nil {
			return nil, wrap(op, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// DeletePipelinesCompletedBefore implements store.Pipelines, one script per pipeline. A
// tenant left without pipelines leaves the tenant set; it is re-added at once if a pipeline
// appeared meanwhile, and CreatePipeline registers its tenant again after storing, so the set
// never misses a tenant with pipelines (short of a creator dying between its write and that
// second registration while a prune empties the same tenant).
func (s *Store) DeletePipelinesCompletedBefore(ctx context.Context, cutoff time.Time) (int, error) {
	op := "delete pipelines completed before " + cutoff.UTC().Format(time.RFC3339)
	ts, err := s.pipelineTenants(ctx)
	if err != nil {
		return 0, wrap(op, err)
	}
	removed := 0
	for _, t := range ts {
		n, err := s.pruneTenant(ctx, t, cutoff)
		removed += n
		if err != nil {
			return removed, wrap(op, err)
		}
		if err := s.dropTenantIfEmpty(ctx, t); err != nil {
			return removed, wrap(op, err)
		}
	}
	return removed, nil
}

// pruneTenant removes t's pipelines completed before cutoff.
func (s *Store) pruneTenant(ctx context.Context, t store.Tenant, cutoff time.Time) (int, error) {
	removed := 0
	for {
		ks, err := s.rdb.ZRangeByLex(ctx, completedKey(t), &redis.ZRangeBy{
			Min: "-", Max: "(" + record.CompletedKeyBefore(cutoff), Count: pruneBatch,
		}).Result()
		if err != nil {
			return removed, err
		}
		progress := false
		for _, k := range ks {
			id, err := record.SortKeyID(k)
			if err != nil {
				return removed, err
			}
			p, n, rec, err := s.getPipeline(ctx, t, id)
			if errors.Is(err, redis.Nil) {
				// An index entry without its record: drop it.
				if err := s.rdb.ZRem(ctx, completedKey(t), k).Err(); err != nil {
					return removed, err
				}
				progress = true
				continue
			}
			if err != nil {
				return removed, err
			}
			keys := []string{recordsKey(t), eventsKey(t), completedKey(t), leaseKey(t, id), leaseTokenKey(t, id)}
			keys = append(keys, indexKeys(t, p.Application, p.Status)...)
			done, err := s.pipelines.prune.Run(ctx, s.rdb, keys, id, rec, record.SortKey(p.CreatedAt, id), k, n).Int()
			if err != nil {
				return removed, err
			}
			if done == 1 {
				removed++
				progress = true
			}
		}
		if len(ks) < pruneBatch || !progress {
			return removed, nil
		}
	}
}

// dropTenantIfEmpty removes t from the tenant set when it has no pipelines left, and puts it
// back if one was created meanwhile.
func (s *Store) dropTenantIfEmpty(ctx context.Context, t store.Tenant) error {
	if n, err := s.rdb.HLen(ctx, recordsKey(t)).Result(); err != nil || n > 0 {
		return err
	}
	tv, err := record.EncodeTenant(t)
	if err != nil {
		return err
	}
	if err := s.rdb.SRem(ctx, keyPipelineTenants, tv).Err(); err != nil {
		return err
	}
	if n, err := s.rdb.HLen(ctx, recordsKey(t)).Result(); err != nil || n == 0 {
		return err
	}
	return s.rdb.SAdd(ctx, keyPipelineTenants, tv).Err()
}

// AcquireLease implements store.Leases with one script.
func (s *Store) AcquireLease(ctx context.Context, ref store.PipelineRef, holder string, now time.Time, ttl time.Duration) (store.Lease, error) {
	op := "acquire lease of pipeline " + ref.ID
	if err := record.CheckLease(ref, holder, ttl); err != nil {
		return store.Lease{}, wrap(op, err)
	}
	t := ref.Tenant
	expires := record.LeaseTime(now.Add(ttl))
	keys := []string{recordsKey(t), leaseKey(t, ref.ID), leaseTokenKey(t, ref.ID)}
	reply, err := s.pipelines.acquire.Run(ctx, s.rdb, keys, ref.ID, holder, now.UnixMicro(), expires.UnixMicro()).StringSlice()
	if err != nil {
		return store.Lease{}, wrap(op, err)
	}
	switch reply[0] {
	case "not_found":
		return store.Lease{}, wrap(op, store.ErrNotFound)
	case "held":
		until, _ := strconv.ParseInt(reply[2], 10, 64)
		return store.Lease{}, wrap(op, fmt.Errorf("held by %s until %s: %w", reply[1],
			time.UnixMicro(until).UTC().Format(time.RFC3339Nano), store.ErrLeaseHeld))
	case "ok":
		token, err := strconv.ParseInt(reply[1], 10, 64)
		if err != nil {
			return store.Lease{}, wrap(op, err)
		}
		return store.Lease{Pipeline: ref, Holder: holder, Token: token, ExpiresAt: expires}, nil
	}
	return store.Lease{}, wrap(op, fmt.Errorf("unexpected script reply %v", reply))
}

// ReleaseLease implements store.Leases.
func (s *Store) ReleaseLease(ctx context.Context, l store.Lease) error {
	op := "release lease of pipeline " + l.Pipeline.ID
	keys := []string{leaseKey(l.Pipeline.Tenant, l.Pipeline.ID)}
	return wrap(op, s.pipelines.release.Run(ctx, s.rdb, keys, l.Holder, strconv.FormatInt(l.Token, 10)).Err())
}

// GetLease implements store.Leases.
func (s *Store) GetLease(ctx context.Context, ref store.PipelineRef) (store.Lease, error) {
	op := "get lease of pipeline " + ref.ID
	vs, err := s.rdb.HMGet(ctx, leaseKey(ref.Tenant, ref.ID), "holder", "token", "expires_us").Result()
	if err != nil {
		return store.Lease{}, wrap(op, err)
	}
	holder, isString := vs[0].(string)
	if !isString {
		return store.Lease{}, wrap(op, store.ErrNotFound)
	}
	tv, _ := vs[1].(string)
	ev, _ := vs[2].(string)
	token, err := strconv.ParseInt(tv, 10, 64)
	if err != nil {
		return store.Lease{}, wrap(op, fmt.Errorf("stored token: %w", err))
	}
	until, err := strconv.ParseInt(ev, 10, 64)
	if err != nil {
		return store.Lease{}, wrap(op, fmt.Errorf("stored expiry: %w", err))
	}
	return store.Lease{Pipeline: ref, Holder: holder, Token: token, ExpiresAt: time.UnixMicro(until)}, nil
}
