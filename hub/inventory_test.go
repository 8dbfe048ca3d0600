package hub

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
	"github.com/sortie-dev/sortie/store"
)

func res(apiVersion, kind, namespace, name string) *hubv1.Resource {
	return &hubv1.Resource{Ref: &hubv1.ObjectReference{ApiVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name},
		Uid: name + "-uid", ResourceVersion: "1",
		Object: []byte(`{"apiVersion":"` + apiVersion + `","kind":"` + kind + `","metadata":{"name":"` + name + `"}}`)}
}

func snapshot(id string, last bool, rs ...*hubv1.Resource) *hubv1.ConnectRequest {
	return &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventorySnapshot{InventorySnapshot: &hubv1.InventorySnapshot{
		SnapshotId: id, Resources: rs, Last: last}}}
}

func delta(upserts []*hubv1.Resource, deletions ...*hubv1.ObjectReference) *hubv1.ConnectRequest {
	return &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventoryDelta{InventoryDelta: &hubv1.InventoryDelta{
		Upserts: upserts, Deletions: deletions}}}
}

// names renders resources as "Kind namespace/name" for comparisons.
func names(rs []*hubv1.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Ref.Kind+" "+r.Ref.Namespace+"/"+r.Ref.Name)
	}
	return out
}

func namespacesOf(t testing.TB, h *Hub, tenant store.Tenant, account string) []string {
	t.Helper()
	ns, err := h.Namespaces(context.Background(), tenant, account)
	if err != nil {
		t.Fatalf("Namespaces: %v", err)
	}
	return ns
}

func resourcesOf(t testing.TB, h *Hub, tenant store.Tenant, account, kind, namespace string) []string {
	t.Helper()
	rs, err := h.Resources(context.Background(), tenant, account, kind, namespace)
	if err != nil {
		t.Fatalf("Resources: %v", err)
	}
	return names(rs)
}

func accountsOf(t testing.TB, h *Hub, tenant store.Tenant) []Account {
	t.Helper()
	a, err := h.Accounts(context.Background(), tenant)
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	return a
}

// sendInventory sends a first snapshot: namespaces default and web, a Deployment, a Service
// and a ReplicaSet in namespace batch (not listed itself), plus a Secret and an object that
// is a Secret under another kind, which must never be cached.
func sendInventory(a *testAgent) {
	disguised := res("v1", "ConfigMap", "web", "sneaky")
	disguised.Object = []byte(`{"apiVersion":"v1","kind":"Secret","data":{"password":"aHVudGVyMg=="}}`)
	a.mustSend(snapshot("s1", false, res("v1", "Namespace", "", "default"), res("v1", "Namespace", "", "web"),
		res("apps/v1", "Deployment", "web", "api"), res("v1", "Secret", "web", "creds")))
	a.mustSend(snapshot("s1", true, res("v1", "Service", "web", "api"), disguised, res("apps/v1", "ReplicaSet", "batch", "rs-1")))
}

