// Command sortie-agent connects a Kubernetes cluster to a Sortie server: it dials out to the
// server's Agent Hub, executes deployments with client-go and reports the cluster's
// inventory. It runs in the cluster (in-cluster configuration) or next to it (--kubeconfig).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/sortie-dev/sortie/agent"
	"github.com/sortie-dev/sortie/cmd/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sortie-agent:", err)
		os.Exit(1)
	}
}

// run runs the agent until ctx ends (SIGTERM), then tells the hub it leaves and returns.
// JSON logs go to stderr; stdout gets only what --version prints.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stdout, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	// client-go logs through klog: keep its lines in the same JSON log.
	klog.SetSlogLogger(log.With("component", "client-go"))

	restConfig, err := kubeConfig(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := agent.New(log, agent.Config{
		HubURL:          cfg.HubURL,
		TokenURL:        cfg.TokenURL,
		ClientID:        cfg.ClientID,
		ClientSecret:    cfg.ClientSecret,
		AgentIdentifier: cfg.AgentIdentifier,
		Version:         version.String(), // reported in the Hello
		Heartbeat:       cfg.Heartbeat,
		CAFile:          cfg.CAFile,
		NodeIP:          cfg.NodeIP,
		RESTConfig:      restConfig,
		Registerer:      reg,
	})
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	if cfg.HealthAddr != "" {
		ln, err := net.Listen("tcp", cfg.HealthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr: %w", err)
		}
		log.Info("serving /healthz and /metrics", "addr", ln.Addr().String())
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("health listener: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	g.Go(func() error { return a.Run(gctx) })
	return g.Wait()
}

// kubeConfig returns the cluster's REST config: from --kubeconfig (and --context) when
// given, else the in-cluster service account.
func kubeConfig(cfg config) (*rest.Config, error) {
	if cfg.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no Kubernetes configuration: --kubeconfig is empty and the in-cluster configuration is unavailable (%w); "+
				"pass --kubeconfig to run outside a cluster", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: cfg.Context},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	return rc, nil
}
