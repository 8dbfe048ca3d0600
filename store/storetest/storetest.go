// Package storetest is the conformance suite every store.Store implementation passes, so the
// embedded store and Redis behave the same. Only tests import it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sortie-dev/sortie/store"
)

// at returns the suite's base time plus d. The base carries microseconds, which every store
// must keep, and a zone other than UTC, which a store need not keep: times compare with
// time.Time.Equal.
func at(d time.Duration) time.Time {
	return time.Date(2030, time.March, 4, 5, 6, 7, 891011000, time.FixedZone("UTC+2", 2*60*60)).Add(d)
}

// Run runs the conformance suite against the store.
//
// open returns a new, empty store and closes it when t ends (t.Cleanup). reopen closes old,
// as a server restart would, and returns a new store on the same data, also closed when t
// ends; closing old a second time at cleanup must be harmless.
func Run(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, old store.Store) store.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"Organizations", testOrganizations},
		{"Environments", testEnvironments},
		{"Credentials", testCredentials},
		{"CredentialClientIDRace", testCredentialClientIDRace},
		{"CredentialNameRace", testCredentialNameRace},
		{"LookalikeTenants", testLookalikeTenants},
		{"SigningKeys", testSigningKeys},
		{"Settings", testSettings},
		{"SettingRace", testSettingRace},
		{"Copies", testCopies},
		{"EmptyIDs", testEmptyIDs},
		{"Pipelines", testPipelines},
		{"PipelineBadInput", testPipelineBadInput},
		{"PipelineList", testPipelineList},
		{"InProgressRules", testInProgressRules},
		{"PipelineEvents", testPipelineEvents},
		{"Leases", testLeases},
		{"Retention", testRetention},
		{"PipelineRaces", testPipelineRaces},
		{"PipelineCopies", testPipelineCopies},
		{"Users", testUsers},
		{"UsersBadInput", testUsersBadInput},
		{"UsersRace", testUsersRace},
		{"Tickets", testTickets},
		{"TicketsBadInput", testTicketsBadInput},
		{"TicketsExpiry", testTicketsExpiry},
		{"TicketsRace", testTicketsRace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, open(t))
		})
	}
	t.Run("Persistence", func(t *testing.T) {
		t.Parallel()
		testPersistence(t, open, reopen)
	})
}

// errCase is one call expected to fail with a sentinel error.
type errCase struct {
	name string
	call func(ctx context.Context) error
	want error
}

// checkErrors runs each case as a subtest, in order.
func checkErrors(t *testing.T, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(t.Context()); !errors.Is(err, c.want) {
				t.Errorf("error = %v, want %v", err, c.want)
			}
		})
	}
}

// errOf drops a result to keep an error for errCase.
func errOf[T any](_ T, err error) error { return err }

// must fails the test now on a non-nil error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ok lets a call's two results feed a comparison directly: ok(s.GetOrganization(ctx, id))(t)
// fails the test now if the call failed and otherwise returns its value.
func ok[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		must(t, err)
		return v
	}
}

// diff reports a difference between want and got. Empty and nil slices are equal: a store
// need not keep that distinction.
func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping = %v, want nil", err)
	}
}

func testOrganizations(t *testing.T, s store.Store) {
	ctx := t.Context()
	acme := store.Organization{ID: "acme", Name: "Acme", CreatedAt: at(0)}
	must(t, s.CreateOrganization(ctx, acme))
	diff(t, "GetOrganization", acme, ok(s.GetOrganization(ctx, "acme"))(t))

	checkErrors(t, []errCase{
		{"duplicate id", func(ctx context.Context) error {
			return s.CreateOrganization(ctx, store.Organization{ID: "acme", Name: "Other", CreatedAt: at(time.Hour)})
		}, store.ErrConflict},
		{"missing", func(ctx context.Context) error {
			return errOf(s.GetOrganization(ctx, "globex"))
		}, store.ErrNotFound},
	})
	diff(t, "organization after failed create", acme, ok(s.GetOrganization(ctx, "acme"))(t))
}

