package agent_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sortie-dev/sortie/agent"
)

// An agent outside the cluster, with a kubeconfig, connected to a Sortie server over TLS.
// (cmd/sortie-agent does the same from flags.)
func Example() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	restConfig, err := clientcmd.BuildConfigFromFlags("", os.Getenv("HOME")+"/.kube/config")
	if err != nil {
		log.Error("kubeconfig", "error", err)
		return
	}
	reg := prometheus.NewRegistry()
	a, err := agent.New(log, agent.Config{
		HubURL:          "https://sortie.example.com",
		ClientID:        os.Getenv("SORTIE_AGENT_CLIENT_ID"),
		ClientSecret:    os.Getenv("SORTIE_AGENT_CLIENT_SECRET"),
		AgentIdentifier: "prod-eu-1",
		RESTConfig:      restConfig,
		Registerer:      reg,
	})
	if err != nil {
		log.Error("agent", "error", err)
		return
	}
	go func() { _ = http.ListenAndServe("127.0.0.1:8081", a.Handler()) }() // /healthz, /metrics

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	_ = a.Run(ctx) // on SIGTERM: Goodbye to the hub, then return
}
