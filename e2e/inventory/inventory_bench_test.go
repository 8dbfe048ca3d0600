package inventory_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	benchObjects = flag.Int("objects", 20000, "objects BenchmarkInventory creates")
	benchReads   = flag.Int("reads", 200, "calls timed per read of BenchmarkInventory")
	benchJSON    = flag.String("benchjson", "", "write BenchmarkInventory's results as JSON to this file")
)

// inventoryResult is BenchmarkInventory's outcome, as printed and as JSON. Times are
// seconds, sizes bytes; each b.N run is a fresh server on a fresh Redis, medians are shown.
type inventoryResult struct {
	Benchmark         string      `json:"benchmark"`
	Objects           int         `json:"objects"`
	Namespaces        int         `json:"namespaces"`
	CachedObjects     int         `json:"cached_objects"`
	PopulateSeconds   float64     `json:"populate_seconds"`
	Runs              int         `json:"runs"`
	SnapshotSeconds   float64     `json:"snapshot_seconds"`
	ObjectJSONBytes   float64     `json:"object_json_bytes"`
	HubHeapPerObject  float64     `json:"hub_heap_inuse_bytes_per_object"`
	HubLivePerObject  float64     `json:"hub_live_heap_bytes_per_object"`
	RedisPerObject    float64     `json:"redis_used_memory_bytes_per_object"`
	RedisObjsPerObj   float64     `json:"redis_objects_hash_bytes_per_object"`
	RedisIndexPerObj  float64     `json:"redis_index_bytes_per_object"`
	Reads             []readTimes `json:"reads"`
	SecretsNeverFound bool        `json:"secrets_never_found"`
}

// readTimes is one read through the hub and, as the same-run reference, the same selection
// listed from kube-apiserver by client-go.
type readTimes struct {
	Read       string  `json:"read"`
	Objects    int     `json:"objects"`
	HubP50     float64 `json:"hub_p50_seconds"`
	HubP99     float64 `json:"hub_p99_seconds"`
	KubeP50    float64 `json:"apiserver_p50_seconds"`
	KubeP99    float64 `json:"apiserver_p99_seconds"`
	HubPerKube float64 `json:"hub_over_apiserver_p50"`
}

