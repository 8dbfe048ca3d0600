package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/identity"
)

// stream is one agent stream held by this replica.
type stream struct {
	id    string
	key   agentKey
	log   *slog.Logger
	queue chan outItem  // bounded; filled under Hub.mu without blocking, drained by serve
	stop  chan struct{} // closed (under Hub.mu) when the hub decides to close the stream

	// writeStart is when the current Send began (unix nanoseconds), 0 when idle.
	writeStart atomic.Int64

	// Guarded by Hub.mu.
	agent      Agent
	closing    bool
	goodbye    *hubv1.Goodbye // set with closing, before stop is closed; nil when the hub says nothing
	expectBack bool           // the hub told the agent to reconnect
	closedAt   time.Time      // when closing began: the account was last seen then
	inflight   map[*pending]struct{}

	// Owned by the stream's handler goroutine.
	snap *snapshotBuilder
}

// outItem is one entry of a send queue: a command, or another message.
type outItem struct {
	msg *hubv1.ConnectResponse
	p   *pending
}

// received is what the reader got from the agent.
type received struct {
	msg *hubv1.ConnectRequest
	err error
}

func goodbye(reason hubv1.Goodbye_Reason, msg string) *hubv1.Goodbye {
	return &hubv1.Goodbye{Reason: reason, Message: msg}
}

// closeError is what Connect returns after saying gb.
func closeError(gb *hubv1.Goodbye) error {
	if gb == nil {
		return nil
	}
	code := connect.CodeUnavailable
	switch gb.Reason {
	case hubv1.Goodbye_REASON_PROTOCOL_ERROR:
		code = connect.CodeInvalidArgument
	case hubv1.Goodbye_REASON_TOKEN_EXPIRED, hubv1.Goodbye_REASON_CREDENTIAL_REVOKED:
		code = connect.CodeUnauthenticated
	case hubv1.Goodbye_REASON_TOO_SLOW:
		code = connect.CodeResourceExhausted
	case hubv1.Goodbye_REASON_HEARTBEAT_TIMEOUT:
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, errors.New(gb.Message))
}

// expectsReconnect reports whether an agent told reason will come back on a new stream.
func expectsReconnect(reason hubv1.Goodbye_Reason) bool {
	switch reason {
	case hubv1.Goodbye_REASON_TOKEN_EXPIRED, hubv1.Goodbye_REASON_TOO_SLOW, hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN:
		return true
	}
	return false
}

// Connect implements hubv1connect.AgentHubServiceHandler. The caller (gateway) has already
// verified the token and checked scope connect:agentHub; the principal is in ctx
// (identity.PrincipalFrom).
func (h *Hub) Connect(ctx context.Context, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) error {
	principal, ok := identity.PrincipalFrom(ctx)
	if !ok || principal.OrgID == "" || principal.EnvID == "" {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("the stream carries no verified token"))
	}
	tenant := principal.Tenant()
	log := h.log.With("tenant", tenant.String())

	// The reader ends once Connect has returned and connect-go has closed the request body.
	recv := make(chan received)
	readerStop := make(chan struct{})
	ip := peerIP(bs.Peer().Addr)
	h.mu.Lock()
	if h.shuttingDown {
		h.mu.Unlock()
		return connect.NewError(connect.CodeUnavailable, errors.New("the hub is shutting down; reconnect"))
	}
	if max := h.cfg.MaxStreamsPerIP; max > 0 && h.streamsByIP[ip] >= max {
		h.mu.Unlock()
		h.m.refusedStreams.Inc()
		log.Warn("agent stream refused: too many from one address", "ip", ip, "max", max)
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("too many agent streams from %s: this hub takes at most %d per address", ip, max))
	}
	h.streamsByIP[ip]++
	defer func() {
		h.mu.Lock()
		if h.streamsByIP[ip]--; h.streamsByIP[ip] <= 0 {
			delete(h.streamsByIP, ip)
		}
		h.mu.Unlock()
	}()
	h.streamsWG.Add(1)
	h.readersWG.Go(func() { readLoop(bs, recv, readerStop) })
	h.mu.Unlock()
	defer h.streamsWG.Done()
	defer close(readerStop)

	hello, err := h.awaitHello(ctx, log, bs, recv)
	if hello == nil {
		return err
	}
	now := h.now()
	s := &stream{
		id:       uuid.NewString(),
		key:      agentKey{tenant: tenant, agent: hello.AgentIdentifier},
		queue:    make(chan outItem, h.cfg.SendQueueLength),
		stop:     make(chan struct{}),
		inflight: map[*pending]struct{}{},
	}
	s.agent = Agent{
		AgentIdentifier:       hello.AgentIdentifier,
		AgentInstanceUUID:     hello.AgentInstanceUuid,
		AgentVersion:          hello.AgentVersion,
		ClientID:              principal.Subject,
		ConnectedAt:           now,
		LastHeartbeatAt:       now,
		OrgID:                 tenant.OrgID,
		EnvID:                 tenant.EnvID,
		HubInstanceUUID:       h.id,
		StreamID:              s.id,
		IPAddress:             peerIP(bs.Peer().Addr),
		NodeIP:                hello.NodeIp,
		K8sClusterRoleSupport: hello.ClusterRoleSupport,
		KubernetesVersion:     hello.KubernetesVersion,
	}
	s.log = log.With("agent", hello.AgentIdentifier, "stream", s.id)
	// The Welcome is first in the queue, ahead of any command routed once registered.
	s.queue <- outItem{msg: &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Welcome{Welcome: &hubv1.Welcome{
		HubInstanceUuid:   h.id,
		StreamId:          s.id,
		HeartbeatInterval: durationpb.New(h.cfg.HeartbeatInterval),
		MaxMessageBytes:   int64(h.cfg.MaxMessageBytes),
	}}}}
	h.register(s)

	// The handler goroutine both decides and writes (serve); only reading has a goroutine of
	// its own, which keeps an idle agent at two goroutines besides net/http's.
	rc, _ := ctx.Value(responseControllerKey{}).(*http.ResponseController)
	err = h.serve(ctx, s, principal, recv, bs, rc)

	h.mu.Lock()
	h.beginCloseLocked(s, nil)
	h.mu.Unlock()
	// Say Goodbye; an agent that does not read gets closeGrace, then the HTTP/2 stream is
	// reset.
	if rc != nil {
		_ = rc.SetWriteDeadline(time.Now().Add(h.closeGrace()))
	}
	if werr := h.writeGoodbye(s, bs); werr != nil {
		s.log.Debug("saying goodbye to the agent failed", "err", werr)
	}
	h.unregister(s)
	return err
}

