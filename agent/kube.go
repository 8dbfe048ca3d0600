package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

const (
	// listPageSize pages lists so one command never asks the apiserver for everything at once.
	listPageSize = 500
	// crdWait bounds how long an apply waits for a CRD it just applied to be served.
	crdWait = 15 * time.Second
)

// kube holds the agent's Kubernetes clients.
type kube struct {
	// disco is uncached: server version, and CRD presence checks that must see changes.
	disco discovery.DiscoveryInterface
	dyn   dynamic.Interface
	// mapper maps kinds to resources from a memory-cached discovery; reset when a kind is
	// not found, since a CRD may just have been created.
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKube(disco discovery.DiscoveryInterface, dyn dynamic.Interface) *kube {
	return &kube{
		disco:  disco,
		dyn:    dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)),
	}
}

// invalidError is a command the agent refuses as malformed; it maps to CODE_INVALID.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// mapping maps a kind to its resource. A kind not found resets the discovery cache and is
// looked up once more, as a CRD may have been created since the cache was filled.
func (k *kube) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		k.mapper.Reset()
		m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("kind %s is not served by this cluster: %w", gvkString(gvk), err)
		}
		return nil, fmt.Errorf("map kind %s: %w", gvkString(gvk), err)
	}
	return m, nil
}

func gvkString(gvk schema.GroupVersionKind) string {
	return gvk.Kind + " " + gvk.GroupVersion().String()
}

// parseGVK parses an ObjectReference's or a selector's api_version and kind.
func parseGVK(apiVersion, kind string) (schema.GroupVersionKind, error) {
	if apiVersion == "" || kind == "" {
		return schema.GroupVersionKind{}, invalidf("api_version and kind are required")
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionKind{}, invalidf("api_version %q: %v", apiVersion, err)
	}
	return gv.WithKind(kind), nil
}

// resourceFor returns the client of the object ref names; namespaced kinds need a namespace.
func (k *kube) resourceFor(ref *hubv1.ObjectReference) (dynamic.ResourceInterface, error) {
	if ref == nil {
		return nil, invalidf("ref is required")
	}
	gvk, err := parseGVK(ref.GetApiVersion(), ref.GetKind())
	if err != nil {
		return nil, err
	}
	if ref.GetName() == "" {
		return nil, invalidf("ref.name is required")
	}
	m, err := k.mapping(gvk)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if ref.GetNamespace() == "" {
			return nil, invalidf("ref.namespace is required: %s is namespaced", gvk.Kind)
		}
		return k.dyn.Resource(m.Resource).Namespace(ref.GetNamespace()), nil
	}
	return k.dyn.Resource(m.Resource), nil
}

// get reads one object.
func (k *kube) get(ctx context.Context, ref *hubv1.ObjectReference) (*unstructured.Unstructured, error) {
	ri, err := k.resourceFor(ref)
	if err != nil {
		return nil, err
	}
	u, err := ri.Get(ctx, ref.GetName(), metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", refString(ref), err)
	}
	return u, nil
}

