// Package agent is Sortie's edge agent. It runs in (or next to) a Kubernetes cluster, gets a
// token with the client-credentials grant, dials out to the Agent Hub and holds one
// long-lived bidirectional stream (Connect/gRPC over HTTP/2) on which it:
//
//   - registers with a Hello and keeps the stream alive with heartbeats and HTTP/2 PINGs;
//   - executes the hub's commands (server-side apply, get, list, patch, delete, watch,
//     list namespaces) with the client-go dynamic client and a discovery-based RESTMapper;
//   - reports the cluster's inventory (namespaces, Deployments, ReplicaSets, Services and,
//     when their CRD exists, Argo Rollouts) as a snapshot after every (re)connect and as
//     deltas from shared informers.
//
// It survives hub restarts, network cuts and token expiry by reconnecting with jittered
// exponential backoff. It never sends the data of Kubernetes Secrets and never logs its
// client secret or tokens. The agent imports only Sortie's generated protocol code.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
)

// Defaults of Config.
const (
	// DefaultHeartbeat is the heartbeat interval used until the hub's Welcome names one.
	DefaultHeartbeat = 20 * time.Second
	// FieldManager is the server-side apply field manager of everything the agent applies.
	FieldManager = "sortie-agent"
	// Scope is the OAuth scope the agent asks its token for.
	Scope = "connect:agentHub"
)

// Config configures an Agent. HubURL, ClientID, ClientSecret, AgentIdentifier and
// RESTConfig are required.
type Config struct {
	// HubURL is the server's base URL: https://... (TLS, ALPN h2) or http://... (h2c).
	HubURL string
	// TokenURL is the OAuth token endpoint; empty means HubURL + "/oauth/token".
	TokenURL string
	// ClientID and ClientSecret are the agent's machine credential.
	ClientID, ClientSecret string
	// AgentIdentifier is the account name deployment targets use (^[a-zA-Z0-9_-]+$).
	AgentIdentifier string
	// Version is the agent's build version, reported in the Hello.
	Version string
	// Heartbeat is the heartbeat interval used until the hub's Welcome names one; zero means
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// CAFile is a PEM file of extra CAs trusted for the hub's and the token endpoint's TLS
	// certificates, besides the system roots.
	CAFile string
	// NodeIP is the IP of the node the agent runs on, reported in the Hello when set.
	NodeIP string
	// RESTConfig reaches the cluster's kube-apiserver.
	RESTConfig *rest.Config
	// HTTPClient, if set, carries the hub stream instead of the HTTP/2 client built from
	// HubURL and CAFile (tests use it); it must speak HTTP/2.
	HTTPClient *http.Client
	// Now is the clock of token expiry and stream liveness; nil means time.Now.
	Now func() time.Time
	// Registerer receives the agent's metrics; nil means a private registry. If it is also a
	// prometheus.Gatherer (a *prometheus.Registry is), Handler serves it on /metrics.
	Registerer prometheus.Registerer
}

// ErrInvalidIdentifier is returned (wrapped, with the reason) for an agent identifier that
// breaks the rules of Hello.agent_identifier in hub.proto.
var ErrInvalidIdentifier = errors.New("invalid agent identifier")

// identifierOnly keeps the rules of Hello.agent_identifier alone.
var identifierOnly = protovalidate.WithFilter(protovalidate.FilterFunc(func(_ protoreflect.Message, d protoreflect.Descriptor) bool {
	fd, isField := d.(protoreflect.FieldDescriptor)
	return !isField || fd.Name() == "agent_identifier"
}))

// ValidateIdentifier checks an agent identifier against the rules the hub enforces on Hello
// (declared once, in hub.proto) and words a violation as the hub would, so that an agent
// never starts with an identifier the hub then refuses on every connection.
func ValidateIdentifier(id string) error {
	err := protovalidate.Validate(&hubv1.Hello{AgentIdentifier: id}, identifierOnly)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("%w: %w", ErrInvalidIdentifier, err)
	}
	parts := make([]string, 0, len(verr.Violations))
	for _, v := range verr.Violations {
		parts = append(parts, "hello."+v.String())
	}
	shown := id
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidIdentifier, shown, strings.Join(parts, "; "))
}

// Agent is one edge agent process. Create it with New and start it with Run.
type Agent struct {
	log        *slog.Logger
	cfg        Config
	now        func() time.Time
	instanceID string
	hub        hubv1connect.AgentHubServiceClient
	tokens     *tokenSource
	kube       *kube
	inv        *inventory
	cmds       *executor
	metrics    *metrics
	gatherer   prometheus.Gatherer
	// newBackoff makes the reconnect policy; tests shorten it.
	newBackoff func() *Backoff
	started    atomic.Bool

	mu sync.Mutex // guards connected, lastProblem
	// connected is true while a stream is welcomed and alive.
	connected bool
	// lastProblem says why the agent is not connected, for /healthz.
	lastProblem string
}

