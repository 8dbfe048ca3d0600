// Package agent_test runs the edge agent (package agent, in process) against a real
// kube-apiserver and etcd from e2e/kube, with a test hub from agent/agenttest sending it
// commands over a real HTTP/2 stream: server-side apply, get, list, patch (also the status
// subresource), delete, watch, list namespaces, the inventory and Secret redaction.
package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sortie-dev/sortie/agent"
	"github.com/sortie-dev/sortie/agent/agenttest"
	"github.com/sortie-dev/sortie/e2e/kube"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

var cluster *kube.Cluster

func TestMain(m *testing.M) { os.Exit(kube.Main(m, &cluster)) }

const (
	connectTimeout = 30 * time.Second
	commandTimeout = 30 * time.Second
)

var (
	deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	secretsGVR     = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	namespacesGVR  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	configMapsGVR  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

// env is one agent connected to a test hub, and a namespace of its own.
type env struct {
	t      *testing.T
	hub    *agenttest.Hub
	stream *agenttest.Stream
	agent  *agent.Agent
	// kube is an admin client for acting on the cluster directly, not through the agent.
	kube dynamic.Interface
	ns   string
	ids  atomic.Int64
}

func restConfig(t *testing.T) *rest.Config {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	return rc
}

// start runs an agent and waits until its first inventory snapshot is complete.
func start(t *testing.T) *env {
	t.Helper()
	rc := restConfig(t)
	direct, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	tokens := agenttest.NewTokenServer(t, "agent-id", "agent-secret")
	hub := agenttest.NewHub(t, agenttest.WithTokens(tokens))
	logs := &syncBuffer{}
	a, err := agent.New(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), agent.Config{
		HubURL: hub.URL(), TokenURL: tokens.URL(), ClientID: "agent-id", ClientSecret: "agent-secret",
		AgentIdentifier: "e2e", Version: "e2e", RESTConfig: rc, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after cancellation")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	s := hub.WaitStream(1, connectTimeout)
	s.WaitFor(t, agenttest.IsLastSnapshotChunk, connectTimeout)
	e := &env{t: t, hub: hub, stream: s, agent: a, kube: direct, ns: fmt.Sprintf("e2e-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%100000)}
	if len(e.ns) > 63 {
		e.ns = e.ns[len(e.ns)-63:]
	}
	return e
}

// do sends one command and returns its result.
func (e *env) do(cmd *hubv1.Command) *hubv1.CommandResult {
	e.t.Helper()
	cmd.Id = fmt.Sprintf("%s-%d", e.t.Name(), e.ids.Add(1))
	return e.stream.Do(e.t, cmd, commandTimeout)
}

// ok sends one command and fails the test unless it succeeds.
func (e *env) ok(cmd *hubv1.Command) *hubv1.CommandResult {
	e.t.Helper()
	res := e.do(cmd)
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		e.t.Fatalf("command %T failed: %v %s", cmd.GetAction(), res.GetError().GetCode(), res.GetError().GetMessage())
	}
	return res
}

// fails sends one command and fails the test unless it fails with code.
func (e *env) fails(cmd *hubv1.Command, code hubv1.CommandError_Code) *hubv1.CommandError {
	e.t.Helper()
	res := e.do(cmd)
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_FAILED || res.GetError().GetCode() != code || res.GetError().GetMessage() == "" {
		e.t.Fatalf("command %T: %v, want FAILED %v with a message", cmd.GetAction(), res, code)
	}
	return res.GetError()
}

func apply(manifests, namespace string, force bool) *hubv1.Command {
	return &hubv1.Command{Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{Manifests: []byte(manifests), Namespace: namespace, Force: force}}}
}

func get(apiVersion, kind, ns, name string) *hubv1.Command {
	return &hubv1.Command{Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: ref(apiVersion, kind, ns, name)}}}
}

