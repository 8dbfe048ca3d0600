// Package inventory_test proves the hub's inventory at cluster scale against a real
// kube-apiserver, a real sortie-agent, a real sortie-server and a private Redis: a cluster of
// thousands of objects arrives complete in one snapshot, reads of one kind and namespace
// return the right objects, and Secret data reaches neither the API nor Redis.
// BenchmarkInventory measures the same at 20,000 objects.
package inventory_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sortie-dev/sortie/e2e/kube"
	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
	"github.com/sortie-dev/sortie/store/redistest"
)

var (
	cluster     *kube.Cluster
	testObjects = flag.Int("inventory-objects", 2000, "objects TestSnapshotAtScale creates")
)

func TestMain(m *testing.M) {
	dir, err := sortie.BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sortie.BinDir = dir
	// No controllers: Services without selectors and ReplicaSets of zero replicas need none,
	// so the objects cost the apiserver and etcd only.
	code := kube.Main(m, &cluster)
	os.RemoveAll(dir)
	os.Exit(code)
}

// perNamespace is how many objects (half Services, half ReplicaSets) each namespace holds.
const perNamespace = 1000

// secretMarker is the data of the Secrets the population holds; it must never leave the
// cluster.
const secretMarker = "sortie-e2e-secret-data-9f2c1b7e"

// population is the objects one test created, in namespaces of its own.
type population struct {
	namespaces []string
	secretNS   string
	// smallNS holds one Service, "only": a read of one object in a large inventory.
	smallNS string
	objects int
	// uids of every created object by namespace/kind/name.
	uids map[string]string
	// jsonBytes is the size of the created objects as the apiserver returned them.
	jsonBytes int
	seconds   float64
}

func key(ns, kind, name string) string { return ns + "/" + kind + "/" + name }

// kubeClient is a client of the shared cluster without client-side rate limits.
func kubeClient(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// populate creates n objects (rounded up to whole namespaces) in namespaces named after
// prefix, half headless Services without selectors and half ReplicaSets of zero replicas,
// plus three Secrets holding secretMarker.
func populate(t testing.TB, kc *kubernetes.Clientset, prefix string, n int) *population {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	p := &population{uids: map[string]string{}}
	for i := range max(1, (n+perNamespace-1)/perNamespace) {
		p.namespaces = append(p.namespaces, fmt.Sprintf("%s-%02d", prefix, i))
	}
	p.secretNS, p.smallNS = p.namespaces[0], prefix+"-small"
	for _, ns := range append([]string{p.smallNS}, p.namespaces...) {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	for i := range 3 {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("secret-%d", i)},
			StringData: map[string]string{"password": secretMarker}}
		if _, err := kc.CoreV1().Secrets(p.secretNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create secret: %v", err)
		}
	}
	type job struct{ ns, kind, name string }
	jobs := make(chan job)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for j := range jobs {
				uid, size, err := create(ctx, kc, j.ns, j.kind, j.name)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("create %s %s/%s: %w", j.kind, j.ns, j.name, err)
				}
				p.uids[key(j.ns, j.kind, j.name)] = uid
				p.jsonBytes += size
				mu.Unlock()
			}
		})
	}
	for _, ns := range p.namespaces {
		for i := range perNamespace / 2 {
			jobs <- job{ns, "Service", fmt.Sprintf("svc-%04d", i)}
			jobs <- job{ns, "ReplicaSet", fmt.Sprintf("rs-%04d", i)}
		}
	}
	jobs <- job{p.smallNS, "Service", "only"}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	p.objects = len(p.uids)
	p.seconds = time.Since(start).Seconds()
	t.Logf("created %d objects in %d namespaces in %.1fs", p.objects, len(p.namespaces), p.seconds)
	return p
}

func create(ctx context.Context, kc *kubernetes.Clientset, ns, kind, name string) (uid string, size int, err error) {
	labels := map[string]string{"app": name, "sortie.dev/e2e": "inventory"}
	var obj any
	switch kind {
	case "Service":
		obj, err = kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{})
	default:
		zero := int32(0)
		obj, err = kc.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: appsv1.ReplicaSetSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27-alpine"}}}}},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return "", 0, err
	}
	data, _ := json.Marshal(obj)
	var meta struct {
		Metadata struct{ UID string } `json:"metadata"`
	}
	_ = json.Unmarshal(data, &meta)
	return meta.Metadata.UID, len(data), nil
}

