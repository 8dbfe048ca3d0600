package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
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
	"github.com/sortie-dev/sortie/store"
)

// stream is one agent stream held by this replica.
//
// An idle stream costs no goroutine of its own beyond its Connect handler, which reads what
// the agent sends: whoever has something for the agent writes it (Send's caller, the
// heartbeat wheel), one writer at a time, and the heartbeat wheel of the hub sends its
// heartbeats, notices its silence and cuts writes stuck for three heartbeat intervals.
type stream struct {
	id  string
	key agentKey
	log *slog.Logger
	bs  *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]
	// rc wakes the handler's read when the hub closes the stream (a read deadline in the
	// past) and cuts a stuck write (a write deadline in the past). nil when Connect is mounted
	// without Hub.Handler: a goroutine then reads (in), and a stuck write lasts until the
	// connection ends.
	rc         *http.ResponseController
	in         <-chan received
	readerStop chan struct{}      // closed once Connect is done, with in
	principal  identity.Principal // checked again by the credential loop
	expiry     *time.Timer        // ends the stream when its token expires
	stop       chan struct{}      // closed (under Hub.mu) when the hub decides to close the stream

	// writer is the right to write to bs: holding it means having sent into it. A channel
	// rather than a mutex, so that a command waiting to be written gives up with its context.
	writer chan struct{}
	// writesDone is set, holding writer, once the Goodbye is written: nothing follows it.
	writesDone bool

	// lastHeard is when the agent last sent anything, and writeStart when the current write
	// began (0 when none is), both on the hub's monotonic clock (Hub.mono).
	lastHeard  atomic.Int64
	writeStart atomic.Int64

	// Guarded by Hub.mu.
	agent      Agent
	closing    bool
	goodbye    *hubv1.Goodbye // set with closing, before stop is closed; nil when the hub says nothing
	expectBack bool           // the hub told the agent to reconnect
	closedAt   time.Time      // when closing began: the account was last seen then
	inflight   map[*pending]struct{}
	queued     int // writes waiting for writer: commands placed on the stream, heartbeats
	slot, pos  int // where the stream sits in the heartbeat wheel (wheel.go); slot -1: not in it

	// Owned by the stream's handler goroutine.
	snap *snapshotBuilder
}

// acquire takes the right to write to s. It gives up, returning false, when s is closing
// or ctx ends (a nil ctx never does).
func (s *stream) acquire(ctx context.Context) bool {
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case s.writer <- struct{}{}:
		return true
	case <-s.stop:
		return false
	case <-done:
		return false
	}
}

func (s *stream) release() { <-s.writer }

// received is what the reader goroutine of a stream mounted without Hub.Handler got.
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
//
// Its goroutine lives as long as the stream, so its stack is kept small: Connect's own frame
// is small, and the deep one-time work (validating the Hello, registering the stream,
// handling inventory) runs aside, on a short-lived goroutine, so that it does not double
// the stack of every idle agent's handler for the stream's whole life.
func (h *Hub) Connect(ctx context.Context, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) error {
	s, err := h.open(ctx, bs)
	if s == nil {
		return err
	}
	defer h.finish(s)
	return h.serve(ctx, s)
}

