package pipelines_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
)

// runs numbers the namespaces and applications of every test run: the tests share one
// cluster, and a test run again (go test -count) must not find its earlier run's objects.
var runs atomic.Int64

// unique returns name suffixed for this run of the test.
func unique(name string) string { return fmt.Sprintf("%s-%d", name, runs.Add(1)) }

// fastEngine makes pipelines react within a second: short resync and lease.
var fastEngine = []string{"--pipeline-resync", "300ms", "--pipeline-lease-ttl", "3s"}

// env is one sortie-server with an admin token and agents in the shared cluster.
type env struct {
	srv   *sortie.Server
	dir   string
	admin string
}

func newEnv(t testing.TB, cfg sortie.ServerConfig) *env {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	// The caller's flags come last, so they override fastEngine's.
	cfg.Args = append(append([]string{}, fastEngine...), cfg.Args...)
	srv := sortie.StartServer(t, cfg)
	id, secret := sortie.AdminCredential(t, cfg.DataDir)
	return &env{srv: srv, dir: cfg.DataDir, admin: sortie.Token(t, srv.URL, id, secret)}
}

// agent connects an agent of identifier to hubURL and waits until it is an account.
func (e *env) agent(t testing.TB, hubURL, identifier string) *sortie.Process {
	t.Helper()
	id, secret := sortie.AgentCredential(t, e.srv.URL, e.admin, "agent-"+identifier)
	p := sortie.StartAgent(t, cluster.Kubeconfig(), "agent "+identifier, hubURL, id, secret, identifier)
	sortie.WaitFor(t, 30*time.Second, "agent "+identifier+" to connect", func() bool {
		return len(sortie.ConnectedAgents(t, e.srv.URL, e.admin, identifier)) > 0
	})
	return p
}

// pipelineView is the part of GET /pipelines/{id} the tests read.
type pipelineView struct {
	ID          string            `json:"id"`
	Application string            `json:"application"`
	Status      string            `json:"status"`
	Message     string            `json:"message"`
	StartedAt   string            `json:"startedAtIso8601"`
	CompletedAt string            `json:"completedAtIso8601"`
	Context     map[string]string `json:"context"`
	Steps       []struct {
		Ref        string   `json:"ref"`
		Type       string   `json:"type"`
		Status     string   `json:"status"`
		DependsOn  []string `json:"dependsOn"`
		Deployment *struct {
			ID          string `json:"id"`
			Environment string `json:"environment"`
			Step        int    `json:"step"`
			TotalSteps  int    `json:"totalSteps"`
		} `json:"deployment"`
		Pause *struct {
			Duration int64  `json:"duration"`
			Unit     string `json:"unit"`
		} `json:"pause"`
	} `json:"steps"`
	Targets []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Weight int    `json:"weight"`
		Pause  *struct {
			Reason        string   `json:"reason"`
			Step          string   `json:"step"`
			EndTime       string   `json:"endTimeIso8601"`
			RequiresRoles []string `json:"requiresRoles"`
		} `json:"pauseInfo"`
		Message string `json:"message"`
	} `json:"environments"`
	Decisions []struct {
		Action string `json:"action"`
		Step   string `json:"step"`
		Actor  struct {
			Type, Name string
		} `json:"actor"`
		At string `json:"atIso8601"`
	} `json:"decisions"`
	BlockedBy string `json:"blockedBy"`
}

func (v pipelineView) target(name string) (status string, weight int, pauseReason, pauseStep string) {
	for _, tg := range v.Targets {
		if tg.Name == name {
			if tg.Pause != nil {
				pauseReason, pauseStep = tg.Pause.Reason, tg.Pause.Step
			}
			return tg.Status, tg.Weight, pauseReason, pauseStep
		}
	}
	return "", 0, "", ""
}

// start posts a deploy.yml as the Armory CLI does and returns the reply's status and body.
func (e *env) start(t testing.TB, body any) (int, []byte) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.srv.URL+"/pipelines/kubernetes", strings.NewReader(string(data)))
	req.Header.Set("Content-Type", "application/vnd.start.kubernetes.pipeline.v2+json")
	req.Header.Set("Accept", "application/vnd.start.kubernetes.pipeline.v2+json")
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// mustStart starts a pipeline and returns its id.
func (e *env) mustStart(t testing.TB, body any) string {
	t.Helper()
	status, reply := e.start(t, body)
	if status != http.StatusAccepted {
		t.Fatalf("start pipeline: %d %s", status, reply)
	}
	var r struct {
		PipelineID string `json:"pipelineId"`
	}
	_ = json.Unmarshal(reply, &r)
	return r.PipelineID
}

func (e *env) get(t testing.TB, id string) pipelineView {
	t.Helper()
	return getFrom(t, e.srv.URL, e.admin, id)
}

