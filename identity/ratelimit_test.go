package identity_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// The token endpoint's failure limits (identity.go): per client id from one address and per
// address, in fixed one-minute windows.
const (
	clientFailures  = 10
	addressFailures = 30
	failureWindow   = time.Minute
)

func slowDown(retryAfter int) *identity.OAuthError {
	return &identity.OAuthError{Status: 429, Code: identity.OAuthSlowDown,
		Description: "too many failed attempts; retry later", RetryAfterSeconds: retryAfter}
}

// tokenErrors runs the requests from addr and returns their errors (nil for success).
func tokenErrors(t *testing.T, svc *identity.Service, addr string, reqs ...identity.TokenRequest) []*identity.OAuthError {
	t.Helper()
	out := make([]*identity.OAuthError, len(reqs))
	for i, req := range reqs {
		_, out[i] = svc.Token(t.Context(), req, addr)
	}
	return out
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestTokenRateLimitPerClient(t *testing.T) {
	t.Parallel()
	authFailed := invalidClient("client authentication failed", false)
	tests := []struct {
		name  string
		known bool
	}{
		// Both rows expect the same replies: the limiter is no oracle for which ids exist.
		{name: "known client id", known: true},
		{name: "unknown client id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			good := fx.adminRequest()
			if !tt.known {
				good.ClientID = "nosuchclientidxxxxxxxxxxxx"
			}
			bad := good
			bad.ClientSecret = "wrong"

			got := tokenErrors(t, fx.svc, testAddr, repeat(bad, clientFailures)...)
			if diff := cmp.Diff(repeat(authFailed, clientFailures), got); diff != "" {
				t.Fatalf("failed attempts mismatch (-want +got):\n%s", diff)
			}

			steps := []struct {
				name    string
				advance time.Duration
				req     identity.TokenRequest
				wantErr *identity.OAuthError
			}{
				{name: "right secret is refused once blocked", req: good, wantErr: slowDown(61)},
				{name: "wrong secret is refused once blocked", req: bad, wantErr: slowDown(61)},
				{name: "still blocked at the end of the window", advance: failureWindow - time.Second, req: good, wantErr: slowDown(2)},
				{name: "unblocked when the window has passed", advance: time.Second, req: good, wantErr: map[bool]*identity.OAuthError{true: nil, false: authFailed}[tt.known]},
			}
			for _, step := range steps {
				fx.clock.Advance(step.advance)
				if diff := cmp.Diff([]*identity.OAuthError{step.wantErr}, tokenErrors(t, fx.svc, testAddr, step.req)); diff != "" {
					t.Errorf("%s: mismatch (-want +got):\n%s", step.name, diff)
				}
			}
		})
	}
}

func TestTokenRateLimitOtherClientUnaffected(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	second, secret2, err := fx.svc.CreateCredential(t.Context(), fx.adminPrincipal(), "second", []string{identity.RoleDeploymentsFullAccess})
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	bad := fx.adminRequest()
	bad.ClientSecret = "wrong"
	tokenErrors(t, fx.svc, testAddr, repeat(bad, clientFailures)...)
	other := identity.TokenRequest{GrantType: identity.GrantClientCredentials, ClientID: second.ClientID, ClientSecret: secret2}
	got := tokenErrors(t, fx.svc, testAddr, fx.adminRequest(), other)
	if diff := cmp.Diff([]*identity.OAuthError{slowDown(61), nil}, got); diff != "" {
		t.Errorf("blocked admin, then another client from the same address: mismatch (-want +got):\n%s", diff)
	}
}

