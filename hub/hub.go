// Package hub is Sortie's Agent Hub: it holds the long-lived streams agents dial out to,
// keeps the registry of connected agents, routes commands to one healthy stream of an agent
// (also across server replicas sharing Redis), and caches what agents report about their
// clusters, per tenant.
//
// # Streams
//
// An agent's first message must be a Hello within 10 s, obeying the rules hub.proto declares
// for it (protovalidate; [CheckIdentifier] words the agent identifier's); the hub answers with
// a Welcome and from then on both sides send Heartbeats at the Welcome's interval. A stream
// silent for three intervals, a stream whose token expires, a stream whose credential is
// deleted (with [WithCredentialCheck]), a stream too slow to take what is sent to it and
// every stream at shutdown end with a Goodbye saying why, after which Connect ends the
// stream with a matching code (PROTOCOL_ERROR: InvalidArgument, TOKEN_EXPIRED and
// CREDENTIAL_REVOKED: Unauthenticated, TOO_SLOW: ResourceExhausted, HEARTBEAT_TIMEOUT:
// DeadlineExceeded, SERVER_SHUTTING_DOWN: Unavailable).
//
// An idle stream costs the hub one goroutine, its Connect handler, which reads: whoever has
// something for the agent writes it, one writer at a time (Send's caller writes its own
// command), and one heartbeat wheel per hub sends every stream's heartbeats, notices silent
// streams and cuts writes stuck for three heartbeat intervals (the stream ends with Goodbye
// TOO_SLOW), so one slow agent never stalls the hub or the others. At most SendQueueLength
// writes wait for a stream; one more drops it (TOO_SLOW too).
//
// Inventory snapshots and deltas, and the ResourceEvents of Watch commands (ADDED and
// MODIFIED as upserts, DELETED as deletions), are cached per tenant and agent identifier (in
// memory, or in Redis with WithRedis) and kept for the grace period after the identifier's
// last stream closes. Objects of kind Secret are dropped whatever the agent sends.
// [Hub.CachedObject] reads one object; [Hub.Subscribe] reports every change the hub accepts
// (a completed snapshot as one Resync of the account) to subscribers on every replica,
// through a bounded inbox that never holds up an agent's stream.
//
// # Commands
//
// [Hub.Send] delivers a command to one stream of an agent identifier (the one with the fewest
// commands in flight, round-robin among equals) and waits for its result. A command still
// queued when its stream closes is handed to another stream of the agent, or waits until its
// deadline for the agent to come back; a command already written to a stream that breaks
// fails at once with [ErrStreamLost]. A command for an agent with no open stream fails with
// [ErrNotConnected], unless the hub itself closed the agent's last stream less than three
// heartbeat intervals ago with a Goodbye that makes it reconnect (TOKEN_EXPIRED, TOO_SLOW,
// SERVER_SHUTTING_DOWN): then it waits for the agent until its deadline.
//
// # Several replicas
//
// What replicas share sits behind three small interfaces, each with a memory
// implementation (one process: the default) and a Redis one (WithRedis), passing one
// conformance suite: the stream presence (hub/internal/presence), the bus between replicas
// (hub/internal/bus) and the inventories (hub/internal/inventory). The routing code is the
// same whichever runs.
//
// Each stream's presence is kept with a TTL of three heartbeat intervals, refreshed every
// interval by the replica holding it, so a dead replica's streams vanish by themselves. In
// Redis, the keys of a tenant share the Redis Cluster hash tag {t:<org>/<env>}, like the
// store's:
//
//	sortie:{t:<org>/<env>}:hub:streams                hash stream id -> replicationv1.AgentRecord (protobuf)
//	sortie:{t:<org>/<env>}:hub:agent-streams:<agent>  set of the agent's stream ids: a forward reads one agent's
//	sortie:{t:<org>/<env>}:hub:alive:<stream id>      "1" with TTL 3 heartbeat intervals
//	sortie:{t:<org>/<env>}:hub:accounts               hash agent identifier -> last seen (unix ms)
//	sortie:{t:<org>/<env>}:hub:inventory:<agent>      hash object key -> hubv1.Resource (protobuf), TTL grace period + 3 intervals
//	sortie:{t:<org>/<env>}:hub:inventory-index:<agent> sorted set by kind and namespace of those keys, same TTL
//	sortie:{t:<org>/<env>}:hub:reconnecting:<agent>   marker, TTL 3 intervals: the agent was told to reconnect
//
// Replicas talk through the bus: sortie.hub.replication.v1.Envelope messages (protobuf),
// over Redis pub/sub broadcast on sortie:hub:replicas or sent to one
// replica on sortie:hub:instance:<hub instance uuid>. A command for an agent held only by
// another replica is sent to that replica, which runs it like a local Send and sends the
// result back (ForwardRequest, ForwardReply). Connect and disconnect events (AgentEvent, for
// [Hub.WatchAgents]) and inventory changes (InventoryChange, after the change is written to
// Redis, for [Hub.Subscribe]) are broadcast by the replica that saw them. A replica whose
// Redis subscription broke retries the commands waiting for an agent and gives each of its
// subscribers a Resync once it is back, since what was published meanwhile is lost.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/hub/internal/bus"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
	"github.com/sortie-dev/sortie/hub/internal/presence"
	"github.com/sortie-dev/sortie/store"
)