// readLoop passes what the agent sends to the stream's handler until an error.
func readLoop(bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse], out chan<- received, stop <-chan struct{}) {
	for {
		msg, err := bs.Receive()
		select {
		case out <- received{msg: msg, err: err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// peerIP returns the IP of a "host:port" peer address.
func peerIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// awaitHello waits for the stream's Hello. It returns a nil Hello and the error Connect must
// return when the stream ends before a valid Hello, having said Goodbye when there was
// something to say.
func (h *Hub) awaitHello(ctx context.Context, log *slog.Logger, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse], recv <-chan received) (*hubv1.Hello, error) {
	timer := time.NewTimer(h.helloTimeout)
	defer timer.Stop()
	refuse := func(gb *hubv1.Goodbye) error {
		log.Warn("refusing agent stream", "reason", gb.Reason.String(), "detail", gb.Message)
		h.m.closed.WithLabelValues(closeReason(gb)).Inc()
		_ = bs.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Goodbye{Goodbye: gb}})
		return closeError(gb)
	}
	protocolError := func(format string, args ...any) error {
		return refuse(goodbye(hubv1.Goodbye_REASON_PROTOCOL_ERROR, fmt.Sprintf(format, args...)))
	}
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case <-h.done:
			return nil, refuse(goodbye(hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN, "the hub is shutting down; reconnect"))
		case <-timer.C:
			return nil, protocolError("no Hello within %s of opening the stream: the first message must be a Hello", h.helloTimeout)
		case r := <-recv:
			if r.err != nil {
				if msg, ok := h.receiveViolation(r.err); ok {
					return nil, protocolError("%s", msg)
				}
				return nil, nil
			}
			if msg, ok := h.sizeViolation(r.msg); ok {
				return nil, protocolError("%s", msg)
			}
			switch m := r.msg.Message.(type) {
			case nil:
				log.Debug("ignoring a message of an unknown kind before the Hello")
			case *hubv1.ConnectRequest_Hello:
				if msg := checkHello(m.Hello); msg != "" {
					return nil, protocolError("%s", msg)
				}
				return m.Hello, nil
			case *hubv1.ConnectRequest_Goodbye:
				log.Info("agent left before its Hello", "reason", m.Goodbye.GetReason().String())
				return nil, nil
			default:
				return nil, protocolError("the first message must be a Hello, not %s", kindOf(r.msg))
			}
		}
	}
}

// quote quotes s for an error message, shortened so that no message echoes a huge input.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

