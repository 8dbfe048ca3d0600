package redisstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
	"github.com/sortie-dev/sortie/store/storetest"
)

// open opens the store at url and closes it when t ends.
func open(t *testing.T, url string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// withURL is a store that remembers where it connected, so the suite can reopen it.
type withURL struct {
	*redisstore.Store
	url string
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t,
		func(t *testing.T) store.Store {
			url := redistest.New(t).URL()
			return withURL{open(t, url), url}
		},
		func(t *testing.T, old store.Store) store.Store {
			url := old.(withURL).url
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			return withURL{open(t, url), url}
		},
	)
}

// TestClusterConformance runs the suite on a Redis Cluster of three masters, where a script
// or transaction touching keys of two slots fails with CROSSSLOT.
func TestClusterConformance(t *testing.T) {
	t.Parallel()
	openCluster := func(t *testing.T, url string) withURL {
		t.Helper()
		s, err := redisstore.OpenCluster(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return withURL{s, url}
	}
	storetest.Run(t,
		func(t *testing.T) store.Store {
			return openCluster(t, redistest.NewCluster(t, 3).URL())
		},
		func(t *testing.T, old store.Store) store.Store {
			url := old.(withURL).url
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			return openCluster(t, url)
		},
	)
}

func TestOutageAndRecovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		downAtOpen bool
	}{
		{"down after open", false},
		{"down at open", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			srv := redistest.New(t)
			socket := strings.TrimPrefix(srv.URL(), "unix://")
			if tt.downAtOpen {
				srv.Stop()
			}
			s := open(t, srv.URL())
			if !tt.downAtOpen {
				if err := s.Ping(ctx); err != nil {
					t.Fatalf("Ping before the outage = %v", err)
				}
				srv.Stop()
			}

			calls := []struct {
				name string
				call func(ctx context.Context) error
			}{
				{"Ping", s.Ping},
				{"GetOrganization", func(ctx context.Context) error {
					_, err := s.GetOrganization(ctx, "acme")
					return err
				}},
				{"CreateCredential", func(ctx context.Context) error {
					return s.CreateCredential(ctx, store.Credential{
						ClientID: "client-1", Tenant: store.Tenant{OrgID: "acme", EnvID: "prod"},
					})
				}},
				{"SetSettingIfAbsent", func(ctx context.Context) error {
					_, err := s.SetSettingIfAbsent(ctx, "bootstrap", []byte("done"))
					return err
				}},
				{"CreatePipeline", func(ctx context.Context) error {
					_, err := s.CreatePipeline(ctx, store.Pipeline{
						ID: "p1", Tenant: store.Tenant{OrgID: "acme", EnvID: "prod"}, Application: "web", Status: store.StatusRunning,
					}, store.RejectInProgress, nil)
					return err
				}},
				{"AcquireLease", func(ctx context.Context) error {
					_, err := s.AcquireLease(ctx, store.PipelineRef{Tenant: store.Tenant{OrgID: "acme", EnvID: "prod"}, ID: "p1"}, "r1", time.Now(), time.Second)
					return err
				}},
				{"ListActivePipelines", func(ctx context.Context) error {
					_, err := s.ListActivePipelines(ctx)
					return err
				}},
				{"CreateUser", func(ctx context.Context) error {
					_, err := s.CreateUser(ctx, store.User{ID: "u1", OrgID: "acme", Login: "alice"})
					return err
				}},
				{"LookupUser", func(ctx context.Context) error {
					_, err := s.LookupUser(ctx, "alice")
					return err
				}},
				{"PutTicket", func(ctx context.Context) error {
					return s.PutTicket(ctx, store.Ticket{Kind: store.TicketSession, ID: "s1", ExpiresAt: time.Now().Add(time.Minute)})
				}},
				{"TakeTicket", func(ctx context.Context) error {
					_, err := s.TakeTicket(ctx, store.TicketSession, "s1")
					return err
				}},
				{"ListTickets", func(ctx context.Context) error {
					_, err := s.ListTickets(ctx, store.TicketSession, "")
					return err
				}},
			}
			for _, c := range calls {
				err := c.call(ctx)
				if !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("%s during the outage = %v, want ErrUnavailable", c.name, err)
					continue
				}
				if strings.Contains(err.Error(), socket) || strings.Contains(err.Error(), filepath.Base(socket)) {
					t.Errorf("%s error %q reveals the Redis address", c.name, err)
				}
			}

			srv.Start()
			deadline := time.Now().Add(10 * time.Second)
			for err := s.Ping(ctx); err != nil; err = s.Ping(ctx) {
				if time.Now().After(deadline) {
					t.Fatalf("Ping after Redis came back = %v, still failing after 10s", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			acme := store.Organization{ID: "acme", Name: "Acme", CreatedAt: time.Now().UTC()}
			if err := s.CreateOrganization(ctx, acme); err != nil {
				t.Fatalf("CreateOrganization after recovery = %v", err)
			}
			got, err := s.GetOrganization(ctx, "acme")
			if err != nil {
				t.Fatalf("GetOrganization after recovery = %v", err)
			}
			if diff := cmp.Diff(acme, got); diff != "" {
				t.Errorf("GetOrganization after recovery mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	socket := strings.TrimPrefix(srv.URL(), "unix://")
	// A server without a password accepts any; give it one so a wrong one is refused.
	admin := client(t, srv.URL())
	if err := admin.ConfigSet(t.Context(), "requirepass", "right").Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		url     string
		wantErr bool
	}{
		{"redis while unreachable", "redis://127.0.0.1:1/0", false},
		{"rediss while unreachable", "rediss://127.0.0.1:1", false},
		{"unix while unreachable", "unix://" + filepath.Join(t.TempDir(), "none.sock"), false},
		{"unix", "unix://:right@" + socket, false},
		{"unknown scheme", "http://127.0.0.1:6379", true},
		{"unparsable port", "redis://user:hunter2@127.0.0.1:notaport", true},
		{"unparsable database", "redis://:hunter2@127.0.0.1/notanumber", true},
		{"unix without path", "unix://", true},
		{"wrong password", "unix://:hunter2@" + socket, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := redisstore.Open(t.Context(), tt.url)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Open = %v, want a store", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open error %q reveals the password", err)
			}
		})
	}
}

// TestKeyLayout checks where each write lands: every key of a tenant carries the tenant's
// hash tag, every organization-level key the organization's, and only server-wide keys have
// none, so no operation spans two Redis Cluster slots.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.New(t)
	s := open(t, srv.URL())

	prod := store.Tenant{OrgID: "acme", EnvID: "prod"}
	dev := store.Tenant{OrgID: "acme", EnvID: "dev"}
	odd := store.Tenant{OrgID: "x}y", EnvID: "{z"}
	writes := []error{
		s.CreateOrganization(ctx, store.Organization{ID: "acme"}),
		s.CreateEnvironment(ctx, store.Environment{ID: "prod", OrgID: "acme", Name: "production"}),
		s.CreateEnvironment(ctx, store.Environment{ID: "dev", OrgID: "acme", Name: "development"}),
		s.CreateCredential(ctx, store.Credential{ClientID: "c1", Tenant: prod, Name: "one"}),
		s.CreateCredential(ctx, store.Credential{ClientID: "c2", Tenant: prod, Name: "two"}),
		s.CreateCredential(ctx, store.Credential{ClientID: "c3", Tenant: dev, Name: "three"}),
		s.CreateCredential(ctx, store.Credential{ClientID: "c4", Tenant: odd, Name: "four"}),
		s.DeleteCredential(ctx, prod, "c2"),
		s.PutSigningKey(ctx, store.SigningKey{ID: "k1"}),
	}
	_, err := s.SetCredentialRoles(ctx, prod, "c1", []string{"admin"})
	writes = append(writes, err)
	_, err = s.SetSettingIfAbsent(ctx, "bootstrap", []byte("done"))
	writes = append(writes, err)
	// Pipelines: one running, one queued behind it and replaced (so REJECTED and completed),
	// a lease, a fenced update, and one finished pipeline pruned with its lease.
	now := time.Now()
	pipeline := func(id, status string) store.Pipeline {
		p := store.Pipeline{ID: id, Tenant: odd, Application: "web", Status: status, CreatedAt: now}
		if store.TerminalStatus(status) {
			p.CompletedAt = now.Add(-time.Hour)
		}
		return p
	}
	res, err := s.CreatePipeline(ctx, pipeline("p1", store.StatusRunning), store.RejectInProgress, []store.PipelineEvent{{Type: "created"}})
	writes = append(writes, err)
	_, err = s.CreatePipeline(ctx, pipeline("p2", store.StatusNotStarted), store.EnqueueOne, nil)
	writes = append(writes, err)
	_, err = s.CreatePipeline(ctx, pipeline("p3", store.StatusNotStarted), store.EnqueueOne, nil)
	writes = append(writes, err)
	lease, err := s.AcquireLease(ctx, store.PipelineRef{Tenant: odd, ID: "p1"}, "r1", now, time.Minute)
	writes = append(writes, err)
	res.Pipeline.Status = store.StatusPaused
	_, err = s.UpdatePipeline(ctx, res.Pipeline, &lease, []store.PipelineEvent{{Type: "paused"}})
	writes = append(writes, err)
	_, err = s.CreatePipeline(ctx, pipeline("gone", store.StatusSucceeded), store.RejectInProgress, nil)
	writes = append(writes, err)
	_, err = s.AcquireLease(ctx, store.PipelineRef{Tenant: odd, ID: "gone"}, "r1", now, time.Minute)
	writes = append(writes, err)
	_, err = s.DeletePipelinesCompletedBefore(ctx, now.Add(-time.Minute))
	writes = append(writes, err)
	// Users of two organizations, one deleted; tickets of two kinds, one taken.
	_, err = s.CreateUser(ctx, store.User{ID: "u1", OrgID: "acme", Login: "alice"})
	writes = append(writes, err)
	_, err = s.CreateUser(ctx, store.User{ID: "u2", OrgID: "x}y", Login: "bob"})
	writes = append(writes, err)
	_, err = s.CreateUser(ctx, store.User{ID: "u3", OrgID: "globex", Login: "carol"})
	writes = append(writes, err)
	writes = append(writes, s.DeleteUser(ctx, "globex", "u3", 1))
	writes = append(writes,
		s.PutTicket(ctx, store.Ticket{Kind: store.TicketSession, ID: "s}1", ExpiresAt: now.Add(time.Minute)}),
		s.PutTicket(ctx, store.Ticket{Kind: store.TicketAuthCode, ID: "c1", ExpiresAt: now.Add(time.Minute)}),
		s.PutTicket(ctx, store.Ticket{Kind: store.TicketAuthCode, ID: "c2", ExpiresAt: now.Add(time.Minute)}),
	)
	_, err = s.TakeTicket(ctx, store.TicketAuthCode, "c2")
	writes = append(writes, err)
	if err := errors.Join(writes...); err != nil {
		t.Fatal(err)
	}

	keys, err := client(t, srv.URL()).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, k := range keys {
		got[hashTag(k)] = append(got[hashTag(k)], k)
	}
	for _, ks := range got {
		slices.Sort(ks)
	}

	want := map[string][]string{
		"": {
			"sortie:credential_index",
			"sortie:organizations",
			"sortie:pipeline_tenants",
			"sortie:settings",
			"sortie:signing_keys",
		},
		"o:acme": {
			"sortie:{o:acme}:environment_names",
			"sortie:{o:acme}:environments",
		},
		"users": {
			"sortie:{users}:ids",
			"sortie:{users}:logins",
			"sortie:{users}:org:acme",
			"sortie:{users}:org:x%7Dy",
		},
		"tkt:authcode": {
			"sortie:{tkt:authcode}:index",
			"sortie:{tkt:authcode}:ticket:c1",
		},
		"tkt:session": {
			"sortie:{tkt:session}:index",
			"sortie:{tkt:session}:ticket:s%7D1",
		},
		"t:acme/prod": {"sortie:{t:acme/prod}:credentials"},
		"t:acme/dev":  {"sortie:{t:acme/dev}:credentials"},
		"t:x%7Dy/%7Bz": {
			"sortie:{t:x%7Dy/%7Bz}:credentials",
			"sortie:{t:x%7Dy/%7Bz}:lease:p1",
			"sortie:{t:x%7Dy/%7Bz}:lease_token:p1",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_active",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_app_active:web",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_completed",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_events",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:all",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:app:web",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:app:web:status:PAUSED",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:app:web:status:QUEUED",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:app:web:status:REJECTED",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:status:PAUSED",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:status:QUEUED",
			"sortie:{t:x%7Dy/%7Bz}:pipeline_index:status:REJECTED",
			"sortie:{t:x%7Dy/%7Bz}:pipelines",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys by hash tag mismatch (-want +got):\n%s", diff)
	}
}

// client returns a plain Redis client for url, closed when t ends.
func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// hashTag returns the part of key Redis Cluster hashes when it has a tag: the text between
// the first "{" and the next "}", if not empty.
func hashTag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok {
		return ""
	}
	return tag
}

