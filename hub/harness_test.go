package hub

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/net/http2"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
)

// Tenants used across tests.
var (
	tenantA = store.Tenant{OrgID: "org-a", EnvID: "env-a"}
	tenantB = store.Tenant{OrgID: "org-a", EnvID: "env-b"}
)

const testIssuer = "https://sortie.test"

// testLogger discards logs unless HUB_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("HUB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// issuer mints real access tokens: a real identity service on a bbolt store.
type issuer struct {
	st       store.Store
	svc      *identity.Service
	verifier *identity.Verifier
}

// newIssuer returns an issuer of tokens living ttl.
func newIssuer(t testing.TB, ttl time.Duration) *issuer {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "sortie.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return issuerOn(t, st, ttl)
}

// issuerOn returns an issuer sharing st (and so the signing keys) with others.
func issuerOn(t testing.TB, st store.Store, ttl time.Duration) *issuer {
	t.Helper()
	svc, err := identity.New(context.Background(), testLogger(), st, identity.Config{
		Issuer: testIssuer, Audiences: []string{testIssuer}, TokenTTL: ttl, KeyRotation: 24 * time.Hour,
		MasterKey: bytes.Repeat([]byte{7}, identity.MasterKeySize),
	})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	return &issuer{st: st, svc: svc, verifier: svc.Verifier()}
}

// token returns a token of a machine credential of tenant t with the given scopes.
func (i *issuer) token(t testing.TB, tenant store.Tenant, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{identity.ScopeConnectAgentHub}
	}
	raw, err := i.svc.Sign(context.Background(), identity.Principal{
		Type: identity.PrincipalMachine, Subject: "client-" + tenant.EnvID, Name: "agent credential",
		OrgID: tenant.OrgID, OrgName: "Org", EnvID: tenant.EnvID,
		Roles: []string{identity.RoleRemoteNetworkAgent}, Scopes: scopes,
	}, testIssuer)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return raw
}

// testAuth is the test server's auth layer: it verifies the bearer token as the gateway
// does and puts the principal into the context.
type testAuth struct{ v *identity.Verifier }

func (a testAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (a testAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a testAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		raw, ok := strings.CutPrefix(conn.RequestHeader().Get("Authorization"), "Bearer ")
		if !ok {
			return connect.NewError(connect.CodeUnauthenticated, errors.New("missing bearer token"))
		}
		p, err := a.v.Verify(ctx, raw)
		if err != nil {
			return connect.NewError(connect.CodeUnauthenticated, err)
		}
		if !p.HasScope(identity.ScopeConnectAgentHub) {
			return connect.NewError(connect.CodePermissionDenied, errors.New("scope connect:agentHub required"))
		}
		return next(identity.WithPrincipal(ctx, p), conn)
	}
}

// hubServer is a hub served on a real loopback listener (HTTP/1.1 and h2c).
type hubServer struct {
	hub  *Hub
	URL  string
	reg  *prometheus.Registry
	srv  *http.Server
	stop context.CancelFunc
	done chan struct{} // closed when Run returned
}

type serverOptions struct {
	raw    bool // mount hubv1connect.NewAgentHubServiceHandler directly (no read limit) instead of Hub.Handler
	noAuth bool // no auth layer: streams carry no principal
	opts   []Option
}

// startHub serves a new hub whose tokens come from iss, and stops it when the test ends.
func startHub(t testing.TB, iss *issuer, cfg Config, so serverOptions) *hubServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &hubServer{URL: "http://" + ln.Addr().String(), reg: prometheus.NewRegistry(), done: make(chan struct{})}
	cfg.Registerer = hs.reg
	hs.hub = New(testLogger(), cfg, so.opts...)
	var auth connect.HandlerOption = connect.WithInterceptors()
	if !so.noAuth {
		auth = connect.WithInterceptors(testAuth{v: iss.verifier})
	}
	var path string
	var handler http.Handler
	if so.raw {
		path, handler = hubv1connect.NewAgentHubServiceHandler(hs.hub, auth)
	} else {
		path, handler = hs.hub.Handler(auth)
	}
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs.srv = &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { _ = hs.srv.Serve(ln) }()
	runCtx, stop := context.WithCancel(context.Background())
	hs.stop = stop
	go func() {
		defer close(hs.done)
		if err := hs.hub.Run(runCtx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		hs.shutdown(t)
		hs.srv.Close()
	})
	waitReady(t, hs.hub)
	return hs
}

// shutdown stops Run and waits for it.
func (hs *hubServer) shutdown(t testing.TB) {
	t.Helper()
	hs.stop()
	select {
	case <-hs.done:
	case <-time.After(20 * time.Second):
		t.Errorf("Run did not return after its context ended")
	}
}

func waitReady(t testing.TB, h *Hub) {
	t.Helper()
	select {
	case <-h.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("hub not ready: Redis subscriptions not established")
	}
}

// metric returns the value of a sortie_hub_* counter or gauge of the server's registry whose
// labels include the given name=value pairs; 0 when absent.
func (hs *hubServer) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	families, err := hs.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// conns remembers the TCP connections of a client, so that a test can cut them.
type conns struct {
	mu  sync.Mutex // guards all
	all []net.Conn
}

