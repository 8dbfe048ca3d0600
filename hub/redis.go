package hub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
	"github.com/sortie-dev/sortie/store"
)

// redisTimeout bounds one Redis round trip the hub makes on its own behalf (not a caller's).
const redisTimeout = 2 * time.Second

// tenantPrefix starts every hub key of a tenant; the hash tag keeps a tenant's keys in one
// Redis Cluster slot. Ids are path-escaped so none can leave the tag.
func tenantPrefix(t store.Tenant) string {
	return "sortie:{t:" + url.PathEscape(t.OrgID) + "/" + url.PathEscape(t.EnvID) + "}:hub:"
}

func keyStreams(t store.Tenant) string          { return tenantPrefix(t) + "streams" }
func keyAlive(t store.Tenant, id string) string { return tenantPrefix(t) + "alive:" + id }
func keyAccounts(t store.Tenant) string         { return tenantPrefix(t) + "accounts" }
func keyReconnecting(k agentKey) string         { return tenantPrefix(k.tenant) + "reconnecting:" + k.agent }

// unavailableError is a Redis failure: errors.Is finds store.ErrUnavailable and the cause,
// while the message names neither the Redis address nor its password.
type unavailableError struct {
	op    string
	cause error
}

func (e *unavailableError) Error() string {
	return "hub: " + e.op + ": " + store.ErrUnavailable.Error()
}
func (e *unavailableError) Unwrap() []error { return []error{store.ErrUnavailable, e.cause} }

// unavailable wraps a Redis error, or returns ctx's error when that is why the call failed.
func unavailable(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("hub: %s: %w", op, cerr)
	}
	return &unavailableError{op: op, cause: err}
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// storePresence records a new stream in Redis and tells the other replicas.
func (h *Hub) storePresence(k agentKey, a Agent) {
	h.mu.Lock()
	down := h.redisDown
	h.mu.Unlock()
	if down {
		// Do not hold up the Welcome; the refresh restores presence once Redis is back.
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	rec := encodeAgent(a)
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyStreams(k.tenant), a.StreamID, rec)
		p.Set(ctx, keyAlive(k.tenant, a.StreamID), "1", h.presenceTTL())
		p.HSet(ctx, keyAccounts(k.tenant), k.agent, ms(h.now()))
		p.Del(ctx, keyReconnecting(k))
		return nil
	})
	if err != nil {
		h.log.Warn("recording agent presence in Redis failed; retrying on the next refresh",
			"tenant", k.tenant.String(), "agent", k.agent, "stream", a.StreamID, "err", err)
		h.setRedisDown(true)
	}
	h.publishEvent(ctx, k.tenant, AgentEvent{Type: AgentConnected, Agent: a})
}

// removePresence removes a closed stream from Redis and tells the other replicas. The
// account's grace period starts now; expectBack marks the agent as told to reconnect.
func (h *Hub) removePresence(k agentKey, a Agent, expectBack bool) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, keyStreams(k.tenant), a.StreamID)
		p.Del(ctx, keyAlive(k.tenant, a.StreamID))
		p.HSet(ctx, keyAccounts(k.tenant), k.agent, ms(h.now()))
		if expectBack {
			p.Set(ctx, keyReconnecting(k), "1", h.presenceTTL())
		}
		return nil
	})
	if err != nil {
		h.log.Warn("removing agent presence from Redis failed; it expires by itself",
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

// listPresence returns the live agent streams of the tenant on every replica. Records whose
// TTL key expired (their replica died) are removed, and their disconnection announced, by
// the one replica that removes each.
func (h *Hub) listPresence(ctx context.Context, t store.Tenant) ([]Agent, error) {
	recs, err := h.rdb.HGetAll(ctx, keyStreams(t)).Result()
	if err != nil {
		return nil, unavailable(ctx, "list agents", err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(recs))
	keys := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
		keys = append(keys, keyAlive(t, id))
	}
	alive, err := h.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, unavailable(ctx, "list agents", err)
	}
	var out, dead []Agent
	for i, id := range ids {
		a, err := decodeAgent([]byte(recs[id]))
		if err != nil {
			h.log.Warn("ignoring an unreadable agent presence record", "tenant", t.String(), "stream", id)
			continue
		}
		if alive[i] == nil && !h.isLocalStream(t, a.AgentIdentifier, id) {
			dead = append(dead, a)
			continue
		}
		out = append(out, a)
	}
	if len(dead) > 0 {
		h.reap(ctx, t, dead)
	}
	return out, nil
}

// reap removes the records of streams whose presence expired and announces them.
func (h *Hub) reap(ctx context.Context, t store.Tenant, dead []Agent) {
	cmds, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, a := range dead {
			p.HDel(ctx, keyStreams(t), a.StreamID)
		}
		return nil
	})
	if err != nil {
		return
	}
	for i, c := range cmds {
		if n, _ := c.(*redis.IntCmd).Result(); n == 1 {
			a := dead[i]
			h.log.Info("agent presence expired: its hub replica stopped refreshing it", "tenant", t.String(),
				"agent", a.AgentIdentifier, "stream", a.StreamID, "hub", a.HubInstanceUUID)
			ev := AgentEvent{Type: AgentDisconnected, Agent: a}
			h.mu.Lock()
			h.notifyLocked(t, ev)
			h.mu.Unlock()
			h.publishEvent(ctx, t, ev)
		}
	}
}

