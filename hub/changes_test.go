package hub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redistest"
)

func ref(apiVersion, kind, namespace, name string) *hubv1.ObjectReference {
	return &hubv1.ObjectReference{ApiVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name}
}

func resourceEvent(typ hubv1.ResourceEvent_Type, r *hubv1.Resource) *hubv1.ConnectRequest {
	return &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_ResourceEvent{ResourceEvent: &hubv1.ResourceEvent{
		WatchId: "w", Type: typ, Resource: r}}}
}

// nextChange returns the next change of sub, or fails after timeout.
func nextChange(t testing.TB, sub *Subscription, timeout time.Duration) Change {
	t.Helper()
	select {
	case c, ok := <-sub.C():
		if !ok {
			t.Fatal("subscription channel closed")
		}
		return c
	case <-time.After(timeout):
		t.Fatal("no change in time")
	}
	return Change{}
}

// expectChanges reads len(want) changes of sub and compares them with want.
func expectChanges(t testing.TB, sub *Subscription, want ...Change) {
	t.Helper()
	got := make([]Change, 0, len(want))
	for range want {
		got = append(got, nextChange(t, sub, 5*time.Second))
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
}

// expectNoMore closes sub and fails if anything else was queued.
func expectNoMore(t testing.TB, sub *Subscription) {
	t.Helper()
	sub.Close()
	for c := range sub.C() {
		t.Errorf("unexpected change %+v", c)
	}
}

// TestSubscribe: every inventory change an agent reports reaches the subscribers of its
// tenant and account, and nobody else's.
func TestSubscribe(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	edgeSub := hs.hub.Subscribe(tenantA, "edge", 0)
	allSub := hs.hub.Subscribe(tenantA, "", 0)
	otherSub := hs.hub.Subscribe(tenantA, "other", 0)
	tenantBSub := hs.hub.Subscribe(tenantB, "", 0)
	defer tenantBSub.Close()

	edge := connectAgent(t, hs, iss, tenantA, "edge", succeed)
	sendInventory(edge)
	expectChanges(t, edgeSub, Change{Account: "edge", Resync: true})
	expectChanges(t, allSub, Change{Account: "edge", Resync: true})

	// Secrets never become changes; invalid refs neither.
	edge.mustSend(delta([]*hubv1.Resource{res("apps/v1", "Deployment", "web", "new"), res("v1", "Secret", "web", "pw")},
		ref("apps/v1", "Deployment", "web", "api"), ref("", "Deployment", "web", "nameless-version")))
	want := []Change{
		{Account: "edge", Ref: ref("apps/v1", "Deployment", "web", "new")},
		{Account: "edge", Ref: ref("apps/v1", "Deployment", "web", "api"), Deleted: true},
	}
	expectChanges(t, edgeSub, want...)
	expectChanges(t, allSub, want...)

	// A watch's events change the cache too.
	rollout := res("argoproj.io/v1alpha1", "Rollout", "web", "api")
	rollout.ResourceVersion = "7"
	edge.mustSend(resourceEvent(hubv1.ResourceEvent_TYPE_MODIFIED, rollout))
	edge.mustSend(resourceEvent(hubv1.ResourceEvent_TYPE_DELETED, res("v1", "Service", "web", "api")))
	want = []Change{
		{Account: "edge", Ref: rollout.Ref},
		{Account: "edge", Ref: ref("v1", "Service", "web", "api"), Deleted: true},
	}
	expectChanges(t, edgeSub, want...)
	expectChanges(t, allSub, want...)
	got, err := hs.hub.CachedObject(context.Background(), tenantA, "edge", rollout.Ref)
	if err != nil {
		t.Fatalf("CachedObject of the watched Rollout: %v", err)
	}
	if diff := cmp.Diff(rollout, got, protocmp.Transform()); diff != "" {
		t.Errorf("CachedObject (-want +got):\n%s", diff)
	}

	// The other account's subscriber, and the other tenant's, saw none of that: their first
	// change is their own.
	other := connectAgent(t, hs, iss, tenantA, "other", succeed)
	other.mustSend(delta([]*hubv1.Resource{res("v1", "Namespace", "", "mine")}))
	expectChanges(t, otherSub, Change{Account: "other", Ref: ref("v1", "Namespace", "", "mine")})
	expectChanges(t, allSub, Change{Account: "other", Ref: ref("v1", "Namespace", "", "mine")})
	b := connectAgent(t, hs, iss, tenantB, "edge", succeed)
	b.mustSend(delta([]*hubv1.Resource{res("v1", "Namespace", "", "b")}))
	expectChanges(t, tenantBSub, Change{Account: "edge", Ref: ref("v1", "Namespace", "", "b")})
	expectNoMore(t, edgeSub)
	expectNoMore(t, otherSub)
	expectNoMore(t, allSub)

	edgeSub.Close() // closing twice is harmless
}

// TestSubscribeOverflow: a subscriber that does not keep up never holds up the agent's
// stream; it gets one Resync in place of what it missed, then changes again.
func TestSubscribeOverflow(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	slow := hs.hub.Subscribe(tenantA, "edge", 2)
	barrier := hs.hub.Subscribe(tenantA, "edge", 100)
	defer barrier.Close()
	edge := connectAgent(t, hs, iss, tenantA, "edge", succeed)

	var burst []*hubv1.Resource
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		burst = append(burst, res("v1", "Namespace", "", name))
	}
	edge.mustSend(delta(burst))
	for range burst {
		nextChange(t, barrier, 5*time.Second)
	}
	edge.mustSend(delta([]*hubv1.Resource{res("v1", "Namespace", "", "after")}))
	expectChanges(t, barrier, Change{Account: "edge", Ref: ref("v1", "Namespace", "", "after")})
	// The agent's stream kept going: a command still goes through.
	if _, err := hs.hub.Send(context.Background(), tenantA, "edge", listNamespaces()); err != nil {
		t.Fatalf("Send while a subscriber lags: %v", err)
	}
	expectChanges(t, slow, Change{Account: "edge", Resync: true}, Change{Account: "edge", Ref: ref("v1", "Namespace", "", "after")})
	expectNoMore(t, slow)
	if n := hs.metric(t, "sortie_hub_subscription_overflows_total"); n != 1 {
		t.Errorf("overflows counted: %v, want 1", n)
	}
}