// TestPipelineTenantSet checks the one cross-tenant pipeline key: a tenant joins the set
// when it stores a pipeline and leaves it once it has none.
func TestPipelineTenantSet(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.New(t)
	s := open(t, srv.URL())
	rdb := client(t, srv.URL())
	members := func() []string {
		t.Helper()
		m, err := rdb.SMembers(ctx, "sortie:pipeline_tenants").Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(m)
		return m
	}
	const prod, dev = `{"org_id":"acme","env_id":"prod"}`, `{"org_id":"acme","env_id":"dev"}`

	now := time.Now()
	done := store.Pipeline{ID: "p1", Tenant: store.Tenant{OrgID: "acme", EnvID: "prod"}, Application: "web",
		Status: store.StatusSucceeded, CreatedAt: now.Add(-2 * time.Hour), CompletedAt: now.Add(-time.Hour)}
	if _, err := s.CreatePipeline(ctx, done, store.RejectInProgress, nil); err != nil {
		t.Fatal(err)
	}
	// A tenant registered by a creation that never got to write (Redis failed in between).
	if err := rdb.SAdd(ctx, "sortie:pipeline_tenants", dev).Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{dev, prod}, members()); diff != "" {
		t.Errorf("tenant set mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.ListActivePipelines(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{prod}, members()); diff != "" {
		t.Errorf("tenant set after ListActivePipelines mismatch (-want +got):\n%s", diff)
	}
	if n, err := s.DeletePipelinesCompletedBefore(ctx, now); err != nil || n != 1 {
		t.Fatalf("DeletePipelinesCompletedBefore = %d, %v; want 1", n, err)
	}
	if diff := cmp.Diff([]string(nil), members(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("tenant set after the prune mismatch (-want +got):\n%s", diff)
	}
}
