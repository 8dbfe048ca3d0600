package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

const (
	// minHeartbeat bounds the heartbeat interval a Welcome (or the config) may ask for.
	minHeartbeat = 100 * time.Millisecond
	// missedHeartbeats silent intervals make a stream dead.
	missedHeartbeats = 3
	// sendQueueSize bounds the messages waiting for the stream's writer.
	sendQueueSize = 256
	// goodbyeTimeout bounds the farewell on shutdown.
	goodbyeTimeout = 5 * time.Second
	// helloInfoTimeout bounds the cluster queries of a Hello.
	helloInfoTimeout = 10 * time.Second
	// minRejectedDelay is the least wait after the hub or the token endpoint rejected the
	// credential: retrying sooner cannot help and would hammer them.
	minRejectedDelay = 30 * time.Second
	// immediateReconnectEvery limits reconnects without backoff (after TOKEN_EXPIRED) so a
	// hub that keeps saying so cannot make the agent spin.
	immediateReconnectEvery = 10 * time.Second
)

// Sentinel causes of a session's end.
var (
	errDeadStream    = errors.New("nothing heard from the hub for three heartbeat intervals")
	errNoWelcome     = errors.New("the hub sent no Welcome in time")
	errAgentStopping = errors.New("agent stopping")
	errNoToken       = errors.New("no token")
)

// session is one stream's state shared with the goroutines serving it.
type session struct {
	// out feeds the stream's single writer.
	out     chan *hubv1.ConnectRequest
	watches *watchSet
	// maxMessageBytes is the hub's limit from its Welcome (0: none).
	maxMessageBytes int64
	metrics         *metrics
}

// send queues msg for the writer; it fails when ctx (the session's) ends first.
func (s *session) send(ctx context.Context, msg *hubv1.ConnectRequest) error {
	select {
	case s.out <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendResult sends a command result, replacing one too large for the hub by a failure that
// says so.
func (s *session) sendResult(ctx context.Context, res *hubv1.CommandResult) {
	if limit := s.maxMessageBytes; limit > 0 {
		if n := proto.Size(res); int64(n) > limit-1024 {
			res = &hubv1.CommandResult{
				CommandId: res.GetCommandId(),
				Outcome:   hubv1.CommandResult_OUTCOME_FAILED,
				Error: &hubv1.CommandError{Code: hubv1.CommandError_CODE_INVALID,
					Message: fmt.Sprintf("the result is %d bytes, more than the hub accepts (%d): select fewer objects", n, limit)},
			}
		}
	}
	_ = s.send(ctx, &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: res}})
}

// sessionEnd tells the connect loop how a stream ended.
type sessionEnd struct {
	// connectedFor is how long the stream was welcomed (0 if it never was).
	connectedFor time.Duration
	// goodbye is the hub's reason, when it said Goodbye.
	goodbye *hubv1.Goodbye
	err     error
}

