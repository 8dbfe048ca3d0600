package agent

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
)

// The protocol tests run the agent against client-go's fake clients: they test the stream
// logic around the cluster. What the agent does to a real cluster is tested against a real
// kube-apiserver in e2e/agent.

const fakeKubeVersion = "v1.37.2"

// fakeCluster is a fake discovery and dynamic client pair.
type fakeCluster struct {
	disco *lockedDiscovery
	dyn   *dynamicfake.FakeDynamicClient
}

var fakeResources = []*metav1.APIResourceList{
	{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "namespaces", Kind: "Namespace", Namespaced: false, Verbs: verbs},
		{Name: "services", Kind: "Service", Namespaced: true, Verbs: verbs},
		{Name: "configmaps", Kind: "ConfigMap", Namespaced: true, Verbs: verbs},
		{Name: "secrets", Kind: "Secret", Namespaced: true, Verbs: verbs},
	}},
	{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
		{Name: "deployments", Kind: "Deployment", Namespaced: true, Verbs: verbs},
		{Name: "deployments/status", Kind: "Deployment", Namespaced: true, Verbs: metav1.Verbs{"get", "patch", "update"}},
		{Name: "replicasets", Kind: "ReplicaSet", Namespaced: true, Verbs: verbs},
	}},
	{GroupVersion: "authorization.k8s.io/v1", APIResources: []metav1.APIResource{
		{Name: "selfsubjectaccessreviews", Kind: "SelfSubjectAccessReview", Verbs: metav1.Verbs{"create"}},
	}},
}

var rolloutResources = &metav1.APIResourceList{GroupVersion: "argoproj.io/v1alpha1", APIResources: []metav1.APIResource{
	{Name: "rollouts", Kind: "Rollout", Namespaced: true, Verbs: verbs},
}}

var verbs = metav1.Verbs{"get", "list", "watch", "create", "update", "patch", "delete"}

var fakeListKinds = map[schema.GroupVersionResource]string{
	{Version: "v1", Resource: "namespaces"}:                           "NamespaceList",
	{Version: "v1", Resource: "services"}:                             "ServiceList",
	{Version: "v1", Resource: "configmaps"}:                           "ConfigMapList",
	{Version: "v1", Resource: "secrets"}:                              "SecretList",
	{Group: "apps", Version: "v1", Resource: "deployments"}:           "DeploymentList",
	{Group: "apps", Version: "v1", Resource: "replicasets"}:           "ReplicaSetList",
	{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}: "RolloutList",
}

// newFakeCluster returns a fake cluster holding objs, where the agent has cluster-wide RBAC.
func newFakeCluster(objs ...runtime.Object) *fakeCluster {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fakeListKinds, objs...)
	dyn.PrependReactor("create", "selfsubjectaccessreviews", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
			"status": map[string]any{"allowed": true},
		}}, nil
	})
	disco := &fakediscovery.FakeDiscovery{
		Fake:               &clienttesting.Fake{Resources: append([]*metav1.APIResourceList(nil), fakeResources...)},
		FakedServerVersion: &version.Info{GitVersion: fakeKubeVersion},
	}
	return &fakeCluster{disco: &lockedDiscovery{FakeDiscovery: disco}, dyn: dyn}
}

// lockedDiscovery lets a test add API resources (a CRD appearing) while the agent reads them.
type lockedDiscovery struct {
	mu sync.Mutex // guards the embedded fake's Resources
	*fakediscovery.FakeDiscovery
}

func (d *lockedDiscovery) addResources(l *metav1.APIResourceList) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Resources = append(d.Resources, l)
}

func (d *lockedDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerResourcesForGroupVersion(gv)
}

func (d *lockedDiscovery) ServerResourcesForGroupVersionWithContext(ctx context.Context, gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerResourcesForGroupVersionWithContext(ctx, gv)
}

func (d *lockedDiscovery) ServerGroups() (*metav1.APIGroupList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerGroups()
}

func (d *lockedDiscovery) ServerGroupsWithContext(ctx context.Context) (*metav1.APIGroupList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerGroupsWithContext(ctx)
}

func (d *lockedDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerGroupsAndResources()
}

func (d *lockedDiscovery) ServerGroupsAndResourcesWithContext(ctx context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerGroupsAndResourcesWithContext(ctx)
}

// obj builds an unstructured object.
func obj(apiVersion, kind, namespace, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range fields {
		u.Object[k] = v
	}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}