func TestTokenRateLimitPerAddress(t *testing.T) {
	t.Parallel()
	const attacker, bystander = "192.0.2.1", "192.0.2.2"
	fx := newFixture(t)
	var reqs []identity.TokenRequest
	for i := range addressFailures {
		reqs = append(reqs, identity.TokenRequest{GrantType: identity.GrantClientCredentials,
			ClientID: fmt.Sprintf("unknownclient%02d", i), ClientSecret: "guess"})
	}
	got := tokenErrors(t, fx.svc, attacker, reqs...)
	if diff := cmp.Diff(repeat(invalidClient("client authentication failed", false), addressFailures), got); diff != "" {
		t.Fatalf("failed attempts mismatch (-want +got):\n%s", diff)
	}

	steps := []struct {
		name    string
		advance time.Duration
		addr    string
		wantErr *identity.OAuthError
	}{
		{name: "valid credential from the blocked address", addr: attacker, wantErr: slowDown(61)},
		{name: "valid credential from another address", addr: bystander},
		{name: "blocked address still blocked at the end of the window", advance: failureWindow - time.Second, addr: attacker, wantErr: slowDown(2)},
		{name: "blocked address unblocked when the window has passed", advance: time.Second, addr: attacker},
	}
	for _, step := range steps {
		fx.clock.Advance(step.advance)
		if diff := cmp.Diff([]*identity.OAuthError{step.wantErr}, tokenErrors(t, fx.svc, step.addr, fx.adminRequest())); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", step.name, diff)
		}
	}
}

// TestTokenRateLimitNoLockoutFromElsewhere: an attacker failing on purpose for a client id
// blocks only itself; the client calling from its own address still gets tokens.
func TestTokenRateLimitNoLockoutFromElsewhere(t *testing.T) {
	t.Parallel()
	const attacker = "192.0.2.66"
	fx := newFixture(t)
	bad := fx.adminRequest()
	bad.ClientSecret = "wrong"
	tokenErrors(t, fx.svc, attacker, repeat(bad, clientFailures)...)
	got := tokenErrors(t, fx.svc, attacker, fx.adminRequest())
	got = append(got, tokenErrors(t, fx.svc, testAddr, fx.adminRequest())...)
	if diff := cmp.Diff([]*identity.OAuthError{slowDown(61), nil}, got); diff != "" {
		t.Errorf("the attacker's address, then the client's own: mismatch (-want +got):\n%s", diff)
	}
}

// TestTokenRateLimitSharedAcrossReplicas: on a shared Redis, failures on two replicas add
// up, so spreading attempts over replicas gains nothing.
func TestTokenRateLimitSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := redistest.New(t).URL()
	clock := newFakeClock(t0)
	masterKey := newMasterKey(t)
	var replicas []*identity.Service
	for range 2 {
		st, err := redisstore.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		replicas = append(replicas, newService(t, st, testConfig(clock, masterKey)))
	}
	org, err := replicas[0].CreateOrganization(t.Context(), testOrg)
	if err != nil {
		t.Fatal(err)
	}
	good := identity.TokenRequest{GrantType: identity.GrantClientCredentials, ClientID: org.Admin.ClientID, ClientSecret: org.Secret}
	bad := good
	bad.ClientSecret = "wrong"
	for i := range clientFailures {
		tokenErrors(t, replicas[i%2], testAddr, bad)
	}
	for i, svc := range replicas {
		got := tokenErrors(t, svc, testAddr, good)
		if len(got) != 1 || got[0] == nil || got[0].Code != identity.OAuthSlowDown || got[0].RetryAfterSeconds < 1 || got[0].RetryAfterSeconds > 61 {
			t.Errorf("replica %d after %d failures spread over both: %+v, want slow_down", i, clientFailures, got)
		}
	}
	if got := tokenErrors(t, replicas[1], "192.0.2.7", good); got[0] != nil {
		t.Errorf("the client from another address: %v", got[0])
	}
}

// TestTokenStoreDown: when the shared store cannot be read, the token endpoint refuses with
// 503 before checking any secret, the right one included.
func TestTokenStoreDown(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	st, err := redisstore.Open(t.Context(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := newService(t, st, testConfig(newFakeClock(t0), newMasterKey(t)))
	org, err := svc.CreateOrganization(t.Context(), testOrg)
	if err != nil {
		t.Fatal(err)
	}
	good := identity.TokenRequest{GrantType: identity.GrantClientCredentials, ClientID: org.Admin.ClientID, ClientSecret: org.Secret}
	bad := good
	bad.ClientSecret = "wrong"
	srv.Stop()
	unavailable := &identity.OAuthError{Status: 503, Code: identity.OAuthTemporarilyUnavailable,
		Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
	if diff := cmp.Diff([]*identity.OAuthError{unavailable, unavailable}, tokenErrors(t, svc, testAddr, good, bad)); diff != "" {
		t.Errorf("store down: mismatch (-want +got):\n%s", diff)
	}
}