// TestSubscribeAcrossReplicas: a subscriber on replica A hears of the changes of an agent
// held by replica B, reads the objects on A, and gets a Resync when A's Redis
// subscription breaks.
func TestSubscribeAcrossReplicas(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	clock := newFakeClock()
	iss := newIssuer(t, time.Hour)
	rdbA := redisClient(t, rs.URL())
	a := startHub(t, iss, replicaConfig(clock), serverOptions{opts: []Option{WithRedis(rdbA)}})
	b := startHub(t, iss, replicaConfig(clock), serverOptions{opts: []Option{WithRedis(redisClient(t, rs.URL()))}})
	ctx := context.Background()
	sub := a.hub.Subscribe(tenantA, "edge", 0)
	defer sub.Close()
	subB := a.hub.Subscribe(tenantB, "", 0)
	defer subB.Close()

	edge := connectAgent(t, b, iss, tenantA, "edge", succeed)
	sendInventory(edge)
	expectChanges(t, sub, Change{Account: "edge", Resync: true})
	if _, err := a.hub.CachedObject(ctx, tenantA, "edge", ref("apps/v1", "Deployment", "web", "api")); err != nil {
		t.Fatalf("CachedObject on A after the snapshot on B: %v", err)
	}

	changed := res("apps/v1", "Deployment", "web", "api")
	changed.ResourceVersion = "2"
	edge.mustSend(delta([]*hubv1.Resource{changed}, ref("v1", "Service", "web", "api")))
	expectChanges(t, sub,
		Change{Account: "edge", Ref: changed.Ref},
		Change{Account: "edge", Ref: ref("v1", "Service", "web", "api"), Deleted: true})
	got, err := a.hub.CachedObject(ctx, tenantA, "edge", changed.Ref)
	if err != nil || got.ResourceVersion != "2" {
		t.Fatalf("CachedObject on A after the delta on B = %v, %v; want resource version 2", got, err)
	}

	// Redis drops A's subscription: A's subscriber may have missed changes.
	if err := rdbA.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	expectChanges(t, sub, Change{Account: "edge", Resync: true})
	expectChanges(t, subB, Change{Resync: true})

	// And changes flow again after.
	edge.mustSend(delta(nil, ref("apps/v1", "Deployment", "web", "api")))
	expectChanges(t, sub, Change{Account: "edge", Ref: ref("apps/v1", "Deployment", "web", "api"), Deleted: true})
}

