// Package pipelines_test runs real sortie-server and sortie-agent processes against a real
// kube-apiserver with kube-controller-manager, kube-scheduler, KWOK and the Argo Rollouts
// controller, and drives deployments through the REST API as the Armory CLI and the
// Spinnaker stage do: canary and blue/green rollouts with timed pauses and approvals,
// aborts, dependencies between targets, the in-progress rules, a server restart and a
// replica killed mid-rollout. Every test has its own server and namespaces in one shared
// cluster.
package pipelines_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sortie-dev/sortie/e2e/kube"
	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

var cluster *kube.Cluster

func TestMain(m *testing.M) {
	dir, err := sortie.BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sortie.BinDir = dir
	code := kube.Main(m, &cluster, kube.WithArgoRollouts())
	os.RemoveAll(dir)
	os.Exit(code)
}

// firstVersion deploys image as the first revision of app (which a Rollout makes stable at
// once, skipping its steps) and waits for it.
func (e *env) firstVersion(t *testing.T, app, account, ns, image string) {
	t.Helper()
	id := e.mustStart(t, canaryApp(app, account, ns, image, weight(50), approval()))
	e.await(t, id, "SUCCEEDED")
	sortie.WaitFor(t, 60*time.Second, "the first version's pods to be Ready", func() bool { return readyPods(t, ns, app, image) == 4 })
}

func TestCanaryTimedPauseApprovalSucceeds(t *testing.T) {
	t.Parallel()
	ns := unique("canary")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "canary-cluster")
	e.firstVersion(t, "web", "canary-cluster", ns, "web:1.0")

	id := e.mustStart(t, canaryApp("web", "canary-cluster", ns, "web:2.0", weight(25), wait(2), weight(50), approval()))
	paused := e.await(t, id, "PAUSED")
	if status, w, reason, _ := paused.target("prod"); status != "PAUSED" || w != 25 || reason != "timed" {
		t.Errorf("during the timed pause: %s at %d%% (%s), want PAUSED at 25%%, timed", status, w, reason)
	}
	waiting := e.await(t, id, "AWAITING_APPROVAL")
	if _, w, reason, step := waiting.target("prod"); w != 50 || reason != "approval" || step != "prod/canary/3" {
		t.Errorf("awaiting approval: %d%% %s %s, want 50%% approval at prod/canary/3", w, reason, step)
	}
	ro := rolloutOf(t, ns, "web")
	if conds, _, _ := unstructured.NestedSlice(ro.Object, "status", "pauseConditions"); len(conds) != 1 {
		t.Fatalf("the Rollout is not paused at the approval: %v", ro.Object["status"])
	}
	if st, b := e.post(t, "/pipelines/"+id+"/approve", nil); st != 200 {
		t.Fatalf("approve: %d %s", st, b)
	}
	done := e.await(t, id, "SUCCEEDED")
	if done.CompletedAt == "" || len(done.Decisions) != 1 || done.Decisions[0].Action != "approve" {
		t.Errorf("finished pipeline: completed %q, decisions %+v", done.CompletedAt, done.Decisions)
	}
	sortie.WaitFor(t, 60*time.Second, "4 Ready pods of the new version", func() bool { return readyPods(t, ns, "web", "web:2.0") == 4 })
	ro = rolloutOf(t, ns, "web")
	if str(ro, "status", "stableRS") != str(ro, "status", "currentPodHash") {
		t.Errorf("the new version is not stable: %v", ro.Object["status"])
	}
	if ro.GetLabels()["sortie.dev/pipeline"] != id || ro.GetLabels()["sortie.dev/application"] != "web" {
		t.Errorf("the Rollout's labels %v do not name the pipeline and application", ro.GetLabels())
	}
	if st, _ := e.post(t, "/pipelines/"+id+"/approve", nil); st != http.StatusConflict {
		t.Errorf("approving a finished pipeline: %d, want 409", st)
	}
}