// Defaults of Config.
const (
	DefaultHeartbeatInterval = 20 * time.Second
	DefaultGracePeriod       = 5 * time.Minute
	DefaultMaxMessageBytes   = 16 << 20
	DefaultSendQueueLength   = 64
	DefaultCommandTimeout    = 30 * time.Second
)

// helloTimeout is how long a new stream may take to send its Hello.
const helloTimeout = 10 * time.Second

// Config tunes the hub; zero values take the defaults shown.
type Config struct {
	HeartbeatInterval time.Duration // 20s: sent in Welcome; a stream silent for 3 intervals is dead
	GracePeriod       time.Duration // 5m: an account and its inventory stay after its last stream closes
	MaxMessageBytes   int           // 16 MiB: larger agent messages end the stream with Goodbye PROTOCOL_ERROR
	SendQueueLength   int           // 64: most writes waiting for one stream (commands, heartbeats); one more drops the stream (Goodbye TOO_SLOW) and counts it
	CommandTimeout    time.Duration // 30s: default deadline when Send's ctx has none
	// MaxStreamsPerIP caps the agent streams open at once from one IP address (0: no cap);
	// a stream over it is refused with ResourceExhausted before its Hello.
	MaxStreamsPerIP int
	Now             func() time.Time
	Registerer      prometheus.Registerer // sortie_hub_* metrics: streams, commands by outcome, dropped streams, forwarded commands
}

