package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/util/workqueue"

	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store"
)

// held is a pipeline this replica holds the lease of.
type held struct {
	ref store.PipelineRef
	// mu guards lease, which the renewer extends while a worker reconciles.
	mu    sync.Mutex
	lease store.Lease
	// Only the worker reconciling the pipeline (one at a time, by the queue's guarantee)
	// touches the fields below.
	spec     *spec                   // opened lazily
	lastLive map[objectRef]time.Time // when a live get last read each Rollout
	watched  []string                // index keys registered for the change feed
}

func (h *held) currentLease() store.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

// New returns an engine storing pipelines in st and reaching clusters through cl. The sealer
// encrypts each pipeline's manifests and context at rest.
func New(log *slog.Logger, st Store, cl Cluster, sl *seal.Sealer, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	if cfg.Holder == "" {
		cfg.Holder = "engine-" + fmt.Sprint(time.Now().UnixNano())
	}
	e := &Engine{
		log: log, cfg: cfg, now: cfg.Now, st: st, cl: cl, sealer: sl,
		queue:   workqueue.NewTypedDelayingQueue[store.PipelineRef](),
		held:    map[store.PipelineRef]*held{},
		others:  map[store.PipelineRef]time.Time{},
		subs:    map[store.Tenant]Changes{},
		index:   map[string]map[store.PipelineRef]bool{},
		changed: make(chan struct{}),
		m:       newMetrics(cfg.Registerer),
	}
	return e
}

// Holder returns the name this engine holds leases under.
func (e *Engine) Holder() string { return e.cfg.Holder }

// kick asks for ref to be reconciled soon.
func (e *Engine) kick(ref store.PipelineRef) { e.queue.Add(ref) }

// hintTimeout bounds the publication of one wake-up hint.
const hintTimeout = time.Second

// kickEverywhere asks for ref to be reconciled soon by whichever replica holds its lease:
// this one at once, the others through the notifier. A hint that cannot be published is
// only logged: the holder's resync picks the change up.
func (e *Engine) kickEverywhere(ctx context.Context, ref store.PipelineRef) {
	e.kick(ref)
	n := e.cfg.Notifier
	if n == nil {
		return
	}
	e.mu.Lock()
	_, mine := e.held[ref]
	e.mu.Unlock()
	if mine {
		return // the local kick is all it takes
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hintTimeout)
	defer cancel()
	if err := n.Publish(pctx, ref, e.cfg.Holder); err != nil {
		e.m.hintsLost.Inc()
		e.log.Warn("publish pipeline wake-up to the other replicas; the holder picks the change up at its next resync",
			"tenant", ref.Tenant.String(), "pipeline", ref.ID, "err", err)
	}
}

// onHint wakes a pipeline another replica reported changed, if this replica drives it.
func (e *Engine) onHint(ref store.PipelineRef, origin string) {
	if origin == e.cfg.Holder {
		return // published by this replica, which kicked it already
	}
	e.mu.Lock()
	_, mine := e.held[ref]
	e.mu.Unlock()
	// Local watchers show the change at once too, wherever it was written.
	e.notify()
	if mine {
		e.m.hintsReceived.Inc()
		e.queue.Add(ref)
	}
}

// onMissedHints reconciles every held pipeline: hints may have been lost while the
// notifier's subscription was down.
func (e *Engine) onMissedHints() {
	e.mu.Lock()
	refs := make([]store.PipelineRef, 0, len(e.held))
	for r := range e.held {
		refs = append(refs, r)
	}
	e.mu.Unlock()
	for _, r := range refs {
		e.queue.Add(r)
	}
}

// Run drives pipelines until ctx ends: it looks for active pipelines no replica drives,
// takes their leases, reconciles the held ones on every hint and every Resync, renews the
// leases and prunes finished pipelines past the retention. On return it has released every
// lease it held, so another replica takes over at its next scan. Call it once.
func (e *Engine) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for range e.cfg.Workers {
		g.Go(func() error { e.work(gctx); return nil })
	}
	g.Go(func() error { e.every(gctx, e.cfg.Resync, e.scan); return nil })
	g.Go(func() error { e.every(gctx, e.cfg.LeaseTTL/3, e.renew); return nil })
	g.Go(func() error { e.every(gctx, time.Hour, e.prune); return nil })
	if n := e.cfg.Notifier; n != nil {
		g.Go(func() error { n.Listen(gctx, e.onHint, e.onMissedHints); return nil })
	}
	g.Go(func() error {
		<-gctx.Done()
		e.queue.ShutDownWithDrain()
		return nil
	})
	e.scan(gctx)
	_ = g.Wait()
	e.releaseAll()
	return nil
}