func testEnvironments(t *testing.T, s store.Store) {
	ctx := t.Context()
	staging := store.Environment{ID: "e1", OrgID: "acme", Name: "staging", CreatedAt: at(0)}
	dev := store.Environment{ID: "e2", OrgID: "acme", Name: "dev", CreatedAt: at(time.Second)}
	prod := store.Environment{ID: "e3", OrgID: "acme", Name: "prod", CreatedAt: at(2 * time.Second)}
	for _, e := range []store.Environment{staging, dev, prod} {
		must(t, s.CreateEnvironment(ctx, e))
	}

	t.Run("get", func(t *testing.T) {
		diff(t, "GetEnvironment", dev, ok(s.GetEnvironment(ctx, "acme", "e2"))(t))
	})
	t.Run("list ordered by name", func(t *testing.T) {
		diff(t, "ListEnvironments", []store.Environment{dev, prod, staging}, ok(s.ListEnvironments(ctx, "acme"))(t))
	})
	t.Run("list of organization without environments", func(t *testing.T) {
		diff(t, "ListEnvironments", []store.Environment(nil), ok(s.ListEnvironments(ctx, "globex"))(t))
	})

	checkErrors(t, []errCase{
		{"duplicate id", func(ctx context.Context) error {
			return s.CreateEnvironment(ctx, store.Environment{ID: "e1", OrgID: "acme", Name: "qa", CreatedAt: at(0)})
		}, store.ErrConflict},
		{"duplicate name", func(ctx context.Context) error {
			return s.CreateEnvironment(ctx, store.Environment{ID: "e4", OrgID: "acme", Name: "prod", CreatedAt: at(0)})
		}, store.ErrConflict},
		{"missing", func(ctx context.Context) error {
			return errOf(s.GetEnvironment(ctx, "acme", "e9"))
		}, store.ErrNotFound},
		{"missing organization", func(ctx context.Context) error {
			return errOf(s.GetEnvironment(ctx, "globex", "e1"))
		}, store.ErrNotFound},
	})

	t.Run("failed creates store nothing", func(t *testing.T) {
		diff(t, "ListEnvironments", []store.Environment{dev, prod, staging}, ok(s.ListEnvironments(ctx, "acme"))(t))
		// The duplicate-id create above must not have kept its name "qa" reserved.
		qa := store.Environment{ID: "e5", OrgID: "acme", Name: "qa", CreatedAt: at(0)}
		must(t, s.CreateEnvironment(ctx, qa))
		diff(t, "GetEnvironment", qa, ok(s.GetEnvironment(ctx, "acme", "e5"))(t))
	})

	t.Run("same name and id in another organization", func(t *testing.T) {
		other := store.Environment{ID: "e3", OrgID: "globex", Name: "prod", CreatedAt: at(time.Hour)}
		must(t, s.CreateEnvironment(ctx, other))
		diff(t, "GetEnvironment globex", other, ok(s.GetEnvironment(ctx, "globex", "e3"))(t))
		diff(t, "GetEnvironment acme", prod, ok(s.GetEnvironment(ctx, "acme", "e3"))(t))
		diff(t, "ListEnvironments globex", []store.Environment{other}, ok(s.ListEnvironments(ctx, "globex"))(t))
	})
}

// tenants returns the tenants of the credential tests: a and b share an organization, c has
// a's environment id in another organization.
func tenants() (a, b, c store.Tenant) {
	return store.Tenant{OrgID: "acme", EnvID: "prod"},
		store.Tenant{OrgID: "acme", EnvID: "dev"},
		store.Tenant{OrgID: "globex", EnvID: "prod"}
}

// credential returns a credential with a distinct secret hash.
func credential(t store.Tenant, clientID string, createdAt time.Time, roles ...string) store.Credential {
	return store.Credential{
		ClientID:   clientID,
		Tenant:     t,
		Name:       "name of " + clientID,
		SecretHash: []byte("hash of " + clientID),
		Roles:      roles,
		CreatedAt:  createdAt,
	}
}

