// Package install applies the Helm charts (charts/sortie, charts/sortie-agent) and the
// manifest route's agent YAML to a real kube-apiserver with server-side apply and strict
// field validation: every object must be accepted as rendered. The ServiceMonitor is
// rendered disabled here (the cluster has no Prometheus Operator CRDs); the charts' golden
// tests cover it. A real helm install, upgrade and uninstall checks that the generated master
// key survives both.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	sortieagent "github.com/sortie-dev/sortie/charts/sortie-agent"
	"github.com/sortie-dev/sortie/e2e/kube"
)

var cluster *kube.Cluster

func TestMain(m *testing.M) { os.Exit(kube.Main(m, &cluster)) }

// helmTemplate renders a chart of the repository with the pinned Helm.
func helmTemplate(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "-modfile=tools/helm/go.mod", "helm", "template"}, args...)...)
	cmd.Dir = "../.."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

type applier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func newApplier(t *testing.T) *applier {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// apply server-side applies every object of a YAML stream (namespaced ones into namespace
// unless they name theirs) with strict field validation, reads each back and returns their
// kinds in order.
func (a *applier) apply(t *testing.T, stream, namespace string) []string {
	t.Helper()
	ctx := context.Background()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(stream), 4096)
	var kinds []string
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return kinds
		} else if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if obj.Object == nil {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, obj.GetName(), err)
		}
		var res dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if obj.GetNamespace() == "" {
				obj.SetNamespace(namespace)
			}
			res = a.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		body, err := json.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		force := true
		if _, err := res.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager: "sortie-e2e-install", Force: &force, FieldValidation: "Strict",
		}); err != nil {
			t.Errorf("server-side apply of %s %s refused: %v", gvk.Kind, obj.GetName(), err)
			continue
		}
		if _, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{}); err != nil {
			t.Errorf("%s %s is not there after apply: %v", gvk.Kind, obj.GetName(), err)
		}
		kinds = append(kinds, gvk.Kind)
	}
}

func (a *applier) createNamespace(t *testing.T, name string) {
	t.Helper()
	a.apply(t, `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "`+name+`"}}`, "")
}

func TestServerChartIsAccepted(t *testing.T) {
	a := newApplier(t)
	tests := []struct {
		name, namespace string
		args            []string
		want            []string
	}{
		{"defaults", "sortie-defaults", nil,
			[]string{"PodDisruptionBudget", "Secret", "PersistentVolumeClaim", "Service", "Deployment"}},
		{"three replicas on Redis, TLS and an Ingress", "sortie-ha", []string{"-f", "charts/sortie/testdata/ha.values.yaml",
			"--set", "serviceMonitor.enabled=false", "--set", "masterKey.existingSecret="},
			[]string{"PodDisruptionBudget", "Secret", "Secret", "Service", "Deployment", "Ingress"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.createNamespace(t, tt.namespace)
			out := helmTemplate(t, append([]string{"sortie", "charts/sortie", "--namespace", tt.namespace}, tt.args...)...)
			got := a.apply(t, out, tt.namespace)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("applied %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAgentChartIsAccepted(t *testing.T) {
	a := newApplier(t)
	a.createNamespace(t, "sortie-agent")
	out := helmTemplate(t, "sortie-agent", "charts/sortie-agent", "--namespace", "sortie-agent",
		"--set", "agentIdentifier=prod-west", "--set", "hubUrl=https://sortie.example.com",
		"--set", "credentials.clientId=id", "--set", "credentials.clientSecret=secret", "--set", "hubCASecret=hub-ca")
	got := a.apply(t, out, "sortie-agent")
	want := "ServiceAccount,Secret,ClusterRole,ClusterRoleBinding,Deployment"
	if strings.Join(got, ",") != want {
		t.Errorf("applied %v, want %s", got, want)
	}
}

// TestManifestRouteIsAccepted applies what GET /kubernetes/agent/manifest returns (the same
// renderer, with the Namespace it creates) to a namespace that does not exist yet.
func TestManifestRouteIsAccepted(t *testing.T) {
	a := newApplier(t)
	var buf bytes.Buffer
	if err := sortieagent.Render(&buf, sortieagent.Release{Name: "sortie-agent", Namespace: "from-route"}, map[string]any{
		"agentIdentifier": "edge_1", "hubUrl": "http://sortie.sortie.svc:8080", "createNamespace": true,
		"credentials": map[string]any{"clientId": "id", "clientSecret": "secret"},
		"image":       map[string]any{"repository": "registry.example/sortie-agent", "tag": "v0.1.0"},
	}); err != nil {
		t.Fatal(err)
	}
	got := a.apply(t, buf.String(), "from-route")
	want := "Namespace,ServiceAccount,ClusterRole,ClusterRoleBinding,Secret,Deployment"
	if strings.Join(got, ",") != want {
		t.Errorf("applied %v, want %s", got, want)
	}
}

// helm runs the pinned Helm against the cluster.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "-modfile=tools/helm/go.mod", "helm", "--kubeconfig", cluster.Kubeconfig()}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestUpgradeKeepsMasterKey installs the server chart with Helm, upgrades it and uninstalls
// it: the master key the first install generated is the one after the upgrade, and it is
// still there after the uninstall.
func TestUpgradeKeepsMasterKey(t *testing.T) {
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	secrets := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace("sortie-upgrade")
	key := func() string {
		t.Helper()
		s, err := secrets.Get(context.Background(), "sortie-master-key", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		k, _, _ := unstructured.NestedString(s.Object, "data", "master.key")
		if k == "" {
			t.Fatalf("the master key Secret holds no master.key: %v", s.Object["data"])
		}
		return k
	}
	helm(t, "install", "sortie", "charts/sortie", "--namespace", "sortie-upgrade", "--create-namespace")
	first := key()
	helm(t, "upgrade", "sortie", "charts/sortie", "--namespace", "sortie-upgrade", "--set", "logLevel=debug")
	if got := key(); got != first {
		t.Error("helm upgrade generated a new master key: everything stored under the old one is lost")
	}
	helm(t, "uninstall", "sortie", "--namespace", "sortie-upgrade")
	if got := key(); got != first {
		t.Error("the master key changed on uninstall")
	}
}