// kindOf names the kind of an agent message as the .proto does.
func kindOf(m *hubv1.ConnectRequest) string {
	switch m.Message.(type) {
	case *hubv1.ConnectRequest_Hello:
		return "hello"
	case *hubv1.ConnectRequest_Heartbeat:
		return "heartbeat"
	case *hubv1.ConnectRequest_CommandResult:
		return "command_result"
	case *hubv1.ConnectRequest_InventorySnapshot:
		return "inventory_snapshot"
	case *hubv1.ConnectRequest_InventoryDelta:
		return "inventory_delta"
	case *hubv1.ConnectRequest_ResourceEvent:
		return "resource_event"
	case *hubv1.ConnectRequest_Goodbye:
		return "goodbye"
	}
	return "an unknown kind"
}

// receiveViolation tells whether a receive error is the agent's fault (too large or
// malformed) and what to say about it; other errors mean the stream is simply gone.
func (h *Hub) receiveViolation(err error) (string, bool) {
	switch connect.CodeOf(err) {
	case connect.CodeResourceExhausted:
		return fmt.Sprintf("message exceeds max_message_bytes (%d bytes)", h.cfg.MaxMessageBytes), true
	case connect.CodeInvalidArgument:
		return "malformed message: " + connectMessage(err), true
	}
	return "", false
}

func connectMessage(err error) string {
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		return ce.Message()
	}
	return err.Error()
}

// sizeViolation enforces MaxMessageBytes on what was accepted, whatever the transport's
// limit.
func (h *Hub) sizeViolation(m *hubv1.ConnectRequest) (string, bool) {
	if n := proto.Size(m); n > h.cfg.MaxMessageBytes {
		return fmt.Sprintf("message of %d bytes exceeds max_message_bytes (%d bytes)", n, h.cfg.MaxMessageBytes), true
	}
	return "", false
}

// serve runs a registered stream until it must close, and returns what Connect returns. It
// writes what is queued for the agent itself; with rc, each write must finish within three
// heartbeat intervals or the agent is too slow and the stream is dropped.
func (h *Hub) serve(ctx context.Context, s *stream, principal identity.Principal, recv <-chan received,
	bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse], rc *http.ResponseController) error {
	interval := h.cfg.HeartbeatInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if !principal.ExpiresAt.IsZero() {
		// A timer of its own, not a case below: expiry must act even while a write blocks.
		t := time.AfterFunc(principal.ExpiresAt.Sub(h.now()), func() {
			h.closeWith(s, hubv1.Goodbye_REASON_TOKEN_EXPIRED, "the stream's token expired; reconnect with a new token")
		})
		defer t.Stop()
	}
	if h.creds != nil {
		var wg sync.WaitGroup
		done := make(chan struct{})
		defer wg.Wait()
		defer close(done)
		wg.Go(func() { h.watchCredential(ctx, s, principal, done) })
	}
	lastHeard := time.Now()
	for {
		// A decision to close wins over anything still queued.
		select {
		case <-s.stop:
			return closeError(s.goodbye)
		default:
		}
		select {
		case <-ctx.Done():
			s.log.Info("agent stream ended by its connection")
			return nil
		case <-s.stop:
			return closeError(s.goodbye)
		case it := <-s.queue:
			if err := h.write(s, bs, rc, it); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return h.closeWith(s, hubv1.Goodbye_REASON_TOO_SLOW, "the agent has not read what the hub sent for 3 heartbeat intervals")
				}
				s.log.Info("agent stream broke while writing to it", "err", err)
				return nil
			}
		case <-tick.C:
			if silent := time.Since(lastHeard); silent > 3*interval {
				return h.closeWith(s, hubv1.Goodbye_REASON_HEARTBEAT_TIMEOUT,
					fmt.Sprintf("nothing heard from the agent for %s (3 heartbeat intervals)", silent.Round(time.Millisecond)))
			}
			hb := &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Heartbeat{Heartbeat: &hubv1.Heartbeat{SendTime: timestamppb.New(h.now())}}}
			h.mu.Lock()
			h.enqueueLocked(s, outItem{msg: hb})
			h.mu.Unlock()
		case r := <-recv:
			lastHeard = time.Now()
			if r.err != nil {
				if msg, ok := h.receiveViolation(r.err); ok {
					return h.closeWith(s, hubv1.Goodbye_REASON_PROTOCOL_ERROR, msg)
				}
				if errors.Is(r.err, io.EOF) {
					s.log.Info("agent closed its side of the stream")
				} else {
					s.log.Info("agent stream broke", "err", r.err)
				}
				return nil
			}
			if done, err := h.handle(s, r.msg); done {
				return err
			}
		}
	}
}