func getFrom(t testing.TB, base, tok, id string) pipelineView {
	t.Helper()
	status, body := sortie.Call(t, "GET", base+"/pipelines/"+id, tok, nil)
	if status != 200 {
		t.Fatalf("GET /pipelines/%s: %d %s", id, status, body)
	}
	var v pipelineView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode pipeline: %v", err)
	}
	return v
}

// await polls the pipeline, as the Armory CLI does, until cond holds; it fails on a final
// status cond does not accept.
func await(t testing.TB, base, tok, id, what string, limit time.Duration, cond func(pipelineView) bool) pipelineView {
	t.Helper()
	deadline := time.Now().Add(limit)
	var v pipelineView
	for {
		v = getFrom(t, base, tok, id)
		if cond(v) {
			return v
		}
		if final(v.Status) || time.Now().After(deadline) {
			b, _ := json.MarshalIndent(v, "", " ")
			_, evs := sortie.Call(t, "GET", base+"/pipelines/"+id+"/events", tok, nil)
			t.Fatalf("pipeline %s never got to %s; last view:\n%s\nevents: %s", id, what, b, evs)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func final(s string) bool {
	switch s {
	case "SUCCEEDED", "FAILED", "CANCELLED", "REJECTED":
		return true
	}
	return false
}

func (e *env) await(t testing.TB, id, status string) pipelineView {
	t.Helper()
	return await(t, e.srv.URL, e.admin, id, status, 90*time.Second, func(v pipelineView) bool { return v.Status == status })
}

func (e *env) post(t testing.TB, path string, body any) (int, []byte) {
	t.Helper()
	return sortie.Call(t, "POST", e.srv.URL+path, e.admin, body)
}

// events reads the pipeline's history.
func (e *env) events(t testing.TB, id string) []event {
	t.Helper()
	status, body := sortie.Call(t, "GET", e.srv.URL+"/pipelines/"+id+"/events", e.admin, nil)
	if status != 200 {
		t.Fatalf("events: %d %s", status, body)
	}
	var out struct {
		Events []event `json:"events"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}

type event struct {
	Seq    int64  `json:"seq"`
	Type   string `json:"type"`
	Target string `json:"target"`
	Step   string `json:"step"`
	Status string `json:"status"`
}

func countEvents(evs []event, typ, status string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ && (status == "" || ev.Status == status) {
			n++
		}
	}
	return n
}

// deployYAML is a deploy.yml (as JSON) of one application.
type deployYAML map[string]any

func canaryApp(app, account, ns, image string, steps ...any) deployYAML {
	return deployYAML{
		"version": "v1", "kind": "kubernetes", "application": app,
		"targets":    map[string]any{"prod": map[string]any{"account": account, "namespace": ns, "strategy": "canary"}},
		"strategies": map[string]any{"canary": map[string]any{"canary": map[string]any{"steps": steps}}},
		"manifests":  []any{map[string]any{"path": "k8s/app.yaml"}},
		"files":      map[string]any{"k8s/app.yaml": []string{namespaceYAML(ns), deploymentYAML(app, image)}},
		"context":    map[string]string{"commit": "abc123"},
	}
}

func weight(w int) any { return map[string]any{"setWeight": map[string]any{"weight": w}} }
func wait(s int) any {
	return map[string]any{"pause": map[string]any{"duration": s, "unit": "SECONDS"}}
}
func approval() any { return map[string]any{"pause": map[string]any{"untilApproved": true}} }

func namespaceYAML(ns string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns)
}

func deploymentYAML(app, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  labels: {app: %[1]s}
spec:
  replicas: 4
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: %[1]s
        image: %[2]s
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
`, app, image)
}

func serviceYAML(name, app string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  selector: {app: %s}\n  ports: [{port: 80, targetPort: 8080}]\n", name, app)
}

// kube is a client of the shared cluster.
func kubeClient(t testing.TB) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	rolloutsGVR   = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
	podsGVR       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	servicesGVR   = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	deployGVR     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

func rolloutOf(t testing.TB, ns, name string) *unstructured.Unstructured {
	t.Helper()
	ro, err := kubeClient(t).Resource(rolloutsGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get rollout %s/%s: %v", ns, name, err)
	}
	return ro
}

func str(obj *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(obj.Object, path...)
	return s
}

// readyPods counts the Ready pods of app running image.
func readyPods(t testing.TB, ns, app, image string) int {
	t.Helper()
	list, err := kubeClient(t).Resource(podsGVR).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range list.Items {
		if p.GetDeletionTimestamp() != nil {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(p.Object, "spec", "containers")
		if len(cs) == 0 || cs[0].(map[string]any)["image"] != image {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
		for _, c := range conds {
			m := c.(map[string]any)
			if m["type"] == "Ready" && m["status"] == "True" {
				n++
			}
		}
	}
	return n
}