// New checks cfg and builds an agent; it contacts neither the hub nor the cluster.
func New(log *slog.Logger, cfg Config) (*Agent, error) {
	if cfg.RESTConfig == nil {
		return nil, errors.New("agent: a Kubernetes REST config is required")
	}
	rc := rest.CopyConfig(cfg.RESTConfig)
	if rc.UserAgent == "" {
		rc.UserAgent = "sortie-agent/" + versionOr(cfg.Version)
	}
	// Inventory informers, watches and bursts of commands share one client: the client-side
	// defaults (5 QPS) would throttle them.
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	disco, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("agent: kubernetes discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("agent: kubernetes dynamic client: %w", err)
	}
	return newAgent(log, cfg, disco, dyn)
}

// newAgent builds an agent on given Kubernetes clients (tests pass fakes).
func newAgent(log *slog.Logger, cfg Config, disco discovery.DiscoveryInterface, dyn dynamic.Interface) (*Agent, error) {
	if err := ValidateIdentifier(cfg.AgentIdentifier); err != nil {
		return nil, err
	}
	hubURL, err := url.Parse(cfg.HubURL)
	if err != nil || (hubURL.Scheme != "http" && hubURL.Scheme != "https") || hubURL.Host == "" {
		return nil, fmt.Errorf("agent: the hub URL must be an absolute http:// or https:// URL, got %q", cfg.HubURL)
	}
	cfg.HubURL = strings.TrimRight(cfg.HubURL, "/")
	if cfg.TokenURL == "" {
		cfg.TokenURL = cfg.HubURL + "/oauth/token"
	}
	if u, err := url.Parse(cfg.TokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent: the token URL must be an absolute http:// or https:// URL, got %q", cfg.TokenURL)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("agent: a client id and a client secret are required")
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Heartbeat < minHeartbeat {
		return nil, fmt.Errorf("agent: the heartbeat interval must be at least %s, got %s", minHeartbeat, cfg.Heartbeat)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	roots, err := rootCAs(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	hubClient := cfg.HTTPClient
	if hubClient == nil {
		hubClient = newHubHTTPClient(hubURL.Scheme, roots)
	}

	reg := cfg.Registerer
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}

	log = log.With("agent", cfg.AgentIdentifier)
	k := newKube(disco, dyn)
	a := &Agent{
		log:        log,
		cfg:        cfg,
		now:        cfg.Now,
		instanceID: uuid.NewString(),
		hub:        newHubClient(hubClient, cfg.HubURL),
		tokens:     newTokenSource(cfg.TokenURL, cfg.ClientID, cfg.ClientSecret, newTokenHTTPClient(roots), cfg.Now, m),
		kube:       k,
		inv:        newInventory(log, k),
		metrics:    m,
		gatherer:   gatherer,
		newBackoff: func() *Backoff { return NewBackoff(rand.Float64) },
		// Not connected yet: /healthz says so until the first Welcome.
		lastProblem: "not connected to the hub yet",
	}
	a.cmds = newExecutor(log, k, m, cfg.Now)
	return a, nil
}

func versionOr(v string) string {
	if v == "" {
		return "dev"
	}
	return v
}

// rootCAs returns the system roots plus the certificates of caFile.
func rootCAs(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("agent: read CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("agent: CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// InstanceID returns the uuid this process reports in every Hello.
func (a *Agent) InstanceID() string { return a.instanceID }

// Run connects to the hub and serves it until ctx ends, reconnecting as needed. When ctx
// ends it tells the hub it is leaving (Goodbye AGENT_SHUTTING_DOWN), waits for its commands
// and informers to stop, and returns nil. An Agent runs once: a second Run fails.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run was already called")
	}
	a.log.Info("agent starting", "hub", a.cfg.HubURL, "instance", a.instanceID, "version", versionOr(a.cfg.Version))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { a.inv.run(gctx); return nil })
	g.Go(func() error { a.connectLoop(gctx); return nil })
	err := g.Wait()
	a.cmds.wait()
	a.log.Info("agent stopped")
	return err
}

// Healthy reports whether the agent holds a live, welcomed stream to the hub.
func (a *Agent) Healthy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

func (a *Agent) setConnected(connected bool, problem string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.connected = connected
	if problem != "" || connected {
		a.lastProblem = problem
	}
	if connected {
		a.metrics.connected.Set(1)
	} else {
		a.metrics.connected.Set(0)
	}
}

// Handler serves /healthz (200 while connected to the hub, 503 with the reason otherwise)
// and /metrics (when the Registerer is also a Gatherer).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		ok, problem := a.connected, a.lastProblem
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not connected: %s\n", problem)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if a.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}
