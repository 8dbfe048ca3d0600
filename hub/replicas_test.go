package hub

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub/internal/bus"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
	"github.com/sortie-dev/sortie/hub/internal/presence"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redistest"
)

// replicaConfig is short enough for presence to expire quickly.
func replicaConfig(clock *fakeClock) Config {
	return Config{HeartbeatInterval: 300 * time.Millisecond, GracePeriod: time.Minute, CommandTimeout: 5 * time.Second, Now: clock.Now}
}

// nextEvent returns the next event, or fails after timeout.
func nextEvent(t testing.TB, events <-chan AgentEvent, timeout time.Duration) AgentEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(timeout):
		t.Fatal("no event in time")
	}
	return AgentEvent{}
}

// TestReplicas runs two hub replicas on one Redis: commands cross replicas, listings and
// inventory are shared, and a killed replica's agents vanish by themselves.
func TestReplicas(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	clock := newFakeClock()
	iss := newIssuer(t, time.Hour)
	rdbB := redisClient(t, rs.URL())
	a := startHub(t, iss, replicaConfig(clock), serverOptions{opts: []Option{WithRedis(redisClient(t, rs.URL()))}})
	b := startHub(t, iss, replicaConfig(clock), serverOptions{opts: []Option{WithRedis(rdbB)}})
	ctx := context.Background()

	edge := connectAgent(t, b, iss, tenantA, "edge", succeed) // held by B only
	connectAgent(t, a, iss, tenantA, "local", succeed)        // held by A
	mute := dial(t, b.URL, iss.token(t, tenantA), agentOptions{})
	mute.hello("mute")
	crashing := make(chan *hubv1.Command, 1)
	mute.serve(nil, b.hub.cfg.HeartbeatInterval/2, crashing)

	t.Run("command crosses replicas", func(t *testing.T) {
		cmd := &hubv1.Command{Id: "crossing", Action: listNamespaces().Action}
		res, err := a.hub.Send(ctx, tenantA, "edge", cmd)
		if err != nil || res.Outcome != hubv1.CommandResult_OUTCOME_SUCCEEDED || res.CommandId != cmd.Id {
			t.Fatalf("Send on A to an agent on B = %v, %v", res, err)
		}
		if n := a.metric(t, "sortie_hub_forwarded_commands_total", "direction", "sent"); n != 1 {
			t.Errorf("A forwarded %v commands, want 1", n)
		}
		if n := b.metric(t, "sortie_hub_forwarded_commands_total", "direction", "received"); n != 1 {
			t.Errorf("B received %v forwarded commands, want 1", n)
		}
		if _, err := a.hub.Send(ctx, tenantA, "nobody", listNamespaces()); !errors.Is(err, ErrNotConnected) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("Send to an agent on no replica: %v, want ErrNotConnected", err)
		}
		if _, err := a.hub.Send(ctx, tenantB, "edge", listNamespaces()); !errors.Is(err, ErrNotConnected) {
			t.Errorf("Send from tenant B to A's agent: %v, want ErrNotConnected", err)
		}
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		go func() { <-crashing }()
		if _, err := a.hub.Send(tctx, tenantA, "mute", listNamespaces()); !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("Send across replicas to a mute agent: %v, want ErrTimeout and ErrOutcomeUnknown", err)
		}
	})

	t.Run("stream lost across replicas", func(t *testing.T) {
		go func() {
			<-crashing
			mute.close()
		}()
		start := time.Now()
		if _, err := a.hub.Send(ctx, tenantA, "mute", listNamespaces()); !errors.Is(err, ErrStreamLost) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Send: %v, want ErrStreamLost and ErrOutcomeUnknown", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("ErrStreamLost after %v", d)
		}
		// The hub fails the stream's commands as soon as it starts closing the stream, and
		// removes its presence just after, so the listings catch up a moment later.
		for _, h := range []*Hub{a.hub, b.hub} {
			eventually(t, 5*time.Second, "mute gone from "+h.InstanceID(), func() bool {
				return len(agentsOf(t, h, tenantA, "mute")) == 0
			})
		}
	})

	t.Run("listings from both replicas", func(t *testing.T) {
		for _, h := range []*Hub{a.hub, b.hub} {
			agents := agentsOf(t, h, tenantA, "")
			var got []string
			for _, ag := range agents {
				got = append(got, ag.AgentIdentifier+"@"+ag.HubInstanceUUID)
			}
			if want := []string{"edge@" + b.hub.InstanceID(), "local@" + a.hub.InstanceID()}; !slices.Equal(got, want) {
				t.Errorf("Agents on %s = %v, want %v", h.InstanceID(), got, want)
			}
			// mute left: its account stays for the grace period.
			want := []Account{{Name: "edge", Connected: true}, {Name: "local", Connected: true}, {Name: "mute"}}
			if diff := cmp.Diff(want, accountsOf(t, h, tenantA)); diff != "" {
				t.Errorf("Accounts on %s (-want +got):\n%s", h.InstanceID(), diff)
			}
			if got := agentsOf(t, h, tenantB, ""); len(got) != 0 {
				t.Errorf("tenant B sees %+v", got)
			}
		}
	})

	t.Run("inventory shared", func(t *testing.T) {
		sendInventory(edge)
		eventually(t, 5*time.Second, "B's inventory on A", func() bool {
			ns, err := a.hub.Namespaces(ctx, tenantA, "edge")
			return err == nil && slices.Equal(ns, []string{"batch", "default", "web"})
		})
		if got := resourcesOf(t, a.hub, tenantA, "edge", "", "web"); !slices.Equal(got, []string{"Deployment web/api", "Service web/api"}) {
			t.Errorf("Resources on A = %v", got)
		}
		if _, err := a.hub.Namespaces(ctx, tenantB, "edge"); !errors.Is(err, ErrUnknownAccount) {
			t.Errorf("Namespaces from tenant B: %v, want ErrUnknownAccount", err)
		}
	})

	t.Run("replica killed", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		events, err := a.hub.WatchAgents(wctx, tenantA)
		if err != nil {
			t.Fatal(err)
		}
		initial := map[string]string{}
		for range 2 {
			ev := nextEvent(t, events, 5*time.Second)
			initial[ev.Agent.AgentIdentifier] = ev.Agent.StreamID
		}
		// B dies: no chance to clean up its presence in Redis.
		_ = rdbB.Close()
		b.srv.Close()
		b.shutdown(t)

		ev := nextEvent(t, events, 10*time.Second)
		if ev.Type != AgentDisconnected || ev.Agent.StreamID != initial["edge"] {
			t.Fatalf("event %v %+v, want edge's stream on B disconnected", ev.Type, ev.Agent)
		}
		if got := agentsOf(t, a.hub, tenantA, "edge"); len(got) != 0 {
			t.Fatalf("A still lists %+v", got)
		}
		// The agent comes back on A, with its inventory still there meanwhile.
		if got := namespacesOf(t, a.hub, tenantA, "edge"); len(got) != 3 {
			t.Errorf("Namespaces during the grace period = %v", got)
		}
		back := dial(t, a.URL, iss.token(t, tenantA), agentOptions{instance: edge.instance})
		back.hello("edge")
		back.serve(succeed, a.hub.cfg.HeartbeatInterval/2, nil)
		ev = nextEvent(t, events, 5*time.Second)
		if ev.Type != AgentConnected || ev.Agent.AgentIdentifier != "edge" || ev.Agent.HubInstanceUUID != a.hub.InstanceID() {
			t.Fatalf("event %v %+v, want edge connected on A", ev.Type, ev.Agent)
		}
		if _, err := a.hub.Send(ctx, tenantA, "edge", listNamespaces()); err != nil {
			t.Fatalf("Send after the agent moved: %v", err)
		}

		// Once the agent leaves for good, its account expires after the grace period.
		back.close()
		ev = nextEvent(t, events, 5*time.Second)
		if ev.Type != AgentDisconnected || ev.Agent.AgentIdentifier != "edge" {
			t.Fatalf("event %v %+v, want edge disconnected", ev.Type, ev.Agent)
		}
		clock.Advance(61 * time.Second)
		if diff := cmp.Diff([]Account{{Name: "local", Connected: true}}, accountsOf(t, a.hub, tenantA)); diff != "" {
			t.Errorf("Accounts after the grace period (-want +got):\n%s", diff)
		}
		if _, err := a.hub.Resources(ctx, tenantA, "edge", "", ""); !errors.Is(err, ErrUnknownAccount) {
			t.Errorf("Resources after the grace period: %v, want ErrUnknownAccount", err)
		}
	})
}