// every runs f every d until ctx ends.
func (e *Engine) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// scan queues every active pipeline: held ones for their resync, the others to try their
// lease (a pipeline whose replica died is picked up here once its lease expires).
func (e *Engine) scan(ctx context.Context) {
	refs, err := e.st.ListActivePipelines(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("list active pipelines", "err", err)
		}
		return
	}
	active := make(map[store.PipelineRef]bool, len(refs))
	for _, r := range refs {
		active[r] = true
		e.queue.Add(r)
	}
	e.mu.Lock()
	for r := range e.others {
		if !active[r] {
			delete(e.others, r)
		}
	}
	e.mu.Unlock()
	// A held pipeline that is no longer active (pruned, or finished by a write this replica
	// did not see) gets one more reconcile, which releases it.
	e.mu.Lock()
	for r := range e.held {
		if !active[r] {
			e.queue.Add(r)
		}
	}
	e.mu.Unlock()
}

func (e *Engine) work(ctx context.Context) {
	for {
		ref, quit := e.queue.Get()
		if quit {
			return
		}
		e.process(ctx, ref)
		e.queue.Done(ref)
	}
}

// process reconciles one pipeline if this replica holds or can take its lease.
func (e *Engine) process(ctx context.Context, ref store.PipelineRef) {
	if ctx.Err() != nil {
		return
	}
	h, err := e.hold(ctx, ref)
	if err != nil || h == nil {
		if err != nil && ctx.Err() == nil {
			e.log.Warn("acquire pipeline lease", "tenant", ref.Tenant.String(), "pipeline", ref.ID, "err", err)
			e.queue.AddAfter(ref, e.cfg.Resync)
		}
		return
	}
	// Commands stop before the lease could expire: a replica that cannot renew in time
	// never acts on a pipeline another replica may already drive.
	lease := h.currentLease()
	deadline := lease.ExpiresAt.Add(-e.cfg.LeaseTTL / 5)
	if !e.now().Before(deadline) {
		e.queue.AddAfter(ref, 100*time.Millisecond)
		return
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	wake, done, err := e.reconcile(rctx, h)
	e.m.reconcileSeconds.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, store.ErrStale):
		// Someone else wrote first (a human action, or a new lease holder): read again.
		e.queue.AddAfter(ref, 20*time.Millisecond)
		if e.lostLease(ctx, h) {
			return
		}
	case errors.Is(err, store.ErrNotFound):
		e.release(ctx, h)
		return
	case err != nil:
		if ctx.Err() == nil {
			e.log.Warn("reconcile pipeline", "tenant", ref.Tenant.String(), "pipeline", ref.ID, "err", err)
		}
		e.queue.AddAfter(ref, e.cfg.Resync)
	}
	if done {
		e.release(ctx, h)
		return
	}
	if wake > 0 {
		e.queue.AddAfter(ref, wake)
	}
}