func TestAbortAtApprovalKeepsStableVersion(t *testing.T) {
	t.Parallel()
	ns := unique("abort")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "abort-cluster")
	e.firstVersion(t, "api", "abort-cluster", ns, "api:1.0")

	id := e.mustStart(t, canaryApp("api", "abort-cluster", ns, "api:2.0", weight(25), approval()))
	e.await(t, id, "AWAITING_APPROVAL")
	if st, b := e.post(t, "/pipelines/"+id+"/abort", nil); st != 200 {
		t.Fatalf("abort: %d %s", st, b)
	}
	v := e.await(t, id, "CANCELLED")
	if !strings.Contains(v.Message, "aborted") {
		t.Errorf("message %q", v.Message)
	}
	ro := rolloutOf(t, ns, "api")
	if abort, _, _ := unstructured.NestedBool(ro.Object, "status", "abort"); !abort {
		t.Error("the Rollout was not aborted")
	}
	sortie.WaitFor(t, 60*time.Second, "the stable version serving alone", func() bool {
		return readyPods(t, ns, "api", "api:1.0") == 4 && readyPods(t, ns, "api", "api:2.0") == 0
	})
	if st, _ := e.post(t, "/pipelines/"+id+"/abort", nil); st != http.StatusConflict {
		t.Errorf("aborting a finished pipeline: %d, want 409", st)
	}
}

func TestBlueGreenPreviewThenApproval(t *testing.T) {
	t.Parallel()
	ns := unique("bluegreen")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "bg-cluster")
	bg := func(image string) deployYAML {
		return deployYAML{
			"application": "shop",
			"targets":     map[string]any{"prod": map[string]any{"account": "bg-cluster", "namespace": ns, "strategy": "bg"}},
			"strategies": map[string]any{"bg": map[string]any{"blueGreen": map[string]any{
				"activeService": "shop", "previewService": "shop-preview",
				"redirectTrafficAfter": []any{approval()},
			}}},
			"manifests": []any{map[string]any{"inline": strings.Join([]string{namespaceYAML(ns),
				serviceYAML("shop", "shop"), serviceYAML("shop-preview", "shop"), deploymentYAML("shop", image)}, "---\n")}},
		}
	}
	id := e.mustStart(t, bg("shop:1"))
	e.await(t, id, "SUCCEEDED")
	id = e.mustStart(t, bg("shop:2"))
	v := e.await(t, id, "AWAITING_APPROVAL")
	if _, _, reason, step := v.target("prod"); reason != "approval" || step != "prod/redirect/0" {
		t.Errorf("awaiting %s %s, want the approval prod/redirect/0", reason, step)
	}
	ro := rolloutOf(t, ns, "shop")
	current := str(ro, "status", "currentPodHash")
	selector := func(svc string) string {
		s, err := kubeClient(t).Resource(servicesGVR).Namespace(ns).Get(context.Background(), svc, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return str(s, "spec", "selector", "rollouts-pod-template-hash")
	}
	sortie.WaitFor(t, 30*time.Second, "the preview service on the new version", func() bool { return selector("shop-preview") == current })
	if got := selector("shop"); got == current {
		t.Fatal("the active service moved to the new version before the approval")
	}
	if st, b := e.post(t, "/pipelines/"+id+"/approve", map[string]string{"step": "prod/redirect/0"}); st != 200 {
		t.Fatalf("approve: %d %s", st, b)
	}
	e.await(t, id, "SUCCEEDED")
	if got := selector("shop"); got != current {
		t.Errorf("active service selects %q after the approval, want the new version %q", got, current)
	}
}