func testCredentials(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenantA, tenantB, tenantC := tenants()
	a1 := credential(tenantA, "client-a1", at(2*time.Second), "deploy", "read")
	a2 := credential(tenantA, "client-a2", at(time.Second), "read")
	a3 := credential(tenantA, "client-a3", at(time.Second))
	b1 := credential(tenantB, "client-b1", at(0), "admin")
	for _, c := range []store.Credential{a1, a3, a2, b1} {
		must(t, s.CreateCredential(ctx, c))
	}

	t.Run("get and look up", func(t *testing.T) {
		for _, c := range []store.Credential{a1, a2, a3, b1} {
			diff(t, "GetCredential "+c.ClientID, c, ok(s.GetCredential(ctx, c.Tenant, c.ClientID))(t))
			diff(t, "LookupCredential "+c.ClientID, c, ok(s.LookupCredential(ctx, c.ClientID))(t))
		}
	})
	t.Run("list ordered by creation then client id", func(t *testing.T) {
		diff(t, "ListCredentials a", []store.Credential{a2, a3, a1}, ok(s.ListCredentials(ctx, tenantA))(t))
		diff(t, "ListCredentials b", []store.Credential{b1}, ok(s.ListCredentials(ctx, tenantB))(t))
		diff(t, "ListCredentials c", []store.Credential(nil), ok(s.ListCredentials(ctx, tenantC))(t))
	})

	checkErrors(t, []errCase{
		{"duplicate client id in the same tenant", func(ctx context.Context) error {
			return s.CreateCredential(ctx, credential(tenantA, "client-a1", at(0)))
		}, store.ErrConflict},
		{"duplicate client id in another environment", func(ctx context.Context) error {
			return s.CreateCredential(ctx, credential(tenantB, "client-a1", at(0)))
		}, store.ErrConflict},
		{"duplicate client id in another organization", func(ctx context.Context) error {
			return s.CreateCredential(ctx, credential(tenantC, "client-a1", at(0)))
		}, store.ErrConflict},
		{"get through another environment", func(ctx context.Context) error {
			return errOf(s.GetCredential(ctx, tenantB, "client-a1"))
		}, store.ErrNotFound},
		{"get through another organization", func(ctx context.Context) error {
			return errOf(s.GetCredential(ctx, tenantC, "client-a1"))
		}, store.ErrNotFound},
		{"get missing", func(ctx context.Context) error {
			return errOf(s.GetCredential(ctx, tenantA, "client-x"))
		}, store.ErrNotFound},
		{"look up missing", func(ctx context.Context) error {
			return errOf(s.LookupCredential(ctx, "client-x"))
		}, store.ErrNotFound},
		{"delete through another environment", func(ctx context.Context) error {
			return s.DeleteCredential(ctx, tenantB, "client-a1")
		}, store.ErrNotFound},
		{"delete through another organization", func(ctx context.Context) error {
			return s.DeleteCredential(ctx, tenantC, "client-a1")
		}, store.ErrNotFound},
		{"delete missing", func(ctx context.Context) error {
			return s.DeleteCredential(ctx, tenantA, "client-x")
		}, store.ErrNotFound},
		{"set roles through another environment", func(ctx context.Context) error {
			return errOf(s.SetCredentialRoles(ctx, tenantB, "client-a1", []string{"admin"}))
		}, store.ErrNotFound},
		{"set roles through another organization", func(ctx context.Context) error {
			return errOf(s.SetCredentialRoles(ctx, tenantC, "client-a1", []string{"admin"}))
		}, store.ErrNotFound},
		{"set roles of missing", func(ctx context.Context) error {
			return errOf(s.SetCredentialRoles(ctx, tenantA, "client-x", []string{"admin"}))
		}, store.ErrNotFound},
	})

	t.Run("failed calls change nothing", func(t *testing.T) {
		diff(t, "GetCredential", a1, ok(s.GetCredential(ctx, tenantA, "client-a1"))(t))
		diff(t, "ListCredentials a", []store.Credential{a2, a3, a1}, ok(s.ListCredentials(ctx, tenantA))(t))
		diff(t, "ListCredentials b", []store.Credential{b1}, ok(s.ListCredentials(ctx, tenantB))(t))
		diff(t, "ListCredentials c", []store.Credential(nil), ok(s.ListCredentials(ctx, tenantC))(t))
		if _, err := s.GetCredential(ctx, tenantA, "client-x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetCredential of a credential never created = %v, want ErrNotFound", err)
		}
	})

	t.Run("set roles", func(t *testing.T) {
		want := a2
		want.Roles = []string{"admin", "deploy"}
		diff(t, "SetCredentialRoles", want, ok(s.SetCredentialRoles(ctx, tenantA, "client-a2", []string{"admin", "deploy"}))(t))
		diff(t, "GetCredential", want, ok(s.GetCredential(ctx, tenantA, "client-a2"))(t))
		diff(t, "LookupCredential", want, ok(s.LookupCredential(ctx, "client-a2"))(t))

		want.Roles = nil
		diff(t, "SetCredentialRoles to none", want, ok(s.SetCredentialRoles(ctx, tenantA, "client-a2", nil))(t))
		diff(t, "GetCredential", want, ok(s.GetCredential(ctx, tenantA, "client-a2"))(t))
	})

	t.Run("delete", func(t *testing.T) {
		must(t, s.DeleteCredential(ctx, tenantA, "client-a1"))
		if _, err := s.GetCredential(ctx, tenantA, "client-a1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetCredential after delete = %v, want ErrNotFound", err)
		}
		if _, err := s.LookupCredential(ctx, "client-a1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LookupCredential after delete = %v, want ErrNotFound", err)
		}
		if err := s.DeleteCredential(ctx, tenantA, "client-a1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second DeleteCredential = %v, want ErrNotFound", err)
		}
		got := ok(s.ListCredentials(ctx, tenantA))(t)
		if len(got) != 2 || got[0].ClientID != "client-a2" || got[1].ClientID != "client-a3" {
			t.Errorf("ListCredentials after delete = %v, want client-a2, client-a3", got)
		}
	})

	t.Run("deleted client id is free again", func(t *testing.T) {
		reused := credential(tenantC, "client-a1", at(time.Hour), "read")
		must(t, s.CreateCredential(ctx, reused))
		diff(t, "LookupCredential", reused, ok(s.LookupCredential(ctx, "client-a1"))(t))
		if _, err := s.GetCredential(ctx, tenantA, "client-a1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetCredential through the old tenant = %v, want ErrNotFound", err)
		}
	})
}

