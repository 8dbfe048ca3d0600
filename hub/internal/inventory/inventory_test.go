package inventory

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/testing/protocmp"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redistest"
)

// backend is one implementation under test: stores of replicas sharing it, and, for a
// remote backend, ways to lose its data and to make it unreachable.
type backend struct {
	store func(t *testing.T) Store
	lose  func(t *testing.T) // nil: the backend cannot lose data
	stop  func(t *testing.T) // nil: the backend is always reachable
}

func TestMemory(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		m := NewMemory()
		return backend{store: func(*testing.T) Store { return m }}
	})
}

func TestRedis(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		rs := redistest.New(t)
		client := func(t *testing.T) *redis.Client {
			opt, err := redis.ParseURL(rs.URL())
			if err != nil {
				t.Fatal(err)
			}
			opt.MaxRetries = 1
			c := redis.NewClient(opt)
			t.Cleanup(func() { c.Close() })
			return c
		}
		admin := client(t)
		return backend{
			store: func(t *testing.T) Store { return NewRedis(slog.New(slog.DiscardHandler), client(t), 0) },
			lose: func(t *testing.T) {
				if err := admin.FlushAll(context.Background()).Err(); err != nil {
					t.Fatal(err)
				}
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
		client := func(t *testing.T) *redis.ClusterClient {
			opt, err := redis.ParseClusterURL(c.URL())
			if err != nil {
				t.Fatal(err)
			}
			opt.MaxRetries = 1
			rdb := redis.NewClusterClient(opt)
			t.Cleanup(func() { rdb.Close() })
			return rdb
		}
		admin := client(t)
		return backend{
			store: func(t *testing.T) Store { return NewRedis(slog.New(slog.DiscardHandler), client(t), 0) },
			lose: func(t *testing.T) {
				err := admin.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
					return m.FlushAll(ctx).Err()
				})
				if err != nil {
					t.Fatal(err)
				}
			},
			stop: func(*testing.T) {
				for i := range c.Addrs() {
					c.Kill(i)
				}
			},
		}
	})
}

func obj(kind, name, version string) *hubv1.Resource {
	return &hubv1.Resource{Ref: &hubv1.ObjectReference{ApiVersion: "v1", Kind: kind, Namespace: "web", Name: name},
		ResourceVersion: version, Object: []byte(`{"kind":"` + kind + `"}`)}
}

func objs(rs ...*hubv1.Resource) map[string]*hubv1.Resource {
	out := map[string]*hubv1.Resource{}
	for _, r := range rs {
		out[r.Ref.Kind+"/"+r.Ref.Name] = r
	}
	return out
}

// refs is the deletions of rs, as objs names them.
func refs(rs ...*hubv1.Resource) map[string]*hubv1.ObjectReference {
	out := map[string]*hubv1.ObjectReference{}
	for k, r := range objs(rs...) {
		out[k] = r.Ref
	}
	return out
}

func listed(t *testing.T, s Store, k Key) []string {
	t.Helper()
	rs, err := s.List(context.Background(), k, Filter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Ref.Kind+"/"+r.Ref.Name+"@"+r.ResourceVersion)
	}
	slices.Sort(out)
	return out
}

func expectListed(t *testing.T, s Store, k Key, want ...string) {
	t.Helper()
	if diff := cmp.Diff(want, listed(t, s, k)); diff != "" {
		t.Errorf("List(%v) (-want +got):\n%s", k, diff)
	}
}

var (
	edgeA = Key{Tenant: store.Tenant{OrgID: "org", EnvID: "a"}, Account: "edge"}
	edgeB = Key{Tenant: store.Tenant{OrgID: "org", EnvID: "b"}, Account: "edge"}
	other = Key{Tenant: store.Tenant{OrgID: "org", EnvID: "a"}, Account: "other"}
)