func TestTwoTargetsDependsOnWithBeforeApproval(t *testing.T) {
	t.Parallel()
	stagingNS := unique("facts-staging")
	prodNS := unique("facts-prod")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "staging-west")
	e.agent(t, e.srv.URL, "prod-east")
	body := deployYAML{
		"application": "facts",
		"targets": map[string]any{
			"staging": map[string]any{"account": "staging-west", "namespace": stagingNS, "strategy": "c"},
			"prod": map[string]any{"account": "prod-east", "namespace": prodNS, "strategy": "c", "constraints": map[string]any{
				"dependsOn": []string{"staging"}, "beforeDeployment": []any{approval()}}},
		},
		"strategies": map[string]any{"c": map[string]any{"canary": map[string]any{"steps": []any{weight(50)}}}},
		"manifests": []any{
			map[string]any{"inline": namespaceYAML(stagingNS), "targets": []string{"staging"}},
			map[string]any{"inline": namespaceYAML(prodNS), "targets": []string{"prod"}},
			map[string]any{"inline": deploymentYAML("facts", "facts:1")},
		},
	}
	id := e.mustStart(t, body)
	v := e.await(t, id, "AWAITING_APPROVAL")
	if st, _, _, _ := v.target("staging"); st != "SUCCEEDED" {
		t.Errorf("staging is %s while prod awaits its approval", st)
	}
	if _, err := kubeClient(t).Resource(rolloutsGVR).Namespace(prodNS).Get(context.Background(), "facts", metav1.GetOptions{}); err == nil {
		t.Fatal("prod was deployed before its beforeDeployment approval")
	}
	if st, b := e.post(t, "/pipelines/"+id+"/approve", map[string]string{"step": "prod/before/0"}); st != 200 {
		t.Fatalf("approve: %d %s", st, b)
	}
	e.await(t, id, "SUCCEEDED")
	sortie.WaitFor(t, 60*time.Second, "prod's pods", func() bool { return readyPods(t, prodNS, "facts", "facts:1") == 4 })
}

func TestInProgressRejectAndEnqueueOne(t *testing.T) {
	t.Parallel()
	app := unique("queue")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "queue-cluster")
	e.firstVersion(t, app, "queue-cluster", app, "q:1")
	first := e.mustStart(t, canaryApp(app, "queue-cluster", app, "q:2", weight(25), approval()))
	e.await(t, first, "AWAITING_APPROVAL")

	status, body := e.start(t, canaryApp(app, "queue-cluster", app, "q:3", weight(25)))
	if status != http.StatusConflict || !strings.Contains(string(body), first) {
		t.Fatalf("second pipeline of the application: %d %s, want 409 naming %s", status, body, first)
	}
	queued := func(image string) deployYAML {
		d := canaryApp(app, "queue-cluster", app, image, weight(100))
		d["deploymentConfig"] = map[string]any{"ifDeploymentInProgress": map[string]any{"strategy": "enqueueOne"}}
		return d
	}
	status, body = sortie.Call(t, "POST", e.srv.URL+"/pipelines", e.admin, queued("q:3"))
	if status != http.StatusAccepted {
		t.Fatalf("POST /pipelines with enqueueOne: %d %s", status, body)
	}
	var r struct {
		PipelineID string `json:"pipelineId"`
	}
	_ = json.Unmarshal(body, &r)
	older := r.PipelineID
	if v := e.get(t, older); v.Status != "QUEUED" || v.BlockedBy != first {
		t.Fatalf("queued pipeline: %s blocked by %q", v.Status, v.BlockedBy)
	}
	newer := e.mustStart(t, queued("q:4"))
	if v := e.get(t, older); v.Status != "REJECTED" {
		t.Errorf("the older queued pipeline is %s, want REJECTED", v.Status)
	}
	if st, b := e.post(t, "/pipelines/"+first+"/approve", nil); st != 200 {
		t.Fatalf("approve: %d %s", st, b)
	}
	e.await(t, first, "SUCCEEDED")
	e.await(t, newer, "SUCCEEDED")
	sortie.WaitFor(t, 60*time.Second, "the newest queued version's pods", func() bool { return readyPods(t, app, app, "q:4") == 4 })
}