func (c *conns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err == nil {
		c.mu.Lock()
		c.all = append(c.all, conn)
		c.mu.Unlock()
	}
	return conn, err
}

// cut closes every connection, as a network cut or a crash would.
func (c *conns) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.all {
		conn.Close()
	}
}

// h2cClient speaks HTTP/2 with prior knowledge over cleartext, as agents do. Each simulated
// agent gets its own, hence its own TCP connection, as real agents have.
func h2cClient(c *conns) *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return c.dial(ctx, network, addr)
		},
	}}
}

// smallWindowClient is an h2c client that buffers at most 64 KiB per stream: an agent that
// stops reading blocks the hub's writes after that much.
func smallWindowClient(c *conns) *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols, DialContext: c.dial,
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10}}}
}

// testAgent is a simulated agent speaking the real protocol through the generated client.
type testAgent struct {
	t        testing.TB
	id       string
	instance string
	stream   *connect.BidiStreamForClient[hubv1.ConnectRequest, hubv1.ConnectResponse]
	cancel   context.CancelFunc
	conns    *conns

	sendMu sync.Mutex // serializes stream.Send

	in       chan *hubv1.ConnectResponse // what the hub sent, in order
	readOnce sync.Once
	readDone chan struct{} // closed when the read loop ended; readErr says why
	readErr  error

	wg sync.WaitGroup // the read loop and helpers
}

type agentOptions struct {
	smallWindow bool   // receive at most 64 KiB before reading (default: the usual 4 MiB)
	instance    string // agent instance uuid; default random
}

// dial opens a stream to the hub at url with token; nothing is sent yet.
func dial(t testing.TB, url, token string, o agentOptions) *testAgent {
	t.Helper()
	c := &conns{}
	client := h2cClient(c)
	if o.smallWindow {
		client = smallWindowClient(c)
	}
	if o.instance == "" {
		o.instance = uuid.NewString()
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream := hubv1connect.NewAgentHubServiceClient(client, url).Connect(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+token)
	a := &testAgent{t: t, instance: o.instance, stream: stream, cancel: cancel, conns: c,
		in: make(chan *hubv1.ConnectResponse, 4096), readDone: make(chan struct{})}
	t.Cleanup(a.close)
	return a
}

// close breaks the agent's stream, as a crash or network cut would, and waits for its
// goroutines. (Cancelling the stream's context alone does not abort a connect-go bidi stream
// over HTTP/2 until the next message arrives: the transport waits for the request body.)
func (a *testAgent) close() {
	a.cancel()
	a.conns.cut()
	a.startReading() // so the read loop exists and ends
	a.wg.Wait()
}

// startReading starts the read loop; an agent that never calls it never reads.
func (a *testAgent) startReading() {
	a.readOnce.Do(func() {
		a.wg.Go(func() {
			defer close(a.readDone)
			for {
				m, err := a.stream.Receive()
				if err != nil {
					a.readErr = err
					return
				}
				a.in <- m
			}
		})
	})
}

func (a *testAgent) send(m *hubv1.ConnectRequest) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return a.stream.Send(m)
}

func (a *testAgent) mustSend(m *hubv1.ConnectRequest) {
	a.t.Helper()
	if err := a.send(m); err != nil {
		a.t.Fatalf("agent send: %v", err)
	}
}

func helloMsg(id, instance string) *hubv1.ConnectRequest {
	return &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: id, AgentInstanceUuid: instance, AgentVersion: "1.2.3",
		KubernetesVersion: "v1.37.2", ClusterRoleSupport: true, NodeIp: "10.0.0.7",
	}}}
}

// hello registers the agent as id and returns the Welcome.
func (a *testAgent) hello(id string) *hubv1.Welcome {
	a.t.Helper()
	a.id = id
	a.mustSend(helloMsg(id, a.instance))
	a.startReading()
	m := a.next(5 * time.Second)
	w := m.GetWelcome()
	if w == nil {
		a.t.Fatalf("agent %s: first message is %v, want a Welcome", id, m)
	}
	return w
}

// helloWithoutReading registers the agent as id and reads only the Welcome: the agent reads
// nothing more until startReading.
func (a *testAgent) helloWithoutReading(id string) *hubv1.Welcome {
	a.t.Helper()
	a.id = id
	a.mustSend(helloMsg(id, a.instance))
	m, err := a.stream.Receive()
	if err != nil || m.GetWelcome() == nil {
		a.t.Fatalf("agent %s: got %v, %v; want a Welcome", id, m, err)
	}
	return m.GetWelcome()
}

// next returns the next message other than a Heartbeat, or fails the test.
func (a *testAgent) next(timeout time.Duration) *hubv1.ConnectResponse {
	a.t.Helper()
	m, err := a.nextOrEnd(timeout)
	if err != nil {
		a.t.Fatalf("agent %s: %v", a.id, err)
	}
	return m
}

