package presence

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redistest"
)

// backend is one implementation under test: stores of replicas sharing it, with records
// living ttl, and, for a remote backend, a way to make it unreachable.
type backend struct {
	store func(t *testing.T, ttl time.Duration) Store
	stop  func(t *testing.T) // nil: always reachable
}

func TestMemory(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		var mu sync.Mutex
		shared := map[time.Duration]*Memory{}
		return backend{store: func(_ *testing.T, ttl time.Duration) Store {
			mu.Lock()
			defer mu.Unlock()
			if shared[ttl] == nil {
				shared[ttl] = NewMemory(ttl)
			}
			return shared[ttl]
		}}
	})
}

func TestRedis(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		rs := redistest.New(t)
		return backend{
			store: func(t *testing.T, ttl time.Duration) Store {
				opt, err := redis.ParseURL(rs.URL())
				if err != nil {
					t.Fatal(err)
				}
				opt.MaxRetries = 1
				c := redis.NewClient(opt)
				t.Cleanup(func() { c.Close() })
				return NewRedis(c, ttl)
			},
			stop: func(*testing.T) { rs.Stop() },
		}
	})
}

// TestRedisCluster runs the suite on a Redis Cluster of three masters, where a transaction
// over keys of two hash slots fails.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		c := redistest.NewCluster(t, 3)
		return backend{
			store: func(t *testing.T, ttl time.Duration) Store {
				return NewRedis(clusterClient(t, c), ttl)
			},
			stop: func(*testing.T) {
				for i := range c.Addrs() {
					c.Kill(i)
				}
			},
		}
	})
}

// TestRedisClusterCrossSlot proves that the cluster the suite runs on refuses what the store
// must never do: one transaction over two tenants' keys.
func TestRedisClusterCrossSlot(t *testing.T) {
	t.Parallel()
	c := redistest.NewCluster(t, 3)
	rdb := clusterClient(t, c)
	ctx := t.Context()
	if c.NodeOf(keyStreams(tenantA)) == c.NodeOf(keyStreams(tenantB)) {
		t.Fatalf("tenants %v and %v share a master; pick tenants on two masters", tenantA, tenantB)
	}
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyStreams(tenantA), "s1", "x")
		p.HSet(ctx, keyStreams(tenantB), "s1", "x")
		return nil
	})
	if !errors.Is(err, redis.ErrCrossSlot) {
		t.Errorf("a transaction over two tenants' keys = %v, want %v", err, redis.ErrCrossSlot)
	}
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyStreams(tenantA), "s1", "x")
		p.Set(ctx, keyAlive(tenantA, "s1"), "1", time.Minute)
		return nil
	})
	if err != nil {
		t.Errorf("a transaction over one tenant's keys = %v", err)
	}
}

// clusterClient returns a cluster client of c, closed when t ends.
func clusterClient(t *testing.T, c *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	opt, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = 1
	rdb := redis.NewClusterClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

var (
	tenantA = store.Tenant{OrgID: "org", EnvID: "a"}
	tenantB = store.Tenant{OrgID: "org", EnvID: "b"}
)

func stream(t store.Tenant, agent, id, hub string) *replicationv1.AgentRecord {
	return &replicationv1.AgentRecord{AgentIdentifier: agent, StreamId: id, HubInstanceUuid: hub,
		OrgId: t.OrgID, EnvId: t.EnvID, AgentVersion: "1.2.3", ConnectedAt: timestamppb.New(time.UnixMilli(1000))}
}

func ids(recs []*replicationv1.AgentRecord) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.StreamId)
	}
	slices.Sort(out)
	return out
}

func list(t *testing.T, s Store, tenant store.Tenant) (alive, expired []string) {
	t.Helper()
	a, e, err := s.List(context.Background(), tenant)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return ids(a), ids(e)
}