func TestInventory(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second, GracePeriod: time.Minute, Now: clock.Now}, serverOptions{})
	h := hs.hub
	a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	a.hello("inv")
	sendInventory(a)

	eventually(t, 5*time.Second, "the snapshot", func() bool {
		return slices.Equal(namespacesOf(t, h, tenantA, "inv"), []string{"batch", "default", "web"})
	})
	all := resourcesOf(t, h, tenantA, "inv", "", "")
	if want := []string{"Deployment web/api", "Namespace /default", "Namespace /web", "ReplicaSet batch/rs-1", "Service web/api"}; !slices.Equal(all, want) {
		t.Fatalf("Resources = %v, want %v (no Secret)", all, want)
	}
	for _, tc := range []struct{ kind, namespace string }{{"Secret", ""}, {"ConfigMap", ""}, {"", "web"}} {
		for _, r := range resourcesOf(t, h, tenantA, "inv", tc.kind, tc.namespace) {
			if r == "Secret web/creds" || r == "ConfigMap web/sneaky" {
				t.Fatalf("a Secret was cached: %s", r)
			}
		}
	}
	if got := resourcesOf(t, h, tenantA, "inv", "deployment", ""); !slices.Equal(got, []string{"Deployment web/api"}) {
		t.Errorf("Resources(kind deployment) = %v", got)
	}
	if got := resourcesOf(t, h, tenantA, "inv", "", "web"); !slices.Equal(got, []string{"Deployment web/api", "Service web/api"}) {
		t.Errorf("Resources(namespace web) = %v", got)
	}
	full, err := h.Resources(context.Background(), tenantA, "inv", "Deployment", "web")
	if err != nil || len(full) != 1 || full[0].Uid != "api-uid" || len(full[0].Object) == 0 {
		t.Fatalf("Resources returned %v, %v; want the full object", full, err)
	}

	// Deltas upsert and delete; Secrets stay out.
	a.mustSend(delta([]*hubv1.Resource{res("apps/v1", "Deployment", "web", "worker"), res("v1", "Secret", "web", "token")},
		&hubv1.ObjectReference{ApiVersion: "v1", Kind: "Service", Namespace: "web", Name: "api"}))
	eventually(t, 5*time.Second, "the delta", func() bool {
		return slices.Equal(resourcesOf(t, h, tenantA, "inv", "", "web"), []string{"Deployment web/api", "Deployment web/worker"})
	})
	// A new snapshot replaces everything.
	a.mustSend(snapshot("s2", true, res("v1", "Namespace", "", "default")))
	eventually(t, 5*time.Second, "the second snapshot", func() bool {
		return slices.Equal(namespacesOf(t, h, tenantA, "inv"), []string{"default"})
	})

	// After the last stream closes, the account and its inventory stay for the grace period.
	a.close()
	eventually(t, 5*time.Second, "the agent to leave", func() bool { return len(agentsOf(t, h, tenantA, "")) == 0 })
	if diff := cmp.Diff([]Account{{Name: "inv", Connected: false}}, accountsOf(t, h, tenantA)); diff != "" {
		t.Fatalf("Accounts within the grace period (-want +got):\n%s", diff)
	}
	clock.Advance(59 * time.Second)
	if got := namespacesOf(t, h, tenantA, "inv"); !slices.Equal(got, []string{"default"}) {
		t.Fatalf("Namespaces within the grace period = %v", got)
	}
	clock.Advance(2 * time.Second)
	if got := accountsOf(t, h, tenantA); len(got) != 0 {
		t.Errorf("Accounts after the grace period = %v, want none", got)
	}
	_, err = h.Namespaces(context.Background(), tenantA, "inv")
	if !errors.Is(err, ErrUnknownAccount) || err.Error() != "account 'inv' does not exist" {
		t.Errorf("Namespaces after the grace period: %v, want ErrUnknownAccount reading \"account 'inv' does not exist\"", err)
	}
	if _, err := h.Resources(context.Background(), tenantA, "inv", "", ""); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Resources after the grace period: %v, want ErrUnknownAccount", err)
	}
	h.sweep()
	if got, _ := h.shared.List(context.Background(), inventory.Key{Tenant: tenantA, Account: "inv"}, inventory.Filter{}); len(got) != 0 {
		t.Errorf("inventory still held in memory after the sweep: %v", names(got))
	}
}