// redisAccounts lists the accounts of a tenant from Redis.
func (h *Hub) redisAccounts(ctx context.Context, t store.Tenant) ([]Account, error) {
	agents, err := h.Agents(ctx, t, "")
	if err != nil {
		return nil, err
	}
	seen, err := h.rdb.HGetAll(ctx, keyAccounts(t)).Result()
	if err != nil {
		return nil, unavailable(ctx, "list accounts", err)
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
	for name, v := range seen {
		if connected[name] {
			continue
		}
		if h.inGrace(fromMS(v), now) {
			out = append(out, Account{Name: name})
		} else {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		_ = h.rdb.HDel(ctx, keyAccounts(t), stale...).Err()
	}
	slices.SortFunc(out, func(a, b Account) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func fromMS(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// redisAccountKnown reports whether an account is connected on any replica or within its
// grace period.
func (h *Hub) redisAccountKnown(ctx context.Context, k agentKey) (bool, error) {
	v, err := h.rdb.HGet(ctx, keyAccounts(k.tenant), k.agent).Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return false, unavailable(ctx, "look up account", err)
	case h.inGrace(fromMS(v), h.now()):
		return true, nil
	}
	agents, err := h.Agents(ctx, k.tenant, k.agent)
	return len(agents) > 0, err
}

func (h *Hub) setRedisDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.redisDown = down
}

// refreshLoop keeps this replica's presence alive in Redis.
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
// of their accounts, and rewrites inventories Redis missed.
func (h *Hub) refresh(ctx context.Context) {
	h.mu.Lock()
	var agents []Agent
	accounts := map[agentKey]bool{}
	for t, byAgent := range h.agents {
		for name, st := range byAgent {
			for _, s := range st.streams {
				agents = append(agents, s.agent)
				accounts[agentKey{tenant: t, agent: name}] = true
			}
		}
	}
	wasDown := h.redisDown
	h.mu.Unlock()
	if len(agents) == 0 && !wasDown {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	now := ms(h.now())
	_, err := h.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
		for _, a := range agents {
			t := store.Tenant{OrgID: a.OrgID, EnvID: a.EnvID}
			rec := encodeAgent(a)
			p.HSet(rctx, keyStreams(t), a.StreamID, rec)
			p.Set(rctx, keyAlive(t, a.StreamID), "1", h.presenceTTL())
		}
		for k := range accounts {
			p.HSet(rctx, keyAccounts(k.tenant), k.agent, now)
		}
		return nil
	})
	if err != nil {
		if !wasDown {
			h.log.Warn("refreshing agent presence in Redis failed", "err", err)
		}
		h.setRedisDown(true)
		return
	}
	if wasDown {
		h.log.Info("Redis reachable again; rewriting presence and inventories")
		h.setRedisDown(false)
	}
	keys := make([]inventory.Key, 0, len(accounts))
	for k := range accounts {
		keys = append(keys, k.inventoryKey())
	}
	// An inventory Redis lost (it restarted between two refreshes) is marked for repair.
	if _, err := h.shared.Keep(rctx, keys); err != nil {
		h.log.Warn("renewing inventory TTLs failed", "err", err)
		return
	}
	rewritten, err := h.shared.Repair(ctx, wasDown)
	for _, k := range rewritten {
		// Other replicas read what Redis had meanwhile.
		h.changed(agentKey{tenant: k.Tenant, agent: k.Account}, true, nil, nil)
	}
	if err != nil {
		h.log.Warn("rewriting an inventory in Redis failed", "err", err)
	}
}

// errNoRemote means no other replica holds the agent.
var errNoRemote = errors.New("no other replica holds the agent")

// forward sends p to a replica holding its agent and waits for the result.
func (h *Hub) forward(ctx context.Context, p *pending) (*hubv1.CommandResult, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, timedOut(p)
	}
	agents, err := h.listPresence(ctx, p.agent.tenant)
	if err != nil {
		if ctx.Err() != nil {
			return nil, timedOut(p)
		}
		return nil, err
	}
	var hubs []string
	for _, a := range agents {
		if a.AgentIdentifier == p.agent.agent && a.HubInstanceUUID != h.id && !slices.Contains(hubs, a.HubInstanceUUID) {
			hubs = append(hubs, a.HubInstanceUUID)
		}
	}
	if len(hubs) == 0 {
		return nil, errNoRemote
	}
	rand.Shuffle(len(hubs), func(i, j int) { hubs[i], hubs[j] = hubs[j], hubs[i] })
	for _, hub := range hubs {
		req := &replicationv1.ForwardRequest{
			Id: p.cmd.Id + "/" + strconv.FormatUint(rand.Uint64(), 36), ReplyTo: h.id,
			OrgId: p.agent.tenant.OrgID, EnvId: p.agent.tenant.EnvID, Agent: p.agent.agent,
			Command: p.cmd, Hops: int32(p.hops + 1),
		}
		body := &replicationv1.Envelope{Message: &replicationv1.Envelope_ForwardRequest{ForwardRequest: req}}
		replies := make(chan *replicationv1.ForwardReply, 1)
		h.mu.Lock()
		h.forwards[req.Id] = replies
		h.mu.Unlock()
		res, err, next := h.awaitForward(ctx, p, hub, req.Id, body, replies)
		h.mu.Lock()
		delete(h.forwards, req.Id)
		h.mu.Unlock()
		if !next {
			return res, err
		}
	}
	return nil, errNoRemote
}

// awaitForward publishes one forwarded command and waits for its reply; next reports that
// the replica does not (or no longer) hold the agent, so the next one should be tried. From
// the publication on, errors are ErrOutcomeUnknown unless the replica says it never wrote
// the command to a stream.
func (h *Hub) awaitForward(ctx context.Context, p *pending, hub, id string, body *replicationv1.Envelope, replies <-chan *replicationv1.ForwardReply) (*hubv1.CommandResult, error, bool) {
	h.mu.Lock()
	p.remote = true
	h.mu.Unlock()
	delivered, err := h.bus.Send(ctx, hub, body)
	if err != nil {
		// Redis may have passed it on before failing.
		if ctx.Err() != nil {
			return nil, outcomeUnknown(timedOut(p)), false
		}
		return nil, outcomeUnknown(unavailable(ctx, "forward command", err)), false
	}
	if !delivered {
		// That replica is gone; its presence has not expired yet.
		h.notRemote(p)
		return nil, nil, true
	}
	h.m.forwarded.WithLabelValues("sent").Inc()
	h.log.Debug("forwarded command", "tenant", p.agent.tenant.String(), "agent", p.agent.agent,
		"command", p.cmd.Id, "hub", hub)
	select {
	case r := <-replies:
		var err error
		switch r.Error {
		case replicationv1.ForwardReply_ERROR_UNSPECIFIED:
			if r.Result == nil {
				return nil, outcomeUnknown(fmt.Errorf("command %s to agent '%s': replica %s replied without a result", p.cmd.Id, p.agent.agent, hub)), false
			}
			return r.Result, nil, false
		case replicationv1.ForwardReply_ERROR_NOT_CONNECTED:
			h.notRemote(p)
			return nil, nil, true
		case replicationv1.ForwardReply_ERROR_TIMEOUT:
			err = timedOut(p)
		case replicationv1.ForwardReply_ERROR_STREAM_LOST:
			err = streamLost(p)
		case replicationv1.ForwardReply_ERROR_UNAVAILABLE:
			err = &unavailableError{op: "forwarded command", cause: errors.New(r.Message)}
		default:
			err = fmt.Errorf("command %s to agent '%s': %s", p.cmd.Id, p.agent.agent, r.Message)
		}
		if r.OutcomeUnknown {
			err = outcomeUnknown(err)
		} else {
			h.notRemote(p)
		}
		return nil, err, false
	case <-ctx.Done():
		return nil, outcomeUnknown(timedOut(p)), false
	case <-h.done:
		// The reply would come through the subscription this replica is closing.
		return nil, outcomeUnknown(streamLost(p)), false
	}
}

// notRemote records that no replica holds p any more.
func (h *Hub) notRemote(p *pending) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p.remote = false
}