func runConformance(t *testing.T, newBackend func(t *testing.T) backend) {
	ctx := context.Background()
	at := time.UnixMilli(1_700_000_000_000)

	t.Run("add, list on another replica, remove", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a, b := be.store(t, time.Minute), be.store(t, time.Minute)
		s1 := stream(tenantA, "edge", "s1", "hub-a")
		if err := a.Add(ctx, s1, at); err != nil {
			t.Fatalf("Add: %v", err)
		}
		if err := a.Add(ctx, stream(tenantA, "edge", "s2", "hub-a"), at); err != nil {
			t.Fatal(err)
		}
		if err := a.Add(ctx, stream(tenantB, "edge", "s3", "hub-a"), at); err != nil {
			t.Fatal(err)
		}
		alive, _, err := b.List(ctx, tenantA)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"s1", "s2"}, ids(alive)); diff != "" {
			t.Fatalf("List of tenant A (-want +got):\n%s", diff)
		}
		for _, r := range alive {
			if r.StreamId == "s1" {
				if diff := cmp.Diff(s1, r, protocmp.Transform()); diff != "" {
					t.Errorf("record (-want +got):\n%s", diff)
				}
			}
		}
		if alive, _ := list(t, b, tenantB); !slices.Equal(alive, []string{"s3"}) {
			t.Errorf("List of tenant B = %v", alive)
		}
		if err := a.Remove(ctx, s1, at.Add(time.Second), false); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if alive, expired := list(t, b, tenantA); !slices.Equal(alive, []string{"s2"}) || len(expired) != 0 {
			t.Errorf("List after Remove = %v, %v", alive, expired)
		}
		seen, err := b.LastSeen(ctx, tenantA, "edge")
		if err != nil || !seen.Equal(at.Add(time.Second)) {
			t.Errorf("LastSeen = %v, %v; want the removal time %v", seen, err, at.Add(time.Second))
		}
		if seen, err := b.LastSeen(ctx, tenantA, "nobody"); !seen.IsZero() || err != nil {
			t.Errorf("LastSeen of an unknown account = %v, %v", seen, err)
		}
	})

	t.Run("lookup by agent", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a, b := be.store(t, time.Minute), be.store(t, time.Minute)
		s1 := stream(tenantA, "edge", "s1", "hub-a")
		for _, r := range []*replicationv1.AgentRecord{s1, stream(tenantA, "edge", "s2", "hub-b"),
			stream(tenantA, "other", "s3", "hub-a"), stream(tenantB, "edge", "s4", "hub-a")} {
			if err := a.Add(ctx, r, at); err != nil {
				t.Fatal(err)
			}
		}
		look := func(tenant store.Tenant, agent string) (alive, expired []string) {
			t.Helper()
			al, ex, err := b.Lookup(ctx, tenant, agent)
			if err != nil {
				t.Fatalf("Lookup(%v, %s): %v", tenant, agent, err)
			}
			for _, r := range append(al, ex...) {
				if r.StreamId == "s1" {
					if diff := cmp.Diff(s1, r, protocmp.Transform()); diff != "" {
						t.Errorf("record (-want +got):\n%s", diff)
					}
				}
			}
			return ids(al), ids(ex)
		}
		for _, c := range []struct {
			tenant store.Tenant
			agent  string
			want   []string
		}{
			{tenantA, "edge", []string{"s1", "s2"}},
			{tenantA, "other", []string{"s3"}},
			{tenantB, "edge", []string{"s4"}},
			{tenantA, "nobody", []string{}},
			{store.Tenant{OrgID: "org", EnvID: "none"}, "edge", []string{}},
		} {
			if alive, expired := look(c.tenant, c.agent); !slices.Equal(alive, c.want) || len(expired) != 0 {
				t.Errorf("Lookup(%v, %s) = %v, %v; want %v alive", c.tenant, c.agent, alive, expired, c.want)
			}
		}
		if err := a.Remove(ctx, s1, at, false); err != nil {
			t.Fatal(err)
		}
		if alive, _ := look(tenantA, "edge"); !slices.Equal(alive, []string{"s2"}) {
			t.Errorf("Lookup after Remove = %v, want [s2]", alive)
		}
	})

	t.Run("expiry, refresh and reap", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a, b := be.store(t, 300*time.Millisecond), be.store(t, 300*time.Millisecond)
		kept, dead := stream(tenantA, "edge", "kept", "hub-a"), stream(tenantA, "edge", "dead", "hub-b")
		for _, s := range []*replicationv1.AgentRecord{kept, dead} {
			if err := a.Add(ctx, s, at); err != nil {
				t.Fatal(err)
			}
		}
		// Only kept's replica refreshes it; dead's TTL runs out.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := a.Refresh(ctx, []*replicationv1.AgentRecord{kept}, at.Add(time.Minute)); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			alive, expired := list(t, b, tenantA)
			if slices.Equal(expired, []string{"dead"}) {
				if !slices.Equal(alive, []string{"kept"}) {
					t.Fatalf("alive = %v, want kept", alive)
				}
				if la, le, err := b.Lookup(ctx, tenantA, "edge"); err != nil || !slices.Equal(ids(la), []string{"kept"}) || !slices.Equal(ids(le), []string{"dead"}) {
					t.Fatalf("Lookup = %v, %v, %v; want kept alive and dead expired", ids(la), ids(le), err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dead never expired: alive %v, expired %v", alive, expired)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if seen, _ := b.LastSeen(ctx, tenantA, "edge"); !seen.Equal(at.Add(time.Minute)) {
			t.Errorf("LastSeen after Refresh = %v", seen)
		}
		// Two replicas reap at once: one of them removes it.
		_, expired, _ := b.List(ctx, tenantA)
		var wg sync.WaitGroup
		got := make([][]*replicationv1.AgentRecord, 2)
		for i, s := range []Store{a, b} {
			wg.Go(func() {
				var err error
				if got[i], err = s.Reap(ctx, tenantA, expired); err != nil {
					t.Errorf("Reap: %v", err)
				}
			})
		}
		wg.Wait()
		if n := len(got[0]) + len(got[1]); n != 1 {
			t.Errorf("the dead stream was reaped %d times, want once", n)
		}
		if _, expired := list(t, b, tenantA); len(expired) != 0 {
			t.Errorf("still listed after the reap: %v", expired)
		}
		if _, expired, _ := b.Lookup(ctx, tenantA, "edge"); len(expired) != 0 {
			t.Errorf("still looked up after the reap: %v", ids(expired))
		}
	})

	t.Run("accounts", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		s := be.store(t, time.Minute)
		for i, name := range []string{"x", "y"} {
			if err := s.Add(ctx, stream(tenantA, name, name+"-1", "hub"), at.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Accounts(ctx, tenantA)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]time.Time{"x": at, "y": at.Add(time.Second)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Accounts (-want +got):\n%s", diff)
		}
		if err := s.Forget(ctx, tenantA, []string{"x"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Accounts(ctx, tenantA); len(got) != 1 || got["y"].IsZero() {
			t.Errorf("Accounts after Forget = %v", got)
		}
		if got, _ := s.Accounts(ctx, tenantB); len(got) != 0 {
			t.Errorf("tenant B's accounts = %v", got)
		}
	})

	t.Run("expected back", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		s := be.store(t, 300*time.Millisecond)
		r := stream(tenantA, "roaming", "r1", "hub")
		if err := s.Add(ctx, r, at); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, r, at, true); err != nil {
			t.Fatal(err)
		}
		if back, err := s.ExpectedBack(ctx, tenantA, "roaming"); !back || err != nil {
			t.Fatalf("ExpectedBack after Remove with expectBack = %v, %v", back, err)
		}
		if back, _ := s.ExpectedBack(ctx, tenantB, "roaming"); back {
			t.Error("expected back in another tenant")
		}
		// Coming back clears it.
		if err := s.Add(ctx, stream(tenantA, "roaming", "r2", "hub"), at); err != nil {
			t.Fatal(err)
		}
		if back, _ := s.ExpectedBack(ctx, tenantA, "roaming"); back {
			t.Error("still expected back after it came back")
		}
		// And it ends with the TTL.
		if err := s.Remove(ctx, stream(tenantA, "roaming", "r2", "hub"), at, true); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			back, err := s.ExpectedBack(ctx, tenantA, "roaming")
			if err != nil {
				t.Fatal(err)
			}
			if !back {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("still expected back long after the TTL")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		if be.stop == nil {
			t.Skip("the backend is always reachable")
		}
		s := be.store(t, time.Minute)
		be.stop(t)
		r := stream(tenantA, "edge", "s1", "hub")
		for name, call := range map[string]func() error{
			"Add":          func() error { return s.Add(ctx, r, at) },
			"Refresh":      func() error { return s.Refresh(ctx, []*replicationv1.AgentRecord{r}, at) },
			"Remove":       func() error { return s.Remove(ctx, r, at, false) },
			"List":         func() error { _, _, err := s.List(ctx, tenantA); return err },
			"Lookup":       func() error { _, _, err := s.Lookup(ctx, tenantA, "edge"); return err },
			"Accounts":     func() error { _, err := s.Accounts(ctx, tenantA); return err },
			"LastSeen":     func() error { _, err := s.LastSeen(ctx, tenantA, "edge"); return err },
			"ExpectedBack": func() error { _, err := s.ExpectedBack(ctx, tenantA, "edge"); return err },
		} {
			if err := call(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s with the backend down: %v, want ErrUnavailable", name, err)
			}
		}
	})
}