// hold returns the held pipeline, taking its lease when no other replica has it. It returns
// nil when another replica drives the pipeline.
func (e *Engine) hold(ctx context.Context, ref store.PipelineRef) (*held, error) {
	now := e.now()
	e.mu.Lock()
	h := e.held[ref]
	skip := now.Before(e.others[ref])
	e.mu.Unlock()
	if h != nil {
		return h, nil
	}
	if skip {
		return nil, nil
	}
	lease, err := e.st.AcquireLease(ctx, ref, e.cfg.Holder, now, e.cfg.LeaseTTL)
	if errors.Is(err, store.ErrLeaseHeld) {
		// Its holder renews every third of the lease; look again after that, so a dead
		// holder's pipeline is taken within a lease and a third, without asking the store
		// on every hint and scan meanwhile.
		e.mu.Lock()
		e.others[ref] = now.Add(e.cfg.LeaseTTL / 3)
		e.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h = &held{ref: ref, lease: lease, lastLive: map[objectRef]time.Time{}}
	e.mu.Lock()
	e.held[ref] = h
	n := len(e.held)
	e.mu.Unlock()
	e.m.held.Set(float64(n))
	e.subscribe(ref.Tenant)
	e.log.Debug("took pipeline lease", "tenant", ref.Tenant.String(), "pipeline", ref.ID, "token", lease.Token)
	return h, nil
}

// lostLease checks whether the lease is still this replica's; if not it forgets the
// pipeline and reports true.
func (e *Engine) lostLease(ctx context.Context, h *held) bool {
	cur, err := e.st.GetLease(ctx, h.ref)
	if err != nil {
		return false
	}
	mine := h.currentLease()
	if cur.Holder == mine.Holder && cur.Token == mine.Token {
		return false
	}
	e.forget(h)
	e.log.Info("lost pipeline lease", "tenant", h.ref.Tenant.String(), "pipeline", h.ref.ID, "holder", cur.Holder)
	return true
}

// renew extends every held lease; a lease that another replica took is dropped.
func (e *Engine) renew(ctx context.Context) {
	e.mu.Lock()
	hs := make([]*held, 0, len(e.held))
	for _, h := range e.held {
		hs = append(hs, h)
	}
	e.mu.Unlock()
	for _, h := range hs {
		l, err := e.st.AcquireLease(ctx, h.ref, e.cfg.Holder, e.now(), e.cfg.LeaseTTL)
		switch {
		case errors.Is(err, store.ErrLeaseHeld):
			e.forget(h)
			e.log.Info("lost pipeline lease", "tenant", h.ref.Tenant.String(), "pipeline", h.ref.ID)
		case err != nil:
			if ctx.Err() == nil {
				e.log.Warn("renew pipeline lease", "pipeline", h.ref.ID, "err", err)
			}
		default:
			h.mu.Lock()
			if l.Token != h.lease.Token {
				// The lease lapsed and this replica took it again: still ours, new token.
				e.log.Info("pipeline lease taken again after it lapsed", "pipeline", h.ref.ID)
			}
			h.lease = l
			h.mu.Unlock()
		}
	}
}

// release gives up a pipeline's lease (it finished, or the engine stops).
func (e *Engine) release(ctx context.Context, h *held) {
	e.forget(h)
	if err := e.st.ReleaseLease(context.WithoutCancel(ctx), h.currentLease()); err != nil {
		e.log.Warn("release pipeline lease", "pipeline", h.ref.ID, "err", err)
	}
}

func (e *Engine) releaseAll() {
	e.mu.Lock()
	hs := make([]*held, 0, len(e.held))
	for _, h := range e.held {
		hs = append(hs, h)
	}
	subs := e.subs
	e.subs = map[store.Tenant]Changes{}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, h := range hs {
		e.release(ctx, h)
	}
	for _, s := range subs {
		s.Close()
	}
}

// forget drops a held pipeline from this replica's books.
func (e *Engine) forget(h *held) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.held[h.ref] != h {
		return
	}
	delete(e.held, h.ref)
	for _, k := range h.watched {
		if set := e.index[k]; set != nil {
			delete(set, h.ref)
			if len(set) == 0 {
				delete(e.index, k)
			}
		}
	}
	h.watched = nil
	e.m.held.Set(float64(len(e.held)))
}

// indexKey names an object of an account of a tenant in the change-feed index.
func indexKey(t store.Tenant, account string, r objectRef) string {
	return t.String() + "|" + account + "|" + r.Kind + "|" + r.Namespace + "|" + r.Name
}

// watch registers the Rollouts of a held pipeline's targets for change-feed wake-ups.
func (e *Engine) watch(h *held, st *state) {
	if len(h.watched) > 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.held[h.ref] != h {
		return
	}
	for _, tg := range st.Targets {
		for _, r := range tg.Rollouts {
			k := indexKey(h.ref.Tenant, tg.Account, r)
			if e.index[k] == nil {
				e.index[k] = map[store.PipelineRef]bool{}
			}
			e.index[k][h.ref] = true
			h.watched = append(h.watched, k)
		}
	}
}

// subscribe makes sure the tenant's inventory changes wake the pipelines they concern.
func (e *Engine) subscribe(t store.Tenant) {
	e.mu.Lock()
	if _, ok := e.subs[t]; ok {
		e.mu.Unlock()
		return
	}
	sub := e.cl.Subscribe(t, "", 1024)
	e.subs[t] = sub
	e.mu.Unlock()
	go func() {
		for ch := range sub.C() {
			e.onChange(t, ch)
		}
	}()
}