// nextOrEnd returns the next message other than a Heartbeat, or the error that ended the
// stream.
func (a *testAgent) nextOrEnd(timeout time.Duration) (*hubv1.ConnectResponse, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m := <-a.in:
			if m.GetHeartbeat() != nil {
				continue
			}
			return m, nil
		case <-a.readDone:
			select {
			case m := <-a.in:
				if m.GetHeartbeat() != nil {
					continue
				}
				return m, nil
			default:
			}
			return nil, a.readErr
		case <-timer.C:
			return nil, errors.New("no message from the hub in time")
		}
	}
}

// expectGoodbye reads until a Goodbye and checks its reason and message, then checks that
// the stream ends with code.
func (a *testAgent) expectGoodbye(reason hubv1.Goodbye_Reason, wantMessage string, code connect.Code) {
	a.t.Helper()
	for {
		m, err := a.nextOrEnd(10 * time.Second)
		if err != nil {
			a.t.Fatalf("agent %s: stream ended without a Goodbye: %v", a.id, err)
		}
		gb := m.GetGoodbye()
		if gb == nil {
			continue
		}
		if gb.Reason != reason || !strings.Contains(gb.Message, wantMessage) {
			a.t.Fatalf("agent %s: Goodbye %s %q, want %s containing %q", a.id, gb.Reason, gb.Message, reason, wantMessage)
		}
		break
	}
	select {
	case <-a.readDone:
	case <-time.After(10 * time.Second):
		a.t.Fatalf("agent %s: stream still open after the Goodbye", a.id)
	}
	if got := connect.CodeOf(a.readErr); got != code {
		a.t.Fatalf("agent %s: stream ended with %v (%v), want code %v", a.id, got, a.readErr, code)
	}
}

// answerer answers commands: it returns the result for a command.
type answerer func(*hubv1.Command) *hubv1.CommandResult

// succeed answers every command with success, listing namespaces "default" and the command id.
func succeed(cmd *hubv1.Command) *hubv1.CommandResult {
	return &hubv1.CommandResult{CommandId: cmd.Id, Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
		Payload: &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: []string{"default", cmd.Id}}}}
}

// serve answers commands with f (nil: never answer) and sends a Heartbeat every interval
// (0: never) until the stream ends. Every command received is passed to seen, if not nil.
func (a *testAgent) serve(f answerer, interval time.Duration, seen chan<- *hubv1.Command) {
	a.startReading()
	a.wg.Go(func() {
		var tick <-chan time.Time
		if interval > 0 {
			t := time.NewTicker(interval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case m := <-a.in:
				cmd := m.GetCommand()
				if cmd == nil {
					continue
				}
				if seen != nil {
					seen <- cmd
				}
				if f != nil {
					if res := f(cmd); res != nil {
						_ = a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: res}})
					}
				}
			case <-tick:
				_ = a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}})
			case <-a.readDone:
				return
			}
		}
	})
}

// connectAgent dials, says Hello as id, and serves commands with f.
func connectAgent(t testing.TB, hs *hubServer, iss *issuer, tenant store.Tenant, id string, f answerer) *testAgent {
	t.Helper()
	a := dial(t, hs.URL, iss.token(t, tenant), agentOptions{})
	a.hello(id)
	a.serve(f, hs.hub.cfg.HeartbeatInterval/2, nil)
	return a
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// listNamespaces is a command.
func listNamespaces() *hubv1.Command {
	return &hubv1.Command{Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}}}
}

func agentsOf(t testing.TB, h *Hub, tenant store.Tenant, id string) []Agent {
	t.Helper()
	agents, err := h.Agents(context.Background(), tenant, id)
	if err != nil {
		t.Fatalf("Agents: %v", err)
	}
	return agents
}

// parked counts the commands waiting for an agent to come back.
func parked(h *Hub, tenant store.Tenant, id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.agentLocked(agentKey{tenant: tenant, agent: id}, false); st != nil {
		return len(st.parked)
	}
	return 0
}

// redisClient returns a client of the Redis at url, closed when the test ends.
func redisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries = time.Second, time.Second, time.Second, 1
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// writeBlocked reports whether a stream of the agent is writing a command it has sent.
func (h *Hub) writeBlocked(t store.Tenant, agent string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.agentLocked(agentKey{tenant: t, agent: agent}, false); st != nil {
		for _, s := range st.streams {
			for p := range s.inflight {
				if p.sent && s.writeStart.Load() != 0 {
					return true
				}
			}
		}
	}
	return false
}

// queued counts the agent's commands queued on a stream and not sent yet.
func (h *Hub) queued(t store.Tenant, agent string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	if st := h.agentLocked(agentKey{tenant: t, agent: agent}, false); st != nil {
		for _, s := range st.streams {
			for p := range s.inflight {
				if !p.sent {
					n++
				}
			}
		}
	}
	return n
}

// randomBytes returns n incompressible bytes: responses are gzipped, so repeated bytes would
// take no room on the wire.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// inflight counts the agent's commands queued or sent on a stream.
func (h *Hub) inflight(t store.Tenant, agent string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	if st := h.agentLocked(agentKey{tenant: t, agent: agent}, false); st != nil {
		for _, s := range st.streams {
			n += len(s.inflight)
		}
	}
	return n
}