func (c Config) withDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.GracePeriod <= 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.SendQueueLength <= 0 {
		c.SendQueueLength = DefaultSendQueueLength
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Sentinel errors of Send and the inventory queries; check them with errors.Is.
var (
	// ErrNotConnected means no stream of that agent identifier is open in the tenant. The
	// error Send returns reads "agent 'x' is not connected".
	ErrNotConnected = errors.New("agent is not connected")
	// ErrTimeout means the deadline passed before the result came back.
	ErrTimeout = errors.New("command timed out")
	// ErrStreamLost means the stream carrying the command broke before the agent answered.
	ErrStreamLost = errors.New("the agent's stream closed before it answered")
	// ErrUnknownAccount means no agent of that identifier is connected nor was within the
	// grace period. The error returned reads "account 'x' does not exist".
	ErrUnknownAccount = errors.New("account does not exist")
	// ErrOutcomeUnknown marks a Send error that came after the command reached an agent's
	// stream or the replica holding the agent: the agent may or may not have run it. The
	// same error also matches ErrStreamLost, ErrTimeout or what else happened.
	ErrOutcomeUnknown = errors.New("the command's outcome is unknown")
	// ErrObjectNotCached means the account's agent has not reported the object asked for
	// (it does not exist in the cluster, is of a kind the agent does not report, or is a
	// Secret).
	ErrObjectNotCached = errors.New("object is not in the inventory cache")
	// ErrInvalidReference means an object reference lacks api_version, kind or name.
	ErrInvalidReference = errors.New("invalid object reference")
)

// notConnectedError is ErrNotConnected naming the agent.
type notConnectedError struct{ agent string }

func (e *notConnectedError) Error() string {
	return fmt.Sprintf("agent '%s' is not connected", e.agent)
}
func (e *notConnectedError) Is(target error) bool { return target == ErrNotConnected }

// unknownAccountError is ErrUnknownAccount naming the account.
type unknownAccountError struct{ account string }

func (e *unknownAccountError) Error() string {
	return fmt.Sprintf("account '%s' does not exist", e.account)
}
func (e *unknownAccountError) Is(target error) bool { return target == ErrUnknownAccount }

// Agent is one connected agent stream (one agent replica), with the fields of the
// connected-agents API.
type Agent struct {
	AgentIdentifier       string
	AgentInstanceUUID     string
	AgentVersion          string
	ClientID              string
	ConnectedAt           time.Time
	LastHeartbeatAt       time.Time
	OrgID                 string
	EnvID                 string
	HubInstanceUUID       string
	StreamID              string
	IPAddress             string
	NodeIP                string
	K8sClusterRoleSupport bool
	KubernetesVersion     string
}

// Account is a deployment target: an agent identifier connected now or within the grace
// period.
type Account struct {
	Name      string
	Connected bool
}

// AgentEventType is the kind of an AgentEvent.
type AgentEventType int

// Kinds of AgentEvent.
const (
	AgentConnected AgentEventType = iota + 1
	AgentDisconnected
)

// String names the event type.
func (t AgentEventType) String() string {
	switch t {
	case AgentConnected:
		return "connected"
	case AgentDisconnected:
		return "disconnected"
	}
	return fmt.Sprintf("AgentEventType(%d)", int(t))
}

// AgentEvent says that an agent stream opened or closed.
type AgentEvent struct {
	Type  AgentEventType
	Agent Agent
}

// Option configures optional parts of a Hub.
type Option func(*Hub)

// WithRedis shares presence, inventory and command forwarding with the other replicas using
// the same Redis.
func WithRedis(rdb redis.UniversalClient) Option {
	return func(h *Hub) { h.rdb = rdb }
}

// withShared makes the hub share bus, presence and inventory with other hubs of the process,
// for tests of replicas without Redis.
func withShared(b bus.Bus, p presence.Store, i inventory.Store) Option {
	return func(h *Hub) { h.bus, h.presence, h.shared = b, p, i }
}

// withHelloTimeout shortens the Hello deadline, for tests.
func withHelloTimeout(d time.Duration) Option {
	return func(h *Hub) { h.helloTimeout = d }
}

// agentKey names an agent identifier in a tenant.
type agentKey struct {
	tenant store.Tenant
	agent  string
}

// inventoryKey names k's inventory.
func (k agentKey) inventoryKey() inventory.Key {
	return inventory.Key{Tenant: k.tenant, Account: k.agent}
}

// agentState is what the hub knows locally about one agent identifier.
type agentState struct {
	streams        []*stream             // open streams taking commands, in connection order
	lastSeen       time.Time             // when the last stream closed; the grace period starts here
	reconnectUntil time.Time             // until when the agent is expected back after the hub closed its stream
	parked         map[*pending]struct{} // commands waiting for the agent to come back
}

// Hub is the Agent Hub. Create it with New, serve it (Handler), and run Run. Its methods are
// safe for concurrent use.
type Hub struct {
	log          *slog.Logger
	cfg          Config
	now          func() time.Time
	id           string
	rdb          redis.UniversalClient
	m            *metrics
	helloTimeout time.Duration
	creds        CredentialChecker // nil: streams end only with their tokens
	credsEvery   time.Duration

	ready     chan struct{} // closed once the bus delivers (at once without Redis)
	readyOnce sync.Once
	done      chan struct{} // closed when shutdown starts

	streamsWG sync.WaitGroup // Connect handlers
	readersWG sync.WaitGroup // reader goroutines of streams mounted without Handler; they end after their handler
	wg        sync.WaitGroup // watchers, forwarded-command handlers, command writers for other callers, forwarders of parked commands

	epoch time.Time // the monotonic clock of mono starts here

	mu           sync.Mutex // guards the fields below
	shuttingDown bool
	agents       map[store.Tenant]map[string]*agentState
	streamsByIP  map[string]int          // open agent streams per peer IP, for MaxStreamsPerIP
	pending      map[pendingKey]*pending // commands placed on a local stream or parked here
	forwards     map[string]chan *replicationv1.ForwardReply
	watchers     map[store.Tenant]map[*watcher]struct{}
	rr           uint64                                // round-robin among equally loaded streams
	sharedDown   bool                                  // the last presence refresh failed; rewrite everything when it works again
	hellos       map[*http.ResponseController]struct{} // streams still waiting for their Hello; shutdown wakes them
	wheel        wheel                                 // every registered stream, for heartbeats (wheel.go)

	// The state replicas share: in memory (this replica alone), or in Redis with WithRedis.
	bus      bus.Bus         // messages between replicas
	presence presence.Store  // which replica holds which stream; accounts' last-seen times
	shared   inventory.Store // the inventories

	subMu      sync.Mutex // guards subs and subsClosed
	subs       map[store.Tenant]map[*Subscription]struct{}
	subsClosed bool // the hub shut down: subscriptions start closed
}

// New returns a hub. Without WithRedis it serves one process, keeping everything in memory.
func New(log *slog.Logger, cfg Config, opts ...Option) *Hub {
	cfg = cfg.withDefaults()
	h := &Hub{
		log:          log,
		cfg:          cfg,
		now:          cfg.Now,
		id:           uuid.NewString(),
		helloTimeout: helloTimeout,
		epoch:        time.Now(),
		hellos:       map[*http.ResponseController]struct{}{},
		ready:        make(chan struct{}),
		done:         make(chan struct{}),
		agents:       map[store.Tenant]map[string]*agentState{},
		streamsByIP:  map[string]int{},
		pending:      map[pendingKey]*pending{},
		forwards:     map[string]chan *replicationv1.ForwardReply{},
		watchers:     map[store.Tenant]map[*watcher]struct{}{},
		subs:         map[store.Tenant]map[*Subscription]struct{}{},
	}
	for _, o := range opts {
		o(h)
	}
	h.m = newMetrics(cfg.Registerer)
	switch {
	case h.bus != nil:
		// Shared in memory (withShared); ready once the bus delivers.
	case h.rdb == nil:
		h.bus = bus.NewMemory()
		h.presence = presence.NewMemory(h.presenceTTL())
		h.shared = inventory.NewMemory()
		h.readyOnce.Do(func() { close(h.ready) })
	default:
		h.bus = bus.NewRedis(log, h.rdb)
		h.presence = presence.NewRedis(h.rdb, h.presenceTTL())
		h.shared = inventory.NewRedis(log, h.rdb, cfg.GracePeriod+h.presenceTTL())
	}
	return h
}

// InstanceID returns the hub_instance_uuid of this replica.
func (h *Hub) InstanceID() string { return h.id }

// mono is the hub's monotonic clock, in nanoseconds since New.
func (h *Hub) mono() int64 { return int64(time.Since(h.epoch)) }

// presenceTTL is how long a stream's presence lives in Redis without a refresh.
func (h *Hub) presenceTTL() time.Duration { return 3 * h.cfg.HeartbeatInterval }

// closeGrace is how long a closing stream may take to write its Goodbye before its HTTP/2
// stream is reset.
func (h *Hub) closeGrace() time.Duration { return h.cfg.HeartbeatInterval }

// CompressMinBytes is the smallest message to an agent that Handler compresses: heartbeats
// and most commands are a few hundred bytes, which gzip does not shrink but costs a
// compressor (and most of a small command's round trip) to try.
const CompressMinBytes = 1 << 10

// Handler returns the route and handler serving AgentHubService: the generated handler with
// a read limit of MaxMessageBytes and compression of messages of CompressMinBytes or more
// only (opts come after these and may tighten them; add the auth interceptor there), wrapped
// so that the stream's handler can be woken from its read and a stream stuck writing to an
// agent that does not read can be cut. Mounting hubv1connect.NewAgentHubServiceHandler(h)
// directly also works, but each stream then needs a reader goroutine of its own, and a
// stream whose agent stops reading stays open until the agent's connection ends.
func (h *Hub) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	all := append([]connect.HandlerOption{connect.WithReadMaxBytes(h.cfg.MaxMessageBytes),
		connect.WithCompressMinBytes(CompressMinBytes)}, opts...)
	path, inner := hubv1connect.NewAgentHubServiceHandler(h, all...)
	return path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), responseControllerKey{}, http.NewResponseController(w))
		inner.ServeHTTP(w, r.WithContext(ctx))
	})
}

