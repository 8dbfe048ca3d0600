// Package controlplane wires sortie-server's components (the store, identity, the Agent Hub, the
// pipeline engine and the gateway) and serves them on one listener. Only the sortie-server
// command imports it; its flags become a Config there.
package controlplane

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/sortie-dev/sortie/cmd/internal/version"
	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
	"github.com/sortie-dev/sortie/store/redisstore"
)

// Config is sortie-server's configuration, parsed once from its flags and SORTIE_*
// variables.
type Config struct {
	Addr          string
	PublicURL     string
	DataDir       string
	RedisURL      string
	RedisCluster  bool // RedisURL names a Redis Cluster, in redis.ParseClusterURL's form
	MasterKeyFile string
	TLSCert       string
	TLSKey        string
	TokenTTL      time.Duration
	SessionTTL    time.Duration
	SessionMaxAge time.Duration
	KeyRotation   time.Duration
	Audiences     []string
	LogLevel      slog.Level

	AgentGracePeriod time.Duration
	AgentHeartbeat   time.Duration

	MaxConnsPerIP      int
	HubMaxStreamsPerIP int

	PipelineRetention time.Duration
	PipelineLeaseTTL  time.Duration
	PipelineResync    time.Duration

	OIDC identity.SSOConfig // single sign-on; no Issuer: none
}

// Run opens the store, bootstraps identity and serves the gateway, the hub and the
// pipeline engine on one listener until ctx ends. Human-facing notices (the URL, the
// bootstrap credential) go to stdout, JSON logs to stderr. listening, if not nil, receives
// the base URL once serving.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer, listening chan<- string) error {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	st, err := openStore(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	masterKey, created, err := identity.LoadOrCreateMasterKey(cfg.MasterKeyFile, true)
	if err != nil {
		return err
	}
	if created {
		log.Info("master key created", "path", cfg.MasterKeyFile)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	var tlsConfig *tls.Config
	scheme := "http"
	if cfg.TLSCert != "" {
		if tlsConfig, err = gateway.NewTLSConfig(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
		scheme = "https"
	}
	listenURL := scheme + "://" + ln.Addr().String()
	baseURL := cmp.Or(cfg.PublicURL, listenURL)
	host, _ := os.Hostname()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	id, err := identity.New(ctx, log, st, identity.Config{
		Issuer:        baseURL,
		Audiences:     append([]string{baseURL}, cfg.Audiences...),
		TokenTTL:      cfg.TokenTTL,
		SessionTTL:    cfg.SessionTTL,
		SessionMaxAge: cfg.SessionMaxAge,
		KeyRotation:   cfg.KeyRotation,
		MasterKey:     masterKey,
		Registerer:    reg,
		Host:          host,
	})
	if err != nil {
		return err
	}

	credsPath := filepath.Join(cfg.DataDir, "admin-credentials.json")
	boot, err := id.Bootstrap(ctx, credsPath)
	if err != nil {
		return err
	}
	printAdminCredential(stdout, boot, host)

	var hubOpts []hub.Option
	if cfg.RedisURL != "" {
		rdb, err := newRedisClient(cfg)
		if err != nil {
			return err
		}
		defer rdb.Close()
		hubOpts = append(hubOpts, hub.WithRedis(rdb))
	}
	hubOpts = append(hubOpts, hub.WithCredentialCheck(id, 0)) // deleted credentials' streams end
	agents := hub.New(log, hub.Config{HeartbeatInterval: cfg.AgentHeartbeat, GracePeriod: cfg.AgentGracePeriod,
		MaxStreamsPerIP: cfg.HubMaxStreamsPerIP, Registerer: reg}, hubOpts...)
	sealer, err := seal.New(masterKey, "pipelines")
	if err != nil {
		return err
	}
	engine := pipeline.New(log, st, pipeline.FromHub(agents), sealer, pipeline.Config{
		Holder: agents.InstanceID(), LeaseTTL: cfg.PipelineLeaseTTL, Resync: cfg.PipelineResync,
		Retention: cfg.PipelineRetention, Registerer: reg, Notifier: pipelineNotifier(log, st),
	})
	ssoOpts, err := ssoOptions(ctx, log, id, cfg.OIDC, baseURL)
	if err != nil {
		return err
	}
	gw := gateway.New(log, id, agents, reg, append(ssoOpts, gateway.WithPipelines(engine))...)
	printListening(stdout, listenURL, baseURL)
	log.Info("listening", "version", version.String(), "addr", ln.Addr().String(), "public_url", baseURL, "store", storeKind(cfg), "hub_instance", agents.InstanceID())
	if listening != nil {
		listening <- baseURL
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { id.Keys().Run(gctx); return nil })
	g.Go(func() error { id.WatchStore(gctx, storeWatchInterval); return nil })
	g.Go(func() error { return agents.Run(gctx) })
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error {
		return gateway.Serve(gctx, log, gateway.LimitConnsPerIP(ln, cfg.MaxConnsPerIP, log, reg), gw.Handler(), tlsConfig)
	})
	return g.Wait()
}