// resource is one entry of ListResources, as Connect's JSON writes it.
type resource struct {
	APIVersion      string `json:"apiVersion"`
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid"`
	ResourceVersion string `json:"resourceVersion"`
	ObjectJSON      []byte `json:"objectJson"`
}

// hubClient reads one account's cached inventory through the Connect API on one keep-alive
// connection.
type hubClient struct {
	url, token, account string
	client              http.Client
}

// list calls ListResources and returns the resources and the raw body.
func (c *hubClient) list(kind, namespace string) ([]resource, []byte, error) {
	body, _ := json.Marshal(map[string]string{"account": c.account, "kind": kind, "namespace": namespace})
	req, _ := http.NewRequest(http.MethodPost, c.url+"/sortie.infra.v1.InfrastructureService/ListResources", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, buf.Bytes(), fmt.Errorf("ListResources: %d %s", resp.StatusCode, buf.Bytes())
	}
	var out struct {
		Resources []resource `json:"resources"`
	}
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return nil, buf.Bytes(), err
	}
	return out.Resources, buf.Bytes(), nil
}

// snapshotRun is one agent's snapshot of a population into a fresh server on a fresh Redis.
type snapshotRun struct {
	hub     *hubClient
	rdb     *redis.Client
	srv     *sortie.Server
	seconds float64 // from the agent's start until every object was readable
	// Memory after the snapshot minus before the agent connected: the server's heap in use
	// (with garbage not yet collected), its live heap after a GC that followed the snapshot,
	// and Redis's used_memory.
	heapBytes, liveBytes, redisBytes float64
	// objectsKeyBytes and indexKeyBytes are what Redis reports (MEMORY USAGE) for the
	// inventory's objects hash and its index.
	objectsKeyBytes, indexKeyBytes float64
	cached                         int // objects the whole inventory holds (the population and the cluster's own)
}

// snapshot starts Redis, a server and an agent of account, and waits until every object of
// pop is readable, checking each namespace's count.
func snapshot(t testing.TB, pop *population, account string) *snapshotRun {
	t.Helper()
	rs := redistest.New(t)
	opt, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	run := &snapshotRun{rdb: redis.NewClient(opt)}
	t.Cleanup(func() { run.rdb.Close() })
	dataDir := t.TempDir()
	run.srv = sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir, RedisURL: rs.URL(), Args: []string{"--log-level", "info"}})
	adminID, adminSecret := sortie.AdminCredential(t, dataDir)
	admin := sortie.Token(t, run.srv.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, run.srv.URL, admin, "agent-"+account)
	run.hub = &hubClient{url: run.srv.URL, token: admin, account: account}
	m0 := serverMetrics(t, run.srv.URL)
	redis0 := usedMemory(t, run.rdb)

	start := time.Now()
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent "+account, run.srv.URL, id, secret, account)
	last := pop.namespaces[len(pop.namespaces)-1]
	sortie.WaitFor(t, 3*time.Minute, "the inventory snapshot of "+account, func() bool {
		rs, _, err := run.hub.list("ReplicaSet", last)
		return err == nil && len(rs) == perNamespace/2
	})
	run.seconds = time.Since(start).Seconds()
	// One Replace holds the whole snapshot: every namespace is complete now.
	for _, ns := range pop.namespaces {
		for _, kind := range []string{"Service", "ReplicaSet"} {
			rs, _, err := run.hub.list(kind, ns)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != perNamespace/2 {
				t.Fatalf("%s objects of namespace %s in the inventory: %d, want %d", kind, ns, len(rs), perNamespace/2)
			}
			for _, r := range rs {
				if want := pop.uids[key(ns, kind, r.Name)]; r.UID != want || want == "" {
					t.Fatalf("%s %s/%s: uid %q, want %q", kind, ns, r.Name, r.UID, want)
				}
			}
		}
	}
	if rs, _, err := run.hub.list("Service", pop.smallNS); err != nil || len(rs) != 1 || rs[0].UID != pop.uids[key(pop.smallNS, "Service", "only")] {
		t.Fatalf("ListResources(Service, %s) = %+v, %v; want its one Service", pop.smallNS, rs, err)
	}
	all, _, err := run.hub.list("", "")
	if err != nil {
		t.Fatal(err)
	}
	run.cached = len(all)
	if run.cached < pop.objects {
		t.Fatalf("the whole inventory holds %d objects, fewer than the %d created", run.cached, pop.objects)
	}
	mDone := serverMetrics(t, run.srv.URL)
	run.heapBytes = mDone["go_memstats_heap_inuse_bytes"] - m0["go_memstats_heap_inuse_bytes"]
	// Small reads allocate (and hold almost nothing) until the GC ran twice after the
	// snapshot: buffers pooled during it survive the first GC in sync.Pool's victim cache,
	// and a large read in flight would count as live.
	var m1 map[string]float64
	sortie.WaitFor(t, 2*time.Minute, "two GCs of the server after the snapshot", func() bool {
		if m1 = serverMetrics(t, run.srv.URL); m1["go_gc_duration_seconds_count"] >= mDone["go_gc_duration_seconds_count"]+2 {
			return true
		}
		for range 50 {
			_, _, _ = run.hub.list("Service", pop.smallNS)
		}
		return false
	})
	run.liveBytes = liveHeap(m1) - liveHeap(m0)
	run.redisBytes = usedMemory(t, run.rdb) - redis0
	run.objectsKeyBytes = keyBytes(t, run.rdb, "*:hub:inventory:"+account)
	run.indexKeyBytes = keyBytes(t, run.rdb, "*:hub:inventory-index:"+account)
	if run.objectsKeyBytes == 0 {
		t.Fatalf("no inventory of %s in Redis", account)
	}
	return run
}