// TestTenantIsolation: an agent of tenant A is invisible to tenant B in every method.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	h := hs.hub
	ctx := context.Background()
	watchB, err := h.WatchAgents(ctx, tenantB)
	if err != nil {
		t.Fatal(err)
	}

	a := connectAgent(t, hs, iss, tenantA, "cluster", func(c *hubv1.Command) *hubv1.CommandResult {
		r := succeed(c)
		r.GetNamespaces().Names = []string{"tenant-a"}
		return r
	})
	sendInventory(a)
	eventually(t, 5*time.Second, "A's inventory", func() bool { return len(namespacesOf(t, h, tenantA, "cluster")) == 3 })

	if got := agentsOf(t, h, tenantB, ""); len(got) != 0 {
		t.Errorf("Agents(B) = %+v", got)
	}
	if got := agentsOf(t, h, tenantB, "cluster"); len(got) != 0 {
		t.Errorf("Agents(B, cluster) = %+v", got)
	}
	if got := accountsOf(t, h, tenantB); len(got) != 0 {
		t.Errorf("Accounts(B) = %+v", got)
	}
	if _, err := h.Namespaces(ctx, tenantB, "cluster"); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Namespaces(B): %v, want ErrUnknownAccount", err)
	}
	if _, err := h.Resources(ctx, tenantB, "cluster", "", ""); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Resources(B): %v, want ErrUnknownAccount", err)
	}
	if _, err := h.Send(ctx, tenantB, "cluster", listNamespaces()); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Send(B): %v, want ErrNotConnected", err)
	}

	// B's own agent of the same name is B's alone; B's watcher saw nothing of A.
	connectAgent(t, hs, iss, tenantB, "cluster", func(c *hubv1.Command) *hubv1.CommandResult {
		r := succeed(c)
		r.GetNamespaces().Names = []string{"tenant-b"}
		return r
	})
	select {
	case ev := <-watchB:
		if ev.Type != AgentConnected || ev.Agent.EnvID != tenantB.EnvID {
			t.Fatalf("B's watcher got %+v, want B's own agent first", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("B's watcher got nothing")
	}
	for tenant, want := range map[store.Tenant]string{tenantA: "tenant-a", tenantB: "tenant-b"} {
		r, err := h.Send(ctx, tenant, "cluster", listNamespaces())
		if err != nil || r.GetNamespaces().Names[0] != want {
			t.Errorf("Send(%v) answered by %v, %v; want %s", tenant, r, err, want)
		}
	}
	if _, err := h.Namespaces(ctx, tenantB, "cluster"); err != nil {
		t.Errorf("Namespaces(B) with B's agent connected: %v", err)
	}
	if got := namespacesOf(t, h, tenantB, "cluster"); len(got) != 0 {
		t.Errorf("Namespaces(B) = %v; B's agent sent no inventory", got)
	}
}

func TestWatchAgents(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	x := connectAgent(t, hs, iss, tenantA, "x", succeed)
	ctx, cancel := context.WithCancel(context.Background())
	events, err := hs.hub.WatchAgents(ctx, tenantA)
	if err != nil {
		t.Fatal(err)
	}
	next := func() AgentEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return AgentEvent{}
	}
	ignore := cmpopts.IgnoreFields(Agent{}, "ConnectedAt", "LastHeartbeatAt", "StreamID", "AgentInstanceUUID")
	want := func(typ AgentEventType, id string) AgentEvent {
		return AgentEvent{Type: typ, Agent: Agent{AgentIdentifier: id, AgentVersion: "1.2.3", ClientID: "client-" + tenantA.EnvID,
			OrgID: tenantA.OrgID, EnvID: tenantA.EnvID, HubInstanceUUID: hs.hub.InstanceID(), IPAddress: "127.0.0.1",
			NodeIP: "10.0.0.7", K8sClusterRoleSupport: true, KubernetesVersion: "v1.37.2"}}
	}
	if diff := cmp.Diff(want(AgentConnected, "x"), next(), ignore); diff != "" {
		t.Fatalf("first event (-want +got):\n%s", diff)
	}
	connectAgent(t, hs, iss, tenantA, "y", succeed)
	if diff := cmp.Diff(want(AgentConnected, "y"), next(), ignore); diff != "" {
		t.Fatalf("second event (-want +got):\n%s", diff)
	}
	x.close()
	if diff := cmp.Diff(want(AgentDisconnected, "x"), next(), ignore); diff != "" {
		t.Fatalf("third event (-want +got):\n%s", diff)
	}
	cancel()
	for range events {
	}
}
