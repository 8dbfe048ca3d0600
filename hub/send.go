package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/store"
)

// maxHops bounds how often a command is forwarded between replicas: once to the replica
// holding the agent, and once more if the agent moved while the command waited there.
const maxHops = 2

// maxCommandIDLength bounds caller-chosen command ids.
const maxCommandIDLength = 128

// pendingKey names a command in flight: ids are unique per tenant.
type pendingKey struct {
	tenant store.Tenant
	id     string
}

// pending is a command waiting for its result.
type pending struct {
	key      pendingKey
	agent    agentKey
	cmd      *hubv1.Command
	deadline time.Time
	hops     int             // how many replicas forwarded it before this one
	done     chan sendResult // receives exactly one result; buffered

	// Guarded by Hub.mu.
	stream   *stream // the stream it is queued on or was sent on; nil otherwise
	sent     bool    // the writer has started writing it to stream
	parked   bool    // waiting for the agent to come back
	remote   bool    // published to another replica, which may have written it to a stream
	finished bool    // done has its result
}

type sendResult struct {
	res *hubv1.CommandResult
	err error
}

func streamLost(p *pending) error {
	return fmt.Errorf("command %s to agent '%s': %w", p.cmd.Id, p.agent.agent, ErrStreamLost)
}

// outcomeUnknownError marks err as coming after the command may have reached the agent.
type outcomeUnknownError struct{ err error }

func (e *outcomeUnknownError) Error() string {
	return e.err.Error() + " (the agent may have run it)"
}
func (e *outcomeUnknownError) Unwrap() []error { return []error{e.err, ErrOutcomeUnknown} }

// outcomeUnknown marks err as ErrOutcomeUnknown.
func outcomeUnknown(err error) error {
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		return err
	}
	return &outcomeUnknownError{err: err}
}

func timedOut(p *pending) error {
	return fmt.Errorf("command %s to agent '%s': no result before its deadline %s: %w",
		p.cmd.Id, p.agent.agent, p.deadline.UTC().Format(time.RFC3339Nano), ErrTimeout)
}

// Send delivers a copy of cmd to one healthy stream of the agent identifier in the tenant —
// on this replica or, with Redis, on another one — and waits for its result. cmd itself is
// never modified: the copy gets a random Id when cmd has none (the result's CommandId
// carries it) and a Deadline from ctx, or CommandTimeout when ctx has none. A result whose
// outcome is FAILED is returned with a nil error.
//
// Errors tell "not sent" apart from "outcome unknown". Those that match ErrOutcomeUnknown
// (errors.Is) came after the command was written to an agent's stream, or handed to the
// replica holding the agent: the agent may have run it, so only an idempotent command, or
// the same Id again (agents answer an Id they ran with its earlier result), may be retried.
// They are ErrStreamLost, ErrTimeout and ctx's error (canceled) in that case, and
// store.ErrUnavailable when Redis failed while forwarding. Every other error means no agent
// got the command: ErrNotConnected (also when the hub is shutting down), a command Send
// refuses (too large, id too long or already in flight), ErrTimeout or ctx's error while it
// still waited for the agent to come back, and store.ErrUnavailable before forwarding. All
// are wrapped.
func (h *Hub) Send(ctx context.Context, t store.Tenant, agentIdentifier string, cmd *hubv1.Command) (*hubv1.CommandResult, error) {
	start := time.Now()
	res, err := h.send(ctx, t, agentIdentifier, cmd, 0)
	h.m.commands.WithLabelValues(outcome(res, err)).Inc()
	h.m.commandSeconds.Observe(time.Since(start).Seconds())
	return res, err
}

