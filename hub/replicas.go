package hub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	"github.com/sortie-dev/sortie/hub/internal/bus"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
	"github.com/sortie-dev/sortie/hub/internal/presence"
	"github.com/sortie-dev/sortie/store"
)

// redisTimeout bounds one round trip to the shared state (Redis) the hub makes on its own
// behalf, not a caller's.
const redisTimeout = 2 * time.Second

// unavailableError is a failure of the shared state: errors.Is finds store.ErrUnavailable and
// the cause, while the message names neither the Redis address nor its password.
type unavailableError struct {
	op    string
	cause error
}

func (e *unavailableError) Error() string {
	return "hub: " + e.op + ": " + store.ErrUnavailable.Error()
}
func (e *unavailableError) Unwrap() []error { return []error{store.ErrUnavailable, e.cause} }

// unavailable wraps a failure of the shared state, or returns ctx's error when that is why
// the call failed.
func unavailable(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("hub: %s: %w", op, cerr)
	}
	return &unavailableError{op: op, cause: err}
}

// sharedError is an error of the shared state (presence, inventory, bus) as the hub's
// callers see it: an unreachable backend is store.ErrUnavailable.
func sharedError(ctx context.Context, op string, err error) error {
	if errors.Is(err, presence.ErrUnavailable) || errors.Is(err, inventory.ErrUnavailable) || errors.Is(err, bus.ErrUnavailable) {
		return unavailable(ctx, op, err)
	}
	return fmt.Errorf("hub: %s: %w", op, err)
}

// storePresence records a new stream in the shared presence and tells the other replicas.
func (h *Hub) storePresence(k agentKey, a Agent) {
	h.mu.Lock()
	down := h.sharedDown
	h.mu.Unlock()
	if down {
		// Do not hold up the Welcome; the refresh restores presence once Redis is back.
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := h.presence.Add(ctx, agentRecord(a), h.now()); err != nil {
		h.log.Warn("recording agent presence failed; retrying on the next refresh",
			"tenant", k.tenant.String(), "agent", k.agent, "stream", a.StreamID, "err", err)
		h.setSharedDown(true)
	}
	h.publishEvent(ctx, k.tenant, AgentEvent{Type: AgentConnected, Agent: a})
}

// removePresence removes a stream closed at closedAt from the shared presence and tells the
// other replicas. The account's grace period starts at closedAt; expectBack marks the agent
// as told to reconnect.
func (h *Hub) removePresence(k agentKey, a Agent, closedAt time.Time, expectBack bool) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := h.presence.Remove(ctx, agentRecord(a), closedAt, expectBack); err != nil {
		h.log.Warn("removing agent presence failed; it expires by itself",
			"tenant", k.tenant.String(), "agent", k.agent, "stream", a.StreamID, "err", err)
	}
	// The grace period starts now for the inventory too.
	if _, err := h.shared.Keep(ctx, []inventory.Key{k.inventoryKey()}); err != nil {
		h.log.Debug("renewing an inventory's TTL failed", "tenant", k.tenant.String(), "agent", k.agent, "err", err)
	}
	h.publishEvent(ctx, k.tenant, AgentEvent{Type: AgentDisconnected, Agent: a})
}

func (h *Hub) publishEvent(ctx context.Context, t store.Tenant, ev AgentEvent) {
	msg := &replicationv1.AgentEvent{Origin: h.id, Type: eventType(ev.Type), Agent: agentRecord(ev.Agent)}
	if err := h.bus.Broadcast(ctx, &replicationv1.Envelope{Message: &replicationv1.Envelope_AgentEvent{AgentEvent: msg}}); err != nil {
		h.log.Debug("publishing an agent event failed", "tenant", t.String(), "err", err)
	}
}

// listPresence returns the live agent streams of the tenant on every replica.
func (h *Hub) listPresence(ctx context.Context, t store.Tenant) ([]Agent, error) {
	alive, expired, err := h.presence.List(ctx, t)
	if err != nil {
		return nil, sharedError(ctx, "list agents", err)
	}
	return h.livePresence(ctx, t, alive, expired), nil
}

// lookupPresence returns the live streams of one agent on every replica: a read of that
// agent's records only, whatever the size of its tenant.
func (h *Hub) lookupPresence(ctx context.Context, k agentKey) ([]Agent, error) {
	alive, expired, err := h.presence.Lookup(ctx, k.tenant, k.agent)
	if err != nil {
		return nil, sharedError(ctx, "look up agent", err)
	}
	return h.livePresence(ctx, k.tenant, alive, expired), nil
}

