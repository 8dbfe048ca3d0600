// Package presence records which agent streams are open on which Agent Hub replica, and
// when each account (agent identifier) was last seen, shared by the replicas: Memory for
// one process, Redis for replicas sharing a Redis. Both pass one conformance suite.
//
// A stream's record lives for a TTL unless its replica refreshes it, so the streams of a
// replica that died without cleaning up expire by themselves.
package presence

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	"github.com/sortie-dev/sortie/store"
)

// Store is the shared presence.
type Store interface {
	// Add records a new stream, alive for the TTL unless refreshed. Its account was seen at
	// now and is no longer expected back.
	Add(ctx context.Context, s *replicationv1.AgentRecord, now time.Time) error
	// Refresh rewrites streams, restarting their TTL, and marks their accounts seen at now.
	Refresh(ctx context.Context, streams []*replicationv1.AgentRecord, now time.Time) error
	// Remove removes a stream. Its account was seen at now; with expectBack, it is expected
	// back for the TTL (its agent was told to reconnect).
	Remove(ctx context.Context, s *replicationv1.AgentRecord, now time.Time, expectBack bool) error
	// List returns the tenant's streams: those alive, and those whose TTL ran out.
	List(ctx context.Context, t store.Tenant) (alive, expired []*replicationv1.AgentRecord, err error)
	// Lookup returns the streams of one agent, alive and expired as List does; its cost
	// depends on that agent's streams, not on the tenant's.
	Lookup(ctx context.Context, t store.Tenant, agent string) (alive, expired []*replicationv1.AgentRecord, err error)
	// Reap removes expired streams and returns those this call removed: when replicas reap
	// the same stream, one of them gets it.
	Reap(ctx context.Context, t store.Tenant, expired []*replicationv1.AgentRecord) ([]*replicationv1.AgentRecord, error)
	// Accounts returns when each account of the tenant was last seen.
	Accounts(ctx context.Context, t store.Tenant) (map[string]time.Time, error)
	// LastSeen returns when one account was last seen; zero when never.
	LastSeen(ctx context.Context, t store.Tenant, account string) (time.Time, error)
	// Forget removes accounts from the tenant's last-seen times.
	Forget(ctx context.Context, t store.Tenant, accounts []string) error
	// ExpectedBack reports whether the account is expected back.
	ExpectedBack(ctx context.Context, t store.Tenant, account string) (bool, error)
}

// ErrUnavailable means the store's backend is unreachable.
var ErrUnavailable = errors.New("presence store unavailable")

func tenantOf(s *replicationv1.AgentRecord) store.Tenant {
	return store.Tenant{OrgID: s.GetOrgId(), EnvID: s.GetEnvId()}
}

// Memory is the presence of one process (or of replicas sharing it in one process). TTLs
// run on the wall clock, like Redis's.
type Memory struct {
	ttl time.Duration

	mu      sync.Mutex // guards tenants
	tenants map[store.Tenant]*memoryTenant
}

type memoryTenant struct {
	streams map[string]*replicationv1.AgentRecord
	byAgent map[string]map[string]bool // agent identifier -> its stream ids
	alive   map[string]time.Time       // stream id -> expiry
	seen    map[string]time.Time       // account -> last seen
	back    map[string]time.Time       // account -> expected back until
}

// NewMemory returns an empty presence whose records live ttl.
func NewMemory(ttl time.Duration) *Memory {
	return &Memory{ttl: ttl, tenants: map[store.Tenant]*memoryTenant{}}
}

func (m *Memory) tenantLocked(t store.Tenant) *memoryTenant {
	mt := m.tenants[t]
	if mt == nil {
		mt = &memoryTenant{streams: map[string]*replicationv1.AgentRecord{}, byAgent: map[string]map[string]bool{}, alive: map[string]time.Time{},
			seen: map[string]time.Time{}, back: map[string]time.Time{}}
		m.tenants[t] = mt
	}
	return mt
}

func (m *Memory) putLocked(s *replicationv1.AgentRecord, now time.Time) {
	mt := m.tenantLocked(tenantOf(s))
	mt.streams[s.StreamId] = cloneRecord(s)
	if mt.byAgent[s.AgentIdentifier] == nil {
		mt.byAgent[s.AgentIdentifier] = map[string]bool{}
	}
	mt.byAgent[s.AgentIdentifier][s.StreamId] = true
	mt.alive[s.StreamId] = time.Now().Add(m.ttl)
	mt.seen[s.AgentIdentifier] = now
}

