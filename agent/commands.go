package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

const (
	// maxConcurrentCommands bounds the commands executed at once; more wait for a slot.
	maxConcurrentCommands = 8
	// defaultCommandTimeout applies to a command without a deadline.
	defaultCommandTimeout = 5 * time.Minute
	// Results of executed commands are kept so a re-sent command is answered, not redone.
	resultCacheSize = 1000
	resultCacheTTL  = 10 * time.Minute
)

// executor runs the hub's commands, at most maxConcurrentCommands at a time, each under its
// deadline, and remembers recent results by command id.
type executor struct {
	log     *slog.Logger
	kube    *kube
	metrics *metrics
	slots   chan struct{}
	results *resultCache
	// wg counts running command goroutines; Run waits for them before it returns.
	wg sync.WaitGroup
}

func newExecutor(log *slog.Logger, k *kube, m *metrics, now func() time.Time) *executor {
	return &executor{
		log:     log,
		kube:    k,
		metrics: m,
		slots:   make(chan struct{}, maxConcurrentCommands),
		results: newResultCache(resultCacheSize, resultCacheTTL, now),
	}
}

// wait waits for every command goroutine to finish.
func (e *executor) wait() { e.wg.Wait() }

// dispatch starts cmd without blocking the stream's reader. The command runs under runCtx
// (the agent's lifetime) and its deadline, so it finishes, and is remembered, even if the
// stream it came on breaks; its result goes back on that stream while sessCtx lives. A
// command id seen before is answered with the earlier result once that is ready.
func (e *executor) dispatch(runCtx, sessCtx context.Context, sess *session, cmd *hubv1.Command) {
	id := cmd.GetId()
	action := actionName(cmd)
	if id == "" {
		e.log.Warn("ignoring a command without an id", "action", action)
		return
	}
	entry, fresh := e.results.begin(id)
	if !fresh {
		e.metrics.commands.WithLabelValues(action, "duplicate").Inc()
		e.log.Debug("command re-sent; answering with its result", "command", id, "action", action)
		e.wg.Go(func() {
			select {
			case <-entry.done:
			case <-sessCtx.Done():
				return
			}
			// A watch lives on the stream that started it: the earlier result does not
			// stand for a watch this stream lacks (after a reconnect, or if it failed to
			// start), so the hub's re-sent Watch starts it again.
			if w := cmd.GetWatch(); w != nil && !sess.watches.running(w.GetWatchId()) {
				e.log.Info("watch re-sent on a stream without it; starting it again", "command", id, "watch", w.GetWatchId())
				res := e.execute(runCtx, sessCtx, sess, cmd)
				e.results.update(entry, res)
				sess.sendResult(sessCtx, res)
				return
			}
			sess.sendResult(sessCtx, e.results.result(entry))
		})
		return
	}
	e.wg.Go(func() {
		res := e.execute(runCtx, sessCtx, sess, cmd)
		e.results.finish(entry, res)
		sess.sendResult(sessCtx, res)
	})
}

// execute runs one command and returns its result.
func (e *executor) execute(runCtx, sessCtx context.Context, sess *session, cmd *hubv1.Command) *hubv1.CommandResult {
	action := actionName(cmd)
	start := time.Now()
	deadline := time.Now().Add(defaultCommandTimeout)
	if cmd.GetDeadline() != nil {
		deadline = cmd.GetDeadline().AsTime()
	}
	ctx, cancel := context.WithDeadline(runCtx, deadline)
	defer cancel()

	res, err := e.withSlot(ctx, func() (*hubv1.CommandResult, error) { return e.do(ctx, sessCtx, sess, cmd) })
	if err != nil {
		if runCtx.Err() != nil {
			err = fmt.Errorf("%w: %w", errShuttingDown, err)
		}
		res = &hubv1.CommandResult{Outcome: hubv1.CommandResult_OUTCOME_FAILED, Error: commandError(err)}
		e.log.Info("command failed", "command", cmd.GetId(), "action", action, "code", res.GetError().GetCode().String(), "error", err)
	} else {
		res.Outcome = hubv1.CommandResult_OUTCOME_SUCCEEDED
		e.log.Debug("command done", "command", cmd.GetId(), "action", action, "duration", time.Since(start))
	}
	res.CommandId = cmd.GetId()
	outcome := "succeeded"
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		outcome = "failed"
	}
	e.metrics.commands.WithLabelValues(action, outcome).Inc()
	e.metrics.commandDuration.WithLabelValues(action).Observe(time.Since(start).Seconds())
	return res
}

// withSlot runs f once a command slot is free, or fails when ctx ends first.
func (e *executor) withSlot(ctx context.Context, f func() (*hubv1.CommandResult, error)) (*hubv1.CommandResult, error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free command slot: %w", context.Cause(ctx))
	}
	defer func() { <-e.slots }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return f()
}