// serverMetrics reads the unlabelled samples of the server's /metrics.
func serverMetrics(t testing.TB, baseURL string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	out := map[string]float64{}
	for line := range strings.SplitSeq(buf.String(), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	for _, name := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_next_gc_bytes", "go_gc_duration_seconds_count"} {
		if _, ok := out[name]; !ok {
			t.Fatalf("no %s in /metrics", name)
		}
	}
	return out
}

// liveHeap estimates the server's live heap as of its last GC from the GC's goal: the goal
// is the live heap times 1 + GOGC/100.
func liveHeap(m map[string]float64) float64 {
	gogc, ok := m["go_gc_gogc_percent"]
	if !ok || gogc <= 0 {
		gogc = 100
	}
	return m["go_memstats_next_gc_bytes"] / (1 + gogc/100)
}

// usedMemory is Redis's used_memory.
func usedMemory(t testing.TB, rdb *redis.Client) float64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// keyBytes sums MEMORY USAGE (every element counted) of the keys matching pattern.
func keyBytes(t testing.TB, rdb *redis.Client, pattern string) float64 {
	t.Helper()
	ctx := context.Background()
	var total float64
	iter := rdb.Scan(ctx, 0, pattern, 100).Iterator()
	for iter.Next(ctx) {
		n, err := rdb.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += float64(n)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// assertNoSecrets checks that no Secret and no byte of their data is in the API's answers
// or anywhere in Redis.
func assertNoSecrets(t testing.TB, run *snapshotRun, pop *population) {
	t.Helper()
	marks := [][]byte{[]byte(secretMarker), []byte(base64.StdEncoding.EncodeToString([]byte(secretMarker)))}
	for _, q := range [][2]string{{"Secret", ""}, {"", pop.secretNS}, {"", ""}} {
		rs, body, err := run.hub.list(q[0], q[1])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if strings.EqualFold(r.Kind, "Secret") {
				t.Errorf("ListResources(kind %q, namespace %q) returned Secret %s/%s", q[0], q[1], r.Namespace, r.Name)
			}
		}
		for _, m := range marks {
			if bytes.Contains(body, m) {
				t.Errorf("ListResources(kind %q, namespace %q) holds the Secrets' data", q[0], q[1])
			}
		}
	}
	ctx := context.Background()
	keys := 0
	iter := run.rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		keys++
		k := iter.Val()
		var values []string
		switch typ, _ := run.rdb.Type(ctx, k).Result(); typ {
		case "hash":
			m, err := run.rdb.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range m {
				values = append(values, f, v)
			}
		case "zset":
			values, _ = run.rdb.ZRange(ctx, k, 0, -1).Result()
		case "string":
			v, _ := run.rdb.Get(ctx, k).Result()
			values = []string{v}
		case "set":
			values, _ = run.rdb.SMembers(ctx, k).Result()
		}
		for _, v := range values {
			for _, m := range marks {
				if strings.Contains(v, string(m)) {
					t.Errorf("Redis key %s holds the Secrets' data", k)
				}
			}
			if strings.Contains(v, "|Secret|") || strings.Contains(v, "\x00secret\x00") {
				t.Errorf("Redis key %s names a Secret", k)
			}
		}
	}
	if err := iter.Err(); err != nil || keys == 0 {
		t.Fatalf("scan Redis: %d keys, %v", keys, err)
	}
}

