package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// watchSet holds the watches of one stream; they end with it.
type watchSet struct {
	log     *slog.Logger
	metrics *metrics
	// wg counts informer goroutines.
	wg sync.WaitGroup

	mu      sync.Mutex // guards watches and closed, and orders wg.Go before stopAll's wg.Wait
	watches map[string]*activeWatch
	// closed is set once the stream ended: no watch may start after.
	closed bool
}

type activeWatch struct {
	cancel context.CancelFunc
}

func newWatchSet(log *slog.Logger, m *metrics) *watchSet {
	return &watchSet{log: log, metrics: m, watches: map[string]*activeWatch{}}
}

// start starts (or replaces) a watch: an informer per selector whose events go to the stream
// as ResourceEvents, beginning with ADDED for every existing object. It returns once the
// informers have listed, so those ADDED events precede the command's result. The watch lives
// until unwatched or until sessCtx ends; cmdCtx bounds only the start.
func (w *watchSet) start(cmdCtx, sessCtx context.Context, k *kube, sess *session, act *hubv1.WatchAction) error {
	id := act.GetWatchId()
	if id == "" {
		return invalidf("watch_id is required")
	}
	if len(act.GetSelectors()) == 0 {
		return invalidf("a watch needs at least one selector")
	}
	type target struct {
		sel       *hubv1.ResourceSelector
		m         *meta.RESTMapping
		namespace string
		opts      metav1.ListOptions
	}
	targets := make([]target, 0, len(act.GetSelectors()))
	for i, sel := range act.GetSelectors() {
		_, opts, err := k.selectorClient(sel)
		if err != nil {
			return fmt.Errorf("selector %d: %w", i, err)
		}
		gvk, _ := parseGVK(sel.GetApiVersion(), sel.GetKind())
		m, err := k.mapping(gvk)
		if err != nil {
			return fmt.Errorf("selector %d: %w", i, err)
		}
		ns := ""
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns = sel.GetNamespace()
		}
		targets = append(targets, target{sel: sel, m: m, namespace: ns, opts: opts})
	}

	wctx, cancel := context.WithCancel(sessCtx)
	aw := &activeWatch{cancel: cancel}
	informers := make([]cache.SharedIndexInformer, 0, len(targets))
	// handlersSynced report when each handler has been called for every existing object, so
	// their ADDED events are queued before the command's result.
	handlersSynced := make([]cache.InformerSynced, 0, len(targets))
	for _, t := range targets {
		opts := t.opts
		inf := newInformer(k, t.m.Resource, t.m.GroupVersionKind, t.namespace, func(o *metav1.ListOptions) {
			o.LabelSelector, o.FieldSelector = opts.LabelSelector, opts.FieldSelector
		})
		emit := func(typ hubv1.ResourceEvent_Type, obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return
			}
			r, err := toResource(u)
			if err != nil {
				w.log.Warn("watch: skipping an object", "watch", id, "error", err)
				return
			}
			ev := &hubv1.ResourceEvent{WatchId: id, Type: typ, Resource: r}
			if sess.send(wctx, &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_ResourceEvent{ResourceEvent: ev}}) == nil {
				w.metrics.watchEvents.Inc()
			}
		}
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { emit(hubv1.ResourceEvent_TYPE_ADDED, obj) },
			UpdateFunc: func(old, obj any) {
				if o, ok := old.(*unstructured.Unstructured); ok && o.GetResourceVersion() == obj.(*unstructured.Unstructured).GetResourceVersion() {
					return
				}
				emit(hubv1.ResourceEvent_TYPE_MODIFIED, obj)
			},
			DeleteFunc: func(obj any) { emit(hubv1.ResourceEvent_TYPE_DELETED, obj) },
		})
		if err != nil {
			cancel()
			return fmt.Errorf("watch %s: %w", id, err)
		}
		informers = append(informers, inf)
		handlersSynced = append(handlersSynced, reg.HasSynced)
	}

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		cancel()
		return fmt.Errorf("watch %s: the stream ended", id)
	}
	if old := w.watches[id]; old != nil {
		old.cancel()
	}
	w.watches[id] = aw
	for _, inf := range informers {
		w.wg.Go(func() { inf.RunWithContext(wctx) })
	}
	w.mu.Unlock()

	syncCtx, stopSync := context.WithCancel(cmdCtx)
	defer stopSync()
	defer context.AfterFunc(wctx, stopSync)()
	if !cache.WaitForCacheSync(syncCtx.Done(), handlersSynced...) {
		w.remove(id, aw)
		if err := cmdCtx.Err(); err != nil {
			return fmt.Errorf("watch %s: listing the watched objects: %w", id, err)
		}
		return fmt.Errorf("watch %s was replaced or ended while it started", id)
	}
	w.log.Debug("watch started", "watch", id, "selectors", len(targets))
	return nil
}

// running reports whether a watch of that id is running (or starting) on this stream.
func (w *watchSet) running(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watches[id] != nil
}

// stop ends a watch; an unknown id is fine.
func (w *watchSet) stop(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if aw := w.watches[id]; aw != nil {
		aw.cancel()
		delete(w.watches, id)
	}
}

// remove ends aw if it is still the watch of id.
func (w *watchSet) remove(id string, aw *activeWatch) {
	aw.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watches[id] == aw {
		delete(w.watches, id)
	}
}

// stopAll ends every watch and waits for their informers.
func (w *watchSet) stopAll() {
	w.mu.Lock()
	w.closed = true
	for id, aw := range w.watches {
		aw.cancel()
		delete(w.watches, id)
	}
	w.mu.Unlock()
	w.wg.Wait()
}