// do performs the action of cmd.
func (e *executor) do(ctx, sessCtx context.Context, sess *session, cmd *hubv1.Command) (*hubv1.CommandResult, error) {
	k := e.kube
	switch act := cmd.GetAction().(type) {
	case *hubv1.Command_Apply:
		objs, err := k.apply(ctx, act.Apply)
		if err != nil {
			return nil, err
		}
		return resourcesResult(objs...)
	case *hubv1.Command_Get:
		u, err := k.get(ctx, act.Get.GetRef())
		if err != nil {
			return nil, err
		}
		return resourcesResult(u)
	case *hubv1.Command_List:
		items, err := k.list(ctx, act.List.GetSelector())
		if err != nil {
			return nil, err
		}
		objs := make([]*unstructured.Unstructured, len(items))
		for i := range items {
			objs[i] = &items[i]
		}
		return resourcesResult(objs...)
	case *hubv1.Command_Patch:
		u, err := k.patch(ctx, act.Patch)
		if err != nil {
			return nil, err
		}
		return resourcesResult(u)
	case *hubv1.Command_Delete:
		if err := k.remove(ctx, act.Delete.GetRef()); err != nil {
			return nil, err
		}
		return &hubv1.CommandResult{}, nil
	case *hubv1.Command_ListNamespaces:
		names, err := k.namespaceNames(ctx)
		if err != nil {
			return nil, err
		}
		return &hubv1.CommandResult{Payload: &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: names}}}, nil
	case *hubv1.Command_Watch:
		if err := sess.watches.start(ctx, sessCtx, k, sess, act.Watch); err != nil {
			return nil, err
		}
		return &hubv1.CommandResult{}, nil
	case *hubv1.Command_Unwatch:
		sess.watches.stop(act.Unwatch.GetWatchId())
		return &hubv1.CommandResult{}, nil
	default:
		return nil, &unimplementedError{msg: "unknown command action: this agent does not implement it (upgrade the agent)"}
	}
}

func resourcesResult(objs ...*unstructured.Unstructured) (*hubv1.CommandResult, error) {
	list := &hubv1.ResourceList{Resources: make([]*hubv1.Resource, 0, len(objs))}
	for _, u := range objs {
		r, err := toResource(u)
		if err != nil {
			return nil, err
		}
		list.Resources = append(list.Resources, r)
	}
	return &hubv1.CommandResult{Payload: &hubv1.CommandResult_Resources{Resources: list}}, nil
}

// actionName names a command's action for logs and metrics.
func actionName(cmd *hubv1.Command) string {
	switch cmd.GetAction().(type) {
	case *hubv1.Command_Apply:
		return "apply"
	case *hubv1.Command_Get:
		return "get"
	case *hubv1.Command_List:
		return "list"
	case *hubv1.Command_Patch:
		return "patch"
	case *hubv1.Command_Delete:
		return "delete"
	case *hubv1.Command_Watch:
		return "watch"
	case *hubv1.Command_Unwatch:
		return "unwatch"
	case *hubv1.Command_ListNamespaces:
		return "list_namespaces"
	}
	return "unknown"
}

// resultCache remembers the results of recent commands by id, the oldest evicted first
// once there are more than max or they are older than ttl.
type resultCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex // guards entries and order
	entries map[string]*cacheEntry
	// order holds ids oldest first.
	order []string
}

// cacheEntry is one command's result; done is closed once result is set.
type cacheEntry struct {
	done     chan struct{}
	result   *hubv1.CommandResult
	finished time.Time
}

func newResultCache(max int, ttl time.Duration, now func() time.Time) *resultCache {
	return &resultCache{max: max, ttl: ttl, now: now, entries: map[string]*cacheEntry{}}
}

// begin returns the entry of id and whether it is new (the caller must execute the command
// and finish the entry).
func (c *resultCache) begin(id string) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(false)
	if e, ok := c.entries[id]; ok {
		return e, false
	}
	c.prune(true)
	e := &cacheEntry{done: make(chan struct{})}
	c.entries[id] = e
	c.order = append(c.order, id)
	return e, true
}

// finish records the result of an entry begin returned as new.
func (c *resultCache) finish(e *cacheEntry, res *hubv1.CommandResult) {
	c.mu.Lock()
	e.result, e.finished = res, c.now()
	c.mu.Unlock()
	close(e.done)
}

// update replaces the result of a finished entry.
func (c *resultCache) update(e *cacheEntry, res *hubv1.CommandResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.result, e.finished = res, c.now()
}

// result returns the result of a finished entry.
func (c *resultCache) result(e *cacheEntry) *hubv1.CommandResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.result
}

// prune evicts finished entries older than ttl and, with room, the oldest entries beyond
// max-1 so one more fits; both oldest first. An entry that stays stops the sweep: the ones
// after it are younger.
func (c *resultCache) prune(room bool) {
	now := c.now()
	n := 0
	for ; n < len(c.order); n++ {
		e := c.entries[c.order[n]]
		over := room && len(c.entries) >= c.max
		expired := !e.finished.IsZero() && now.Sub(e.finished) > c.ttl
		if !over && !expired {
			break
		}
		delete(c.entries, c.order[n])
	}
	if n > 0 {
		c.order = append(c.order[:0:0], c.order[n:]...)
	}
}
