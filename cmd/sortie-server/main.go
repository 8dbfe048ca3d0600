// Command sortie-server runs the Sortie control plane: REST, Connect, OIDC, health and
// metrics on one port, on the embedded store or on Redis.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sortie-server:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. Human-facing notices (the URL, the bootstrap credential) go to
// stdout, JSON logs to stderr. listening, if not nil, receives the base URL once serving.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, listening chan<- string) error {
	cfg, err := parseConfig(args, stdout, stderr)
	if err != nil {
		return err
	}
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

func openStore(ctx context.Context, log *slog.Logger, cfg config) (store.Store, error) {
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

func storeKind(cfg config) string {
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
func newRedisClient(cfg config) (redis.UniversalClient, error) {
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