// list lists the objects sel selects, page by page.
func (k *kube) list(ctx context.Context, sel *hubv1.ResourceSelector) ([]unstructured.Unstructured, error) {
	ri, opts, err := k.selectorClient(sel)
	if err != nil {
		return nil, err
	}
	var out []unstructured.Unstructured
	opts.Limit = listPageSize
	for {
		l, err := ri.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", sel.GetKind(), err)
		}
		for _, item := range l.Items {
			// List items carry no kind in the wire format: name it for the caller.
			if item.GetKind() == "" {
				item.SetAPIVersion(sel.GetApiVersion())
				item.SetKind(sel.GetKind())
			}
			out = append(out, item)
		}
		if opts.Continue = l.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

// selectorClient returns the client and list options of a selector.
func (k *kube) selectorClient(sel *hubv1.ResourceSelector) (dynamic.ResourceInterface, metav1.ListOptions, error) {
	if sel == nil {
		return nil, metav1.ListOptions{}, invalidf("selector is required")
	}
	gvk, err := parseGVK(sel.GetApiVersion(), sel.GetKind())
	if err != nil {
		return nil, metav1.ListOptions{}, err
	}
	var opts metav1.ListOptions
	if s := sel.GetLabelSelector(); s != "" {
		if _, err := labels.Parse(s); err != nil {
			return nil, metav1.ListOptions{}, invalidf("label_selector %q: %v", s, err)
		}
		opts.LabelSelector = s
	}
	if n := sel.GetName(); n != "" {
		// Escaped: a name holding ',' or '=' must select nothing, not break the selector.
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", n).String()
	}
	m, err := k.mapping(gvk)
	if err != nil {
		return nil, metav1.ListOptions{}, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace && sel.GetNamespace() != "" {
		return k.dyn.Resource(m.Resource).Namespace(sel.GetNamespace()), opts, nil
	}
	return k.dyn.Resource(m.Resource), opts, nil
}

var patchTypes = map[hubv1.PatchAction_Type]types.PatchType{
	hubv1.PatchAction_TYPE_MERGE:           types.MergePatchType,
	hubv1.PatchAction_TYPE_JSON:            types.JSONPatchType,
	hubv1.PatchAction_TYPE_STRATEGIC_MERGE: types.StrategicMergePatchType,
}

// patch patches an object or one of its subresources.
func (k *kube) patch(ctx context.Context, act *hubv1.PatchAction) (*unstructured.Unstructured, error) {
	pt, ok := patchTypes[act.GetType()]
	if !ok {
		return nil, invalidf("patch type %s is not supported: use TYPE_MERGE, TYPE_JSON or TYPE_STRATEGIC_MERGE", act.GetType())
	}
	if len(act.GetPatch()) == 0 {
		return nil, invalidf("patch is empty")
	}
	ri, err := k.resourceFor(act.GetRef())
	if err != nil {
		return nil, err
	}
	var sub []string
	if s := act.GetSubresource(); s != "" {
		if strings.Contains(s, "/") {
			return nil, invalidf("subresource %q: give one name such as \"status\"", s)
		}
		sub = []string{s}
	}
	u, err := ri.Patch(ctx, act.GetRef().GetName(), pt, act.GetPatch(), metav1.PatchOptions{FieldManager: FieldManager}, sub...)
	if err != nil {
		what := refString(act.GetRef())
		if len(sub) > 0 {
			what += " (" + sub[0] + ")"
		}
		return nil, fmt.Errorf("patch %s: %w", what, err)
	}
	return u, nil
}

// remove deletes an object; one that does not exist counts as deleted.
func (k *kube) remove(ctx context.Context, ref *hubv1.ObjectReference) error {
	ri, err := k.resourceFor(ref)
	if err != nil {
		return err
	}
	// Background propagation, as kubectl: a Deployment's ReplicaSets and Pods go too.
	policy := metav1.DeletePropagationBackground
	err = ri.Delete(ctx, ref.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", refString(ref), err)
	}
	return nil
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// namespaceNames lists the cluster's namespace names, sorted.
func (k *kube) namespaceNames(ctx context.Context) ([]string, error) {
	var names []string
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		l, err := k.dyn.Resource(namespacesGVR).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		for _, item := range l.Items {
			names = append(names, item.GetName())
		}
		if opts.Continue = l.GetContinue(); opts.Continue == "" {
			break
		}
	}
	slices.Sort(names)
	return names, nil
}

// parseManifests decodes YAML or JSON documents (several separated by "---", and v1 List
// objects) into objects, skipping empty documents.
func parseManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, invalidf("manifest document %d: %v", doc, err)
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue
		}
		// Errors name the document but never quote it: it may be a Secret.
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, invalidf("manifest document %d is not an object", doc)
		}
		if head.APIVersion == "" || head.Kind == "" {
			return nil, invalidf("manifest document %d: apiVersion and kind are required", doc)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, invalidf("manifest document %d (%s %s) is not a valid Kubernetes object", doc, head.Kind, head.APIVersion)
		}
		items := []*unstructured.Unstructured{u}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, invalidf("manifest document %d: %v", doc, err)
			}
			items = items[:0]
			for i := range l.Items {
				items = append(items, &l.Items[i])
			}
		}
		for _, o := range items {
			if o.GetAPIVersion() == "" || o.GetKind() == "" {
				return nil, invalidf("manifest document %d: apiVersion and kind are required", doc)
			}
			if o.GetName() == "" {
				return nil, invalidf("manifest document %d: %s has no metadata.name (generateName is not supported by server-side apply)", doc, o.GetKind())
			}
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 {
		return nil, invalidf("manifests hold no object")
	}
	return objs, nil
}