func TestServerRestartMidPipeline(t *testing.T) {
	t.Parallel()
	app := unique("restart")
	dir := t.TempDir()
	addr := sortie.FreeAddr(t)
	e := newEnv(t, sortie.ServerConfig{DataDir: dir, Addr: addr})
	e.agent(t, e.srv.URL, "restart-cluster")
	e.firstVersion(t, app, "restart-cluster", app, "r:1")
	id := e.mustStart(t, canaryApp(app, "restart-cluster", app, "r:2", weight(25), approval(), weight(75), wait(1)))
	e.await(t, id, "AWAITING_APPROVAL")

	e.srv.Stop(t)
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dir, Addr: addr, Args: fastEngine})
	e.srv = srv
	sortie.WaitFor(t, 30*time.Second, "the agent back", func() bool {
		return len(sortie.ConnectedAgents(t, srv.URL, e.admin, "restart-cluster")) == 1
	})
	if st, b := e.post(t, "/pipelines/"+id+"/approve", nil); st != 200 {
		t.Fatalf("approve after the restart: %d %s", st, b)
	}
	e.await(t, id, "SUCCEEDED")
	evs := e.events(t, id)
	if n := countEvents(evs, "target.apply", ""); n != 1 {
		t.Errorf("the objects were applied %d times, want once", n)
	}
}