func outcome(res *hubv1.CommandResult, err error) string {
	switch {
	case err == nil && res.GetOutcome() == hubv1.CommandResult_OUTCOME_SUCCEEDED:
		return "succeeded"
	case err == nil:
		return "failed"
	case errors.Is(err, ErrNotConnected):
		return "not_connected"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrStreamLost):
		return "stream_lost"
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

func (h *Hub) send(ctx context.Context, t store.Tenant, agent string, cmd *hubv1.Command, hops int) (*hubv1.CommandResult, error) {
	if cmd == nil {
		return nil, errors.New("hub: Send needs a command")
	}
	// An identifier with a stream here passed the Hello's rules; only another one needs
	// checking (by CEL programs: most of Send's own cost if run every time).
	if !h.holds(agentKey{tenant: t, agent: agent}) && !ValidIdentifier(agent) {
		return nil, &notConnectedError{agent: agent}
	}
	cmd = proto.CloneOf(cmd)
	if cmd.Id == "" {
		cmd.Id = uuid.NewString()
	} else if len(cmd.Id) > maxCommandIDLength {
		return nil, fmt.Errorf("command id has %d bytes; at most %d are allowed", len(cmd.Id), maxCommandIDLength)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.CommandTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	cmd.Deadline = timestamppb.New(deadline)
	if n := proto.Size(cmd); n > h.cfg.MaxMessageBytes {
		return nil, fmt.Errorf("command %s has %d bytes; agents accept at most %d", cmd.Id, n, h.cfg.MaxMessageBytes)
	}
	p := &pending{
		key:      pendingKey{tenant: t, id: cmd.Id},
		agent:    agentKey{tenant: t, agent: agent},
		cmd:      cmd,
		deadline: deadline,
		hops:     hops,
		done:     make(chan sendResult, 1),
	}
	h.mu.Lock()
	if h.shuttingDown {
		h.mu.Unlock()
		return nil, fmt.Errorf("the hub is shutting down: %w", &notConnectedError{agent: agent})
	}
	if _, dup := h.pending[p.key]; dup {
		h.mu.Unlock()
		if hops > 0 {
			// Forwarded back to the replica it came from: this one does not hold the agent.
			return nil, &notConnectedError{agent: agent}
		}
		return nil, fmt.Errorf("command id %q is already in flight", cmd.Id)
	}
	h.pending[p.key] = p
	s := h.placeLocked(p)
	h.mu.Unlock()
	if s != nil {
		// The caller writes its command itself: no hand-over to another goroutine.
		h.writeCommand(ctx, s, p)
	} else {
		h.route(ctx, p)
	}
	return h.wait(ctx, p)
}

// holds reports whether an open stream of k is registered here.
func (h *Hub) holds(k agentKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.agentLocked(k, false)
	return st != nil && len(st.streams) > 0
}

// route finds a home for a command no local stream took: another replica holding the agent,
// or a wait for an agent the hub told to reconnect. Otherwise it fails the command.
func (h *Hub) route(ctx context.Context, p *pending) {
	if p.hops < maxHops {
		res, err := h.forward(ctx, p)
		if !errors.Is(err, errNoRemote) {
			h.complete(p, res, err)
			return
		}
	}
	back, err := h.expectReconnect(ctx, p.agent)
	var s *stream
	h.mu.Lock()
	switch {
	case p.finished:
	case err != nil:
		h.completeLocked(p, nil, err)
	default:
		if s = h.placeLocked(p); s != nil {
			// A stream opened meanwhile.
		} else if back {
			h.parkLocked(p)
		} else {
			h.completeLocked(p, nil, &notConnectedError{agent: p.agent.agent})
		}
	}
	h.mu.Unlock()
	if s != nil {
		h.writeCommand(ctx, s, p)
	}
}

// wait returns p's result, or ErrTimeout (or ctx's error) when ctx ends first.
func (h *Hub) wait(ctx context.Context, p *pending) (*hubv1.CommandResult, error) {
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
	}
	h.mu.Lock()
	if !p.finished {
		err := timedOut(p)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("command %s to agent '%s': %w", p.cmd.Id, p.agent.agent, ctx.Err())
		}
		if p.sent || p.remote {
			err = outcomeUnknown(err)
		}
		h.completeLocked(p, nil, err)
	}
	h.mu.Unlock()
	r := <-p.done
	return r.res, r.err
}

