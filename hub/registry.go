package hub

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// watchInbox bounds the events waiting for one watcher; a watcher that falls this far behind
// is dropped (its channel closes early).
const watchInbox = 1024

// Agents lists the connected agent streams of the tenant on every replica, those of one
// agent identifier when agentIdentifier is not empty, sorted by identifier then ConnectedAt.
func (h *Hub) Agents(ctx context.Context, t store.Tenant, agentIdentifier string) ([]Agent, error) {
	local := h.localAgents(t, agentIdentifier)
	var remote []Agent
	var err error
	if agentIdentifier == "" {
		remote, err = h.listPresence(ctx, t)
	} else {
		remote, err = h.lookupPresence(ctx, agentKey{tenant: t, agent: agentIdentifier})
	}
	if err != nil {
		return nil, err
	}
	// This replica's own streams come from memory: fresher, and present even if their
	// presence write failed.
	byID := make(map[string]Agent, len(remote)+len(local))
	for _, a := range remote {
		if agentIdentifier == "" || a.AgentIdentifier == agentIdentifier {
			byID[a.StreamID] = a
		}
	}
	for _, a := range local {
		byID[a.StreamID] = a
	}
	out := make([]Agent, 0, len(byID))
	for _, a := range byID {
		if a.HubInstanceUUID == h.id && !h.isLocalStream(t, a.AgentIdentifier, a.StreamID) {
			// Closed here after the listing was read.
			continue
		}
		out = append(out, a)
	}
	sortAgents(out)
	return out, nil
}

func sortAgents(a []Agent) {
	slices.SortFunc(a, func(x, y Agent) int {
		return cmp.Or(cmp.Compare(x.AgentIdentifier, y.AgentIdentifier), x.ConnectedAt.Compare(y.ConnectedAt),
			cmp.Compare(x.StreamID, y.StreamID))
	})
}

func (h *Hub) localAgents(t store.Tenant, agentIdentifier string) []Agent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Agent
	for name, st := range h.agents[t] {
		if agentIdentifier != "" && name != agentIdentifier {
			continue
		}
		for _, s := range st.streams {
			out = append(out, s.agent)
		}
	}
	return out
}

func (h *Hub) isLocalStream(t store.Tenant, agent, streamID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.agentLocked(agentKey{tenant: t, agent: agent}, false); st != nil {
		for _, s := range st.streams {
			if s.id == streamID {
				return true
			}
		}
	}
	return false
}

// Accounts lists the tenant's agent identifiers connected now or within the grace period,
// sorted by name.
func (h *Hub) Accounts(ctx context.Context, t store.Tenant) ([]Account, error) {
	return h.sharedAccounts(ctx, t)
}

// inGrace reports whether an account last seen at lastSeen is still kept at now.
func (h *Hub) inGrace(lastSeen, now time.Time) bool {
	return !lastSeen.IsZero() && now.Before(lastSeen.Add(h.cfg.GracePeriod))
}

// checkAccount returns ErrUnknownAccount unless an agent of that identifier is connected or
// was within the grace period.
func (h *Hub) checkAccount(ctx context.Context, k agentKey) error {
	if !ValidIdentifier(k.agent) {
		return &unknownAccountError{account: k.agent}
	}
	known, err := h.accountKnown(ctx, k)
	if err != nil {
		return err
	}
	if !known {
		return &unknownAccountError{account: k.agent}
	}
	return nil
}

// watcher is one WatchAgents subscription.
type watcher struct {
	tenant   store.Tenant
	inbox    chan AgentEvent // bounded; the hub never blocks on it
	overflow chan struct{}   // closed when inbox was full
	dropped  bool            // guarded by Hub.mu
}

// notifyLocked passes ev to the tenant's watchers on this replica.
func (h *Hub) notifyLocked(t store.Tenant, ev AgentEvent) {
	for w := range h.watchers[t] {
		select {
		case w.inbox <- ev:
		default:
			if !w.dropped {
				w.dropped = true
				close(w.overflow)
			}
		}
	}
}

func (h *Hub) removeWatcher(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers[w.tenant], w)
	if len(h.watchers[w.tenant]) == 0 {
		delete(h.watchers, w.tenant)
	}
}

// WatchAgents reports the tenant's agent streams: the current ones as AgentConnected first,
// then every stream opening or closing on any replica. The channel is closed when ctx ends
// or the hub shuts down, and early if the reader falls more than 1024 events behind.
func (h *Hub) WatchAgents(ctx context.Context, t store.Tenant) (<-chan AgentEvent, error) {
	w := &watcher{tenant: t, inbox: make(chan AgentEvent, watchInbox), overflow: make(chan struct{})}
	h.mu.Lock()
	if h.shuttingDown {
		h.mu.Unlock()
		return nil, errors.New("the hub is shutting down")
	}
	if h.watchers[t] == nil {
		h.watchers[t] = map[*watcher]struct{}{}
	}
	h.watchers[t][w] = struct{}{}
	h.mu.Unlock()
	// Listed after subscribing, so nothing falls between; duplicates are filtered.
	current, err := h.Agents(ctx, t, "")
	if err != nil {
		h.removeWatcher(w)
		return nil, err
	}
	out := make(chan AgentEvent, 16)
	if !h.spawn(&h.wg, func() { h.watch(ctx, w, current, out) }) {
		h.removeWatcher(w)
		close(out)
	}
	return out, nil
}

func (h *Hub) watch(ctx context.Context, w *watcher, current []Agent, out chan<- AgentEvent) {
	defer close(out)
	defer h.removeWatcher(w)
	known := map[string]Agent{}
	emit := func(ev AgentEvent) bool {
		switch ev.Type {
		case AgentConnected:
			if _, ok := known[ev.Agent.StreamID]; ok {
				return true
			}
			known[ev.Agent.StreamID] = ev.Agent
		case AgentDisconnected:
			if _, ok := known[ev.Agent.StreamID]; !ok {
				return true
			}
			delete(known, ev.Agent.StreamID)
		}
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
		case <-h.done:
		}
		return false
	}
	for _, a := range current {
		if !emit(AgentEvent{Type: AgentConnected, Agent: a}) {
			return
		}
	}
	// Events can be lost (a replica dies, Redis restarts); re-reading the presence every
	// interval repairs that.
	reconcileTicker := time.NewTicker(h.cfg.HeartbeatInterval)
	defer reconcileTicker.Stop()
	reconcile := reconcileTicker.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.done:
			return
		case <-w.overflow:
			h.log.Warn("dropping an agent watcher that fell behind", "tenant", w.tenant.String())
			return
		case ev := <-w.inbox:
			if !emit(ev) {
				return
			}
		case <-reconcile:
			agents, err := h.Agents(ctx, w.tenant, "")
			if err != nil {
				h.log.Debug("agent watcher: list agents", "tenant", w.tenant.String(), "err", err)
				continue
			}
			alive := make(map[string]bool, len(agents))
			for _, a := range agents {
				alive[a.StreamID] = true
				if !emit(AgentEvent{Type: AgentConnected, Agent: a}) {
					return
				}
			}
			var gone []Agent
			for id, a := range known {
				if !alive[id] {
					gone = append(gone, a)
				}
			}
			sortAgents(gone)
			for _, a := range gone {
				if !emit(AgentEvent{Type: AgentDisconnected, Agent: a}) {
					return
				}
			}
		}
	}
}