// Add implements Store.
func (m *Memory) Add(_ context.Context, s *replicationv1.AgentRecord, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(s, now)
	delete(m.tenantLocked(tenantOf(s)).back, s.AgentIdentifier)
	return nil
}

// Refresh implements Store.
func (m *Memory) Refresh(_ context.Context, streams []*replicationv1.AgentRecord, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range streams {
		m.putLocked(s, now)
	}
	return nil
}

// Remove implements Store.
func (m *Memory) Remove(_ context.Context, s *replicationv1.AgentRecord, now time.Time, expectBack bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.tenantLocked(tenantOf(s))
	mt.deleteLocked(s.StreamId)
	mt.seen[s.AgentIdentifier] = now
	if expectBack {
		mt.back[s.AgentIdentifier] = time.Now().Add(m.ttl)
	}
	return nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, t store.Tenant) (alive, expired []*replicationv1.AgentRecord, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.tenants[t]
	if mt == nil {
		return nil, nil, nil
	}
	now := time.Now()
	for id, s := range mt.streams {
		if until, ok := mt.alive[id]; ok && now.Before(until) {
			alive = append(alive, cloneRecord(s))
		} else {
			expired = append(expired, cloneRecord(s))
		}
	}
	return alive, expired, nil
}

// deleteLocked removes a stream's record and its place in the agent's index.
func (mt *memoryTenant) deleteLocked(id string) {
	if s, ok := mt.streams[id]; ok {
		ids := mt.byAgent[s.AgentIdentifier]
		delete(ids, id)
		if len(ids) == 0 {
			delete(mt.byAgent, s.AgentIdentifier)
		}
	}
	delete(mt.streams, id)
	delete(mt.alive, id)
}

// Lookup implements Store.
func (m *Memory) Lookup(_ context.Context, t store.Tenant, agent string) (alive, expired []*replicationv1.AgentRecord, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.tenants[t]
	if mt == nil {
		return nil, nil, nil
	}
	now := time.Now()
	for id := range mt.byAgent[agent] {
		s := mt.streams[id]
		if until, ok := mt.alive[id]; ok && now.Before(until) {
			alive = append(alive, cloneRecord(s))
		} else {
			expired = append(expired, cloneRecord(s))
		}
	}
	return alive, expired, nil
}

// Reap implements Store.
func (m *Memory) Reap(_ context.Context, t store.Tenant, expired []*replicationv1.AgentRecord) ([]*replicationv1.AgentRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.tenants[t]
	if mt == nil {
		return nil, nil
	}
	var out []*replicationv1.AgentRecord
	for _, s := range expired {
		if _, ok := mt.streams[s.StreamId]; ok {
			mt.deleteLocked(s.StreamId)
			out = append(out, s)
		}
	}
	return out, nil
}

// Accounts implements Store.
func (m *Memory) Accounts(_ context.Context, t store.Tenant) (map[string]time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Time{}
	if mt := m.tenants[t]; mt != nil {
		for name, at := range mt.seen {
			out[name] = at
		}
	}
	return out, nil
}

// LastSeen implements Store.
func (m *Memory) LastSeen(_ context.Context, t store.Tenant, account string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mt := m.tenants[t]; mt != nil {
		return mt.seen[account], nil
	}
	return time.Time{}, nil
}

// Forget implements Store.
func (m *Memory) Forget(_ context.Context, t store.Tenant, accounts []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mt := m.tenants[t]; mt != nil {
		for _, name := range accounts {
			delete(mt.seen, name)
		}
	}
	return nil
}

// ExpectedBack implements Store.
func (m *Memory) ExpectedBack(_ context.Context, t store.Tenant, account string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mt := m.tenants[t]; mt != nil {
		until, ok := mt.back[account]
		return ok && time.Now().Before(until), nil
	}
	return false, nil
}

func cloneRecord(s *replicationv1.AgentRecord) *replicationv1.AgentRecord { return proto.CloneOf(s) }