// storeWatchInterval is how often the server checks that the store still holds its data.
const storeWatchInterval = 10 * time.Second

func openStore(ctx context.Context, log *slog.Logger, cfg Config) (store.Store, error) {
	if cfg.RedisURL != "" {
		// go-redis logs reconnect attempts process-wide; keep them in our JSON log at debug
		// level (an outage already shows as 503s and a failing /readyz).
		redis.SetLogger(redisLogger{log})
		if cfg.RedisCluster {
			return redisstore.OpenCluster(ctx, cfg.RedisURL)
		}
		return redisstore.Open(ctx, cfg.RedisURL)
	}
	return boltstore.Open(filepath.Join(cfg.DataDir, "sortie.db"))
}

func storeKind(cfg Config) string {
	if cfg.RedisCluster {
		return "redis-cluster"
	}
	if cfg.RedisURL != "" {
		return "redis"
	}
	return "embedded"
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// newRedisClient returns the hub's client: go-redis's cluster client for a Redis Cluster.
func newRedisClient(cfg Config) (redis.UniversalClient, error) {
	if cfg.RedisCluster {
		opts, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, errors.New("--redis-url is not a valid Redis Cluster URL")
		}
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, errors.New("--redis-url is not a valid redis://, rediss:// or unix:// URL")
	}
	return redis.NewClient(opts), nil
}

// pipelineNotifier returns what carries the engine's wake-up hints between replicas: Redis
// pub/sub when the store is Redis (replicas may share it), none for the embedded store (one
// server; its local wake-ups suffice).
func pipelineNotifier(log *slog.Logger, st store.Store) pipeline.Notifier {
	if rs, ok := st.(*redisstore.Store); ok {
		return rs.Notifier(log)
	}
	return nil
}

// ssoOptions returns the gateway option of single sign-on, when configured: it checks the
// mapping against the store (the mapped environments must exist). The provider itself is
// contacted on first use, so a provider that is down does not stop the server.
func ssoOptions(ctx context.Context, log *slog.Logger, id *identity.Service, c identity.SSOConfig, baseURL string) ([]gateway.Option, error) {
	if c.Issuer == "" {
		return nil, nil
	}
	c.RedirectURL = baseURL + gateway.SSOCallbackPath
	o, err := id.NewSSO(ctx, c)
	if err != nil {
		return nil, err
	}
	log.Info("single sign-on configured", "issuer", c.Issuer, "name", o.Name(), "redirect_uri", baseURL+gateway.SSOCallbackPath)
	return []gateway.Option{gateway.WithSSO(o)}, nil
}

// printAdminCredential tells the operator where the admin credential is, truthfully on every
// replica: a replica that did not bootstrap the store points at the file the first start
// wrote, on the machine it ran on, not at a file in its own data directory that never
// existed.
func printAdminCredential(w io.Writer, boot identity.BootstrapResult, host string) {
	switch {
	case boot.Created:
		fmt.Fprintf(w, "Created organization \"default\", environment \"default\", an admin credential and the console user %q (shown once, also saved to %s):\n  client id:     %s\n  client secret: %s\n  console login: %s\n  password:      %s\n",
			boot.Admin.AdminLogin, boot.Path, boot.Admin.ClientID, boot.Admin.ClientSecret, boot.Admin.AdminLogin, boot.Admin.AdminPassword)
	case boot.Path == "":
		fmt.Fprintln(w, "Admin credential: written by the first start, to admin-credentials.json in its --data-dir (this store does not record on which machine).")
	case boot.Host != "" && boot.Host != host:
		fmt.Fprintf(w, "Admin credential: see %s on %s (written by the first start there; this replica has no copy).\n", boot.Path, boot.Host)
	default:
		if _, err := os.Stat(boot.Path); err != nil {
			fmt.Fprintf(w, "Admin credential: the first start wrote it to %s, which is gone; its secret was shown only then.\n", boot.Path)
			return
		}
		fmt.Fprintf(w, "Admin credential: see %s (written by the first start).\n", boot.Path)
	}
}

// printListening says where this process listens and, when it differs, the public URL that
// clients use (the tokens' issuer, shared by replicas behind one load balancer), and where
// the console is.
func printListening(w io.Writer, listenURL, publicURL string) {
	if listenURL == publicURL {
		fmt.Fprintf(w, "Sortie is listening on %s (API docs at %s/docs)\n", listenURL, publicURL)
	} else {
		fmt.Fprintf(w, "Sortie is listening on %s (public URL %s, API docs at %s/docs)\n", listenURL, publicURL, publicURL)
	}
	fmt.Fprintf(w, "Console: %s/console/\n", publicURL)
}