// connectLoop keeps a stream to the hub until ctx ends.
func (a *Agent) connectLoop(ctx context.Context) {
	bo := a.newBackoff()
	var lastImmediate time.Time
	for ctx.Err() == nil {
		end := a.connectOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		delay := bo.After(end.connectedFor)
		switch {
		case end.goodbye.GetReason() == hubv1.Goodbye_REASON_TOKEN_EXPIRED:
			a.tokens.Invalidate()
			a.log.Info("the hub says the token expired; reconnecting with a new one")
			if a.now().Sub(lastImmediate) >= immediateReconnectEvery {
				lastImmediate, delay = a.now(), 0
			}
		case end.goodbye.GetReason() == hubv1.Goodbye_REASON_CREDENTIAL_REVOKED:
			// A new token will not help before an operator issues a new credential.
			a.tokens.Invalidate()
			a.log.Error("the hub revoked the agent's credential", "message", end.goodbye.GetMessage())
			delay = max(delay, minRejectedDelay)
		case end.goodbye != nil:
			a.log.Warn("the hub closed the stream", "reason", end.goodbye.GetReason().String(), "message", end.goodbye.GetMessage())
		case errors.Is(end.err, errInvalidClient):
			a.log.Error("cannot get a token", "error", end.err)
			delay = max(delay, minRejectedDelay)
		case errors.Is(end.err, errNoToken):
			a.log.Warn("cannot get a token", "error", end.err)
		case connect.CodeOf(end.err) == connect.CodeUnauthenticated:
			a.tokens.Invalidate()
			a.log.Error("the hub rejected the token", "error", end.err)
		case connect.CodeOf(end.err) == connect.CodePermissionDenied:
			a.log.Error("the hub refused the stream: does the credential have scope "+Scope+"?", "error", end.err)
			delay = max(delay, minRejectedDelay)
		default:
			a.log.Warn("stream to the hub ended", "error", end.err, "connected_for", end.connectedFor)
		}
		var terr *tokenError
		if errors.As(end.err, &terr) && terr.retryAfter > delay {
			delay = terr.retryAfter
		}
		if delay > 0 {
			a.log.Info("reconnecting", "in", delay.Round(time.Millisecond))
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// connectOnce gets a token and runs one stream.
func (a *Agent) connectOnce(ctx context.Context) sessionEnd {
	tok, err := a.tokens.Token(ctx)
	if err != nil {
		a.setConnected(false, err.Error())
		return sessionEnd{err: fmt.Errorf("%w: %w", errNoToken, err)}
	}
	end := a.runSession(ctx, tok)
	problem := "stream ended"
	switch {
	case end.goodbye != nil:
		problem = "the hub said goodbye: " + end.goodbye.GetReason().String()
	case end.err != nil:
		problem = end.err.Error()
	}
	a.setConnected(false, problem)
	if end.connectedFor > 0 {
		reason := "error"
		switch {
		case end.goodbye != nil:
			reason = end.goodbye.GetReason().String()
		case errors.Is(end.err, errAgentStopping):
			reason = "agent_stopping"
		case errors.Is(end.err, errDeadStream):
			reason = "heartbeat_timeout"
		}
		a.metrics.disconnects.WithLabelValues(reason).Inc()
	} else {
		a.metrics.connects.WithLabelValues("error").Inc()
	}
	return end
}

// hello describes this agent and its cluster. Cluster queries that fail leave their fields
// empty: the stream matters more.
func (a *Agent) hello(ctx context.Context) *hubv1.Hello {
	ctx, cancel := context.WithTimeout(ctx, helloInfoTimeout)
	defer cancel()
	h := &hubv1.Hello{
		AgentIdentifier:   a.cfg.AgentIdentifier,
		AgentInstanceUuid: a.instanceID,
		AgentVersion:      versionOr(a.cfg.Version),
		NodeIp:            a.cfg.NodeIP,
	}
	if v, err := a.kube.disco.ServerVersion(); err != nil {
		a.log.Warn("cannot read the Kubernetes version", "error", err)
	} else {
		h.KubernetesVersion = v.GitVersion
	}
	ok, err := a.kube.clusterWide(ctx)
	if err != nil {
		a.log.Warn("cannot check the agent's RBAC", "error", err)
	}
	h.ClusterRoleSupport = ok
	return h
}

var selfSubjectAccessReviews = schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "selfsubjectaccessreviews"}

// clusterWide asks the apiserver whether the agent may do anything to anything in every
// namespace (a ClusterRole such as cluster-admin or the one Sortie's manifest binds).
func (k *kube) clusterWide(ctx context.Context) (bool, error) {
	review := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "authorization.k8s.io/v1",
		"kind":       "SelfSubjectAccessReview",
		"spec": map[string]any{"resourceAttributes": map[string]any{
			"verb": "*", "group": "*", "resource": "*",
		}},
	}}
	res, err := k.dyn.Resource(selfSubjectAccessReviews).Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("self subject access review: %w", err)
	}
	allowed, _, _ := unstructured.NestedBool(res.Object, "status", "allowed")
	return allowed, nil
}