func (e *Engine) onChange(t store.Tenant, ch hub.Change) {
	e.mu.Lock()
	var refs []store.PipelineRef
	if ch.Resync {
		for r := range e.held {
			if r.Tenant == t {
				refs = append(refs, r)
			}
		}
	} else if ch.Ref != nil {
		k := indexKey(t, ch.Account, objectRef{Kind: ch.Ref.GetKind(), Namespace: ch.Ref.GetNamespace(), Name: ch.Ref.GetName()})
		for r := range e.index[k] {
			refs = append(refs, r)
		}
	}
	e.mu.Unlock()
	for _, r := range refs {
		e.queue.Add(r)
	}
}

// prune deletes finished pipelines older than the retention.
func (e *Engine) prune(ctx context.Context) {
	n, err := e.st.DeletePipelinesCompletedBefore(ctx, e.now().Add(-e.cfg.Retention))
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("prune finished pipelines", "err", err)
		}
		return
	}
	if n > 0 {
		e.log.Info("pruned finished pipelines", "count", n, "retention", e.cfg.Retention.String())
	}
}

// The sealed part of a pipeline is two sealed values, framed by the first one's length as
// a uvarint: the small metadata (context, source control) every read of the pipeline
// shows, then the generated objects only the lease holder needs. A read opens the first
// alone.

// sealSpec seals sp for pipeline id of tenant t.
func (e *Engine) sealSpec(t store.Tenant, id string, sp *spec) ([]byte, error) {
	meta, err := json.Marshal(specMeta{Context: sp.Context, SourceControl: sp.SourceControl})
	if err != nil {
		return nil, fmt.Errorf("encode pipeline metadata: %w", err)
	}
	objects, err := json.Marshal(sp.Objects)
	if err != nil {
		return nil, fmt.Errorf("encode pipeline objects: %w", err)
	}
	ad := sealAD(t, id)
	sealedMeta, err := e.sealer.Seal(meta, append(ad, ":meta"...))
	if err != nil {
		return nil, fmt.Errorf("seal pipeline metadata: %w", err)
	}
	sealedObjects, err := e.sealer.Seal(objects, append(ad, ":objects"...))
	if err != nil {
		return nil, fmt.Errorf("seal pipeline objects: %w", err)
	}
	out := binary.AppendUvarint(nil, uint64(len(sealedMeta)))
	out = append(out, sealedMeta...)
	return append(out, sealedObjects...), nil
}

// openSpec decrypts a pipeline's sealed part: the metadata, and the objects too when
// withObjects is set.
func (e *Engine) openSpec(p store.Pipeline, withObjects bool) (*spec, error) {
	n, k := binary.Uvarint(p.Sealed)
	if k <= 0 || n > uint64(len(p.Sealed)-k) {
		return nil, fmt.Errorf("the sealed spec of pipeline %s is malformed", p.ID)
	}
	sealedMeta, sealedObjects := p.Sealed[k:k+int(n)], p.Sealed[k+int(n):]
	ad := sealAD(p.Tenant, p.ID)
	plain, err := e.sealer.Open(sealedMeta, append(ad, ":meta"...))
	if err != nil {
		return nil, fmt.Errorf("open the sealed metadata of pipeline %s: %w", p.ID, err)
	}
	var meta specMeta
	if err := json.Unmarshal(plain, &meta); err != nil {
		return nil, fmt.Errorf("decode the metadata of pipeline %s: %w", p.ID, err)
	}
	sp := &spec{Context: meta.Context, SourceControl: meta.SourceControl}
	if !withObjects {
		return sp, nil
	}
	plain, err = e.sealer.Open(sealedObjects, append(ad, ":objects"...))
	if err != nil {
		return nil, fmt.Errorf("open the sealed objects of pipeline %s: %w", p.ID, err)
	}
	if err := json.Unmarshal(plain, &sp.Objects); err != nil {
		return nil, fmt.Errorf("decode the objects of pipeline %s: %w", p.ID, err)
	}
	return sp, nil
}

// notify wakes the local watchers after a write.
func (e *Engine) notify() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

func (e *Engine) changedChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}