// aside runs f on a goroutine of its own and waits for it (see Connect).
func aside(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// open admits a new stream, waits for its Hello, registers it and writes its Welcome. It
// returns nil and what Connect returns when the stream ends before that.
func (h *Hub) open(ctx context.Context, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) (*stream, error) {
	principal, ok := identity.PrincipalFrom(ctx)
	if !ok || principal.OrgID == "" || principal.EnvID == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("the stream carries no verified token"))
	}
	tenant := principal.Tenant()
	ip := peerIP(bs.Peer().Addr)
	log := h.log
	rc, _ := ctx.Value(responseControllerKey{}).(*http.ResponseController)
	helloBy := time.Now().Add(h.helloTimeout)
	if rc != nil && rc.SetReadDeadline(helloBy) != nil {
		rc = nil // a writer without deadlines: read on a goroutine instead
	}
	h.mu.Lock()
	if h.shuttingDown {
		h.mu.Unlock()
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the hub is shutting down; reconnect"))
	}
	if max := h.cfg.MaxStreamsPerIP; max > 0 && h.streamsByIP[ip] >= max {
		h.mu.Unlock()
		h.m.refusedStreams.Inc()
		log.Warn("agent stream refused: too many from one address", "tenant", tenant.String(), "ip", ip, "max", max)
		return nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("too many agent streams from %s: this hub takes at most %d per address", ip, max))
	}
	h.streamsByIP[ip]++
	h.streamsWG.Add(1)
	var in chan received
	var readerStop chan struct{}
	if rc == nil {
		// The reader ends once Connect has returned and connect-go has closed the request
		// body.
		in, readerStop = make(chan received), make(chan struct{})
		h.readersWG.Go(func() { readLoop(bs, in, readerStop) })
	} else {
		h.hellos[rc] = struct{}{} // shutdown wakes it
	}
	h.mu.Unlock()

	hello, err := h.awaitHello(ctx, log, tenant, bs, rc, in, helloBy)
	h.mu.Lock()
	delete(h.hellos, rc)
	if hello == nil {
		h.leaveLocked(ip, readerStop)
	}
	h.mu.Unlock()
	if hello == nil {
		return nil, err
	}
	if rc != nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	now := h.now()
	s := &stream{
		id:         uuid.NewString(),
		key:        agentKey{tenant: tenant, agent: hello.AgentIdentifier},
		bs:         bs,
		rc:         rc,
		in:         in,
		readerStop: readerStop,
		principal:  principal,
		stop:       make(chan struct{}),
		writer:     make(chan struct{}, 1),
		inflight:   map[*pending]struct{}{},
		slot:       -1,
	}
	s.lastHeard.Store(h.mono())
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
		IPAddress:             ip,
		NodeIP:                hello.NodeIp,
		K8sClusterRoleSupport: hello.ClusterRoleSupport,
		KubernetesVersion:     hello.KubernetesVersion,
	}
	s.log = slog.New(&streamLog{base: h.log.Handler(), s: s})

	// The Welcome is written first, ahead of any command routed once registered: those wait
	// for the writer this handler holds.
	s.writer <- struct{}{}
	var werr error
	aside(func() {
		h.register(s)
		werr = s.send(h, &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Welcome{Welcome: &hubv1.Welcome{
			HubInstanceUuid:   h.id,
			StreamId:          s.id,
			HeartbeatInterval: durationpb.New(h.cfg.HeartbeatInterval),
			MaxMessageBytes:   int64(h.cfg.MaxMessageBytes),
		}}})
	})
	s.release()
	if werr != nil {
		h.writeFailed(s, werr)
	}
	if !principal.ExpiresAt.IsZero() {
		// A timer, not a wheel slot: expiry acts on time even while a write blocks.
		s.expiry = time.AfterFunc(principal.ExpiresAt.Sub(h.now()), func() {
			h.closeWith(s, hubv1.Goodbye_REASON_TOKEN_EXPIRED, "the stream's token expired; reconnect with a new token")
		})
	}
	return s, nil
}

// leaveLocked undoes the admission of a stream from ip.
func (h *Hub) leaveLocked(ip string, readerStop chan struct{}) {
	if h.streamsByIP[ip]--; h.streamsByIP[ip] <= 0 {
		delete(h.streamsByIP, ip)
	}
	if readerStop != nil {
		close(readerStop)
	}
	h.streamsWG.Done()
}

// finish closes s once serve returned: it says Goodbye once the write under way, if any, is
// done (an agent that does not read gets closeGrace, then the HTTP/2 stream is reset), and
// unregisters s.
func (h *Hub) finish(s *stream) {
	h.mu.Lock()
	h.beginCloseLocked(s, nil)
	h.mu.Unlock()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if s.rc != nil {
		_ = s.rc.SetWriteDeadline(time.Now().Add(h.closeGrace()))
	}
	s.writer <- struct{}{} // kept: nothing is written after the Goodbye
	s.writesDone = true
	if s.goodbye != nil {
		if werr := s.send(h, &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Goodbye{Goodbye: s.goodbye}}); werr != nil {
			s.log.Debug("saying goodbye to the agent failed", "err", werr)
		}
	}
	h.unregister(s)
	h.mu.Lock()
	h.leaveLocked(s.agent.IPAddress, s.readerStop)
	h.mu.Unlock()
}

// streamLog is a stream's logger: the hub's, with the stream's attributes added to each
// record as it is written rather than formatted ahead for every stream.
type streamLog struct {
	base slog.Handler
	s    *stream
}

func (l *streamLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

func (l *streamLog) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(l.attrs()...)
	return l.base.Handle(ctx, r)
}

func (l *streamLog) attrs() []slog.Attr {
	return []slog.Attr{slog.String("tenant", l.s.key.tenant.String()), slog.String("agent", l.s.key.agent), slog.String("stream", l.s.id)}
}

func (l *streamLog) WithAttrs(as []slog.Attr) slog.Handler {
	return l.base.WithAttrs(l.attrs()).WithAttrs(as)
}

