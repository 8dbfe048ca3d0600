package agent

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

const (
	// chunkObjects and chunkBytes bound one inventory message (chunkBytes when the hub
	// names no limit; otherwise three quarters of its limit).
	chunkObjects = 500
	chunkBytes   = 4 << 20
	// deltaBatch gathers the changes of a moment into one InventoryDelta.
	deltaBatch = 100 * time.Millisecond
	// crdCheckEvery is how often the agent looks for the Argo Rollouts CRD.
	crdCheckEvery = 30 * time.Second
)

// inventoryKind is a kind the agent reports.
type inventoryKind struct {
	gvr schema.GroupVersionResource
	gvk schema.GroupVersionKind
}

// baseInventory is reported from start; Secrets are deliberately absent.
var baseInventory = []inventoryKind{
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, gvk: schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, gvk: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, gvk: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"}, gvk: schema.GroupVersionKind{Version: "v1", Kind: "Service"}},
}

// rolloutsKind is reported once the Argo Rollouts CRD is served.
var rolloutsKind = inventoryKind{
	gvr: schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"},
	gvk: schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"},
}

// inventory keeps informers on the reported kinds for the agent's lifetime, and the changes
// not yet sent to the hub.
type inventory struct {
	log  *slog.Logger
	kube *kube
	// crdCheckEvery is how often to look for the Rollouts CRD (tests shorten it).
	crdCheckEvery time.Duration
	// ready is closed once the base informers are registered.
	ready chan struct{}
	// notify holds a token when pending has changes.
	notify chan struct{}

	mu        sync.Mutex // guards informers and pending
	informers []cache.SharedIndexInformer
	// pending holds the latest change per object since the last snapshot or delta.
	pending map[string]change
}

// change is an upsert (obj set) or a deletion (ref set).
type change struct {
	obj *unstructured.Unstructured
	ref *hubv1.ObjectReference
}

func newInventory(log *slog.Logger, k *kube) *inventory {
	return &inventory{
		log:           log,
		kube:          k,
		crdCheckEvery: crdCheckEvery,
		ready:         make(chan struct{}),
		notify:        make(chan struct{}, 1),
		pending:       map[string]change{},
	}
}

// run runs the informers until ctx ends and starts the Rollouts informer once its CRD is
// served.
func (inv *inventory) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, k := range baseInventory {
		inv.start(ctx, &wg, k)
	}
	close(inv.ready)
	rollouts := false
	check := func() {
		if !rollouts && inv.served(rolloutsKind) {
			rollouts = true
			inv.log.Info("Argo Rollouts CRD found; reporting Rollouts")
			inv.start(ctx, &wg, rolloutsKind)
		}
	}
	check()
	t := time.NewTicker(inv.crdCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// served tells whether discovery serves the kind's resource now.
func (inv *inventory) served(k inventoryKind) bool {
	rl, err := inv.kube.disco.ServerResourcesForGroupVersion(k.gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	return slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == k.gvr.Resource })
}

// start starts an informer on kind k that records its changes in pending.
func (inv *inventory) start(ctx context.Context, wg *sync.WaitGroup, k inventoryKind) {
	inf := newInformer(inv.kube, k.gvr, k.gvk, "", nil)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { inv.record(obj, false) },
		UpdateFunc: func(old, obj any) {
			if o, ok := old.(*unstructured.Unstructured); ok && o.GetResourceVersion() == obj.(*unstructured.Unstructured).GetResourceVersion() {
				return
			}
			inv.record(obj, false)
		},
		DeleteFunc: func(obj any) { inv.record(obj, true) },
	})
	inv.mu.Lock()
	inv.informers = append(inv.informers, inf)
	inv.mu.Unlock()
	wg.Go(func() { inf.RunWithContext(ctx) })
}

func (inv *inventory) record(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	c := change{obj: u}
	if deleted {
		c = change{ref: objectRef(u)}
	}
	inv.mu.Lock()
	inv.pending[objKey(u)] = c
	inv.mu.Unlock()
	select {
	case inv.notify <- struct{}{}:
	default:
	}
}

func objKey(u *unstructured.Unstructured) string {
	return strings.Join([]string{u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName()}, "/")
}

// serve sends a snapshot on the session once the informers have synced, then deltas until
// ctx ends.
func (inv *inventory) serve(ctx context.Context, sess *session) {
	select {
	case <-inv.ready:
	case <-ctx.Done():
		return
	}
	inv.mu.Lock()
	synced := make([]cache.InformerSynced, len(inv.informers))
	for i, inf := range inv.informers {
		synced[i] = inf.HasSynced
	}
	inv.mu.Unlock()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	// Changes from here on are sent as deltas after the snapshot; one that is also in the
	// snapshot is sent twice, which is harmless.
	inv.takePending()
	if err := inv.sendSnapshot(ctx, sess); err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-inv.notify:
		}
		t := time.NewTimer(deltaBatch)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := inv.sendDeltas(ctx, sess); err != nil {
			return
		}
	}
}