// closeWith decides to close s with a Goodbye and returns what Connect returns.
func (h *Hub) closeWith(s *stream, reason hubv1.Goodbye_Reason, msg string) error {
	gb := goodbye(reason, msg)
	h.mu.Lock()
	h.beginCloseLocked(s, gb)
	h.mu.Unlock()
	return closeError(gb)
}

// handle processes one message from a registered stream. done reports that the stream must
// close, and err is then what Connect returns.
func (h *Hub) handle(s *stream, msg *hubv1.ConnectRequest) (done bool, err error) {
	if v, bad := h.sizeViolation(msg); bad {
		return true, h.closeWith(s, hubv1.Goodbye_REASON_PROTOCOL_ERROR, v)
	}
	switch m := msg.Message.(type) {
	case nil:
		s.log.Debug("ignoring a message of an unknown kind")
	case *hubv1.ConnectRequest_Hello:
		if m.Hello.AgentIdentifier != s.key.agent {
			return true, h.closeWith(s, hubv1.Goodbye_REASON_PROTOCOL_ERROR, fmt.Sprintf(
				"a stream carries one agent: got a Hello for %s on the stream of %q", quote(m.Hello.AgentIdentifier), s.key.agent))
		}
		s.log.Warn("ignoring a second Hello on the stream")
	case *hubv1.ConnectRequest_Heartbeat:
		h.mu.Lock()
		s.agent.LastHeartbeatAt = h.now()
		h.mu.Unlock()
	case *hubv1.ConnectRequest_CommandResult:
		h.deliver(s, m.CommandResult)
	case *hubv1.ConnectRequest_InventorySnapshot:
		if v := h.snapshotChunk(s, m.InventorySnapshot); v != "" {
			return true, h.closeWith(s, hubv1.Goodbye_REASON_PROTOCOL_ERROR, v)
		}
	case *hubv1.ConnectRequest_InventoryDelta:
		h.applyDelta(s, m.InventoryDelta)
	case *hubv1.ConnectRequest_ResourceEvent:
		h.applyEvent(s, m.ResourceEvent)
	case *hubv1.ConnectRequest_Goodbye:
		s.log.Info("agent said goodbye", "reason", m.Goodbye.GetReason().String(), "detail", m.Goodbye.GetMessage())
		h.mu.Lock()
		h.beginCloseLocked(s, nil)
		h.mu.Unlock()
		return true, nil
	}
	return false, nil
}

// write sends one queued item: a message, or a command unless it was finished or handed on
// meanwhile.
func (h *Hub) write(s *stream, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse], rc *http.ResponseController, it outItem) error {
	msg := it.msg
	if it.p != nil {
		h.mu.Lock()
		ok := !it.p.finished && it.p.stream == s && !s.closing
		if ok {
			it.p.sent = true
		}
		h.mu.Unlock()
		if !ok {
			// Finished already, or the stream is closing: unregister hands it on.
			return nil
		}
		msg = &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Command{Command: it.p.cmd}}
	}
	if rc != nil {
		_ = rc.SetWriteDeadline(time.Now().Add(3 * h.cfg.HeartbeatInterval))
		defer rc.SetWriteDeadline(time.Time{})
	}
	return s.send(bs, msg)
}

func (h *Hub) writeGoodbye(s *stream, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) error {
	// goodbye was set before stop was closed and never changes after.
	if s.goodbye == nil {
		return nil
	}
	return s.send(bs, &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Goodbye{Goodbye: s.goodbye}})
}

func (s *stream) send(bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse], msg *hubv1.ConnectResponse) error {
	s.writeStart.Store(time.Now().UnixNano())
	defer s.writeStart.Store(0)
	return bs.Send(msg)
}

// enqueueLocked queues it on s without blocking. A full queue drops the stream (Goodbye
// TOO_SLOW) and returns false.
func (h *Hub) enqueueLocked(s *stream, it outItem) bool {
	if s.closing {
		return false
	}
	select {
	case s.queue <- it:
		return true
	default:
		h.beginCloseLocked(s, goodbye(hubv1.Goodbye_REASON_TOO_SLOW,
			fmt.Sprintf("the agent did not keep up: %d messages were waiting to be sent to it", cap(s.queue))))
		return false
	}
}