func patch(r *hubv1.ObjectReference, typ hubv1.PatchAction_Type, body, subresource string) *hubv1.Command {
	return &hubv1.Command{Action: &hubv1.Command_Patch{Patch: &hubv1.PatchAction{Ref: r, Type: typ, Patch: []byte(body), Subresource: subresource}}}
}

func del(r *hubv1.ObjectReference) *hubv1.Command {
	return &hubv1.Command{Action: &hubv1.Command_Delete{Delete: &hubv1.DeleteAction{Ref: r}}}
}

func ref(apiVersion, kind, ns, name string) *hubv1.ObjectReference {
	return &hubv1.ObjectReference{ApiVersion: apiVersion, Kind: kind, Namespace: ns, Name: name}
}

// object decodes a resource's JSON.
func object(t *testing.T, r *hubv1.Resource) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(r.GetObject()); err != nil {
		t.Fatalf("resource %v: %v", r.GetRef(), err)
	}
	if u.GetManagedFields() != nil {
		t.Errorf("resource %v carries managedFields", r.GetRef())
	}
	return u
}

func appManifests(ns string) string {
	// The Namespace comes last on purpose: the agent applies it first.
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: Namespace
metadata:
  name: %s
`, ns)
}

func TestApplyMultiDocumentManifestTwice(t *testing.T) {
	t.Parallel()
	e := start(t)
	manifests := appManifests(e.ns)

	first := e.ok(apply(manifests, e.ns, false)).GetResources().GetResources()
	var kinds []string
	versions := map[string]string{}
	for _, r := range first {
		kinds = append(kinds, r.GetRef().GetKind())
		if r.GetResourceVersion() == "" || r.GetUid() == "" {
			t.Errorf("%v: no resourceVersion or uid", r.GetRef())
		}
		object(t, r)
		versions[r.GetRef().GetKind()] = r.GetResourceVersion()
	}
	if want := []string{"Namespace", "ConfigMap", "Deployment", "Service"}; !slices.Equal(kinds, want) {
		t.Fatalf("applied %v, want %v (namespaces first, then in manifest order)", kinds, want)
	}
	for _, r := range first[1:] {
		if r.GetRef().GetNamespace() != e.ns {
			t.Errorf("%v: applied outside the command's namespace", r.GetRef())
		}
	}

	// What the cluster holds was applied server-side by field manager sortie-agent.
	d, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Deployment is not in the cluster: %v", err)
	}
	if !managedBy(d, agent.FieldManager, metav1.ManagedFieldsOperationApply) {
		t.Errorf("the Deployment is not managed by %q with server-side apply: %v", agent.FieldManager, d.GetManagedFields())
	}

	// Applying the same manifests again changes nothing. (Except, once, the Namespace:
	// kube-apiserver creates a Namespace by apply without managedFields and records them,
	// as manager "before-first-apply", at the next apply. A third apply changes nothing.)
	second := e.ok(apply(manifests, e.ns, false)).GetResources().GetResources()
	for _, r := range second {
		if got, want := r.GetResourceVersion(), versions[r.GetRef().GetKind()]; got != want && r.GetRef().GetKind() != "Namespace" {
			t.Errorf("%v: resourceVersion %s after the second apply, want unchanged %s", r.GetRef(), got, want)
		}
		versions[r.GetRef().GetKind()] = r.GetResourceVersion()
	}
	third := e.ok(apply(manifests, e.ns, false)).GetResources().GetResources()
	for _, r := range third {
		if got, want := r.GetResourceVersion(), versions[r.GetRef().GetKind()]; got != want {
			t.Errorf("%v: resourceVersion %s after the third apply, want unchanged %s", r.GetRef(), got, want)
		}
	}

	// Another manager takes spec.replicas: without force the agent's apply conflicts, with
	// force it takes the field back.
	other := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":5}}`)
	if _, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Patch(context.Background(), "web", types.ApplyPatchType, other,
		metav1.PatchOptions{FieldManager: "someone-else", Force: ptr(true)}); err != nil {
		t.Fatalf("apply as another manager: %v", err)
	}
	msg := e.fails(apply(manifests, e.ns, false), hubv1.CommandError_CODE_CONFLICT).GetMessage()
	if !strings.Contains(msg, "someone-else") {
		t.Errorf("the conflict does not name the other manager: %s", msg)
	}
	res := e.ok(apply(manifests, e.ns, true)).GetResources().GetResources()
	if r, _, _ := unstructured.NestedInt64(object(t, res[2]).Object, "spec", "replicas"); r != 2 {
		t.Errorf("spec.replicas = %d after a forced apply, want 2", r)
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.fails(apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", "no-such-namespace-e2e", false), hubv1.CommandError_CODE_NOT_FOUND)
	// A Deployment without a selector or template is invalid.
	e.ok(apply(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", e.ns), "", false))
	msg := e.fails(apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  replicas: 1\n", e.ns, false),
		hubv1.CommandError_CODE_INVALID).GetMessage()
	if !strings.Contains(msg, "selector") {
		t.Errorf("the error does not say what is invalid: %s", msg)
	}
	e.fails(apply("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n", e.ns, false), hubv1.CommandError_CODE_NOT_FOUND)
	e.fails(apply("not: [yaml", e.ns, false), hubv1.CommandError_CODE_INVALID)
}

func TestListNamespaces(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.ok(apply(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", e.ns), "", false))
	names := e.ok(&hubv1.Command{Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}}}).GetNamespaces().GetNames()
	for _, want := range []string{"default", "kube-system", e.ns} {
		if !slices.Contains(names, want) {
			t.Errorf("namespaces %v lack %q", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("namespaces are not sorted: %v", names)
	}
}

func TestGetListPatchDelete(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.ok(apply(appManifests(e.ns), e.ns, false))
	ctx := context.Background()
	dep := ref("apps/v1", "Deployment", e.ns, "web")

	got := object(t, e.ok(get("apps/v1", "Deployment", e.ns, "web")).GetResources().GetResources()[0])
	if got.GetName() != "web" || got.GetKind() != "Deployment" {
		t.Fatalf("get returned %s %s", got.GetKind(), got.GetName())
	}
	list := e.ok(&hubv1.Command{Action: &hubv1.Command_List{List: &hubv1.ListAction{Selector: &hubv1.ResourceSelector{
		ApiVersion: "v1", Kind: "Service", Namespace: e.ns, LabelSelector: ""}}}}).GetResources().GetResources()
	if len(list) != 1 || list[0].GetRef().GetName() != "web" || list[0].GetRef().GetKind() != "Service" {
		t.Errorf("list Services = %v, want web", list)
	}
	none := e.ok(&hubv1.Command{Action: &hubv1.Command_List{List: &hubv1.ListAction{Selector: &hubv1.ResourceSelector{
		ApiVersion: "apps/v1", Kind: "Deployment", Namespace: e.ns, LabelSelector: "app=other"}}}}).GetResources().GetResources()
	if len(none) != 0 {
		t.Errorf("list with a selector matching nothing = %v", none)
	}

	// Merge patch.
	res := e.ok(patch(dep, hubv1.PatchAction_TYPE_MERGE, `{"metadata":{"labels":{"patched":"merge"}}}`, ""))
	if object(t, res.GetResources().GetResources()[0]).GetLabels()["patched"] != "merge" {
		t.Errorf("merge patch not applied")
	}
	// Strategic merge patch: containers merge by name, the sidecar stays.
	res = e.ok(patch(dep, hubv1.PatchAction_TYPE_STRATEGIC_MERGE, `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}`, ""))
	containers, _, _ := unstructured.NestedSlice(object(t, res.GetResources().GetResources()[0]).Object, "spec", "template", "spec", "containers")
	images := map[string]any{}
	for _, c := range containers {
		images[c.(map[string]any)["name"].(string)] = c.(map[string]any)["image"]
	}
	if images["web"] != "nginx:1.28" || images["sidecar"] != "busybox:1.36" {
		t.Errorf("strategic merge patch: containers %v, want web on nginx:1.28 and the sidecar kept", images)
	}
	// JSON patch.
	res = e.ok(patch(dep, hubv1.PatchAction_TYPE_JSON, `[{"op":"replace","path":"/spec/replicas","value":3}]`, ""))
	if r, _, _ := unstructured.NestedInt64(object(t, res.GetResources().GetResources()[0]).Object, "spec", "replicas"); r != 3 {
		t.Errorf("JSON patch: spec.replicas = %d, want 3", r)
	}
	// Status: ignored on the object itself, applied through the status subresource.
	e.ok(patch(dep, hubv1.PatchAction_TYPE_MERGE, `{"status":{"observedGeneration":42}}`, ""))
	d, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g, found, _ := unstructured.NestedInt64(d.Object, "status", "observedGeneration"); found && g == 42 {
		t.Fatalf("a status patch on the object itself changed the status")
	}
	e.ok(patch(dep, hubv1.PatchAction_TYPE_MERGE, `{"status":{"observedGeneration":42}}`, "status"))
	d, err = e.kube.Resource(deploymentsGVR).Namespace(e.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g, _, _ := unstructured.NestedInt64(d.Object, "status", "observedGeneration"); g != 42 {
		t.Errorf("status.observedGeneration = %d after a status patch, want 42", g)
	}
	e.fails(patch(ref("apps/v1", "Deployment", e.ns, "missing"), hubv1.PatchAction_TYPE_MERGE, `{}`, ""), hubv1.CommandError_CODE_NOT_FOUND)
	e.fails(patch(dep, hubv1.PatchAction_TYPE_JSON, `[{"op":"replace","path":"/spec/nope/deeper","value":1}]`, ""), hubv1.CommandError_CODE_INVALID)

	// Delete, and delete again: both succeed; then the object is gone.
	cm := ref("v1", "ConfigMap", e.ns, "settings")
	e.ok(del(cm))
	if _, err := e.kube.Resource(configMapsGVR).Namespace(e.ns).Get(ctx, "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ConfigMap still exists after delete: %v", err)
	}
	e.ok(del(cm))
	e.fails(get("v1", "ConfigMap", e.ns, "settings"), hubv1.CommandError_CODE_NOT_FOUND)
	e.ok(del(dep))
}

func TestInventoryReflectsClusterChanges(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	if _, err := e.kube.Resource(namespacesGVR).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": e.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.stream.WaitFor(t, upsert("Namespace", "", e.ns, ""), 2*time.Second)

	// A Deployment created directly in the cluster, not through the agent.
	d := &unstructured.Unstructured{}
	if err := d.UnmarshalJSON([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"direct","labels":{"app":"direct"}},
		"spec":{"replicas":1,"selector":{"matchLabels":{"app":"direct"}},"template":{"metadata":{"labels":{"app":"direct"}},
		"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`)); err != nil {
		t.Fatal(err)
	}
	created, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.stream.WaitFor(t, upsert("Deployment", e.ns, "direct", created.GetResourceVersion()), 2*time.Second)
	t.Logf("the creation reached the hub after %s", time.Since(start).Round(time.Millisecond))

	updated, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Patch(ctx, "direct", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"changed":"yes"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.stream.WaitFor(t, upsert("Deployment", e.ns, "direct", updated.GetResourceVersion()), 2*time.Second)

	if err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Delete(ctx, "direct", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.stream.WaitFor(t, func(m *hubv1.ConnectRequest) bool {
		for _, r := range m.GetInventoryDelta().GetDeletions() {
			if r.GetKind() == "Deployment" && r.GetNamespace() == e.ns && r.GetName() == "direct" {
				return true
			}
		}
		return false
	}, 2*time.Second)
}

// upsert matches an InventoryDelta upserting an object (at a resourceVersion, if given).
func upsert(kind, ns, name, resourceVersion string) func(*hubv1.ConnectRequest) bool {
	return func(m *hubv1.ConnectRequest) bool {
		for _, r := range m.GetInventoryDelta().GetUpserts() {
			if r.GetRef().GetKind() == kind && r.GetRef().GetNamespace() == ns && r.GetRef().GetName() == name &&
				(resourceVersion == "" || r.GetResourceVersion() == resourceVersion) {
				return true
			}
		}
		return false
	}
}

func TestSecretDataNeverSent(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	value := fmt.Sprintf("s3cr3t-%d", time.Now().UnixNano())
	applied := fmt.Sprintf("applied-%d", time.Now().UnixNano())
	e.ok(apply(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", e.ns), "", false))

	// A watch on Secrets, started before they exist.
	e.ok(&hubv1.Command{Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{WatchId: "secrets",
		Selectors: []*hubv1.ResourceSelector{{ApiVersion: "v1", Kind: "Secret", Namespace: e.ns}}}}})

	// One created directly, as kubectl apply would (with its copy in an annotation).
	last, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": map[string]string{"password": value}})
	if _, err := e.kube.Resource(secretsGVR).Namespace(e.ns).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "direct", "annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": string(last)}},
		"data":     map[string]any{"password": base64.StdEncoding.EncodeToString([]byte(value))},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// One applied through the agent.
	res := e.ok(apply(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: applied\nstringData:\n  token: %s\n", applied), e.ns, false))
	if r := res.GetResources().GetResources(); len(r) != 1 || object(t, r[0]).GetName() != "applied" {
		t.Fatalf("apply Secret: %v", res)
	}
	// Read back every way the hub can ask.
	got := e.ok(get("v1", "Secret", e.ns, "direct")).GetResources().GetResources()
	if u := object(t, got[0]); u.GetName() != "direct" || u.Object["type"] != "Opaque" {
		t.Errorf("get Secret lost its metadata: %s", got[0].GetObject())
	}
	e.ok(&hubv1.Command{Action: &hubv1.Command_List{List: &hubv1.ListAction{Selector: &hubv1.ResourceSelector{ApiVersion: "v1", Kind: "Secret", Namespace: e.ns}}}})
	e.ok(patch(ref("v1", "Secret", e.ns, "direct"), hubv1.PatchAction_TYPE_MERGE, `{"metadata":{"labels":{"seen":"yes"}}}`, ""))
	e.stream.WaitFor(t, func(m *hubv1.ConnectRequest) bool {
		return m.GetResourceEvent().GetResource().GetRef().GetName() == "applied"
	}, 10*time.Second)

	// Nothing that reached the hub holds the values, in any encoding.
	needles := [][]byte{[]byte(value), []byte(applied)}
	for _, v := range []string{value, applied} {
		needles = append(needles, []byte(base64.StdEncoding.EncodeToString([]byte(v))), []byte(base64.StdEncoding.EncodeToString([]byte(v))[:12]))
	}
	msgs := e.hub.Messages()
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Fatalf("a %T sent to the hub contains Secret data", m.GetMessage())
			}
		}
	}
	if len(msgs) < 5 {
		t.Fatalf("only %d messages reached the hub: the check above proves nothing", len(msgs))
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	e.ok(apply(appManifests(e.ns), e.ns, false))
	e.ok(&hubv1.Command{Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{WatchId: "w", Selectors: []*hubv1.ResourceSelector{
		{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: e.ns, LabelSelector: "app=web"},
		{ApiVersion: "v1", Kind: "ConfigMap", Namespace: e.ns, Name: "settings"},
	}}}})
	event := func(typ hubv1.ResourceEvent_Type, kind, name string) func(*hubv1.ConnectRequest) bool {
		return func(m *hubv1.ConnectRequest) bool {
			ev := m.GetResourceEvent()
			return ev.GetWatchId() == "w" && ev.GetType() == typ && ev.GetResource().GetRef().GetKind() == kind && ev.GetResource().GetRef().GetName() == name
		}
	}
	// Existing objects first, before the command's result.
	for _, want := range [][2]string{{"Deployment", "web"}, {"ConfigMap", "settings"}} {
		if e.stream.Count(event(hubv1.ResourceEvent_TYPE_ADDED, want[0], want[1])) != 1 {
			t.Errorf("no ADDED event for the existing %s %s", want[0], want[1])
		}
	}
	if _, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":4}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.stream.WaitFor(t, event(hubv1.ResourceEvent_TYPE_MODIFIED, "Deployment", "web"), 5*time.Second)
	if err := e.kube.Resource(configMapsGVR).Namespace(e.ns).Delete(ctx, "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.stream.WaitFor(t, event(hubv1.ResourceEvent_TYPE_DELETED, "ConfigMap", "settings"), 5*time.Second)

	e.ok(&hubv1.Command{Action: &hubv1.Command_Unwatch{Unwatch: &hubv1.UnwatchAction{WatchId: "w"}}})
	before := len(e.stream.Messages())
	if _, err := e.kube.Resource(deploymentsGVR).Namespace(e.ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	for _, m := range e.stream.Messages()[before:] {
		if m.GetResourceEvent() != nil {
			t.Errorf("a ResourceEvent arrived after unwatch")
		}
	}
}

const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rollouts.argoproj.io
spec:
  group: argoproj.io
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout, shortNames: [ro]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

// TestRollouts applies a Rollout together with its CRD (the agent orders them and waits for
// the kind to be served), patches its status as kubectl argo rollouts promote does, and
// checks that agents report Rollouts once the CRD exists, also one already running.
func TestRollouts(t *testing.T) {
	t.Parallel()
	early := start(t) // running before the CRD exists
	e := start(t)
	manifests := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: canary
spec:
  replicas: 1
---
%s---
apiVersion: v1
kind: Namespace
metadata:
  name: %s
`, rolloutCRD, e.ns)
	res := e.ok(apply(manifests, e.ns, false)).GetResources().GetResources()
	var kinds []string
	for _, r := range res {
		kinds = append(kinds, r.GetRef().GetKind())
	}
	if want := []string{"Namespace", "CustomResourceDefinition", "Rollout"}; !slices.Equal(kinds, want) {
		t.Fatalf("applied %v, want %v", kinds, want)
	}
	ro := ref("argoproj.io/v1alpha1", "Rollout", e.ns, "canary")
	e.ok(patch(ro, hubv1.PatchAction_TYPE_MERGE, `{"status":{"pauseConditions":null,"controllerPause":false,"phase":"Progressing"}}`, "status"))
	got := object(t, e.ok(get("argoproj.io/v1alpha1", "Rollout", e.ns, "canary")).GetResources().GetResources()[0])
	if p, _, _ := unstructured.NestedString(got.Object, "status", "phase"); p != "Progressing" {
		t.Errorf("status.phase = %q after a status patch, want Progressing", p)
	}
	// Strategic merge patches need a Go type; a custom resource refuses them precisely.
	e.fails(patch(ro, hubv1.PatchAction_TYPE_STRATEGIC_MERGE, `{"spec":{"replicas":2}}`, ""), hubv1.CommandError_CODE_INVALID)

	// An agent started now reports the Rollout in its first snapshot.
	late := start(t)
	snap, _ := late.stream.Snapshot()
	if !slices.ContainsFunc(snap, func(r *hubv1.Resource) bool {
		return r.GetRef().GetKind() == "Rollout" && r.GetRef().GetName() == "canary"
	}) {
		t.Errorf("the snapshot of an agent started after the CRD lacks the Rollout")
	}
	// The agent that ran before finds the CRD within its periodic check (30 s).
	early.stream.WaitFor(t, upsert("Rollout", e.ns, "canary", ""), 45*time.Second)
}

func managedBy(u *unstructured.Unstructured, manager string, op metav1.ManagedFieldsOperationType) bool {
	for _, f := range u.GetManagedFields() {
		if f.Manager == manager && f.Operation == op {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