func (l *streamLog) WithGroup(name string) slog.Handler {
	return l.base.WithAttrs(l.attrs()).WithGroup(name)
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

// errClosedByHub is what a stream's read returns once the hub decided to close it.
var errClosedByHub = errors.New("the hub closed the stream")

// receive returns the next message of s, or errClosedByHub once the hub closes s.
func (s *stream) receive() (*hubv1.ConnectRequest, error) {
	if s.in != nil {
		select {
		case r := <-s.in:
			return r.msg, r.err
		case <-s.stop:
			return nil, errClosedByHub
		}
	}
	msg, err := s.bs.Receive()
	if err != nil && s.stopped() {
		return nil, errClosedByHub
	}
	return msg, err
}

// stopped reports whether the hub decided to close s.
func (s *stream) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
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

// awaitHello waits until by for the stream's Hello: read straight from bs (whose read
// deadline is by, and which shutdown wakes) with rc, from in without. It returns a nil Hello
// and the error Connect must return when the stream ends before a valid Hello, having said
// Goodbye when there was something to say.
func (h *Hub) awaitHello(ctx context.Context, log *slog.Logger, tenant store.Tenant, bs *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse],
	rc *http.ResponseController, in <-chan received, by time.Time) (*hubv1.Hello, error) {
	refuse := func(gb *hubv1.Goodbye) error {
		log.Warn("refusing agent stream", "tenant", tenant.String(), "reason", gb.Reason.String(), "detail", gb.Message)
		h.m.closed.WithLabelValues(closeReason(gb)).Inc()
		if rc != nil {
			_ = rc.SetWriteDeadline(time.Now().Add(h.closeGrace()))
		}
		_ = bs.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Goodbye{Goodbye: gb}})
		return closeError(gb)
	}
	protocolError := func(format string, args ...any) error {
		return refuse(goodbye(hubv1.Goodbye_REASON_PROTOCOL_ERROR, fmt.Sprintf(format, args...)))
	}
	shuttingDown := func() error {
		return refuse(goodbye(hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN, "the hub is shutting down; reconnect"))
	}
	noHello := func() error {
		return protocolError("no Hello within %s of opening the stream: the first message must be a Hello", h.helloTimeout)
	}
	var timer *time.Timer
	if rc == nil {
		timer = time.NewTimer(time.Until(by))
		defer timer.Stop()
	}
	for {
		var r received
		if rc != nil {
			r.msg, r.err = bs.Receive()
			if r.err != nil {
				switch {
				case h.isDone():
					return nil, shuttingDown()
				case ctx.Err() != nil:
					return nil, nil
				case !time.Now().Before(by):
					return nil, noHello()
				}
			}
		} else {
			select {
			case <-ctx.Done():
				return nil, nil
			case <-h.done:
				return nil, shuttingDown()
			case <-timer.C:
				return nil, noHello()
			case r = <-in:
			}
		}
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
			log.Debug("ignoring a message of an unknown kind before the Hello", "tenant", tenant.String())
		case *hubv1.ConnectRequest_Hello:
			var msg string
			aside(func() { msg = checkHello(m.Hello) })
			if msg != "" {
				return nil, protocolError("%s", msg)
			}
			return m.Hello, nil
		case *hubv1.ConnectRequest_Goodbye:
			log.Info("agent left before its Hello", "tenant", tenant.String(), "reason", m.Goodbye.GetReason().String())
			return nil, nil
		default:
			return nil, protocolError("the first message must be a Hello, not %s", kindOf(r.msg))
		}
	}
}

// isDone reports whether the hub is shutting down.
func (h *Hub) isDone() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
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