// testCredentialNameRace creates one name in one tenant under many client ids at once, as
// replicas would: exactly one wins, the others change nothing, and the name stays free in
// other tenants and once its credential is deleted.
func testCredentialNameRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenantA, tenantB := store.Tenant{OrgID: "acme", EnvID: "prod"}, store.Tenant{OrgID: "acme", EnvID: "dev"}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := credential(tenantA, fmt.Sprintf("client-%d", i), at(0))
			c.Name = "deploy-bot"
			errs[i] = s.CreateCredential(ctx, c)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("client-%d and client-%d both created the name", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("client-%d: error = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creation of the name succeeded")
	}
	creds := ok(s.ListCredentials(ctx, tenantA))(t)
	if len(creds) != 1 || creds[0].ClientID != fmt.Sprintf("client-%d", winner) {
		t.Fatalf("ListCredentials = %+v, want only client-%d", creds, winner)
	}
	loser := fmt.Sprintf("client-%d", (winner+1)%n)
	if _, err := s.LookupCredential(ctx, loser); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupCredential of a refused client id = %v, want ErrNotFound", err)
	}
	// A refused client id is not left reserved.
	if err := s.CreateCredential(ctx, credential(tenantA, loser, at(time.Second))); err != nil {
		t.Errorf("reuse a refused client id: %v", err)
	}
	other := credential(tenantB, "client-b-bot", at(0))
	other.Name = "deploy-bot"
	if err := s.CreateCredential(ctx, other); err != nil {
		t.Errorf("the same name in another tenant: %v", err)
	}
	if err := s.DeleteCredential(ctx, tenantA, fmt.Sprintf("client-%d", winner)); err != nil {
		t.Fatal(err)
	}
	again := credential(tenantA, "client-again", at(2*time.Second))
	again.Name = "deploy-bot"
	if err := s.CreateCredential(ctx, again); err != nil {
		t.Errorf("the name after its credential was deleted: %v", err)
	}
}

// testCredentialClientIDRace creates one client id in many tenants at once: exactly one wins.
func testCredentialClientIDRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tenant := store.Tenant{OrgID: "acme", EnvID: fmt.Sprintf("env-%d", i)}
			errs[i] = s.CreateCredential(ctx, credential(tenant, "contested", at(0)))
		})
	}
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("tenants env-%d and env-%d both created the client id", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("tenant env-%d: error = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no tenant created the client id")
	}
	want := store.Tenant{OrgID: "acme", EnvID: fmt.Sprintf("env-%d", winner)}
	diff(t, "LookupCredential tenant", want, ok(s.LookupCredential(ctx, "contested"))(t).Tenant)
	for i := range n {
		tenant := store.Tenant{OrgID: "acme", EnvID: fmt.Sprintf("env-%d", i)}
		wantLen := 0
		if i == winner {
			wantLen = 1
		}
		if got := ok(s.ListCredentials(ctx, tenant))(t); len(got) != wantLen {
			t.Errorf("ListCredentials env-%d has %d credentials, want %d", i, len(got), wantLen)
		}
	}
}

