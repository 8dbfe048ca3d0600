package identity_test

import (
	"context"
	"crypto/rand"
	"flag"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
)

var update = flag.Bool("update", false, "rewrite the files in testdata")

const (
	testIssuer    = "https://sortie.example.test"
	testAudience  = "https://api.sortie.example.test"
	otherAudience = "sortie-cli"
	testTTL       = time.Hour
	testRotation  = 24 * time.Hour
	// clockSkew mirrors the skew the verifier allows on exp and nbf.
	clockSkew = 30 * time.Second
	testAddr  = "127.0.0.1"
	testOrg   = "acme"
)

// t0 starts every fake clock. It is a whole second, as token times are.
var t0 = time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)

// allScopes is every scope in the sorted order tokens and principals carry them.
var allScopes = func() []string {
	s := slices.Clone(identity.Scopes)
	slices.Sort(s)
	return s
}()

// equateEmpty makes nil and empty slices equal: the verifier does not promise either.
var equateEmpty = cmpopts.EquateEmpty()

// fakeClock is a settable clock for expiry, rotation and rate-limit windows.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{now: start} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openStore opens the bbolt store at path and closes it when t ends.
func openStore(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newMasterKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, identity.MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func testConfig(clock *fakeClock, masterKey []byte) identity.Config {
	return identity.Config{
		Issuer:      testIssuer,
		Audiences:   []string{testAudience, otherAudience},
		TokenTTL:    testTTL,
		KeyRotation: testRotation,
		MasterKey:   masterKey,
		Now:         clock.Now,
	}
}

func newService(t testing.TB, st store.Store, cfg identity.Config) *identity.Service {
	t.Helper()
	svc, err := identity.New(context.Background(), discardLogger(), st, cfg)
	if err != nil {
		t.Fatalf("identity.New: %v", err)
	}
	return svc
}

// fixture is a service on a fresh bbolt store with one organization, "acme".
type fixture struct {
	path      string
	st        *boltstore.Store
	clock     *fakeClock
	masterKey []byte
	svc       *identity.Service
	org       identity.NewOrganization
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := newEmptyFixture(t)
	org, err := fx.svc.CreateOrganization(t.Context(), testOrg)
	if err != nil {
		t.Fatalf("CreateOrganization: %v", err)
	}
	fx.org = org
	return fx
}

// newEmptyFixture is a service on a fresh store with no organization; org is unset.
func newEmptyFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{
		path:      filepath.Join(t.TempDir(), "sortie.db"),
		clock:     newFakeClock(t0),
		masterKey: newMasterKey(t),
	}
	fx.st = openStore(t, fx.path)
	fx.svc = newService(t, fx.st, fx.config())
	return fx
}

func (fx *fixture) config() identity.Config { return testConfig(fx.clock, fx.masterKey) }

// adminRequest is a valid token request for the organization's admin credential.
func (fx *fixture) adminRequest() identity.TokenRequest {
	return identity.TokenRequest{
		GrantType:    identity.GrantClientCredentials,
		ClientID:     fx.org.Admin.ClientID,
		ClientSecret: fx.org.Secret,
	}
}

// adminPrincipal is the principal of a token issued to the admin credential at t0.
func (fx *fixture) adminPrincipal() identity.Principal {
	return identity.Principal{
		Type:      identity.PrincipalMachine,
		Subject:   fx.org.Admin.ClientID,
		Name:      "admin",
		OrgID:     fx.org.Organization.ID,
		OrgName:   testOrg,
		EnvID:     fx.org.Environment.ID,
		Roles:     []string{identity.RoleOrganizationAdmin},
		Scopes:    allScopes,
		ExpiresAt: t0.Add(testTTL),
		IssuedAt:  t0,
	}
}

// adminToken issues a token to the admin credential at the clock's current time.
func (fx *fixture) adminToken(t *testing.T) string {
	t.Helper()
	resp, oerr := fx.svc.Token(t.Context(), fx.adminRequest(), testAddr)
	if oerr != nil {
		t.Fatalf("Token: %v", oerr)
	}
	return resp.AccessToken
}

// kidOf returns the kid header of a compact JWS.
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	return tok.Headers[0].KeyID
}

// kids lists the key ids of a key set in order.
func kids(set jose.JSONWebKeySet) []string {
	out := []string{}
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}