// expectReconnect reports whether the hub recently told the agent to reconnect (token
// expired, too slow, shutdown), so a command may wait for it.
func (h *Hub) expectReconnect(ctx context.Context, k agentKey) (bool, error) {
	h.mu.Lock()
	st := h.agentLocked(k, false)
	local := st != nil && h.now().Before(st.reconnectUntil)
	h.mu.Unlock()
	if local {
		return true, nil
	}
	back, err := h.presence.ExpectedBack(ctx, k.tenant, k.agent)
	if err != nil {
		return false, sharedError(ctx, "look up agent", err)
	}
	return back, nil
}

// placeLocked puts p on the least busy open stream of its agent and returns it, or nil when
// none took it. The caller then writes p to it (writeCommand, writeCommandLater).
func (h *Hub) placeLocked(p *pending) *stream {
	st := h.agentLocked(p.agent, false)
	if st == nil {
		return nil
	}
	for {
		s := h.pickLocked(st)
		if s == nil {
			return nil
		}
		// A full queue drops s (removing it from st.streams); try the next.
		if h.reserveLocked(s) {
			p.stream = s
			s.inflight[p] = struct{}{}
			return s
		}
	}
}

// pickLocked returns the open stream of st with the fewest commands in flight, round-robin
// among equals, or nil.
func (h *Hub) pickLocked(st *agentState) *stream {
	var best []*stream
	least := -1
	for _, s := range st.streams {
		switch n := len(s.inflight); {
		case least < 0 || n < least:
			least, best = n, append(best[:0], s)
		case n == least:
			best = append(best, s)
		}
	}
	if len(best) == 0 {
		return nil
	}
	h.rr++
	return best[h.rr%uint64(len(best))]
}

// parkLocked makes p wait for its agent to come back.
func (h *Hub) parkLocked(p *pending) {
	st := h.agentLocked(p.agent, true)
	st.parked[p] = struct{}{}
	p.parked = true
}

func (h *Hub) unparkLocked(p *pending) {
	if st := h.agentLocked(p.agent, false); st != nil {
		delete(st.parked, p)
	}
	p.parked = false
}

// rehomeLocked finds a new home for a command whose stream closed before sending it: another
// stream of the agent, another replica, or a wait for the agent to come back.
func (h *Hub) rehomeLocked(p *pending) {
	if s := h.placeLocked(p); s != nil {
		h.writeCommandLater(s, p)
		return
	}
	if h.shuttingDown {
		h.completeLocked(p, nil, streamLost(p))
		return
	}
	h.parkLocked(p)
	if p.hops < maxHops {
		h.wg.Go(func() { h.forwardParked(p) })
	}
}

// forwardParked tries to forward a waiting command to another replica now holding its
// agent; it waits again if none does.
func (h *Hub) forwardParked(p *pending) {
	h.mu.Lock()
	if p.finished || !p.parked {
		h.mu.Unlock()
		return
	}
	h.unparkLocked(p)
	h.mu.Unlock()
	ctx, cancel := context.WithDeadline(context.Background(), p.deadline)
	defer cancel()
	res, err := h.forward(ctx, p)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case p.finished:
	case errors.Is(err, errNoRemote):
		if s := h.placeLocked(p); s != nil {
			h.writeCommandLater(s, p)
		} else {
			h.parkLocked(p)
		}
	default:
		h.completeLocked(p, res, err)
	}
}

// deliver hands a result from s to the command waiting for it.
func (h *Hub) deliver(s *stream, res *hubv1.CommandResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pending[pendingKey{tenant: s.key.tenant, id: res.GetCommandId()}]
	if p == nil || p.stream != s || !p.sent || p.finished {
		s.log.Warn("ignoring a result for a command not in flight on this stream", "command", quote(res.GetCommandId()))
		return
	}
	h.completeLocked(p, res, nil)
}

func (h *Hub) complete(p *pending, res *hubv1.CommandResult, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.completeLocked(p, res, err)
}

// completeLocked gives p its result, once.
func (h *Hub) completeLocked(p *pending, res *hubv1.CommandResult, err error) {
	if p.finished {
		return
	}
	p.finished = true
	if h.pending[p.key] == p {
		delete(h.pending, p.key)
	}
	if p.stream != nil {
		delete(p.stream.inflight, p)
	}
	if p.parked {
		h.unparkLocked(p)
	}
	p.done <- sendResult{res: res, err: err}
}