// testLookalikeTenants checks that tenants stay apart even when their ids joined as "org/env"
// (or as key names) would look alike.
func testLookalikeTenants(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenants := []store.Tenant{
		{OrgID: "a/b", EnvID: "c"},
		{OrgID: "a", EnvID: "b/c"},
		{OrgID: "a}", EnvID: "{b"},
		{OrgID: "a", EnvID: "}{b"},
	}
	for i, tenant := range tenants {
		c := credential(tenant, fmt.Sprintf("client-%d", i), at(0))
		must(t, s.CreateCredential(ctx, c))
	}
	for i, tenant := range tenants {
		want := []store.Credential{credential(tenant, fmt.Sprintf("client-%d", i), at(0))}
		diff(t, "ListCredentials "+tenant.String(), want, ok(s.ListCredentials(ctx, tenant))(t))
		for j, other := range tenants {
			if j == i {
				continue
			}
			if _, err := s.GetCredential(ctx, other, want[0].ClientID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetCredential of %s through %s = %v, want ErrNotFound", tenant, other, err)
			}
		}
	}
}

// signingKey returns a signing key with distinct key material.
func signingKey(id string, createdAt time.Time) store.SigningKey {
	return store.SigningKey{
		ID:               id,
		Algorithm:        "ES256",
		PublicKeyDER:     []byte("public " + id),
		EncryptedPrivate: []byte("sealed private " + id),
		CreatedAt:        createdAt,
		SignFrom:         createdAt.Add(2 * time.Minute),
		SignUntil:        createdAt.Add(24 * time.Hour),
		RetainUntil:      createdAt.Add(48 * time.Hour),
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	diff(t, "ListSigningKeys of an empty store", []store.SigningKey(nil), ok(s.ListSigningKeys(ctx))(t))

	k1, k2, k3 := signingKey("k1", at(0)), signingKey("k2", at(time.Hour)), signingKey("k3", at(2*time.Hour))
	for _, k := range []store.SigningKey{k2, k3, k1} {
		must(t, s.PutSigningKey(ctx, k))
	}
	diff(t, "ListSigningKeys ordered by creation", []store.SigningKey{k1, k2, k3}, ok(s.ListSigningKeys(ctx))(t))

	checkErrors(t, []errCase{
		{"duplicate id", func(ctx context.Context) error {
			return s.PutSigningKey(ctx, signingKey("k2", at(3*time.Hour)))
		}, store.ErrConflict},
	})
	diff(t, "ListSigningKeys after failed put", []store.SigningKey{k1, k2, k3}, ok(s.ListSigningKeys(ctx))(t))

	must(t, s.DeleteSigningKey(ctx, "k2"))
	diff(t, "ListSigningKeys after delete", []store.SigningKey{k1, k3}, ok(s.ListSigningKeys(ctx))(t))
	if err := s.DeleteSigningKey(ctx, "k2"); err != nil {
		t.Errorf("DeleteSigningKey of a missing key = %v, want nil", err)
	}
}

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	checkErrors(t, []errCase{
		{"missing", func(ctx context.Context) error { return errOf(s.GetSetting(ctx, "bootstrap")) }, store.ErrNotFound},
	})

	tests := []struct {
		name   string
		key    string
		value  []byte
		stored bool
		want   []byte
	}{
		{"first write stores", "bootstrap", []byte("v1"), true, []byte("v1")},
		{"second write keeps the first value", "bootstrap", []byte("v2"), false, []byte("v1")},
		{"empty value counts as present", "empty", []byte{}, true, []byte{}},
		{"after an empty value", "empty", []byte("v1"), false, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored, err := s.SetSettingIfAbsent(ctx, tt.key, tt.value)
			must(t, err)
			if stored != tt.stored {
				t.Errorf("SetSettingIfAbsent stored = %t, want %t", stored, tt.stored)
			}
			diff(t, "GetSetting", tt.want, ok(s.GetSetting(ctx, tt.key))(t))
		})
	}
}