// BenchmarkInventory creates -objects objects (20,000 by default) once, then per b.N run
// starts Redis, sortie-server and sortie-agent afresh and reports the snapshot time (agent
// start until every object is readable), the hub's heap and Redis's memory per object, and
// read latency through ListResources against the same selection listed from the apiserver.
//
//	go test ./e2e/inventory -run '^$' -bench Inventory -benchtime 1x -args -benchjson /tmp/inventory.json
func BenchmarkInventory(b *testing.B) {
	kc := kubeClient(b)
	pop := populate(b, kc, "inv-bench", *benchObjects)
	res := inventoryResult{Benchmark: "inventory", Objects: pop.objects, Namespaces: len(pop.namespaces),
		PopulateSeconds: pop.seconds, ObjectJSONBytes: float64(pop.jsonBytes) / float64(pop.objects), SecretsNeverFound: true}
	var snaps, heaps, lives, redisMem, redisObjs, redisIndex []float64
	reads := map[string][][4]float64{}
	counts := map[string]int{}
	order := []string{}
	ctx := context.Background()
	ns := pop.namespaces[0]
	for i := range b.N {
		run := snapshot(b, pop, fmt.Sprintf("bench-%d", i))
		assertNoSecrets(b, run, pop)
		res.SecretsNeverFound = res.SecretsNeverFound && !b.Failed()
		res.CachedObjects = run.cached
		snaps = append(snaps, run.seconds)
		heaps = append(heaps, run.heapBytes/float64(pop.objects))
		redisMem = append(redisMem, run.redisBytes/float64(pop.objects))
		lives = append(lives, run.liveBytes/float64(pop.objects))
		redisObjs = append(redisObjs, run.objectsKeyBytes/float64(pop.objects))
		redisIndex = append(redisIndex, run.indexKeyBytes/float64(pop.objects))
		for _, r := range []struct {
			name, kind, ns string
			objects        int
			kube           func() error
		}{
			{"one Service in a namespace of one", "Service", pop.smallNS, 1, func() error {
				_, err := kc.CoreV1().Services(pop.smallNS).List(ctx, metav1.ListOptions{})
				return err
			}},
			{"the ReplicaSets of one namespace", "ReplicaSet", ns, perNamespace / 2, func() error {
				_, err := kc.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
				return err
			}},
			{"every Service of the cluster", "Service", "", 0, func() error {
				_, err := kc.CoreV1().Services("").List(ctx, metav1.ListOptions{})
				return err
			}},
		} {
			n := *benchReads
			if r.ns == "" {
				n = max(1, n/20) // whole-cluster reads are slow on both sides
			}
			got := 0
			hp50, hp99 := latency(b, n, func() error {
				rs, _, err := run.hub.list(r.kind, r.ns)
				got = len(rs)
				return err
			})
			if r.objects > 0 && got != r.objects {
				b.Fatalf("%s: %d objects, want %d", r.name, got, r.objects)
			}
			kp50, kp99 := latency(b, n, r.kube)
			if _, ok := reads[r.name]; !ok {
				order = append(order, r.name)
			}
			reads[r.name] = append(reads[r.name], [4]float64{hp50, hp99, kp50, kp99})
			counts[r.name] = got
		}
	}
	res.Runs = b.N
	res.SnapshotSeconds, res.HubHeapPerObject, res.HubLivePerObject = median(snaps), median(heaps), median(lives)
	res.RedisPerObject, res.RedisObjsPerObj, res.RedisIndexPerObj = median(redisMem), median(redisObjs), median(redisIndex)
	for _, name := range order {
		var cols [4][]float64
		for _, x := range reads[name] {
			for j := range 4 {
				cols[j] = append(cols[j], x[j])
			}
		}
		rt := readTimes{Read: name, Objects: counts[name], HubP50: median(cols[0]), HubP99: median(cols[1]), KubeP50: median(cols[2]), KubeP99: median(cols[3])}
		if rt.KubeP50 > 0 {
			rt.HubPerKube = rt.HubP50 / rt.KubeP50
		}
		res.Reads = append(res.Reads, rt)
	}
	b.ReportMetric(res.SnapshotSeconds, "snapshot-s")
	b.ReportMetric(res.HubLivePerObject, "hub-live-B/object")
	b.ReportMetric(res.RedisPerObject, "redis-B/object")
	printInventory(res)
	if *benchJSON != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*benchJSON, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func printInventory(r inventoryResult) {
	fmt.Printf("\ninventory of %d objects in %d namespaces (%d cached with the cluster's own), median of %d run(s)\n\n",
		r.Objects, r.Namespaces, r.CachedObjects, r.Runs)
	fmt.Printf("| snapshot (agent start -> all readable) | object JSON | hub heap in use / live | Redis used_memory | Redis objects hash / index |\n|---|---|---|---|---|\n")
	fmt.Printf("| %.2f s | %.0f B/object | %.0f / %.0f B/object | %.0f B/object | %.0f / %.0f B/object |\n\n",
		r.SnapshotSeconds, r.ObjectJSONBytes, r.HubHeapPerObject, r.HubLivePerObject, r.RedisPerObject, r.RedisObjsPerObj, r.RedisIndexPerObj)
	fmt.Printf("| read | objects | hub ListResources p50 / p99 | apiserver LIST p50 / p99 | hub / apiserver p50 |\n|---|---|---|---|---|\n")
	for _, x := range r.Reads {
		fmt.Printf("| %s | %d | %.2f / %.2f ms | %.2f / %.2f ms | %.2f |\n", x.Read, x.Objects,
			1e3*x.HubP50, 1e3*x.HubP99, 1e3*x.KubeP50, 1e3*x.KubeP99, x.HubPerKube)
	}
	fmt.Printf("\nSecret data in the API's answers or in Redis: %v\n", map[bool]string{true: "none", false: "FOUND"}[r.SecretsNeverFound])
}