// serve reads what the agent sends on a registered stream until it must close, and returns
// what Connect returns. Heartbeats, silence and stuck writes are the wheel's (wheel.go);
// what the hub decides wakes the read (beginCloseLocked).
func (h *Hub) serve(ctx context.Context, s *stream) error {
	for {
		msg, err := s.receive()
		if err != nil {
			switch {
			case errors.Is(err, errClosedByHub):
				// goodbye was set before stop was closed and never changes after.
				return closeError(s.goodbye)
			case ctx.Err() != nil:
				s.log.Info("agent stream ended by its connection")
				return nil
			}
			if msg, ok := h.receiveViolation(err); ok {
				return h.closeWith(s, hubv1.Goodbye_REASON_PROTOCOL_ERROR, msg)
			}
			if errors.Is(err, io.EOF) {
				s.log.Info("agent closed its side of the stream")
			} else {
				s.log.Info("agent stream broke", "err", err)
			}
			return nil
		}
		s.lastHeard.Store(h.mono())
		if s.stopped() {
			// A decision to close wins over what the agent sent meanwhile.
			return closeError(s.goodbye)
		}
		if done, err := h.handle(s, msg); done {
			return err
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
		var v string
		aside(func() { v = h.snapshotChunk(s, m.InventorySnapshot) })
		if v != "" {
			return true, h.closeWith(s, hubv1.Goodbye_REASON_PROTOCOL_ERROR, v)
		}
	case *hubv1.ConnectRequest_InventoryDelta:
		aside(func() { h.applyDelta(s, m.InventoryDelta) })
	case *hubv1.ConnectRequest_ResourceEvent:
		aside(func() { h.applyEvent(s, m.ResourceEvent) })
	case *hubv1.ConnectRequest_Goodbye:
		s.log.Info("agent said goodbye", "reason", m.Goodbye.GetReason().String(), "detail", m.Goodbye.GetMessage())
		h.mu.Lock()
		h.beginCloseLocked(s, nil)
		h.mu.Unlock()
		return true, nil
	}
	return false, nil
}

// writeCommand writes p to s, which it was placed on, once it has the right to write,
// unless p finished or moved or s is closing meanwhile, or ctx ends first (p then stays
// unsent, for its waiter to time out).
func (h *Hub) writeCommand(ctx context.Context, s *stream, p *pending) {
	got := s.acquire(ctx)
	h.mu.Lock()
	s.queued--
	ok := got && !p.finished && p.stream == s && !s.closing
	if ok {
		p.sent = true
	}
	h.mu.Unlock()
	if !got {
		return
	}
	defer s.release()
	if !ok || s.writesDone {
		// Finished already, or the stream is closing: unregister hands it on.
		return
	}
	if err := s.send(h, &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Command{Command: p.cmd}}); err != nil {
		h.writeFailed(s, err)
	}
}

// writeCommandLater writes p to s on a goroutine of its own, for callers holding h.mu.
func (h *Hub) writeCommandLater(s *stream, p *pending) {
	if h.shuttingDown {
		// Every stream is closing: unregister hands p on.
		s.queued--
		return
	}
	h.wg.Go(func() {
		ctx, cancel := context.WithDeadline(context.Background(), p.deadline)
		defer cancel()
		h.writeCommand(ctx, s, p)
	})
}

// writeHeartbeat writes a Heartbeat to s once it has the right to write, unless s closes
// first.
func (h *Hub) writeHeartbeat(s *stream) {
	got := s.acquire(nil)
	h.mu.Lock()
	s.queued--
	closing := s.closing
	h.mu.Unlock()
	if !got {
		return
	}
	defer s.release()
	if closing || s.writesDone {
		return
	}
	hb := &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Heartbeat{Heartbeat: &hubv1.Heartbeat{SendTime: timestamppb.New(h.now())}}}
	if err := s.send(h, hb); err != nil {
		h.writeFailed(s, err)
	}
}

// writeFailed closes s after a write to it failed: the connection broke, or the wheel cut a
// write stuck too long (and has said TOO_SLOW already).
func (h *Hub) writeFailed(s *stream, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.closing {
		s.log.Info("agent stream broke while writing to it", "err", err)
		h.beginCloseLocked(s, nil)
	}
}

// send writes msg to s; the caller holds s's writer.
func (s *stream) send(h *Hub, msg *hubv1.ConnectResponse) error {
	s.writeStart.Store(max(h.mono(), 1))
	defer s.writeStart.Store(0)
	return s.bs.Send(msg)
}

// reserveLocked counts one more write waiting for s's writer, if s takes it: a stream with
// SendQueueLength waiting is dropped (Goodbye TOO_SLOW), and false returned.
func (h *Hub) reserveLocked(s *stream) bool {
	if s.closing {
		return false
	}
	if s.queued >= h.cfg.SendQueueLength {
		h.beginCloseLocked(s, goodbye(hubv1.Goodbye_REASON_TOO_SLOW,
			fmt.Sprintf("the agent did not keep up: %d messages were waiting to be sent to it", h.cfg.SendQueueLength)))
		return false
	}
	s.queued++
	return true
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
		if to := h.placeLocked(p); to != nil {
			h.writeCommandLater(to, p)
		} else {
			h.parkLocked(p)
		}
	}
	h.wheelAddLocked(s)
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
// sent, and wakes its handler to say gb (if not nil) and stop. Closing twice does nothing.
func (h *Hub) beginCloseLocked(s *stream, gb *hubv1.Goodbye) {
	if s.closing {
		return
	}
	s.closing = true
	s.closedAt = h.now()
	s.goodbye = gb
	close(s.stop)
	if s.rc != nil {
		// Wake the handler's read. Its handler is still running: it returns only after
		// closing s itself.
		_ = s.rc.SetReadDeadline(time.Now())
	}
	h.wheelRemoveLocked(s)
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

// unregister finishes closing s once nothing writes to it any more: commands it never sent go to
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
