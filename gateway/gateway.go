// Package gateway is every API surface of sortie-server on one http.Handler: the
// Armory-compatible REST facade (Huma, OpenAPI 3.1 at /openapi.json, docs at /docs), the OIDC
// routes, the Connect services (Connect, gRPC and gRPC-Web), health, readiness and metrics.
// Handlers are thin: they parse, let the shared auth layer authorize, and call the domain
// packages.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sortie-dev/sortie/gen/sortie/deploy/v1/deployv1connect"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
	"github.com/sortie-dev/sortie/gen/sortie/infra/v1/infrav1connect"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
)

// maxBodyBytes is the largest request body any route accepts (413 beyond).
const maxBodyBytes = 10 << 20

// Version is reported in the OpenAPI document.
const Version = "0.1.0"

// Gateway owns the handler tree.
type Gateway struct {
	log *slog.Logger
	id  *identity.Service
	hub *hub.Hub
	// pipelines serves the deployment and pipeline APIs; nil answers them with 503.
	pipelines Pipelines
	verifier  tokenVerifier
	// streamRecheck is how often server streams re-check their token (authorizedStream).
	streamRecheck time.Duration
	// bodyTimeout is how long a request body may take to arrive (bodyReadTimeout).
	bodyTimeout time.Duration
	// ssoName is the external identity provider's name on the sign-in page's button; empty
	// when none is configured (no button).
	ssoName  string
	api      huma.API
	mux      *routeMux
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
}

// Option configures a Gateway.
type Option func(*Gateway)

// WithPipelines serves the deployment and pipeline APIs (REST and DeploymentService) from
// the pipeline engine. Without it those routes exist, in the OpenAPI document too, and answer
// 503.
func WithPipelines(p Pipelines) Option { return func(g *Gateway) { g.pipelines = p } }

// New builds the handler tree over the identity service and the agent hub. reg collects the
// server's metrics and is served at /metrics.
func New(log *slog.Logger, id *identity.Service, agents *hub.Hub, reg *prometheus.Registry, opts ...Option) *Gateway {
	g := &Gateway{log: log, id: id, hub: agents, verifier: id, mux: newRouteMux(), reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_http_requests_total", Help: "HTTP requests served, by method and status code.",
		}, []string{"method", "code"}),
	}
	for _, opt := range opts {
		opt(g)
	}
	reg.MustRegister(g.requests)
	cfg := apiConfig()
	g.mux.declareHumaDocs(humaPaths{OpenAPIPath: cfg.OpenAPIPath, SchemasPath: cfg.SchemasPath, DocsPath: cfg.DocsPath})
	g.api = humago.New(g.mux, cfg)
	g.api.UseMiddleware(g.restAuth, g.refuseDuplicateKeys)

	g.registerOIDC()
	g.registerSignIn()
	g.registerSessionRoutes()
	g.registerIdentityREST()
	g.registerInfraREST()
	g.registerAgentManifest()
	g.registerDeployREST()
	g.mux.declare(GraphQLPath, identity.ScopeReadDeploy) // handle enforces it (graphql.go)
	g.registerGraphQL()

	// Routes outside Huma declare their requirement here; the mux refuses undeclared ones.
	for _, svc := range []string{identityv1connect.IdentityServiceName, infrav1connect.InfrastructureServiceName,
		deployv1connect.DeploymentServiceName, hubv1connect.AgentHubServiceName} {
		g.mux.declare(connectPrefix(svc), PerProcedure)
	}
	for _, svc := range []string{grpchealth.HealthV1ServiceName, grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName} {
		g.mux.declare(connectPrefix(svc), Public)
	}
	for _, p := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET " + consolePrefix, "GET /{$}"} {
		g.mux.declare(p, Public)
	}

	connectOpts := []connect.HandlerOption{
		connect.WithInterceptors(connectAuth{g: g, scopes: allProcedureScopes()}),
		connect.WithReadMaxBytes(maxBodyBytes),
		// Unknown fields are refused, as REST refuses unknown properties.
		connect.WithCodec(strictProtoCodec{}),
		connect.WithCodec(strictJSONCodec{name: "json"}),
		connect.WithCodec(strictJSONCodec{name: "json; charset=utf-8"}),
	}
	g.mountConnect(identityv1connect.NewIdentityServiceHandler(&identityServer{g: g}, connectOpts...))
	g.mountConnect(infrav1connect.NewInfrastructureServiceHandler(&infraServer{g: g}, connectOpts...))
	g.mountConnect(deployv1connect.NewDeploymentServiceHandler(&deployServer{g: g}, connectOpts...))
	// The hub sets its own message limit and needs its own handler to cut slow streams.
	g.mux.Handle(agents.Handler(connect.WithInterceptors(connectAuth{g: g, scopes: allProcedureScopes()})))
	g.mountConnect(grpchealth.NewHandler(storeChecker{g: g}))
	reflector := grpcreflect.NewStaticReflector(identityv1connect.IdentityServiceName,
		infrav1connect.InfrastructureServiceName, deployv1connect.DeploymentServiceName, hubv1connect.AgentHubServiceName)
	g.mux.Handle(grpcreflect.NewHandlerV1(reflector))
	g.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))

	g.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	g.mux.HandleFunc("GET /readyz", g.readyz)
	g.registerConsole()
	g.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if missing := g.mux.unregistered(); len(missing) > 0 {
		panic(fmt.Sprintf("gateway: routes declared but never mounted: %v", missing))
	}
	return g
}

func apiConfig() huma.Config {
	cfg := huma.DefaultConfig("Sortie API", Version)
	// No $schema links in bodies: Armory clients expect bare objects.
	cfg.CreateHooks = nil
	cfg.Info.Description = "Self-hosted progressive delivery for Kubernetes, compatible with the " +
		"Armory Deployments / CD-as-a-Service API. Get a token at POST /oauth/token with a machine " +
		"credential and send it as `Authorization: Bearer <token>`."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", BearerFormat: "JWT",
			Description: "Access token from POST /oauth/token (client credentials grant)."},
	}
	return cfg
}

// Handler returns the root handler, counting every request.
func (g *Gateway) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		g.withSession(&contractWriter{ResponseWriter: rec, r: r}, r, g.mux)
		g.requests.WithLabelValues(r.Method, strconv.Itoa(rec.status)).Inc()
	})
}

// OpenAPI returns the OpenAPI document of the REST surface.
func (g *Gateway) OpenAPI() *huma.OpenAPI { return g.api.OpenAPI() }

// statusRecorder remembers the status code for metrics; Unwrap keeps flushing and
// full-duplex streaming working through http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	if err := g.id.Ping(ctx); err != nil {
		reason := "store unreachable"
		if errors.Is(err, identity.ErrStoreLost) {
			reason = "store lost its data: the bootstrap record is gone; see the server log"
		}
		g.log.Warn("not ready", "reason", reason, "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"unavailable","reason":"` + reason + `"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// storeChecker answers gRPC health checks from the store's reachability.
type storeChecker struct{ g *Gateway }

func (c storeChecker) Check(ctx context.Context, _ *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.g.id.Ping(ctx); err != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