// register makes s routable and visible.
func (h *Hub) register(s *stream) {
	h.mu.Lock()
	st := h.agentLocked(s.key, true)
	// An agent back after its grace period starts with no inventory, even if the sweep has
	// not removed the old one yet.
	stale := len(st.streams) == 0 && !st.lastSeen.IsZero() && !h.inGrace(st.lastSeen, h.now())
	st.streams = append(st.streams, s)
	st.reconnectUntil = time.Time{}
	if h.shuttingDown {
		// Registered after shutdown started: close it at once.
		h.beginCloseLocked(s, goodbye(hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN, "the hub is shutting down; reconnect"))
	}
	waiting := make([]*pending, 0, len(st.parked))
	for p := range st.parked {
		waiting = append(waiting, p)
	}
	for _, p := range waiting {
		h.unparkLocked(p)
		if !h.placeLocked(p) {
			h.parkLocked(p)
		}
	}
	agent := s.agent
	h.notifyLocked(s.key.tenant, AgentEvent{Type: AgentConnected, Agent: agent})
	h.mu.Unlock()

	if stale {
		h.shared.Drop(s.key.inventoryKey())
	}
	h.m.streams.Inc()
	s.log.Info("agent connected", "instance", agent.AgentInstanceUUID, "version", agent.AgentVersion,
		"ip", agent.IPAddress, "client", agent.ClientID, "resent", len(waiting))
	h.storePresence(s.key, agent)
}

// beginCloseLocked starts closing s: it stops routing to it, fails the commands it already
// sent, and tells its writer to say gb (if not nil) and stop. Closing twice does nothing.
func (h *Hub) beginCloseLocked(s *stream, gb *hubv1.Goodbye) {
	if s.closing {
		return
	}
	s.closing = true
	s.closedAt = h.now()
	s.goodbye = gb
	close(s.stop)
	if st := h.agentLocked(s.key, false); st != nil {
		st.streams = slices.DeleteFunc(st.streams, func(x *stream) bool { return x == s })
		if len(st.streams) == 0 {
			st.lastSeen = h.now()
		}
		if gb != nil && expectsReconnect(gb.Reason) {
			st.reconnectUntil = h.now().Add(h.presenceTTL())
			s.expectBack = true
		}
	}
	for p := range s.inflight {
		if p.sent {
			h.completeLocked(p, nil, outcomeUnknown(streamLost(p)))
		}
	}
	if gb != nil {
		// At shutdown one summary line stands for every stream (see shutdown), so thousands
		// of agents don't mean thousands of log writes under h.mu.
		level := slog.LevelInfo
		if gb.Reason == hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN {
			level = slog.LevelDebug
		}
		s.log.Log(context.Background(), level, "closing agent stream", "reason", gb.Reason.String(), "detail", gb.Message)
		if gb.Reason == hubv1.Goodbye_REASON_TOO_SLOW {
			h.m.dropped.Inc()
		}
	}
}

// unregister finishes closing s once its writer has stopped: commands it never sent go to
// another stream or wait for the agent, and its presence is removed.
func (h *Hub) unregister(s *stream) {
	h.mu.Lock()
	h.beginCloseLocked(s, nil)
	var unsent []*pending
	for p := range s.inflight {
		delete(s.inflight, p)
		if !p.finished {
			p.stream = nil
			unsent = append(unsent, p)
		}
	}
	for _, p := range unsent {
		h.rehomeLocked(p)
	}
	last := true
	if st := h.agentLocked(s.key, false); st != nil {
		last = len(st.streams) == 0
	}
	agent := s.agent
	gb := s.goodbye
	expectBack := s.expectBack
	closedAt := s.closedAt
	h.notifyLocked(s.key.tenant, AgentEvent{Type: AgentDisconnected, Agent: agent})
	h.mu.Unlock()

	for len(s.queue) > 0 {
		<-s.queue
	}
	h.m.streams.Dec()
	h.m.closed.WithLabelValues(closeReason(gb)).Inc()
	s.log.Info("agent disconnected", "handed_on", len(unsent))
	h.removePresence(s.key, agent, closedAt, expectBack)
	if last {
		// The shared inventory stays for the grace period, this replica's part in it ends.
		h.shared.Release(s.key.inventoryKey())
	}
}

// closeReason is the metric label of how a stream ended.
func closeReason(gb *hubv1.Goodbye) string {
	if gb == nil {
		return "agent_left"
	}
	switch gb.Reason {
	case hubv1.Goodbye_REASON_TOKEN_EXPIRED:
		return "token_expired"
	case hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN:
		return "server_shutting_down"
	case hubv1.Goodbye_REASON_PROTOCOL_ERROR:
		return "protocol_error"
	case hubv1.Goodbye_REASON_TOO_SLOW:
		return "too_slow"
	case hubv1.Goodbye_REASON_HEARTBEAT_TIMEOUT:
		return "heartbeat_timeout"
	case hubv1.Goodbye_REASON_CREDENTIAL_REVOKED:
		return "credential_revoked"
	}
	return "other"
}