// testSettingRace sets one key from many callers at once: exactly one stores its value.
func testSettingRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 16
	stored := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stored[i], errs[i] = s.SetSettingIfAbsent(ctx, "bootstrap", fmt.Appendf(nil, "caller %d", i))
		})
	}
	wg.Wait()

	winner := -1
	for i := range n {
		switch {
		case errs[i] != nil:
			t.Errorf("caller %d: %v", i, errs[i])
		case stored[i] && winner >= 0:
			t.Errorf("callers %d and %d both stored the setting", winner, i)
		case stored[i]:
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no caller stored the setting")
	}
	diff(t, "GetSetting", fmt.Appendf(nil, "caller %d", winner), ok(s.GetSetting(ctx, "bootstrap"))(t))
}

// testCopies checks that a store neither keeps the caller's slices nor hands out its own.
func testCopies(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenantA, _, _ := tenants()
	want := credential(tenantA, "client-a1", at(0), "deploy", "read")
	wantKey := signingKey("k1", at(0))
	check := func(t *testing.T) {
		t.Helper()
		diff(t, "GetCredential", want, ok(s.GetCredential(ctx, tenantA, "client-a1"))(t))
		diff(t, "LookupCredential", want, ok(s.LookupCredential(ctx, "client-a1"))(t))
		diff(t, "ListCredentials", []store.Credential{want}, ok(s.ListCredentials(ctx, tenantA))(t))
		diff(t, "ListSigningKeys", []store.SigningKey{wantKey}, ok(s.ListSigningKeys(ctx))(t))
		diff(t, "GetSetting", []byte("v1"), ok(s.GetSetting(ctx, "bootstrap"))(t))
	}

	t.Run("arguments are not kept", func(t *testing.T) {
		c := credential(tenantA, "client-a1", at(0), "admin")
		must(t, s.CreateCredential(ctx, c))
		c.SecretHash[0] = 'X'
		roles := []string{"deploy", "read"}
		ok(s.SetCredentialRoles(ctx, tenantA, "client-a1", roles))(t)
		roles[0] = "admin"

		k := signingKey("k1", at(0))
		must(t, s.PutSigningKey(ctx, k))
		k.PublicKeyDER[0], k.EncryptedPrivate[0] = 'X', 'X'

		value := []byte("v1")
		ok(s.SetSettingIfAbsent(ctx, "bootstrap", value))(t)
		value[0] = 'X'

		check(t)
	})

	t.Run("results are not shared", func(t *testing.T) {
		scribble := func(c store.Credential) {
			c.Roles[0], c.SecretHash[0] = "admin", 'X'
		}
		scribble(ok(s.GetCredential(ctx, tenantA, "client-a1"))(t))
		scribble(ok(s.LookupCredential(ctx, "client-a1"))(t))
		scribble(ok(s.ListCredentials(ctx, tenantA))(t)[0])
		scribble(ok(s.SetCredentialRoles(ctx, tenantA, "client-a1", []string{"deploy", "read"}))(t))
		listed := ok(s.ListSigningKeys(ctx))(t)[0]
		listed.PublicKeyDER[0], listed.EncryptedPrivate[0] = 'X', 'X'
		ok(s.GetSetting(ctx, "bootstrap"))(t)[0] = 'X'

		check(t)
	})
}

// testEmptyIDs checks that records without their identity are refused and leave nothing.
func testEmptyIDs(t *testing.T, s store.Store) {
	tenantA, _, _ := tenants()
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"organization", func(ctx context.Context) error {
			return s.CreateOrganization(ctx, store.Organization{Name: "Acme"})
		}},
		{"environment", func(ctx context.Context) error {
			return s.CreateEnvironment(ctx, store.Environment{OrgID: "acme", Name: "prod"})
		}},
		{"environment's organization", func(ctx context.Context) error {
			return s.CreateEnvironment(ctx, store.Environment{ID: "prod", Name: "prod"})
		}},
		{"credential", func(ctx context.Context) error {
			return s.CreateCredential(ctx, credential(tenantA, "", at(0)))
		}},
		{"credential's environment", func(ctx context.Context) error {
			return s.CreateCredential(ctx, credential(store.Tenant{OrgID: "acme"}, "client-1", at(0)))
		}},
		{"signing key", func(ctx context.Context) error {
			return s.PutSigningKey(ctx, signingKey("", at(0)))
		}},
		{"setting", func(ctx context.Context) error {
			return errOf(s.SetSettingIfAbsent(ctx, "", []byte("v1")))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error = %v, want a refusal", err)
			}
		})
	}

	ctx := t.Context()
	if _, err := s.LookupCredential(ctx, "client-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupCredential of a refused credential = %v, want ErrNotFound", err)
	}
	diff(t, "ListSigningKeys", []store.SigningKey(nil), ok(s.ListSigningKeys(ctx))(t))
	diff(t, "ListEnvironments", []store.Environment(nil), ok(s.ListEnvironments(ctx, "acme"))(t))
}

