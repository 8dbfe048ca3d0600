package pipelines_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
)

var latencyJSON = flag.String("benchjson", "", "write BenchmarkLatency's results as JSON to this file")

// latencyRuns numbers the applications of every BenchmarkLatency invocation (the benchmark
// runs once with b.N=1, then with the asked count, in the same cluster).
var latencyRuns atomic.Int64

// BenchmarkLatency measures, on the real cluster with the Argo Rollouts controller and a
// real sortie-agent, two latencies of quality.md (absolute, no baseline):
//
//   - start: from sending POST /pipelines/kubernetes of a new application until the cluster's
//     watch delivers the Rollout's creation (the engine reconciled, the agent applied);
//   - approval: from sending POST /pipelines/{id}/approve of a second version paused at an
//     indefinite pause until the cluster's watch delivers the Rollout without pause
//     conditions (the engine promoted, the agent patched its status).
//
// Each of the b.N runs deploys a new application twice (the first version skips its steps,
// the second, [setWeight 25, approval], stops at the approval) and waits for both pipelines
// to succeed. It reports p50 and p99 of both in milliseconds, and writes them as JSON with
// -benchjson.
func BenchmarkLatency(b *testing.B) {
	e := newEnv(b, sortie.ServerConfig{})
	const account = "latency-cluster"
	e.agent(b, e.srv.URL, account)
	ns := fmt.Sprintf("latency-%d", latencyRuns.Add(1))
	rollouts := kubeClient(b).Resource(rolloutsGVR).Namespace(ns)
	ctx := context.Background()

	// watchFor watches app's Rollout from resource version rv (empty: from now) and returns
	// once an event satisfies cond, or fails after a minute.
	watchFor := func(app, rv, what string, start func(), cond func(watch.EventType, *unstructured.Unstructured) bool) time.Duration {
		b.Helper()
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		w, err := rollouts.Watch(wctx, metav1.ListOptions{FieldSelector: "metadata.name=" + app, ResourceVersion: rv})
		if err != nil {
			b.Fatalf("watch rollout %s/%s: %v", ns, app, err)
		}
		defer w.Stop()
		t0 := time.Now()
		start()
		for ev := range w.ResultChan() {
			if ro, ok := ev.Object.(*unstructured.Unstructured); ok && cond(ev.Type, ro) {
				return time.Since(t0)
			}
		}
		b.Fatalf("rollout %s/%s: no event showed %s within a minute", ns, app, what)
		return 0
	}
	paused := func(ro *unstructured.Unstructured) bool {
		conds, _, _ := unstructured.NestedSlice(ro.Object, "status", "pauseConditions")
		return len(conds) > 0
	}
	version := func(app, image string) deployYAML {
		d := canaryApp(app, account, ns, image, weight(25), approval())
		files := d["files"].(map[string]any)["k8s/app.yaml"].([]string)
		files[1] = strings.Replace(files[1], "replicas: 4", "replicas: 1", 1) // lighter on 2 cores
		return d
	}

	var starts, approvals []time.Duration
	b.ResetTimer()
	for i := range b.N {
		app := fmt.Sprintf("lat%d", i)
		var id string
		starts = append(starts, watchFor(app, "", "its creation",
			func() { id = e.mustStart(b, version(app, app+":1")) },
			func(t watch.EventType, _ *unstructured.Unstructured) bool { return t == watch.Added }))
		e.await(b, id, "SUCCEEDED")

		id = e.mustStart(b, version(app, app+":2"))
		e.await(b, id, "AWAITING_APPROVAL")
		ro, err := rollouts.Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if !paused(ro) {
			watchFor(app, ro.GetResourceVersion(), "the pause", func() {},
				func(_ watch.EventType, ro *unstructured.Unstructured) bool { return paused(ro) })
			if ro, err = rollouts.Get(ctx, app, metav1.GetOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		approvals = append(approvals, watchFor(app, ro.GetResourceVersion(), "it leaving the pause",
			func() {
				if st, body := e.post(b, "/pipelines/"+id+"/approve", nil); st != 200 {
					b.Fatalf("approve: %d %s", st, body)
				}
			},
			func(_ watch.EventType, ro *unstructured.Unstructured) bool { return !paused(ro) }))
		e.await(b, id, "SUCCEEDED")
	}
	b.StopTimer()

	sp50, sp99 := percentiles(starts)
	ap50, ap99 := percentiles(approvals)
	b.ReportMetric(ms(sp50), "start-p50-ms")
	b.ReportMetric(ms(sp99), "start-p99-ms")
	b.ReportMetric(ms(ap50), "approve-p50-ms")
	b.ReportMetric(ms(ap99), "approve-p99-ms")
	b.Logf("\n%-52s %9s %9s\n%-52s %9.0f %9.0f\n%-52s %9.0f %9.0f",
		fmt.Sprintf("real cluster, %d runs (ms)", b.N), "p50", "p99",
		"POST /pipelines/kubernetes -> Rollout created", ms(sp50), ms(sp99),
		"POST /pipelines/{id}/approve -> Rollout unpaused", ms(ap50), ms(ap99))
	if *latencyJSON != "" {
		data, _ := json.MarshalIndent(map[string]any{
			"benchmark": "pipeline_latency_real_cluster", "runs": b.N,
			"start_to_rollout_created_p50_ms": ms(sp50), "start_to_rollout_created_p99_ms": ms(sp99),
			"approve_to_rollout_unpaused_p50_ms": ms(ap50), "approve_to_rollout_unpaused_p99_ms": ms(ap99),
		}, "", "  ")
		if err := os.WriteFile(*latencyJSON, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// percentiles returns the nearest-rank p50 and p99 of ds.
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(float64(len(s))*p/100+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return rank(50), rank(99)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