// TestReplicaTokenExpiry: a command sent on replica A while its agent, whose token expired
// on B, reconnects to A waits for it and is delivered.
func TestReplicaTokenExpiry(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	short := newIssuer(t, 2*time.Second)
	long := issuerOn(t, short.st, time.Hour)
	cfg := Config{HeartbeatInterval: time.Second}
	a := startHub(t, short, cfg, serverOptions{opts: []Option{WithRedis(redisClient(t, rs.URL()))}})
	b := startHub(t, short, cfg, serverOptions{opts: []Option{WithRedis(redisClient(t, rs.URL()))}})
	ag := dial(t, b.URL, short.token(t, tenantA), agentOptions{})
	ag.hello("roaming")
	ag.expectGoodbye(hubv1.Goodbye_REASON_TOKEN_EXPIRED, "token expired", connect.CodeUnauthenticated)
	done := make(chan error, 1)
	go func() {
		_, err := a.hub.Send(context.Background(), tenantA, "roaming", listNamespaces())
		done <- err
	}()
	eventually(t, 5*time.Second, "the command to wait on A", func() bool { return parked(a.hub, tenantA, "roaming") == 1 })
	back := dial(t, a.URL, long.token(t, tenantA), agentOptions{instance: ag.instance})
	back.hello("roaming")
	back.serve(succeed, 0, nil)
	if err := <-done; err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// TestRedisUnavailable: with Redis down, queries fail with store.ErrUnavailable and recover
// when it is back; local agents keep taking commands.
func TestRedisUnavailable(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 300 * time.Millisecond}, serverOptions{opts: []Option{WithRedis(redisClient(t, rs.URL()))}})
	ag := connectAgent(t, hs, iss, tenantA, "steady", succeed)
	sendInventory(ag)
	eventually(t, 5*time.Second, "the inventory", func() bool {
		ns, err := hs.hub.Namespaces(context.Background(), tenantA, "steady")
		return err == nil && len(ns) == 3
	})

	rs.Stop()
	for name, call := range map[string]func() error{
		"Agents":     func() error { _, err := hs.hub.Agents(context.Background(), tenantA, ""); return err },
		"Accounts":   func() error { _, err := hs.hub.Accounts(context.Background(), tenantA); return err },
		"Namespaces": func() error { _, err := hs.hub.Namespaces(context.Background(), tenantA, "steady"); return err },
		"Send remote": func() error {
			_, err := hs.hub.Send(context.Background(), tenantA, "elsewhere", listNamespaces())
			return err
		},
	} {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want store.ErrUnavailable", name, err)
		}
	}
	if _, err := hs.hub.Send(context.Background(), tenantA, "steady", listNamespaces()); err != nil {
		t.Errorf("Send to a local agent with Redis down: %v", err)
	}

	// Redis comes back empty; the refresh restores presence and inventory.
	rs.Start()
	eventually(t, 10*time.Second, "recovery", func() bool {
		ns, err := hs.hub.Namespaces(context.Background(), tenantA, "steady")
		return err == nil && len(ns) == 3
	})
	if got := agentsOf(t, hs.hub, tenantA, ""); len(got) != 1 {
		t.Errorf("Agents after recovery = %+v", got)
	}
}