type responseControllerKey struct{}

// spawn runs f on a goroutine tracked by wg unless the hub is shutting down.
func (h *Hub) spawn(wg *sync.WaitGroup, f func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shuttingDown {
		return false
	}
	wg.Go(f)
	return true
}

// Run does the hub's background work: it sends the streams' heartbeats and closes silent
// streams, expires accounts after the grace period and, with
// Redis, refreshes this replica's presence and serves the Redis subscriptions (forwarded
// commands, agent events); without a running Run, other replicas see this one's agents
// vanish and forwarded commands time out. When ctx ends it says Goodbye SERVER_SHUTTING_DOWN
// on every stream, closes them, fails the commands still waiting, and returns nil. Call it
// once.
func (h *Hub) Run(ctx context.Context) error {
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { h.sweepLoop(gctx); return nil })
	g.Go(func() error { h.bus.Listen(gctx, h.id, busListener{h}); return nil })
	g.Go(func() error { h.refreshLoop(gctx); return nil })
	g.Go(func() error { h.wheelLoop(gctx); return nil })
	if h.creds != nil {
		g.Go(func() error { h.credentialLoop(gctx); return nil })
	}
	<-ctx.Done()
	h.shutdown()
	stopBackground()
	_ = g.Wait()
	h.failParked()
	h.wg.Wait()
	h.closeSubscriptions()
	return nil
}