// applyOrder ranks kinds so namespaces and CRDs exist before what lives in or uses them.
func applyOrder(u *unstructured.Unstructured) int {
	gk := u.GroupVersionKind().GroupKind()
	switch gk {
	case schema.GroupKind{Kind: "Namespace"}:
		return 0
	case schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
		return 1
	}
	return 2
}

// apply applies manifests with server-side apply, in apply order, and returns the objects
// as the cluster stored them. It stops at the first failure.
func (k *kube) apply(ctx context.Context, act *hubv1.ApplyAction) ([]*unstructured.Unstructured, error) {
	objs, err := parseManifests(act.GetManifests())
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return applyOrder(a) - applyOrder(b) })
	defaultNS := act.GetNamespace()
	if defaultNS == "" {
		defaultNS = metav1.NamespaceDefault
	}
	appliedCRD := false
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := k.mapping(gvk)
		if meta.IsNoMatchError(err) && appliedCRD {
			m, err = k.waitForKind(ctx, gvk)
		}
		if err != nil {
			return nil, fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		var ri dynamic.ResourceInterface
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(defaultNS)
			}
			ri = k.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		} else {
			o.SetNamespace("")
			ri = k.dyn.Resource(m.Resource)
		}
		applied, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: act.GetForce()})
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", objString(o), err)
		}
		if applyOrder(o) == 1 {
			appliedCRD = true
		}
		out = append(out, applied)
	}
	return out, nil
}

// waitForKind waits (bounded by crdWait and ctx) until discovery serves a kind whose CRD was
// just applied: the apiserver takes a moment to establish it.
func (k *kube) waitForKind(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	ctx, cancel := context.WithTimeout(ctx, crdWait)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kind %s is still not served %s after its CustomResourceDefinition was applied", gvkString(gvk), crdWait)
		case <-tick.C:
		}
		m, err := k.mapping(gvk)
		if !meta.IsNoMatchError(err) {
			return m, err
		}
	}
}

func refString(ref *hubv1.ObjectReference) string {
	if ref.GetNamespace() == "" {
		return ref.GetKind() + " " + ref.GetName()
	}
	return ref.GetKind() + " " + ref.GetNamespace() + "/" + ref.GetName()
}

func objString(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// isSecret tells whether u is a core Secret, whose data the agent never sends.
func isSecret(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return gvk.Group == "" && gvk.Kind == "Secret"
}

// lastApplied is kubectl's annotation holding a copy of the applied object (for a Secret,
// its data).
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// sanitized returns the object as the hub may see it: without managedFields, and for
// Secrets without data, stringData and kubectl's copy of them. u is not modified (it may
// belong to an informer's cache).
func sanitized(u *unstructured.Unstructured) map[string]any {
	obj := maps.Clone(u.Object)
	md, _ := obj["metadata"].(map[string]any)
	if md != nil {
		md = maps.Clone(md)
		delete(md, "managedFields")
		obj["metadata"] = md
	}
	if isSecret(u) {
		delete(obj, "data")
		delete(obj, "stringData")
		if ann, _ := md["annotations"].(map[string]any); ann != nil {
			ann = maps.Clone(ann)
			delete(ann, lastApplied)
			md["annotations"] = ann
		}
	}
	return obj
}

// toResource converts an object for the wire.
func toResource(u *unstructured.Unstructured) (*hubv1.Resource, error) {
	b, err := json.Marshal(sanitized(u))
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", objString(u), err)
	}
	return &hubv1.Resource{
		Ref:             objectRef(u),
		Uid:             string(u.GetUID()),
		ResourceVersion: u.GetResourceVersion(),
		Object:          b,
	}, nil
}

func objectRef(u *unstructured.Unstructured) *hubv1.ObjectReference {
	return &hubv1.ObjectReference{
		ApiVersion: u.GetAPIVersion(),
		Kind:       u.GetKind(),
		Namespace:  u.GetNamespace(),
		Name:       u.GetName(),
	}
}
