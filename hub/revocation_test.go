package hub

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// TestCredentialRevoked: with the identity service as the checker, deleting a stream's
// credential or taking scope connect:agentHub from it ends the stream with Goodbye
// CREDENTIAL_REVOKED, while the token is still valid; another tenant's stream stays.
func TestCredentialRevoked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{opts: []Option{WithCredentialCheck(iss.svc, 50*time.Millisecond)}})
	credential := func(tenant store.Tenant) string {
		id := "client-" + tenant.EnvID // the subject of iss.token's tokens
		if err := iss.st.CreateCredential(ctx, store.Credential{ClientID: id, Tenant: tenant, Name: "agent",
			Roles: []string{identity.RoleRemoteNetworkAgent}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	idA := credential(tenantA)
	credential(tenantB)
	connectAgent(t, hs, iss, tenantB, "other-tenant", succeed)

	t.Run("deleted", func(t *testing.T) {
		a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
		a.hello("deleted")
		a.startReading()
		if err := iss.st.DeleteCredential(ctx, tenantA, idA); err != nil {
			t.Fatal(err)
		}
		a.expectGoodbye(hubv1.Goodbye_REASON_CREDENTIAL_REVOKED, "the stream's credential was deleted", connect.CodeUnauthenticated)
	})
	t.Run("scope removed", func(t *testing.T) {
		tenant := store.Tenant{OrgID: tenantA.OrgID, EnvID: "c"}
		id := credential(tenant)
		a := dial(t, hs.URL, iss.token(t, tenant), agentOptions{})
		a.hello("demoted")
		a.startReading()
		if _, err := iss.st.SetCredentialRoles(ctx, tenant, id, []string{identity.RoleDeploymentsFullAccess}); err != nil {
			t.Fatal(err)
		}
		a.expectGoodbye(hubv1.Goodbye_REASON_CREDENTIAL_REVOKED, "no longer has scope connect:agentHub", connect.CodeUnauthenticated)
	})
	if res, err := hs.hub.Send(ctx, tenantB, "other-tenant", listNamespaces()); err != nil || res.Outcome != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("Send to the other tenant's agent after the revocations: %v, %v", res, err)
	}
}

// flakyChecker fails every check as an unreachable store would, and counts them.
type flakyChecker struct{ checks atomic.Int32 }

func (c *flakyChecker) Recheck(context.Context, identity.Principal) (identity.Principal, error) {
	c.checks.Add(1)
	return identity.Principal{}, fmt.Errorf("read credential: %w", store.ErrUnavailable)
}

// TestCredentialCheckOutage: a check that cannot read the credential leaves the stream open.
func TestCredentialCheckOutage(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	checker := &flakyChecker{}
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{opts: []Option{WithCredentialCheck(checker, 20*time.Millisecond)}})
	connectAgent(t, hs, iss, tenantA, "edge", succeed)
	eventually(t, 10*time.Second, "three failed credential checks", func() bool { return checker.checks.Load() >= 3 })
	res, err := hs.hub.Send(context.Background(), tenantA, "edge", listNamespaces())
	if err != nil || res.Outcome != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("Send after failed credential checks (the stream must stay): %v, %v", res, err)
	}
}
