package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/cmd/internal/controlplane"
	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
	"github.com/sortie-dev/sortie/cmd/internal/version"
	"github.com/sortie-dev/sortie/identity"
)

// defaultAudience is the audience Armory clients ask tokens for.
const defaultAudience = "https://api.cloud.armory.io"

// parseConfig parses args and the environment; --version prints to stdout and returns
// version.ErrShown.
func parseConfig(args []string, stdout, stderr io.Writer) (controlplane.Config, error) {
	fs := flag.NewFlagSet("sortie-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c controlplane.Config
	var audiences, logLevel string
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address (one port for REST, Connect, OIDC, health and metrics)")
	fs.StringVar(&c.PublicURL, "public-url", "", "external base URL: token issuer and links (default http(s)://<addr>)")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded store, the master key file and admin-credentials.json")
	fs.StringVar(&c.RedisURL, "redis-url", "", "redis://, rediss:// or unix:// URL, or redis+cluster:// (rediss+cluster://) for a Redis Cluster, more nodes as ?addr=host:port; when set, all shared state lives in Redis instead of the embedded store")
	fs.StringVar(&c.MasterKeyFile, "master-key-file", "", "AES-256 key for data at rest, base64 (default <data-dir>/master.key, created on first start)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate: serve TLS 1.2+ with ALPN h2 instead of cleartext h2c")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.DurationVar(&c.TokenTTL, "token-ttl", time.Hour, "access token lifetime")
	fs.DurationVar(&c.SessionTTL, "session-ttl", identity.DefaultSessionTTL, "lifetime of a console session's token, renewed while the console is used")
	fs.DurationVar(&c.SessionMaxAge, "session-max-age", identity.DefaultSessionMaxAge, "how long a console session lasts from sign-in, however active")
	fs.DurationVar(&c.KeyRotation, "key-rotation", 24*time.Hour, "signing key rotation period")
	fs.DurationVar(&c.AgentGracePeriod, "hub-grace-period", 5*time.Minute, "how long an account and its cached inventory stay after its agent's last stream closes")
	fs.DurationVar(&c.AgentHeartbeat, "hub-heartbeat", 20*time.Second, "heartbeat interval told to agents; a stream silent for three intervals is dropped")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 1000, "connections one IP address may hold open at once; more are closed at once (0: no cap)")
	fs.IntVar(&c.HubMaxStreamsPerIP, "hub-max-streams-per-ip", 1000, "agent streams one IP address may hold open at once; more are refused with resource_exhausted (0: no cap)")
	fs.DurationVar(&c.PipelineRetention, "pipeline-retention", 30*24*time.Hour, "how long finished pipelines are kept")
	fs.DurationVar(&c.PipelineLeaseTTL, "pipeline-lease-ttl", 10*time.Second, "lease of the replica driving a pipeline; another replica takes over this long after the holder died")
	fs.DurationVar(&c.PipelineResync, "pipeline-resync", 3*time.Second, "how often every running pipeline is reconciled and unowned ones are looked for")
	fs.StringVar(&audiences, "audience", defaultAudience, "comma-separated token audiences accepted besides the public URL")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	oidc := addOIDCFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: sortie-server [flags]\n\nRuns the Sortie control plane on one port.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, "SORTIE_", args, "version"); err != nil {
		return controlplane.Config{}, err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "sortie-server", version.String())
		return controlplane.Config{}, version.ErrShown
	}
	if fs.NArg() > 0 {
		return controlplane.Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return controlplane.Config{}, fmt.Errorf("--log-level: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return controlplane.Config{}, errors.New("--tls-cert and --tls-key go together")
	}
	if c.TokenTTL < 5*time.Second || c.KeyRotation < time.Minute {
		return controlplane.Config{}, errors.New("--token-ttl must be at least 5s and --key-rotation at least 1m")
	}
	if c.SessionTTL < 5*time.Second || c.SessionMaxAge < c.SessionTTL {
		return controlplane.Config{}, errors.New("--session-ttl must be at least 5s and --session-max-age at least --session-ttl")
	}
	if c.MaxConnsPerIP < 0 || c.HubMaxStreamsPerIP < 0 {
		return controlplane.Config{}, errors.New("--max-conns-per-ip and --hub-max-streams-per-ip must be 0 (no cap) or more")
	}
	if c.PipelineRetention < time.Minute || c.PipelineLeaseTTL < time.Second || c.PipelineResync < 100*time.Millisecond {
		return controlplane.Config{}, errors.New("--pipeline-retention must be at least 1m, --pipeline-lease-ttl at least 1s and --pipeline-resync at least 100ms")
	}
	if c.AgentHeartbeat < 100*time.Millisecond || c.AgentGracePeriod < 0 {
		return controlplane.Config{}, errors.New("--hub-heartbeat must be at least 100ms and --hub-grace-period not negative")
	}
	if c.RedisURL != "" {
		var err error
		if c.RedisURL, c.RedisCluster, err = parseRedisURL(c.RedisURL); err != nil {
			return controlplane.Config{}, err
		}
	}
	var err error
	if c.OIDC, err = oidc.check(); err != nil {
		return controlplane.Config{}, err
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return controlplane.Config{}, fmt.Errorf("--public-url must be an absolute http(s) URL, got %q", c.PublicURL)
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	for a := range strings.SplitSeq(audiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Audiences = append(c.Audiences, a)
		}
	}
	return c, nil
}

// parseRedisURL tells a Redis Cluster URL from a single server's. A cluster is named by the
// scheme redis+cluster:// or rediss+cluster:// (one seed node is enough: the client discovers
// the others), or by a redis:// or rediss:// URL listing more nodes as addr= parameters. It
// returns the URL in the form the Redis client's parsers take. Errors never repeat the URL,
// which may hold a password.
func parseRedisURL(raw string) (string, bool, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, errors.New("--redis-url is not a valid URL")
	}
	switch u.Scheme {
	case "redis+cluster", "rediss+cluster":
		u.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
	case "redis", "rediss":
		if !u.Query().Has("addr") {
			return raw, false, nil
		}
	case "unix":
		return raw, false, nil
	default:
		return "", false, errors.New("--redis-url must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://")
	}
	if u.Host == "" {
		return "", false, errors.New("--redis-url of a Redis Cluster needs at least one host:port")
	}
	return u.String(), true, nil
}