func runConformance(t *testing.T, newBackend func(t *testing.T) backend) {
	ctx := context.Background()

	t.Run("replace, apply, read on another replica", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		writer, reader := be.store(t), be.store(t)
		if err := writer.Replace(ctx, edgeA, objs(obj("Service", "api", "1"), obj("ConfigMap", "cfg", "1"))); err != nil {
			t.Fatalf("Replace: %v", err)
		}
		expectListed(t, reader, edgeA, "ConfigMap/cfg@1", "Service/api@1")
		got, err := reader.Get(ctx, edgeA, "Service/api")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if diff := cmp.Diff(obj("Service", "api", "1"), got, protocmp.Transform()); diff != "" {
			t.Errorf("Get (-want +got):\n%s", diff)
		}
		if err := writer.Apply(ctx, edgeA, objs(obj("Service", "api", "2"), obj("Deployment", "api", "1")), refs(obj("ConfigMap", "cfg", "1"), obj("Nothing", "here", "1"))); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		expectListed(t, reader, edgeA, "Deployment/api@1", "Service/api@2")
		// A snapshot replaces everything.
		if err := writer.Replace(ctx, edgeA, objs(obj("Namespace", "web", "9"))); err != nil {
			t.Fatal(err)
		}
		expectListed(t, reader, edgeA, "Namespace/web@9")
		// Apply works on an inventory never replaced.
		if err := writer.Apply(ctx, other, objs(obj("Service", "x", "1")), nil); err != nil {
			t.Fatal(err)
		}
		expectListed(t, reader, other, "Service/x@1")
	})

	t.Run("reads by kind and namespace", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		writer, reader := be.store(t), be.store(t)
		at := func(ns, kind, name string) *hubv1.Resource {
			r := obj(kind, name, "1")
			r.Ref.Namespace = ns
			return r
		}
		all := []*hubv1.Resource{at("web", "Service", "api"), at("web", "Deployment", "api"), at("db", "Service", "pg"),
			at("", "Namespace", "web"), at("", "Namespace", "db"), at("webapp", "Service", "x"), at("web", "ServiceAccount", "sa")}
		byKey := map[string]*hubv1.Resource{}
		for _, r := range all {
			byKey[r.Ref.Namespace+"/"+r.Ref.Kind+"/"+r.Ref.Name] = r
		}
		if err := writer.Replace(ctx, edgeA, byKey); err != nil {
			t.Fatal(err)
		}
		// Another inventory of the tenant must never show through.
		if err := writer.Replace(ctx, other, map[string]*hubv1.Resource{"web/Service/other": at("web", "Service", "other")}); err != nil {
			t.Fatal(err)
		}
		selected := func(f Filter) []string {
			t.Helper()
			rs, err := reader.List(ctx, edgeA, f)
			if err != nil {
				t.Fatalf("List(%+v): %v", f, err)
			}
			out := []string{}
			for _, r := range rs {
				out = append(out, r.Ref.Namespace+"/"+r.Ref.Kind+"/"+r.Ref.Name)
			}
			slices.Sort(out)
			return out
		}
		for _, c := range []struct {
			f    Filter
			want []string
		}{
			{Filter{Kind: "Service"}, []string{"db/Service/pg", "web/Service/api", "webapp/Service/x"}},
			{Filter{Kind: "service", Namespace: "web"}, []string{"web/Service/api"}},
			{Filter{Namespace: "web"}, []string{"web/Deployment/api", "web/Service/api", "web/ServiceAccount/sa"}},
			{Filter{Kind: "Namespace"}, []string{"/Namespace/db", "/Namespace/web"}},
			{Filter{Kind: "ConfigMap"}, []string{}},
			{Filter{Namespace: "we"}, []string{}},
			{Filter{Kind: "Service", Namespace: "none"}, []string{}},
		} {
			if diff := cmp.Diff(c.want, selected(c.f)); diff != "" {
				t.Errorf("List(%+v) (-want +got):\n%s", c.f, diff)
			}
		}
		if ns, err := reader.Namespaces(ctx, edgeA); err != nil || !slices.Equal(ns, []string{"db", "web", "webapp"}) {
			t.Errorf("Namespaces = %v, %v; want [db web webapp]", ns, err)
		}
		// Changes move the index with the objects.
		moved := at("web", "Service", "api")
		moved.ResourceVersion = "2"
		if err := writer.Apply(ctx, edgeA, map[string]*hubv1.Resource{"web/Service/api": moved, "web/Service/new": at("web", "Service", "new")},
			map[string]*hubv1.ObjectReference{"db/Service/pg": at("db", "Service", "pg").Ref}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"web/Service/api", "web/Service/new", "webapp/Service/x"}, selected(Filter{Kind: "Service"})); diff != "" {
			t.Errorf("List of Services after Apply (-want +got):\n%s", diff)
		}
		if rs, _ := reader.List(ctx, edgeA, Filter{Kind: "Service", Namespace: "web"}); len(rs) != 2 || !slices.ContainsFunc(rs, func(r *hubv1.Resource) bool { return r.ResourceVersion == "2" }) {
			t.Errorf("List after Apply = %v; want api at version 2 and new", rs)
		}
		if ns, _ := reader.Namespaces(ctx, edgeA); !slices.Equal(ns, []string{"web", "webapp"}) {
			t.Errorf("Namespaces after the last object of db left = %v", ns)
		}
		if err := writer.Replace(ctx, edgeA, map[string]*hubv1.Resource{"db/Service/pg": at("db", "Service", "pg")}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"db/Service/pg"}, selected(Filter{Kind: "Service"})); diff != "" {
			t.Errorf("List after a Replace (-want +got):\n%s", diff)
		}
		if ns, _ := reader.Namespaces(ctx, edgeA); !slices.Equal(ns, []string{"db"}) {
			t.Errorf("Namespaces after a Replace = %v", ns)
		}
	})

	t.Run("tenants and accounts apart", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		s := be.store(t)
		if err := s.Replace(ctx, edgeA, objs(obj("Service", "a", "1"))); err != nil {
			t.Fatal(err)
		}
		if err := s.Replace(ctx, edgeB, objs(obj("Service", "b", "1"))); err != nil {
			t.Fatal(err)
		}
		expectListed(t, s, edgeA, "Service/a@1")
		expectListed(t, s, edgeB, "Service/b@1")
		expectListed(t, s, other)
		if r, err := s.Get(ctx, edgeB, "Service/a"); r != nil || err != nil {
			t.Errorf("Get of tenant a's object in tenant b = %v, %v; want nil, nil", r, err)
		}
	})

	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		s := be.store(t)
		if r, err := s.Get(ctx, edgeA, "Service/none"); r != nil || err != nil {
			t.Errorf("Get of nothing = %v, %v; want nil, nil", r, err)
		}
		if err := s.Replace(ctx, edgeA, objs(obj("Service", "a", "1"))); err != nil {
			t.Fatal(err)
		}
		missing, err := s.Keep(ctx, []Key{edgeA, other})
		if err != nil {
			t.Fatalf("Keep: %v", err)
		}
		if diff := cmp.Diff([]Key{other}, missing); diff != "" {
			t.Errorf("Keep missing (-want +got):\n%s", diff)
		}
	})

	t.Run("repair after the backend lost data", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		if be.lose == nil {
			s := be.store(t)
			if done, err := s.Repair(ctx, true); len(done) != 0 || err != nil {
				t.Errorf("Repair of a backend that loses nothing = %v, %v", done, err)
			}
			return
		}
		holder, reader := be.store(t), be.store(t)
		if err := holder.Replace(ctx, edgeA, objs(obj("Service", "a", "1"))); err != nil {
			t.Fatal(err)
		}
		if err := holder.Apply(ctx, edgeA, objs(obj("Service", "b", "1")), nil); err != nil {
			t.Fatal(err)
		}
		be.lose(t)
		expectListed(t, reader, edgeA)
		if missing, err := holder.Keep(ctx, []Key{edgeA}); err != nil || len(missing) != 1 {
			t.Fatalf("Keep after the loss = %v, %v; want edgeA missing", missing, err)
		}
		done, err := holder.Repair(ctx, false)
		if err != nil || !slices.Equal(done, []Key{edgeA}) {
			t.Fatalf("Repair = %v, %v; want edgeA rewritten", done, err)
		}
		expectListed(t, reader, edgeA, "Service/a@1", "Service/b@1")
		// A released inventory is not the replica's to repair any more.
		holder.Release(edgeA)
		be.lose(t)
		if done, err := holder.Repair(ctx, true); len(done) != 0 || err != nil {
			t.Errorf("Repair after Release = %v, %v; want nothing", done, err)
		}
	})

	t.Run("drop", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		s := be.store(t)
		if err := s.Replace(ctx, edgeA, objs(obj("Service", "a", "1"))); err != nil {
			t.Fatal(err)
		}
		s.Drop(edgeA)
		if be.lose == nil {
			expectListed(t, s, edgeA) // gone from memory
		} else {
			// Shared: another replica may hold the agent now; its TTL ends it.
			expectListed(t, s, edgeA, "Service/a@1")
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		if be.stop == nil {
			t.Skip("the backend is always reachable")
		}
		s := be.store(t)
		be.stop(t)
		for name, call := range map[string]func() error{
			"Replace": func() error { return s.Replace(ctx, edgeA, objs(obj("Service", "a", "1"))) },
			"Apply":   func() error { return s.Apply(ctx, edgeA, objs(obj("Service", "a", "1")), nil) },
			"List":    func() error { _, err := s.List(ctx, edgeA, Filter{}); return err },
			"Select":  func() error { _, err := s.List(ctx, edgeA, Filter{Kind: "Service"}); return err },
			"Names":   func() error { _, err := s.Namespaces(ctx, edgeA); return err },
			"Get":     func() error { _, err := s.Get(ctx, edgeA, "Service/a"); return err },
			"Keep":    func() error { _, err := s.Keep(ctx, []Key{edgeA}); return err },
		} {
			err := call()
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s with the backend down: %v, want ErrUnavailable", name, err)
			} else if strings.Contains(err.Error(), "redis.sock") || strings.Contains(err.Error(), "unix") {
				t.Errorf("%s: the error names the server: %v", name, err)
			}
		}
	})
}