// busListener handles what other replicas send this one.
type busListener struct{ h *Hub }

// Ready implements bus.Listener.
func (l busListener) Ready(resumed bool) {
	h := l.h
	h.readyOnce.Do(func() { close(h.ready) })
	if resumed {
		// Messages may have been lost: connect events (retry the waiting commands) and
		// inventory changes (subscribers must re-read).
		h.retryParked(func(agentKey) bool { return true })
		h.resyncAll()
	}
}

// Message implements bus.Listener.
func (l busListener) Message(env *replicationv1.Envelope) {
	h := l.h
	switch x := env.Message.(type) {
	case *replicationv1.Envelope_InventoryChange:
		h.onChange(x.InventoryChange)
	case *replicationv1.Envelope_AgentEvent:
		h.onEvent(x.AgentEvent)
	case *replicationv1.Envelope_ForwardRequest:
		req := x.ForwardRequest
		if !h.spawn(&h.wg, func() { h.serveForward(req) }) {
			h.reply(req, &replicationv1.ForwardReply{Id: req.Id, Error: replicationv1.ForwardReply_ERROR_NOT_CONNECTED})
		}
	case *replicationv1.Envelope_ForwardReply:
		h.mu.Lock()
		ch := h.forwards[x.ForwardReply.Id]
		h.mu.Unlock()
		if ch != nil {
			select {
			case ch <- x.ForwardReply:
			default:
			}
		}
	}
}

