// Package inventory holds what agents report about their clusters, per tenant and account
// (agent identifier), shared by the Agent Hub replicas: Memory for one process, Redis for
// replicas sharing a Redis. Both pass one conformance suite.
//
// Objects are named by a key the hub derives from their reference. Results of List and Get
// may be shared with the store: callers must not modify them.
package inventory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/store"
)

// Key names the inventory of one account of a tenant.
type Key struct {
	Tenant  store.Tenant
	Account string
}

// Filter selects objects by kind (matched without regard to case) and namespace; an empty
// field matches any.
type Filter struct {
	Kind      string
	Namespace string
}

func (f Filter) match(ref *hubv1.ObjectReference) bool {
	return (f.Kind == "" || strings.EqualFold(ref.GetKind(), f.Kind)) && (f.Namespace == "" || ref.GetNamespace() == f.Namespace)
}

// Store is a shared inventory.
type Store interface {
	// Replace sets the whole inventory of k.
	Replace(ctx context.Context, k Key, objects map[string]*hubv1.Resource) error
	// Apply adds or replaces upserts and removes deletions (key -> reference) in k's
	// inventory.
	Apply(ctx context.Context, k Key, upserts map[string]*hubv1.Resource, deletions map[string]*hubv1.ObjectReference) error
	// List returns the objects of k's inventory f selects, in no order. Its cost follows
	// what it returns, not the size of the inventory.
	List(ctx context.Context, k Key, f Filter) ([]*hubv1.Resource, error)
	// Namespaces returns the namespaces of k's namespaced objects, sorted; its cost follows
	// the number of namespaces.
	Namespaces(ctx context.Context, k Key) ([]string, error)
	// Get returns one object of k's inventory, or nil when it has none of that key.
	Get(ctx context.Context, k Key, key string) (*hubv1.Resource, error)
	// Keep says the inventories of keys are still wanted (their agents are connected) and
	// returns those the store no longer has.
	Keep(ctx context.Context, keys []Key) (missing []Key, err error)
	// Release says this replica holds no stream of k's agent any more.
	Release(k Key)
	// Drop forgets k's inventory on this replica's behalf (its grace period is over).
	// Memory deletes it; Redis keeps the shared copy until its TTL, since another replica
	// may hold the agent by now, and drops only this replica's.
	Drop(k Key)
	// Repair rewrites what a failed write or a restarted backend lost of the inventories
	// this replica holds (all: every one of them), and returns those it rewrote.
	Repair(ctx context.Context, all bool) ([]Key, error)
}

// ErrUnavailable means the store's backend is unreachable.
var ErrUnavailable = errors.New("inventory store unavailable")

// Memory is the inventory of one process. It keeps every inventory until Drop.
type Memory struct {
	m *objects
}

// NewMemory returns an empty in-memory inventory.
func NewMemory() *Memory { return &Memory{m: newObjects()} }

// Replace implements Store.
func (s *Memory) Replace(_ context.Context, k Key, objects map[string]*hubv1.Resource) error {
	s.m.replace(k, objects)
	return nil
}

// Apply implements Store.
func (s *Memory) Apply(_ context.Context, k Key, upserts map[string]*hubv1.Resource, deletions map[string]*hubv1.ObjectReference) error {
	s.m.apply(k, upserts, deletions)
	return nil
}

// List implements Store: a scan of the inventory in memory.
func (s *Memory) List(_ context.Context, k Key, f Filter) ([]*hubv1.Resource, error) {
	return s.m.list(k, f), nil
}

// Namespaces implements Store: a scan of the inventory in memory.
func (s *Memory) Namespaces(_ context.Context, k Key) ([]string, error) {
	var out []string
	for _, r := range s.m.list(k, Filter{}) {
		if ns := r.GetRef().GetNamespace(); ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, k Key, key string) (*hubv1.Resource, error) {
	return s.m.get(k, key), nil
}

// Keep implements Store.
func (s *Memory) Keep(_ context.Context, keys []Key) ([]Key, error) {
	var missing []Key
	for _, k := range keys {
		if !s.m.has(k) {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

// Release implements Store; the inventory stays until Drop.
func (s *Memory) Release(Key) {}

// Drop implements Store.
func (s *Memory) Drop(k Key) { s.m.drop(k) }

// Repair implements Store; memory loses nothing.
func (s *Memory) Repair(context.Context, bool) ([]Key, error) { return nil, nil }

// defaultTTL is Redis's TTL when NewRedis gets none.
const defaultTTL = time.Hour