// runSession runs one stream: Hello, Welcome, then heartbeats, commands and inventory until
// the stream breaks, the hub says Goodbye or ctx ends (then the agent says Goodbye).
func (a *Agent) runSession(ctx context.Context, token string) sessionEnd {
	// The stream outlives ctx by the moment it takes to say Goodbye.
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	stream := a.hub.Connect(streamCtx)
	stream.RequestHeader().Set("Authorization", "Bearer "+token)

	if err := stream.Send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: a.hello(ctx)}}); err != nil {
		// The real error (a refused connection, a rejected token) comes with the response.
		t := time.AfterFunc(goodbyeTimeout, cancelStream)
		_, rerr := stream.Receive()
		t.Stop()
		cancelStream()
		return sessionEnd{err: fmt.Errorf("send hello: %w", errors.Join(err, rerr))}
	}

	// The reader owns Receive. It stops when the stream ends; runSession waits for it.
	recv := make(chan *hubv1.ConnectResponse)
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			msg, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case recv <- msg:
			case <-streamCtx.Done():
				return
			}
		}
	}()
	finish := func(end sessionEnd) sessionEnd {
		if errors.Is(end.err, errAgentStopping) {
			// Let the Goodbye reach the hub: wait a moment for it to close its side.
			t := time.NewTimer(goodbyeTimeout)
		drain:
			for {
				select {
				case <-recv:
				case <-recvErr:
					break drain
				case <-t.C:
					break drain
				}
			}
			t.Stop()
		}
		cancelStream()
		// The HTTP/2 transport notices the cancellation only once it stops waiting for more
		// of the request body: end the body too, or the reader could wait forever.
		_ = stream.CloseRequest()
		<-recvDone
		_ = stream.CloseResponse()
		return end
	}

	welcome, end, ok := a.awaitWelcome(ctx, recv, recvErr)
	if !ok {
		if errors.Is(end.err, errAgentStopping) {
			a.sayGoodbye(stream, cancelStream)
		}
		return finish(end)
	}
	a.metrics.connects.WithLabelValues("welcomed").Inc()
	interval := a.cfg.Heartbeat
	if d := welcome.GetHeartbeatInterval(); d != nil && d.AsDuration() > 0 {
		interval = max(d.AsDuration(), minHeartbeat)
	}
	connectedAt := a.now()
	a.setConnected(true, "")
	a.log.Info("connected to the hub", "stream", welcome.GetStreamId(), "hub_instance", welcome.GetHubInstanceUuid(), "heartbeat", interval)

	sess := &session{
		out:             make(chan *hubv1.ConnectRequest, sendQueueSize),
		watches:         newWatchSet(a.log, a.metrics),
		maxMessageBytes: welcome.GetMaxMessageBytes(),
		metrics:         a.metrics,
	}
	// workCtx lives as long as the stream is served: the writer, the inventory sender,
	// watches and result delivery stop with it.
	workCtx, stopWork := context.WithCancel(streamCtx)
	defer stopWork()
	writerErr := make(chan error, 1)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-workCtx.Done():
				return
			case msg := <-sess.out:
				if err := stream.Send(msg); err != nil {
					writerErr <- fmt.Errorf("send: %w", err)
					return
				}
			}
		}
	}()
	invDone := make(chan struct{})
	go func() {
		defer close(invDone)
		a.inv.serve(workCtx, sess)
	}()

	end = a.serveStream(ctx, workCtx, sess, interval, recv, recvErr, writerErr)
	end.connectedFor = a.now().Sub(connectedAt)

	stopWork()
	sess.watches.stopAll()
	<-invDone
	if errors.Is(end.err, errAgentStopping) {
		// The writer may be stuck in a Send the hub does not read: bound the wait.
		t := time.AfterFunc(goodbyeTimeout, cancelStream)
		<-writerDone
		t.Stop()
		a.sayGoodbye(stream, cancelStream)
	} else {
		cancelStream()
		<-writerDone
	}
	return finish(end)
}