// onEvent passes an agent event of another replica to this one's watchers, and retries the
// commands waiting for an agent that connected.
func (h *Hub) onEvent(msg *replicationv1.AgentEvent) {
	if msg.Origin == h.id || msg.Agent == nil {
		return
	}
	ev := AgentEvent{Type: agentEventType(msg.Type), Agent: agentFrom(msg.Agent)}
	if ev.Type == 0 {
		return
	}
	t := store.Tenant{OrgID: ev.Agent.OrgID, EnvID: ev.Agent.EnvID}
	h.mu.Lock()
	h.notifyLocked(t, ev)
	h.mu.Unlock()
	if ev.Type == AgentConnected {
		k := agentKey{tenant: t, agent: ev.Agent.AgentIdentifier}
		h.retryParked(func(x agentKey) bool { return x == k })
	}
}

// retryParked tries to forward the waiting commands of the agents match selects.
func (h *Hub) retryParked(match func(agentKey) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shuttingDown {
		return
	}
	for t, byAgent := range h.agents {
		for name, st := range byAgent {
			if !match(agentKey{tenant: t, agent: name}) {
				continue
			}
			for p := range st.parked {
				if p.hops < maxHops {
					h.wg.Go(func() { h.forwardParked(p) })
				}
			}
		}
	}
}

// serveForward runs a command forwarded by another replica and sends the result back.
func (h *Hub) serveForward(req *replicationv1.ForwardRequest) {
	h.m.forwarded.WithLabelValues("received").Inc()
	cmd := req.Command
	if cmd == nil || cmd.Deadline == nil {
		h.reply(req, &replicationv1.ForwardReply{Id: req.Id, Error: replicationv1.ForwardReply_ERROR_FAILED, Message: "unreadable forwarded command"})
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), cmd.Deadline.AsTime())
	defer cancel()
	res, err := h.send(ctx, store.Tenant{OrgID: req.OrgId, EnvID: req.EnvId}, req.Agent, cmd, int(req.Hops))
	r := &replicationv1.ForwardReply{Id: req.Id, OutcomeUnknown: errors.Is(err, ErrOutcomeUnknown)}
	switch {
	case err == nil:
		r.Result = res
	case errors.Is(err, ErrNotConnected):
		r.Error = replicationv1.ForwardReply_ERROR_NOT_CONNECTED
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		r.Error = replicationv1.ForwardReply_ERROR_TIMEOUT
	case errors.Is(err, ErrStreamLost):
		r.Error = replicationv1.ForwardReply_ERROR_STREAM_LOST
	case errors.Is(err, store.ErrUnavailable):
		r.Error, r.Message = replicationv1.ForwardReply_ERROR_UNAVAILABLE, err.Error()
	default:
		r.Error, r.Message = replicationv1.ForwardReply_ERROR_FAILED, err.Error()
	}
	h.reply(req, r)
}

func (h *Hub) reply(req *replicationv1.ForwardRequest, r *replicationv1.ForwardReply) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	body := &replicationv1.Envelope{Message: &replicationv1.Envelope_ForwardReply{ForwardReply: r}}
	if _, err := h.bus.Send(ctx, req.ReplyTo, body); err != nil {
		h.log.Warn("returning a forwarded command's result failed", "hub", req.ReplyTo, "err", err)
	}
}
