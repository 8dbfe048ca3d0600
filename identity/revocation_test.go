package identity_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

// tokenFor issues a token to a credential created with roles in the fixture's organization.
func (fx *fixture) tokenFor(t *testing.T, name string, roles ...string) (clientID, token string) {
	t.Helper()
	cred, secret, err := fx.svc.CreateCredential(t.Context(), fx.adminPrincipal(), name, roles)
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	resp, oerr := fx.svc.Token(t.Context(), identity.TokenRequest{
		GrantType: identity.GrantClientCredentials, ClientID: cred.ClientID, ClientSecret: secret,
	}, testAddr)
	if oerr != nil {
		t.Fatalf("Token: %v", oerr)
	}
	return cred.ClientID, resp.AccessToken
}

// TestRevocationAcrossReplicas: two services on one store are two replicas. A change made on
// one takes effect there at once and on the other within the credential check TTL.
func TestRevocationAcrossReplicas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(t *testing.T, fx *fixture, clientID string)
		// wantScopes is what the token keeps after the change; nil means it is refused.
		wantScopes []string
		wantRoles  []string
	}{
		{
			name: "deleted credential",
			change: func(t *testing.T, fx *fixture, id string) {
				if err := fx.svc.DeleteCredential(t.Context(), fx.adminPrincipal(), id); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "roles reduced",
			change: func(t *testing.T, fx *fixture, id string) {
				if _, err := fx.svc.SetCredentialRoles(t.Context(), fx.adminPrincipal(), id, []string{identity.RoleRemoteNetworkAgent}); err != nil {
					t.Fatal(err)
				}
			},
			wantScopes: []string{identity.ScopeConnectAgentHub},
			wantRoles:  []string{identity.RoleRemoteNetworkAgent},
		},
		{
			name: "roles removed",
			change: func(t *testing.T, fx *fixture, id string) {
				if _, err := fx.svc.SetCredentialRoles(t.Context(), fx.adminPrincipal(), id, nil); err != nil {
					t.Fatal(err)
				}
			},
			wantScopes: []string{},
			wantRoles:  []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			other := newService(t, fx.st, fx.config())
			id, tok := fx.tokenFor(t, "ci", identity.RoleOrganizationAdmin, identity.RoleRemoteNetworkAgent)
			for _, svc := range []*identity.Service{fx.svc, other} {
				p, err := svc.Verify(t.Context(), tok)
				if err != nil || !p.HasScope(identity.ScopeManageTenant) {
					t.Fatalf("before the change: %v, scopes %v", err, p.Scopes)
				}
			}
			tt.change(t, fx, id)

			check := func(replica string, svc *identity.Service) {
				t.Helper()
				p, err := svc.Verify(t.Context(), tok)
				if tt.wantScopes == nil {
					if !errors.Is(err, identity.ErrInvalidToken) || !errors.Is(err, identity.ErrRevoked) {
						t.Errorf("%s: Verify = %v, want a revoked token", replica, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s: Verify: %v", replica, err)
				}
				if diff := cmp.Diff(tt.wantScopes, p.Scopes, equateEmpty); diff != "" {
					t.Errorf("%s: scopes (-want +got):\n%s", replica, diff)
				}
				if diff := cmp.Diff(tt.wantRoles, p.Roles, equateEmpty); diff != "" {
					t.Errorf("%s: roles (-want +got):\n%s", replica, diff)
				}
			}
			check("the replica that made the change", fx.svc)
			fx.clock.Advance(identity.DefaultCredentialCheckTTL)
			check("another replica, one TTL later", other)
		})
	}
}

// TestVerifyCachedTokenExpires: a token verified once is still refused once it expires, and
// a token whose credential was deleted is refused even while its signature is remembered.
func TestVerifyCachedTokenExpires(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	tok := fx.adminToken(t)
	p, err := fx.svc.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fx.adminPrincipal(), p, equateEmpty); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
	fx.clock.Advance(testTTL)
	if _, err := fx.svc.Verify(t.Context(), tok); !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("Verify at exp = %v, want ErrInvalidToken", err)
	}
	if _, err := fx.svc.Recheck(t.Context(), p); !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("Recheck at exp = %v, want ErrInvalidToken", err)
	}
}

// TestTokenRequestAfterRevocation: a token request trusts what a replica read of its
// credential no longer than a token check does: refused at once on the replica that deleted
// the credential, and within the credential check TTL on another that had just issued it a
// token, with roles changed there likewise.
func TestTokenRequestAfterRevocation(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	other := newService(t, fx.st, fx.config())
	cred, secret, err := fx.svc.CreateCredential(t.Context(), fx.adminPrincipal(), "ci", []string{identity.RoleOrganizationAdmin})
	if err != nil {
		t.Fatal(err)
	}
	request := func(svc *identity.Service) (identity.TokenResponse, *identity.OAuthError) {
		return svc.Token(t.Context(), identity.TokenRequest{
			GrantType: identity.GrantClientCredentials, ClientID: cred.ClientID, ClientSecret: secret,
		}, testAddr)
	}
	for _, svc := range []*identity.Service{fx.svc, other} {
		if _, oerr := request(svc); oerr != nil {
			t.Fatalf("before the change: %v", oerr)
		}
	}
	if _, err := fx.svc.SetCredentialRoles(t.Context(), fx.adminPrincipal(), cred.ClientID, []string{identity.RoleRemoteNetworkAgent}); err != nil {
		t.Fatal(err)
	}
	if resp, oerr := request(fx.svc); oerr != nil || resp.Scope != identity.ScopeConnectAgentHub {
		t.Errorf("this replica after the roles changed: %+v %v", resp, oerr)
	}
	fx.clock.Advance(identity.DefaultCredentialCheckTTL)
	if resp, oerr := request(other); oerr != nil || resp.Scope != identity.ScopeConnectAgentHub {
		t.Errorf("another replica one TTL after the roles changed: %+v %v", resp, oerr)
	}
	if err := fx.svc.DeleteCredential(t.Context(), fx.adminPrincipal(), cred.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, oerr := request(fx.svc); oerr == nil || oerr.Code != identity.OAuthInvalidClient {
		t.Errorf("this replica after the delete: %v, want invalid_client", oerr)
	}
	fx.clock.Advance(identity.DefaultCredentialCheckTTL)
	if _, oerr := request(other); oerr == nil || oerr.Code != identity.OAuthInvalidClient {
		t.Errorf("another replica one TTL after the delete: %v, want invalid_client", oerr)
	}
}