// takePending returns the pending changes in a stable order and forgets them.
func (inv *inventory) takePending() []change {
	inv.mu.Lock()
	p := inv.pending
	inv.pending = map[string]change{}
	inv.mu.Unlock()
	select {
	case <-inv.notify:
	default:
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range p {
			if !yield(k) {
				return
			}
		}
	})
	out := make([]change, len(keys))
	for i, k := range keys {
		out[i] = p[k]
	}
	return out
}

// budget is the byte size an inventory message may reach.
func budget(sess *session) int {
	if sess.maxMessageBytes > 0 {
		return int(min(sess.maxMessageBytes*3/4, chunkBytes))
	}
	return chunkBytes
}

// sendSnapshot sends every object of the informers' caches as snapshot chunks.
func (inv *inventory) sendSnapshot(ctx context.Context, sess *session) error {
	inv.mu.Lock()
	var objs []*unstructured.Unstructured
	for _, inf := range inv.informers {
		for _, o := range inf.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				objs = append(objs, u)
			}
		}
	}
	inv.mu.Unlock()
	slices.SortFunc(objs, func(a, b *unstructured.Unstructured) int { return strings.Compare(objKey(a), objKey(b)) })

	id := uuid.NewString()
	chunk := &hubv1.InventorySnapshot{SnapshotId: id}
	size := 0
	flush := func(last bool) error {
		chunk.Last = last
		if err := sess.send(ctx, &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventorySnapshot{InventorySnapshot: chunk}}); err != nil {
			return err
		}
		sess.metrics.inventoryMsgs.WithLabelValues("snapshot").Inc()
		chunk, size = &hubv1.InventorySnapshot{SnapshotId: id}, 0
		return nil
	}
	for _, u := range objs {
		r, err := toResource(u)
		if err != nil {
			inv.log.Warn("inventory: skipping an object", "error", err)
			continue
		}
		if len(chunk.Resources) > 0 && (len(chunk.Resources) >= chunkObjects || size+len(r.Object) > budget(sess)) {
			if err := flush(false); err != nil {
				return err
			}
		}
		chunk.Resources = append(chunk.Resources, r)
		size += len(r.Object)
	}
	return flush(true)
}

// sendDeltas sends the pending changes as InventoryDeltas.
func (inv *inventory) sendDeltas(ctx context.Context, sess *session) error {
	changes := inv.takePending()
	delta := &hubv1.InventoryDelta{}
	n, size := 0, 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		if err := sess.send(ctx, &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventoryDelta{InventoryDelta: delta}}); err != nil {
			return err
		}
		sess.metrics.inventoryMsgs.WithLabelValues("delta").Inc()
		delta, n, size = &hubv1.InventoryDelta{}, 0, 0
		return nil
	}
	for _, c := range changes {
		var r *hubv1.Resource
		if c.obj != nil {
			var err error
			if r, err = toResource(c.obj); err != nil {
				inv.log.Warn("inventory: skipping an object", "error", err)
				continue
			}
		}
		if n > 0 && (n >= chunkObjects || (r != nil && size+len(r.Object) > budget(sess))) {
			if err := flush(); err != nil {
				return err
			}
		}
		if r != nil {
			delta.Upserts = append(delta.Upserts, r)
			size += len(r.Object)
		} else {
			delta.Deletions = append(delta.Deletions, c.ref)
		}
		n++
	}
	return flush()
}

// newInformer returns an informer on one resource, optionally in one namespace and with
// tweaked list options. Its cache holds objects without managedFields (they are never sent
// and are a large share of an object) and always with their kind.
func newInformer(k *kube, gvr schema.GroupVersionResource, gvk schema.GroupVersionKind, namespace string, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	ri := k.dyn.Resource(gvr).Namespace(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			if tweak != nil {
				tweak(&opts)
			}
			return ri.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			if tweak != nil {
				tweak(&opts)
			}
			return ri.Watch(ctx, opts)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, k.dyn),
		&unstructured.Unstructured{}, cache.SharedIndexInformerOptions{ObjectDescription: gvr.String()})
	_ = inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
			if u.GetKind() == "" {
				u.SetGroupVersionKind(gvk)
			}
		}
		return obj, nil
	})
	return inf
}
