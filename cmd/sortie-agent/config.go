package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/agent"
	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
	"github.com/sortie-dev/sortie/cmd/internal/version"
)

// envPrefix prefixes the environment variable of each flag (--hub-url: SORTIE_AGENT_HUB_URL).
const envPrefix = "SORTIE_AGENT_"

// config is sortie-agent's configuration, parsed once from flags and SORTIE_AGENT_* variables.
type config struct {
	HubURL          string
	TokenURL        string
	ClientID        string
	ClientSecret    string
	AgentIdentifier string
	Kubeconfig      string
	Context         string
	CAFile          string
	Heartbeat       time.Duration
	HealthAddr      string
	NodeIP          string
	LogLevel        slog.Level
}

// parseConfig parses args and the environment; --version prints to stdout and returns
// version.ErrShown.
func parseConfig(args []string, stdout, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("sortie-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var secretFile, logLevel string
	fs.StringVar(&c.HubURL, "hub-url", "", "Sortie server base URL: https://... (TLS) or http://... (cleartext HTTP/2)")
	fs.StringVar(&c.TokenURL, "token-url", "", "OAuth token endpoint (default <hub-url>/oauth/token)")
	fs.StringVar(&c.ClientID, "client-id", "", "client id of the agent's machine credential")
	fs.StringVar(&c.ClientSecret, "client-secret", "", "client secret of the agent's machine credential (or use --client-secret-file)")
	fs.StringVar(&secretFile, "client-secret-file", "", "file holding the client secret, such as a mounted Kubernetes Secret")
	fs.StringVar(&c.AgentIdentifier, "agent-identifier", "", "account name deployment targets use (1 to 63 letters, digits, '-' and '_')")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig for running outside the cluster (default: in-cluster configuration)")
	fs.StringVar(&c.Context, "context", "", "kubeconfig context (default: its current context)")
	fs.StringVar(&c.CAFile, "ca-file", "", "PEM file of an extra CA trusted for the hub's TLS certificate")
	fs.DurationVar(&c.Heartbeat, "heartbeat", agent.DefaultHeartbeat, "heartbeat interval until the hub names one")
	fs.StringVar(&c.HealthAddr, "health-addr", "127.0.0.1:8081", "listen address of /healthz and /metrics (empty: none)")
	fs.StringVar(&c.NodeIP, "node-ip", "", "IP of the node the agent runs on, reported to the hub (default: $NODE_IP)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: sortie-agent [flags]\n\nConnects a Kubernetes cluster to a Sortie server and executes its deployments.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, envPrefix, args, "version"); err != nil {
		return config{}, err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "sortie-agent", version.String())
		return config{}, version.ErrShown
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return config{}, fmt.Errorf("--log-level: %w", err)
	}
	if c.HubURL == "" {
		return config{}, errors.New("--hub-url is required")
	}
	if u, err := url.Parse(c.HubURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("--hub-url must be an absolute http:// or https:// URL, got %q", c.HubURL)
	}
	if c.ClientID == "" {
		return config{}, errors.New("--client-id is required")
	}
	switch {
	case c.ClientSecret != "" && secretFile != "":
		return config{}, errors.New("give one of --client-secret and --client-secret-file, not both")
	case secretFile != "":
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return config{}, fmt.Errorf("--client-secret-file: %w", err)
		}
		if c.ClientSecret = strings.TrimSpace(string(b)); c.ClientSecret == "" {
			return config{}, fmt.Errorf("--client-secret-file: %s is empty", secretFile)
		}
	case c.ClientSecret == "":
		return config{}, errors.New("a client secret is required: --client-secret or --client-secret-file")
	}
	if c.AgentIdentifier == "" {
		return config{}, errors.New("--agent-identifier is required")
	}
	if err := agent.ValidateIdentifier(c.AgentIdentifier); err != nil {
		return config{}, fmt.Errorf("--agent-identifier: %w", err)
	}
	if c.Context != "" && c.Kubeconfig == "" {
		return config{}, errors.New("--context needs --kubeconfig (without it the agent uses its in-cluster configuration)")
	}
	if c.Heartbeat < 100*time.Millisecond {
		return config{}, fmt.Errorf("--heartbeat must be at least 100ms, got %s", c.Heartbeat)
	}
	if c.NodeIP == "" {
		// Set by the agent's Deployment from the downward API (status.hostIP).
		c.NodeIP = os.Getenv("NODE_IP")
	}
	return c, nil
}