// TestCachedObject reads single objects from the cache, in memory and in Redis.
func TestCachedObject(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	iss := newIssuer(t, time.Hour)
	for name, opts := range map[string][]Option{
		"memory": nil,
		"redis":  {WithRedis(redisClient(t, rs.URL()))},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{opts: opts})
			ctx := context.Background()
			sub := hs.hub.Subscribe(tenantA, "cached-"+name, 0)
			defer sub.Close()
			edge := connectAgent(t, hs, iss, tenantA, "cached-"+name, succeed)
			sendInventory(edge)
			expectChanges(t, sub, Change{Account: "cached-" + name, Resync: true})

			api := ref("apps/v1", "Deployment", "web", "api")
			got, err := hs.hub.CachedObject(ctx, tenantA, "cached-"+name, api)
			if err != nil {
				t.Fatalf("CachedObject: %v", err)
			}
			if diff := cmp.Diff(res("apps/v1", "Deployment", "web", "api"), got, protocmp.Transform()); diff != "" {
				t.Errorf("CachedObject (-want +got):\n%s", diff)
			}
			// The caller owns the result.
			got.Ref.Name, got.Object = "mangled", nil
			again, err := hs.hub.CachedObject(ctx, tenantA, "cached-"+name, api)
			if err != nil || again.Ref.Name != "api" || len(again.Object) == 0 {
				t.Errorf("CachedObject after the caller changed its copy = %v, %v", again, err)
			}

			for _, tc := range []struct {
				name    string
				tenant  store.Tenant
				account string
				ref     *hubv1.ObjectReference
				is      error
				msg     string
			}{
				{"missing object", tenantA, "cached-" + name, ref("apps/v1", "Deployment", "web", "nope"), ErrObjectNotCached,
					`Deployment "web/nope" (apps/v1) is not in the inventory of account 'cached-` + name + `'`},
				{"secret", tenantA, "cached-" + name, ref("v1", "Secret", "web", "creds"), ErrObjectNotCached, ""},
				{"disguised secret", tenantA, "cached-" + name, ref("v1", "ConfigMap", "web", "sneaky"), ErrObjectNotCached, ""},
				{"other api version", tenantA, "cached-" + name, ref("apps/v1beta1", "Deployment", "web", "api"), ErrObjectNotCached, ""},
				{"unknown account", tenantA, "ghost", api, ErrUnknownAccount, "account 'ghost' does not exist"},
				{"other tenant", tenantB, "cached-" + name, api, ErrUnknownAccount, ""},
				{"invalid account", tenantA, "not valid!", api, ErrUnknownAccount, ""},
				{"no kind", tenantA, "cached-" + name, ref("v1", "", "web", "api"), ErrInvalidReference,
					"object reference needs api_version, kind and name: invalid object reference"},
				{"nil ref", tenantA, "cached-" + name, nil, ErrInvalidReference, ""},
			} {
				r, err := hs.hub.CachedObject(ctx, tc.tenant, tc.account, tc.ref)
				if r != nil || !errors.Is(err, tc.is) {
					t.Errorf("%s: CachedObject = %v, %v; want %v", tc.name, r, err, tc.is)
					continue
				}
				if tc.msg != "" && err.Error() != tc.msg {
					t.Errorf("%s: error reads %q, want %q", tc.name, err, tc.msg)
				}
			}

			// A deletion removes it.
			edge.mustSend(delta(nil, api))
			expectChanges(t, sub, Change{Account: "cached-" + name, Ref: api, Deleted: true})
			if _, err := hs.hub.CachedObject(ctx, tenantA, "cached-"+name, api); !errors.Is(err, ErrObjectNotCached) {
				t.Errorf("CachedObject after the deletion: %v, want ErrObjectNotCached", err)
			}
		})
	}
}