// awaitWelcome waits for the hub's Welcome, ignoring other messages except a Goodbye.
func (a *Agent) awaitWelcome(ctx context.Context, recv <-chan *hubv1.ConnectResponse, recvErr <-chan error) (*hubv1.Welcome, sessionEnd, bool) {
	timeout := time.NewTimer(missedHeartbeats * a.cfg.Heartbeat)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, sessionEnd{err: errAgentStopping}, false
		case <-timeout.C:
			return nil, sessionEnd{err: errNoWelcome}, false
		case err := <-recvErr:
			return nil, sessionEnd{err: err}, false
		case msg := <-recv:
			switch m := msg.GetMessage().(type) {
			case *hubv1.ConnectResponse_Welcome:
				return m.Welcome, sessionEnd{}, true
			case *hubv1.ConnectResponse_Goodbye:
				return nil, sessionEnd{goodbye: m.Goodbye}, false
			default:
				a.log.Debug("ignoring a message before the Welcome", "kind", fmt.Sprintf("%T", msg.GetMessage()))
			}
		}
	}
}

// serveStream dispatches the hub's messages and sends heartbeats until the stream ends.
func (a *Agent) serveStream(ctx, workCtx context.Context, sess *session, interval time.Duration,
	recv <-chan *hubv1.ConnectResponse, recvErr, writerErr <-chan error) sessionEnd {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastHeard := a.now()
	for {
		select {
		case <-ctx.Done():
			return sessionEnd{err: errAgentStopping}
		case err := <-recvErr:
			return sessionEnd{err: err}
		case err := <-writerErr:
			// A send fails as soon as the hub closes its side, which it does right after a
			// Goodbye: read what is left, so its reason (say, token expired) is not lost.
			return a.goodbyeAfterSendError(err, recv, recvErr)
		case <-tick.C:
			if a.now().Sub(lastHeard) > missedHeartbeats*interval {
				return sessionEnd{err: errDeadStream}
			}
			hb := &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{SendTime: timestamppb.New(a.now())}}}
			select {
			case sess.out <- hb:
				a.metrics.heartbeats.Inc()
			default: // the queue is full, so the stream is busy anyway
			}
		case msg := <-recv:
			lastHeard = a.now()
			switch m := msg.GetMessage().(type) {
			case *hubv1.ConnectResponse_Heartbeat:
			case *hubv1.ConnectResponse_Command:
				a.cmds.dispatch(ctx, workCtx, sess, m.Command)
			case *hubv1.ConnectResponse_Goodbye:
				return sessionEnd{goodbye: m.Goodbye}
			case *hubv1.ConnectResponse_Welcome:
				a.log.Debug("ignoring a second Welcome")
			default:
				// A newer hub's message kind (the oneof is unset here): ignore it.
				a.log.Debug("ignoring an unknown message from the hub")
			}
		}
	}
}

// goodbyeAfterSendError looks, briefly, for a Goodbye the hub sent before the failed send.
func (a *Agent) goodbyeAfterSendError(sendErr error, recv <-chan *hubv1.ConnectResponse, recvErr <-chan error) sessionEnd {
	t := time.NewTimer(goodbyeTimeout)
	defer t.Stop()
	for {
		select {
		case msg := <-recv:
			if gb := msg.GetGoodbye(); gb != nil {
				return sessionEnd{goodbye: gb}
			}
		case <-recvErr:
			return sessionEnd{err: sendErr}
		case <-t.C:
			return sessionEnd{err: sendErr}
		}
	}
}

// sayGoodbye tells the hub the agent is leaving and half-closes the stream. It runs when the
// writer has stopped, so this is the only Send in progress.
func (a *Agent) sayGoodbye(stream *connect.BidiStreamForClient[hubv1.ConnectRequest, hubv1.ConnectResponse], cancelStream context.CancelFunc) {
	t := time.AfterFunc(goodbyeTimeout, cancelStream)
	defer t.Stop()
	err := stream.Send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Goodbye{Goodbye: &hubv1.Goodbye{
		Reason:  hubv1.Goodbye_REASON_AGENT_SHUTTING_DOWN,
		Message: "the agent is shutting down",
	}}})
	if err != nil {
		a.log.Debug("could not say goodbye", "error", err)
		return
	}
	_ = stream.CloseRequest()
	a.log.Info("said goodbye to the hub")
}