// Two replicas share Redis; the one driving the pipeline is killed mid-rollout. The other
// takes the lease over, the pipeline completes, and no step runs twice.
func TestReplicaKilledMidRollout(t *testing.T) {
	t.Parallel()
	app := unique("ha")
	rds := redistest.New(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	public := "http://sortie.pipelines.test"
	a := newEnv(t, sortie.ServerConfig{DataDir: dirA, RedisURL: rds.URL(), PublicURL: public})
	keyB := filepath.Join(dirB, "master.key")
	if out, err := exec.Command("cp", filepath.Join(dirA, "master.key"), keyB).CombinedOutput(); err != nil {
		t.Fatalf("copy master key: %v %s", err, out)
	}
	b := sortie.StartServer(t, sortie.ServerConfig{DataDir: dirB, RedisURL: rds.URL(), PublicURL: public, MasterKey: keyB, Args: fastEngine})
	servers := map[string]*sortie.Server{}
	for _, s := range []*sortie.Server{a.srv, b} {
		servers[hubInstance(t, s)] = s
	}
	lb := sortie.StartProxy(t, a.srv.Addr, b.Addr)
	a.agent(t, lb.URL(), "ha-cluster")
	a.firstVersion(t, app, "ha-cluster", app, "ha:1")

	id := a.mustStart(t, canaryApp(app, "ha-cluster", app, "ha:2", weight(25), wait(3), weight(50), approval()))
	a.await(t, id, "PAUSED")
	st, err := redisstore.Open(context.Background(), rds.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tenant := tenantOf(t, a)
	lease, err := st.GetLease(context.Background(), store.PipelineRef{Tenant: tenant, ID: id})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	driver, ok := servers[lease.Holder]
	if !ok {
		t.Fatalf("lease held by %q, not one of the replicas %v", lease.Holder, servers)
	}
	var survivor *sortie.Server
	for _, s := range servers {
		if s != driver {
			survivor = s
		}
	}
	driver.Kill()
	v := await(t, survivor.URL, a.admin, id, "AWAITING_APPROVAL on the survivor", 90*time.Second, func(v pipelineView) bool {
		return v.Status == "AWAITING_APPROVAL"
	})
	if _, w, _, _ := v.target("prod"); w != 50 {
		t.Errorf("weight %d at the approval, want 50", w)
	}
	if st, b := sortie.Call(t, "POST", survivor.URL+"/pipelines/"+id+"/approve", a.admin, nil); st != 200 {
		t.Fatalf("approve on the survivor: %d %s", st, b)
	}
	await(t, survivor.URL, a.admin, id, "SUCCEEDED", 90*time.Second, func(v pipelineView) bool { return v.Status == "SUCCEEDED" })
	after, err := st.GetLease(context.Background(), store.PipelineRef{Tenant: tenant, ID: id})
	if err == nil && after.Token <= lease.Token {
		t.Errorf("fencing token %d after the takeover, want more than %d", after.Token, lease.Token)
	}
	evs := eventsFrom(t, survivor.URL, a.admin, id)
	for _, c := range []struct{ typ, status string }{
		{"target.apply", ""}, {"rollout.promote", ""},
		{"target.status", "PAUSED"}, {"target.status", "AWAITING_APPROVAL"}, {"target.status", "SUCCEEDED"},
	} {
		if n := countEvents(evs, c.typ, c.status); n != 1 {
			t.Errorf("%s %s recorded %d times, want once: %+v", c.typ, c.status, n, evs)
		}
	}
}

// Two replicas share Redis and resync only every minute; an approval through the replica
// that does not drive the pipeline wakes the one that does, so the pipeline finishes in
// seconds rather than at the next resync.
func TestReplicaApprovalThroughTheOtherReplica(t *testing.T) {
	t.Parallel()
	app := unique("wake")
	rds := redistest.New(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	public := "http://sortie.pipelines.test"
	slow := []string{"--pipeline-resync", "1m"}
	a := newEnv(t, sortie.ServerConfig{DataDir: dirA, RedisURL: rds.URL(), PublicURL: public, Args: slow})
	keyB := filepath.Join(dirB, "master.key")
	if out, err := exec.Command("cp", filepath.Join(dirA, "master.key"), keyB).CombinedOutput(); err != nil {
		t.Fatalf("copy master key: %v %s", err, out)
	}
	b := sortie.StartServer(t, sortie.ServerConfig{DataDir: dirB, RedisURL: rds.URL(), PublicURL: public, MasterKey: keyB,
		Args: append(append([]string{}, fastEngine...), slow...)})
	a.agent(t, a.srv.URL, "wake-cluster")
	a.firstVersion(t, app, "wake-cluster", app, "wake:1")

	id := a.mustStart(t, canaryApp(app, "wake-cluster", app, "wake:2", weight(25), approval(), weight(75)))
	a.await(t, id, "AWAITING_APPROVAL")
	st, err := redisstore.Open(context.Background(), rds.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lease, err := st.GetLease(context.Background(), store.PipelineRef{Tenant: tenantOf(t, a), ID: id})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	other := b
	if lease.Holder == hubInstance(t, b) {
		other = a.srv
	}
	if st, body := sortie.Call(t, "POST", other.URL+"/pipelines/"+id+"/approve", a.admin, nil); st != 200 {
		t.Fatalf("approve on the replica not driving the pipeline: %d %s", st, body)
	}
	await(t, other.URL, a.admin, id, "SUCCEEDED well before the next resync", 20*time.Second,
		func(v pipelineView) bool { return v.Status == "SUCCEEDED" })
}

func TestExpiryAndTimeoutFail(t *testing.T) {
	t.Parallel()
	expireNS := unique("expire")
	timeoutNS := unique("timeout")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "fail-cluster")
	e.firstVersion(t, "exp", "fail-cluster", expireNS, "exp:1")
	id := e.mustStart(t, canaryApp("exp", "fail-cluster", expireNS, "exp:2", weight(25),
		map[string]any{"pause": map[string]any{"untilApproved": true, "approvalExpiration": map[string]any{"duration": 2, "unit": "SECONDS"}}}))
	v := e.await(t, id, "FAILED")
	if !strings.Contains(v.Message, "expired") {
		t.Errorf("message %q, want the expired approval", v.Message)
	}
	sortie.WaitFor(t, 60*time.Second, "the rollback to the stable version", func() bool {
		return readyPods(t, expireNS, "exp", "exp:1") == 4 && readyPods(t, expireNS, "exp", "exp:2") == 0
	})

	e.firstVersion(t, "slow", "fail-cluster", timeoutNS, "slow:1")
	body := canaryApp("slow", "fail-cluster", timeoutNS, "slow:2", weight(25), approval())
	body["deploymentConfig"] = map[string]any{"timeout": map[string]any{"duration": 3, "unit": "SECONDS"}}
	id = e.mustStart(t, body)
	v = e.await(t, id, "FAILED")
	if !strings.Contains(v.Message, "timed out") {
		t.Errorf("message %q, want the timeout", v.Message)
	}
}

func TestInvalidRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "valid-cluster")
	bad := canaryApp("bad", "valid-cluster", "bad", "bad:1", weight(60), weight(20), map[string]any{"pause": map[string]any{"duration": 5, "unit": "fortnights"}})
	bad["targets"].(map[string]any)["prod"].(map[string]any)["strategy"] = "missing"
	bad["strategies"].(map[string]any)["canary"] = map[string]any{"canary": map[string]any{"steps": []any{weight(60), weight(20),
		map[string]any{"pause": map[string]any{"duration": 5, "unit": "fortnights"}}}}}
	status, body := e.start(t, bad)
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid config: %d %s, want 422", status, body)
	}
	var reply struct {
		Errors []struct {
			Message  string         `json:"message"`
			Metadata map[string]any `json:"metadata"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(body, &reply)
	fields := map[string]bool{}
	for _, er := range reply.Errors {
		if f, ok := er.Metadata["field"].(string); ok {
			fields[f] = true
		}
	}
	for _, want := range []string{"targets.prod.strategy", "strategies.canary.canary.steps[1].setWeight.weight", "strategies.canary.canary.steps[2].pause.unit"} {
		if !fields[want] {
			t.Errorf("no problem reported at %s; got %s", want, body)
		}
	}
	if status, body := e.start(t, canaryApp("bad", "nowhere", "bad", "bad:1", weight(50))); status != http.StatusUnprocessableEntity ||
		!strings.Contains(string(body), "account 'nowhere' does not exist") {
		t.Errorf("unknown account: %d %s", status, body)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/pipelines/kubernetes", strings.NewReader(`{"application": "x", `))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.admin)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed JSON: %v %v, want 400", resp.StatusCode, err)
	}
	if _, err := kubeClient(t).Resource(rolloutsGVR).Namespace("bad").Get(context.Background(), "bad", metav1.GetOptions{}); err == nil {
		t.Error("a refused request created a Rollout")
	}
	if status, body := sortie.Call(t, "GET", e.srv.URL+"/pipelines?application=bad", e.admin, nil); status != 200 || strings.Contains(string(body), `"id"`) {
		t.Errorf("refused requests left pipelines: %d %s", status, body)
	}
}

// The Spinnaker stage's single-target request, its status, resume and abort.
func TestSpinnakerStageDeployment(t *testing.T) {
	t.Parallel()
	app := unique("stage")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "stage-cluster")
	e.firstVersion(t, app, "stage-cluster", app, "stage:1")
	req := map[string]any{
		"account": "stage-cluster", "application": app, "namespace": app,
		"manifests": []any{map[string]any{"inline": map[string]any{"value": deploymentYAML(app, "stage:2")}}},
		"canary": map[string]any{"steps": []any{
			map[string]any{"setWeight": map[string]any{"weight": 25}},
			map[string]any{"pause": map[string]any{"duration": 0, "unit": "NONE", "untilApproved": true}},
			map[string]any{"setWeight": map[string]any{"weight": 50}},
			map[string]any{"pause": map[string]any{"duration": 600, "unit": "SECONDS", "untilApproved": false}},
		}},
	}
	status, body := e.post(t, "/deployments/kubernetes", req)
	if status != 200 {
		t.Fatalf("start deployment: %d %s", status, body)
	}
	var r struct {
		DeploymentID string `json:"deploymentId"`
	}
	_ = json.Unmarshal(body, &r)
	type deploymentView struct {
		Status     string `json:"status"`
		Kubernetes struct {
			Canary struct {
				CurrentStep, TotalSteps, Weight int
				PauseInfo                       *struct {
					Reason         string `json:"reason"`
					EndTimeIso8601 string `json:"endTimeIso8601"`
				} `json:"pauseInfo"`
			} `json:"canary"`
		} `json:"kubernetes"`
	}
	get := func() deploymentView {
		status, body := sortie.Call(t, "GET", e.srv.URL+"/deployments/"+r.DeploymentID, e.admin, nil)
		if status != 200 {
			t.Fatalf("GET deployment: %d %s", status, body)
		}
		var v deploymentView
		_ = json.Unmarshal(body, &v)
		return v
	}
	until := func(want string) deploymentView {
		var v deploymentView
		sortie.WaitFor(t, 60*time.Second, "deployment "+want, func() bool { v = get(); return v.Status == want })
		return v
	}
	v := until("AWAITING_APPROVAL")
	if v.Kubernetes.Canary.Weight != 25 || v.Kubernetes.Canary.TotalSteps != 4 {
		t.Errorf("awaiting approval: %+v", v.Kubernetes.Canary)
	}
	if st, b := e.post(t, "/deployments/"+r.DeploymentID+"/resume", nil); st != 200 {
		t.Fatalf("resume: %d %s", st, b)
	}
	v = until("PAUSED")
	if v.Kubernetes.Canary.PauseInfo == nil || v.Kubernetes.Canary.PauseInfo.EndTimeIso8601 == "" {
		t.Errorf("timed pause without its end time: %+v", v.Kubernetes.Canary)
	}
	// Resume skips the rest of the 10-minute pause.
	if st, b := e.post(t, "/deployments/"+r.DeploymentID+"/resume", nil); st != 200 {
		t.Fatalf("resume the timed pause: %d %s", st, b)
	}
	until("SUCCEEDED")
	if st, _ := e.post(t, "/deployments/"+r.DeploymentID+"/abort", nil); st != http.StatusConflict {
		t.Errorf("aborting a finished deployment: %d, want 409", st)
	}
}

// hubInstance reads the replica's hub instance id from its start-up log.
func hubInstance(t *testing.T, s *sortie.Server) string {
	t.Helper()
	for _, line := range strings.Split(s.Output(), "\n") {
		var l struct {
			Msg string `json:"msg"`
			Hub string `json:"hub_instance"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Hub != "" {
			return l.Hub
		}
	}
	t.Fatalf("no hub_instance in the start-up log of %s", s.URL)
	return ""
}

// tenantOf reads the admin token's tenant through WhoAmI.
func tenantOf(t *testing.T, e *env) store.Tenant {
	t.Helper()
	status, body := sortie.Call(t, "POST", e.srv.URL+"/sortie.identity.v1.IdentityService/WhoAmI", e.admin, map[string]any{})
	if status != 200 {
		t.Fatalf("WhoAmI: %d %s", status, body)
	}
	var who struct {
		Principal struct {
			OrgID string `json:"orgId"`
			EnvID string `json:"envId"`
		} `json:"principal"`
	}
	_ = json.Unmarshal(body, &who)
	return store.Tenant{OrgID: who.Principal.OrgID, EnvID: who.Principal.EnvID}
}

func eventsFrom(t *testing.T, base, tok, id string) []event {
	t.Helper()
	return (&env{srv: &sortie.Server{URL: base}, admin: tok}).events(t, id)
}

// A Deployment someone else created is never overwritten or doubled by a Rollout of the same
// name: the pipeline fails before applying anything, saying why.
func TestUnmanagedDeploymentIsRefused(t *testing.T) {
	t.Parallel()
	app := unique("legacy")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "legacy-cluster")
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": app}}}
	if _, err := kubeClient(t).Resource(namespacesGVR).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dep := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(deploymentYAML(app, "legacy:1")), &dep.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := kubeClient(t).Resource(deployGVR).Namespace(app).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := e.mustStart(t, canaryApp(app, "legacy-cluster", app, "legacy:2", weight(50)))
	v := e.await(t, id, "FAILED")
	if !strings.Contains(v.Message, "Deployment "+app+"/"+app+" already exists in the cluster and is not managed by Sortie") {
		t.Errorf("message %q, want the unmanaged Deployment named", v.Message)
	}
	if _, err := kubeClient(t).Resource(rolloutsGVR).Namespace(app).Get(context.Background(), app, metav1.GetOptions{}); err == nil {
		t.Error("a Rollout was created beside the unmanaged Deployment")
	}
	got, err := kubeClient(t).Resource(deployGVR).Namespace(app).Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the unmanaged Deployment is gone: %v", err)
	}
	if img := got.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "legacy:1" {
		t.Errorf("the unmanaged Deployment was changed: image %v", img)
	}
}