// TestSnapshotAtScale creates -inventory-objects objects (2,000 by default; the benchmark
// runs 20,000) and checks that the agent's snapshot arrives complete, that reads of one kind
// and namespace and of one object return the objects the apiserver holds, and that no Secret
// data is cached.
func TestSnapshotAtScale(t *testing.T) {
	kc := kubeClient(t)
	pop := populate(t, kc, "inv-test", *testObjects)
	run := snapshot(t, pop, "scale-test")
	assertNoSecrets(t, run, pop)

	// Random objects read by kind and namespace are the apiserver's, byte for byte in name,
	// uid and resourceVersion, and their JSON is theirs.
	ctx := context.Background()
	for range 20 {
		ns := pop.namespaces[rand.N(len(pop.namespaces))]
		name := fmt.Sprintf("svc-%04d", rand.N(perNamespace/2))
		want, err := kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rs, _, err := run.hub.list("service", ns) // kinds match without regard to case
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(rs, func(r resource) bool { return r.Name == name })
		if i < 0 {
			t.Fatalf("Service %s/%s not in ListResources(Service, %s)", ns, name, ns)
		}
		got := rs[i]
		var obj corev1.Service
		if err := json.Unmarshal(got.ObjectJSON, &obj); err != nil {
			t.Fatalf("objectJson of %s/%s: %v", ns, name, err)
		}
		if got.UID != string(want.UID) || got.ResourceVersion != want.ResourceVersion || got.APIVersion != "v1" ||
			obj.Name != name || obj.Namespace != ns || obj.UID != want.UID || obj.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s/%s read back as %+v (object %s/%s uid %s), want uid %s resourceVersion %s",
				ns, name, got, obj.Namespace, obj.Name, obj.UID, want.UID, want.ResourceVersion)
		}
	}
	// A namespace alone selects both kinds of it and nothing of another namespace.
	rs, _, err := run.hub.list("", pop.namespaces[0])
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range rs {
		if r.Namespace != pop.namespaces[0] {
			t.Errorf("ListResources(namespace %s) returned %s %s/%s", pop.namespaces[0], r.Kind, r.Namespace, r.Name)
		}
		kinds[r.Kind]++
	}
	if kinds["Service"] != perNamespace/2 || kinds["ReplicaSet"] != perNamespace/2 || len(kinds) != 2 {
		t.Errorf("ListResources(namespace %s) by kind = %v, want %d Services and %d ReplicaSets", pop.namespaces[0], kinds, perNamespace/2, perNamespace/2)
	}
	// A change after the snapshot reaches the same reads.
	name := "svc-0000"
	svc, err := kc.CoreV1().Services(pop.namespaces[0]).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Labels["changed"] = "yes"
	if svc, err = kc.CoreV1().Services(pop.namespaces[0]).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kc.AppsV1().ReplicaSets(pop.namespaces[0]).Delete(ctx, "rs-0000", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sortie.WaitFor(t, 30*time.Second, "the change and the deletion in the inventory", func() bool {
		rs, _, err := run.hub.list("Service", pop.namespaces[0])
		if err != nil || !slices.ContainsFunc(rs, func(r resource) bool { return r.Name == name && r.ResourceVersion == svc.ResourceVersion }) {
			return false
		}
		rs, _, err = run.hub.list("ReplicaSet", pop.namespaces[0])
		return err == nil && len(rs) == perNamespace/2-1 && !slices.ContainsFunc(rs, func(r resource) bool { return r.Name == "rs-0000" })
	})
	n := float64(pop.objects)
	t.Logf("snapshot of %d objects (%d cached in all, %.0f B of JSON each) in %.2fs; hub heap in use +%.0f B/object, live +%.0f B/object; Redis +%.0f B/object (objects %.0f, index %.0f)",
		pop.objects, run.cached, float64(pop.jsonBytes)/n, run.seconds, run.heapBytes/n, run.liveBytes/n, run.redisBytes/n, run.objectsKeyBytes/n, run.indexKeyBytes/n)
}

// latency times n calls of f and returns p50 and p99 in seconds.
func latency(t testing.TB, n int, f func() error) (p50, p99 float64) {
	t.Helper()
	xs := make([]float64, n)
	for i := range n {
		start := time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		xs[i] = time.Since(start).Seconds()
	}
	sort.Float64s(xs)
	return xs[n*50/100], xs[min(n-1, n*99/100)]
}