// shutdown closes every stream with Goodbye SERVER_SHUTTING_DOWN and waits for them.
func (h *Hub) shutdown() {
	h.mu.Lock()
	h.shuttingDown = true
	close(h.done)
	for rc := range h.hellos {
		_ = rc.SetReadDeadline(time.Now()) // wake awaitHello
	}
	var n int
	for _, byAgent := range h.agents {
		for _, st := range byAgent {
			for _, s := range append([]*stream(nil), st.streams...) {
				h.beginCloseLocked(s, goodbye(hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN, "the hub is shutting down; reconnect"))
				n++
			}
		}
	}
	h.mu.Unlock()
	h.log.Info("hub shutting down", "streams", n)
	// Each closing stream gets closeGrace to write its Goodbye; allow a little more.
	wait := h.closeGrace() + 5*time.Second
	if !waitTimeout(&h.streamsWG, wait) {
		h.log.Warn("streams still open after shutdown grace; their agents are not reading")
	}
	if !waitTimeout(&h.readersWG, wait) {
		h.log.Warn("stream readers still running after shutdown grace")
	}
}

// failParked fails the commands still waiting for an agent once the hub has stopped.
func (h *Hub) failParked() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, byAgent := range h.agents {
		for _, st := range byAgent {
			for p := range st.parked {
				h.completeLocked(p, nil, ErrStreamLost)
			}
		}
	}
	// A forwarded command may have run on the other replica.
	for id, ch := range h.forwards {
		delete(h.forwards, id)
		select {
		case ch <- &replicationv1.ForwardReply{Error: replicationv1.ForwardReply_ERROR_STREAM_LOST, OutcomeUnknown: true}:
		default:
		}
	}
}

// waitTimeout waits for wg at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// sweepLoop forgets agents whose grace period is over.
func (h *Hub) sweepLoop(ctx context.Context) {
	interval := min(h.cfg.HeartbeatInterval, h.cfg.GracePeriod)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sweep()
		}
	}
}

func (h *Hub) sweep() {
	now := h.now()
	var gone []agentKey
	h.mu.Lock()
	for t, byAgent := range h.agents {
		for name, st := range byAgent {
			if h.forgettableLocked(st, now) {
				delete(byAgent, name)
				gone = append(gone, agentKey{t, name})
			}
		}
		if len(byAgent) == 0 {
			delete(h.agents, t)
		}
	}
	h.mu.Unlock()
	for _, k := range gone {
		h.shared.Drop(k.inventoryKey())
		h.log.Info("account expired after grace period", "tenant", k.tenant.String(), "agent", k.agent)
	}
}

// forgettableLocked reports whether nothing keeps st: no stream, no waiting command, and the
// grace period and the reconnect window are over.
func (h *Hub) forgettableLocked(st *agentState, now time.Time) bool {
	return len(st.streams) == 0 && len(st.parked) == 0 &&
		!now.Before(st.lastSeen.Add(h.cfg.GracePeriod)) && !now.Before(st.reconnectUntil)
}

// agentLocked returns the state of k, creating it if create is set.
func (h *Hub) agentLocked(k agentKey, create bool) *agentState {
	byAgent := h.agents[k.tenant]
	if byAgent == nil {
		if !create {
			return nil
		}
		byAgent = map[string]*agentState{}
		h.agents[k.tenant] = byAgent
	}
	st := byAgent[k.agent]
	if st == nil && create {
		st = &agentState{parked: map[*pending]struct{}{}}
		byAgent[k.agent] = st
	}
	return st
}
