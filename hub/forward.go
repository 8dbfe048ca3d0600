package hub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/store"
)

// errNoRemote means no other replica holds the agent.
var errNoRemote = errors.New("no other replica holds the agent")

// forward sends p to a replica holding its agent and waits for the result.
func (h *Hub) forward(ctx context.Context, p *pending) (*hubv1.CommandResult, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, timedOut(p)
	}
	agents, err := h.lookupPresence(ctx, p.agent)
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