// livePresence returns the agents of the records read from the shared presence. Records whose
// TTL ran out (their replica died) are removed, and their disconnection announced, by the
// one replica that removes each; this replica's own streams count as alive (their refresh
// may have failed).
func (h *Hub) livePresence(ctx context.Context, t store.Tenant, alive, expired []*replicationv1.AgentRecord) []Agent {
	out := make([]Agent, 0, len(alive))
	for _, r := range alive {
		out = append(out, agentFrom(r))
	}
	var dead []*replicationv1.AgentRecord
	for _, r := range expired {
		if h.isLocalStream(t, r.AgentIdentifier, r.StreamId) {
			out = append(out, agentFrom(r))
		} else {
			dead = append(dead, r)
		}
	}
	if len(dead) > 0 {
		h.reap(ctx, t, dead)
	}
	return out
}

// reap removes the records of streams whose presence expired and announces them.
func (h *Hub) reap(ctx context.Context, t store.Tenant, dead []*replicationv1.AgentRecord) {
	removed, err := h.presence.Reap(ctx, t, dead)
	if err != nil {
		return
	}
	for _, r := range removed {
		a := agentFrom(r)
		h.log.Info("agent presence expired: its hub replica stopped refreshing it", "tenant", t.String(),
			"agent", a.AgentIdentifier, "stream", a.StreamID, "hub", a.HubInstanceUUID)
		ev := AgentEvent{Type: AgentDisconnected, Agent: a}
		h.mu.Lock()
		h.notifyLocked(t, ev)
		h.mu.Unlock()
		h.publishEvent(ctx, t, ev)
	}
}

// sharedAccounts lists the accounts of a tenant: connected on any replica, or seen within
// the grace period.
func (h *Hub) sharedAccounts(ctx context.Context, t store.Tenant) ([]Account, error) {
	agents, err := h.Agents(ctx, t, "")
	if err != nil {
		return nil, err
	}
	seen, err := h.presence.Accounts(ctx, t)
	if err != nil {
		return nil, sharedError(ctx, "list accounts", err)
	}
	connected := map[string]bool{}
	for _, a := range agents {
		connected[a.AgentIdentifier] = true
	}
	now := h.now()
	var out []Account
	var stale []string
	for name := range connected {
		out = append(out, Account{Name: name, Connected: true})
	}
	for name, at := range seen {
		if connected[name] {
			continue
		}
		if h.inGrace(at, now) {
			out = append(out, Account{Name: name})
		} else {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		_ = h.presence.Forget(ctx, t, stale)
	}
	slices.SortFunc(out, func(a, b Account) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// accountKnown reports whether an account is connected on any replica or within its grace
// period.
func (h *Hub) accountKnown(ctx context.Context, k agentKey) (bool, error) {
	seen, err := h.presence.LastSeen(ctx, k.tenant, k.agent)
	if err != nil {
		return false, sharedError(ctx, "look up account", err)
	}
	if h.inGrace(seen, h.now()) {
		return true, nil
	}
	agents, err := h.Agents(ctx, k.tenant, k.agent)
	return len(agents) > 0, err
}

func (h *Hub) setSharedDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sharedDown = down
}

// refreshLoop keeps this replica's presence alive.
func (h *Hub) refreshLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.refresh(ctx)
		}
	}
}

// refresh renews the presence of every local stream and the last-seen time and inventory TTL
// of their accounts, and rewrites inventories the shared store lost.
func (h *Hub) refresh(ctx context.Context) {
	h.mu.Lock()
	var streams []*replicationv1.AgentRecord
	accounts := map[agentKey]bool{}
	for t, byAgent := range h.agents {
		for name, st := range byAgent {
			for _, s := range st.streams {
				streams = append(streams, agentRecord(s.agent))
				accounts[agentKey{tenant: t, agent: name}] = true
			}
		}
	}
	wasDown := h.sharedDown
	h.mu.Unlock()
	if len(streams) == 0 && !wasDown {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if err := h.presence.Refresh(rctx, streams, h.now()); err != nil {
		if !wasDown {
			h.log.Warn("refreshing agent presence failed", "err", err)
		}
		h.setSharedDown(true)
		return
	}
	if wasDown {
		h.log.Info("shared state reachable again; rewriting presence and inventories")
		h.setSharedDown(false)
	}
	keys := make([]inventory.Key, 0, len(accounts))
	for k := range accounts {
		keys = append(keys, k.inventoryKey())
	}
	// An inventory the store lost (Redis restarted between two refreshes) is marked for repair.
	if _, err := h.shared.Keep(rctx, keys); err != nil {
		h.log.Warn("renewing inventory TTLs failed", "err", err)
		return
	}
	rewritten, err := h.shared.Repair(ctx, wasDown)
	for _, k := range rewritten {
		// Other replicas read what the store had meanwhile.
		h.changed(agentKey{tenant: k.Tenant, agent: k.Account}, true, nil, nil)
	}
	if err != nil {
		h.log.Warn("rewriting an inventory failed", "err", err)
	}
}