// testPersistence writes every kind of record, restarts the store and reads them back.
func testPersistence(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, old store.Store) store.Store) {
	ctx := t.Context()
	tenantA, tenantB, tenantC := tenants()
	s := open(t)

	acme := store.Organization{ID: "acme", Name: "Acme", CreatedAt: at(0)}
	prod := store.Environment{ID: "prod", OrgID: "acme", Name: "production", CreatedAt: at(time.Second)}
	dev := store.Environment{ID: "dev", OrgID: "acme", Name: "development", CreatedAt: at(2 * time.Second)}
	a1 := credential(tenantA, "client-a1", at(time.Minute), "deploy", "read")
	a2 := credential(tenantA, "client-a2", at(2*time.Minute), "read")
	b1 := credential(tenantB, "client-b1", at(3*time.Minute), "admin")
	gone := credential(tenantB, "client-gone", at(4*time.Minute))
	k1, k2 := signingKey("k1", at(0)), signingKey("k2", at(time.Hour))

	must(t, s.CreateOrganization(ctx, acme))
	must(t, s.CreateEnvironment(ctx, prod))
	must(t, s.CreateEnvironment(ctx, dev))
	for _, c := range []store.Credential{a1, a2, b1, gone} {
		must(t, s.CreateCredential(ctx, c))
	}
	a2.Roles = []string{"admin", "read"}
	ok(s.SetCredentialRoles(ctx, tenantA, "client-a2", a2.Roles))(t)
	must(t, s.DeleteCredential(ctx, tenantB, "client-gone"))
	must(t, s.PutSigningKey(ctx, k2))
	must(t, s.PutSigningKey(ctx, k1))
	ok(s.SetSettingIfAbsent(ctx, "bootstrap", []byte("done")))(t)
	checkPipelines := writePipelines(t, s)
	checkUsers := writeUsers(t, s)

	s = reopen(t, s)
	checkPipelines(t, s)
	checkUsers(t, s)

	diff(t, "GetOrganization", acme, ok(s.GetOrganization(ctx, "acme"))(t))
	diff(t, "ListEnvironments", []store.Environment{dev, prod}, ok(s.ListEnvironments(ctx, "acme"))(t))
	diff(t, "GetEnvironment", prod, ok(s.GetEnvironment(ctx, "acme", "prod"))(t))
	diff(t, "ListCredentials a", []store.Credential{a1, a2}, ok(s.ListCredentials(ctx, tenantA))(t))
	diff(t, "ListCredentials b", []store.Credential{b1}, ok(s.ListCredentials(ctx, tenantB))(t))
	diff(t, "GetCredential", a2, ok(s.GetCredential(ctx, tenantA, "client-a2"))(t))
	diff(t, "LookupCredential", b1, ok(s.LookupCredential(ctx, "client-b1"))(t))
	diff(t, "ListSigningKeys", []store.SigningKey{k1, k2}, ok(s.ListSigningKeys(ctx))(t))
	diff(t, "GetSetting", []byte("done"), ok(s.GetSetting(ctx, "bootstrap"))(t))

	checkErrors(t, []errCase{
		{"deleted credential stays deleted", func(ctx context.Context) error {
			return errOf(s.LookupCredential(ctx, "client-gone"))
		}, store.ErrNotFound},
		{"client id index survives", func(ctx context.Context) error {
			return s.CreateCredential(ctx, credential(tenantC, "client-a1", at(0)))
		}, store.ErrConflict},
		{"environment name index survives", func(ctx context.Context) error {
			return s.CreateEnvironment(ctx, store.Environment{ID: "qa", OrgID: "acme", Name: "production"})
		}, store.ErrConflict},
		{"organization survives", func(ctx context.Context) error {
			return s.CreateOrganization(ctx, acme)
		}, store.ErrConflict},
		{"signing key survives", func(ctx context.Context) error {
			return s.PutSigningKey(ctx, k1)
		}, store.ErrConflict},
	})
	if stored := ok(s.SetSettingIfAbsent(ctx, "bootstrap", []byte("again")))(t); stored {
		t.Error("SetSettingIfAbsent after restart stored over the existing value")
	}
}