// TestReplicasInMemory runs two replicas on the in-memory bus, presence and inventory: the
// routing code is the one that runs on Redis, so commands, inventory and changes cross
// replicas the same way.
func TestReplicasInMemory(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	iss := newIssuer(t, time.Hour)
	cfg := replicaConfig(clock)
	p := &countingPresence{Store: presence.NewMemory(3 * cfg.HeartbeatInterval)}
	b, i := bus.NewMemory(), &recordingInventory{Store: inventory.NewMemory()}
	a := startHub(t, iss, cfg, serverOptions{opts: []Option{withShared(b, p, i)}})
	bh := startHub(t, iss, cfg, serverOptions{opts: []Option{withShared(b, p, i)}})
	ctx := context.Background()
	sub := a.hub.Subscribe(tenantA, "edge", 0)
	defer sub.Close()

	edge := connectAgent(t, bh, iss, tenantA, "edge", succeed)
	lists, lookups := p.lists.Load(), p.lookups.Load()
	result, err := a.hub.Send(ctx, tenantA, "edge", &hubv1.Command{Id: "crossing", Action: listNamespaces().Action})
	if err != nil || result.CommandId != "crossing" {
		t.Fatalf("Send on A to an agent on B = %v, %v", result, err)
	}
	// A forwarded command looks up its agent's streams, never the tenant's.
	if n := p.lists.Load() - lists; n != 0 {
		t.Errorf("forwarding listed the tenant's presence %d times, want none", n)
	}
	if p.lookups.Load() == lookups {
		t.Error("forwarding never looked up the agent's streams")
	}
	if n := bh.metric(t, "sortie_hub_forwarded_commands_total", "direction", "received"); n != 1 {
		t.Errorf("B received %v forwarded commands, want 1", n)
	}
	edge.mustSend(delta([]*hubv1.Resource{res("apps/v1", "Deployment", "web", "api")}))
	expectChanges(t, sub, Change{Account: "edge", Ref: ref("apps/v1", "Deployment", "web", "api")})
	if _, err := a.hub.CachedObject(ctx, tenantA, "edge", ref("apps/v1", "Deployment", "web", "api")); err != nil {
		t.Errorf("CachedObject on A: %v", err)
	}
	if got := agentsOf(t, a.hub, tenantA, ""); len(got) != 1 || got[0].HubInstanceUUID != bh.hub.InstanceID() {
		t.Errorf("Agents on A = %+v, want edge on B", got)
	}
	// A read of one kind in one namespace asks the shared inventory for exactly that.
	got, err := a.hub.Resources(ctx, tenantA, "edge", "deployment", "web")
	if err != nil || len(got) != 1 || got[0].Ref.Name != "api" {
		t.Fatalf("Resources on A = %v, %v", got, err)
	}
	if f := i.lastFilter(); f != (inventory.Filter{Kind: "deployment", Namespace: "web"}) {
		t.Errorf("Resources read the inventory with filter %+v, want kind deployment in web", f)
	}
}

// countingPresence counts the reads of the tenant's whole presence and of one agent's.
type countingPresence struct {
	presence.Store
	lists, lookups atomic.Int64
}

func (c *countingPresence) List(ctx context.Context, t store.Tenant) (alive, expired []*replicationv1.AgentRecord, err error) {
	c.lists.Add(1)
	return c.Store.List(ctx, t)
}

func (c *countingPresence) Lookup(ctx context.Context, t store.Tenant, agent string) (alive, expired []*replicationv1.AgentRecord, err error) {
	c.lookups.Add(1)
	return c.Store.Lookup(ctx, t, agent)
}

// recordingInventory records the filter of the last List.
type recordingInventory struct {
	inventory.Store
	mu   sync.Mutex // guards last
	last inventory.Filter
}

func (r *recordingInventory) List(ctx context.Context, k inventory.Key, f inventory.Filter) ([]*hubv1.Resource, error) {
	r.mu.Lock()
	r.last = f
	r.mu.Unlock()
	return r.Store.List(ctx, k, f)
}

func (r *recordingInventory) lastFilter() inventory.Filter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}
