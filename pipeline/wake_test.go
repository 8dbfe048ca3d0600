package pipeline_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// replica is one engine of a pair sharing a Redis, each over its own connections, as two
// sortie-server processes would.
type replica struct {
	*testEngine
	reg *prometheus.Registry
}

// wakeupsReceived is how many hints from the other replica woke a pipeline r drives.
func (r replica) wakeupsReceived(t *testing.T) float64 {
	t.Helper()
	return r.counter(t, "sortie_pipeline_wakeups_received_total")
}

// counter reads one of r's counters.
func (r replica) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}

// runReplica runs an engine named holder on its own connections to the Redis at url
// (a cluster when cluster is set). notifier, if not nil, wraps the store's notifier.
func runReplica(t *testing.T, url string, cluster bool, sc *simCluster, sl *seal.Sealer, holder string, resync time.Duration,
	notifier func(*redisstore.Notifier) pipeline.Notifier) replica {
	t.Helper()
	open := redisstore.Open
	if cluster {
		open = redisstore.OpenCluster
	}
	st, err := open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var n pipeline.Notifier = st.Notifier(log)
	if notifier != nil {
		n = notifier(st.Notifier(log))
	}
	reg := prometheus.NewRegistry()
	e := pipeline.New(log, st, sc, sl, pipeline.Config{Holder: holder, Resync: resync, LeaseTTL: 2 * time.Second,
		Notifier: n, Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return replica{testEngine: &testEngine{Engine: e, st: st, sc: sc}, reg: reg}
}

// awaitWithin is await with a bound of d.
func (e *testEngine) awaitWithin(t *testing.T, d time.Duration, id, what string, cond func(*pipeline.View) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ch, err := e.Watch(ctx, tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	var last *pipeline.View
	for v := range ch {
		last = v
		if cond(v) {
			return
		}
	}
	got, _ := json.MarshalIndent(last, "", " ")
	t.Fatalf("pipeline %s did not get to %s within %s; last view:\n%s", id, what, d, got)
}

// An approval taken through the replica that does not drive the pipeline wakes the one that
// does: with a resync of a minute, the step clears within seconds, on one Redis and on a
// Redis Cluster.
func TestApprovalOnTheOtherReplicaWakesTheHolder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cluster bool
	}{{"redis", false}, {"cluster", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var url string
			if tc.cluster {
				url = redistest.NewCluster(t, 3).URL()
			} else {
				url = redistest.New(t).URL()
			}
			sc := newSimCluster(t, "prod-west")
			sl := newSealer(t)
			// Both scan once at start, before any pipeline exists, and not again for a minute:
			// a's local kicks drive the pipeline, and b holds nothing.
			a := runReplica(t, url, tc.cluster, sc, sl, "replica-a", time.Minute, nil)
			b := runReplica(t, url, tc.cluster, sc, sl, "replica-b", time.Minute, nil)
			a.deployed(t, "web")
			id := a.start(t, oneTarget("web", "nginx:2", weight(25), approval(), weight(75)))
			a.await(t, id, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))

			if n, err := b.Approve(context.Background(), tenant, id, "", admin); err != nil || n != 1 {
				t.Fatalf("approve through the other replica: %d %v", n, err)
			}
			a.awaitWithin(t, 10*time.Second, id, "SUCCEEDED", status(pipeline.Succeeded))
			if got := a.wakeupsReceived(t); got < 1 {
				t.Errorf("the holder received %v wake-ups, want the approval's", got)
			}
			if got := b.wakeupsReceived(t); got != 0 {
				t.Errorf("the replica holding nothing was woken %v times", got)
			}
			evs := events(t, a.testEngine, id)
			if n := count(evs, "rollout.promote", nil); n != 1 {
				t.Errorf("%d promotions, want 1", n)
			}
		})
	}
}

// deaf is a notifier whose subscription never works: every hint to its replica is lost.
type deaf struct{ *redisstore.Notifier }

func (deaf) Listen(ctx context.Context, _ func(store.PipelineRef, string), _ func()) { <-ctx.Done() }

// A hint lost because the holder's subscription is down costs only the resync: the
// approval through the other replica still takes effect.
func TestLostWakeUpCompletesAtResync(t *testing.T) {
	t.Parallel()
	url := redistest.New(t).URL()
	sc := newSimCluster(t, "prod-west")
	sl := newSealer(t)
	a := runReplica(t, url, false, sc, sl, "replica-a", 500*time.Millisecond,
		func(n *redisstore.Notifier) pipeline.Notifier { return deaf{n} })
	// b starts once a drives the pipeline, so that b never takes its lease.
	a.deployed(t, "web")
	id := a.start(t, oneTarget("web", "nginx:2", weight(25), approval(), weight(75)))
	a.await(t, id, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))
	b := runReplica(t, url, false, sc, sl, "replica-b", time.Minute, nil)

	if n, err := b.Approve(context.Background(), tenant, id, "", admin); err != nil || n != 1 {
		t.Fatalf("approve through the other replica: %d %v", n, err)
	}
	a.await(t, id, "SUCCEEDED", status(pipeline.Succeeded))
	if got := a.wakeupsReceived(t); got != 0 {
		t.Errorf("the deaf holder received %v wake-ups", got)
	}
	if got := b.counter(t, "sortie_pipeline_wakeups_unpublished_total"); got != 0 {
		t.Errorf("the other replica failed to publish %v wake-ups; the hint was to be lost by the subscriber", got)
	}
}
