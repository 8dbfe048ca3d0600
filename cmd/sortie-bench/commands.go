package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
)

// commandsConfig configures the commands subcommand.
type commandsConfig struct {
	Sizes          []int
	Requests       int
	PerChild       int
	ServerBin      string
	RedisBin       string
	JSON           string
	ConnectTimeout time.Duration
	Keep           bool
	ServerLogLevel string
}

func parseCommandsConfig(args []string, stderr io.Writer) (commandsConfig, error) {
	fs := flag.NewFlagSet("sortie-bench commands", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commandsConfig
	sizes := fs.String("sizes", "10,1000,10000", "comma-separated agent counts of the tenant, each run on fresh servers")
	fs.IntVar(&c.Requests, "requests", 2000, "commands measured per size and path (same replica, across replicas)")
	fs.IntVar(&c.PerChild, "per-child", 4000, "most agents per simulator process (each holds one TCP connection per agent)")
	fs.StringVar(&c.ServerBin, "server-bin", "", "sortie-server binary (default: go build ./cmd/sortie-server into a temporary directory)")
	fs.StringVar(&c.RedisBin, "redis-server", "redis-server", "redis-server binary the two replicas share")
	fs.StringVar(&c.JSON, "json", "", "write the results as JSON to this file")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 5*time.Minute, "how long the agents of one size may take to connect")
	fs.StringVar(&c.ServerLogLevel, "server-log-level", "warn", "--log-level of sortie-server (its log is in the temporary directory; see -keep)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory (server, Redis and simulator logs) and print its path")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: sortie-bench commands [flags]\n\n"+
			"Measures the round trip of a command (GET /accounts/{account}/namespaces, answered live by a\n"+
			"simulated agent) in a tenant of N agents, all held by replica A of two sortie-server replicas\n"+
			"sharing a private Redis: sent to A (same replica) and to B (forwarded through Redis), alternately.\n"+
			"Loopback only; cleans up after itself.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, "SORTIE_BENCH_", args); err != nil {
		return commandsConfig{}, err
	}
	var err error
	if c.Sizes, err = parseSizes(*sizes, 0); err != nil {
		return commandsConfig{}, err
	}
	switch {
	case fs.NArg() > 0:
		return commandsConfig{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case len(c.Sizes) == 0:
		return commandsConfig{}, errors.New("-sizes names no size")
	case c.Requests < 1 || c.PerChild < 1:
		return commandsConfig{}, errors.New("-requests and -per-child must be positive")
	}
	return c, nil
}

// commandsResult is the outcome of `sortie-bench commands`, as printed and as JSON.
type commandsResult struct {
	Benchmark      string       `json:"benchmark"`
	Command        string       `json:"command"`
	Requests       int          `json:"requests_per_path"`
	Runs           []commandRun `json:"runs"`
	TargetP50Ratio float64      `json:"target_cross_over_same_p50_ratio"`
	WithinTarget   bool         `json:"within_target"`
	WallSeconds    float64      `json:"wall_seconds"`
}

// commandRun is one tenant size.
type commandRun struct {
	Agents         int       `json:"agents"`
	Processes      int       `json:"simulator_processes"`
	ConnectSeconds float64   `json:"connect_seconds"`
	Same           latencies `json:"same_replica"`
	Cross          latencies `json:"across_replicas"`
	P50Ratio       float64   `json:"cross_over_same_p50_ratio"`
}

// runCommands runs every size on fresh servers, prints the table and writes JSON if asked.
func runCommands(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseCommandsConfig(args, stderr)
	if err != nil {
		return err
	}
	b := &bench{log: stderr, start: time.Now()}
	cleanup, err := b.prepare(ctx, cfg.Keep, cfg.ServerBin)
	if err != nil {
		return err
	}
	defer cleanup()
	res := commandsResult{Benchmark: "commands", Command: "GET /accounts/{account}/namespaces", Requests: cfg.Requests,
		TargetP50Ratio: 2, WithinTarget: true}
	wall := time.Now()
	for i, n := range cfg.Sizes {
		r, err := runCommandSize(ctx, b, cfg, n, filepath.Join(b.dir, fmt.Sprintf("size-%d", i)))
		if err != nil {
			return fmt.Errorf("%d agents: %w", n, err)
		}
		res.Runs = append(res.Runs, r)
		res.WithinTarget = res.WithinTarget && r.P50Ratio <= res.TargetP50Ratio
	}
	res.WallSeconds = time.Since(wall).Seconds()
	res.print(stdout)
	if cfg.JSON != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.JSON, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runCommandSize starts Redis and two replicas, connects n simulated agents of one tenant to
// replica A and measures commands to random agents sent to A and to B, alternately, so that
// both paths see the same machine.
func runCommandSize(ctx context.Context, b *bench, cfg commandsConfig, n int, dir string) (commandRun, error) {
	run := commandRun{Agents: n, Processes: (n + cfg.PerChild - 1) / cfg.PerChild}
	set, err := startReplicaPair(ctx, b, cfg, dir)
	if err != nil {
		return run, err
	}
	defer set.stop()
	a, bb := &adminClient{baseURL: set.urls[0]}, &adminClient{baseURL: set.urls[1]}
	if err := a.login(ctx, set.adminCreds); err != nil {
		return run, err
	}
	if err := bb.login(ctx, set.adminCreds); err != nil {
		return run, err
	}
	clientID, secret, err := a.createAgentCredential(ctx)
	if err != nil {
		return run, err
	}
	b.logf("%d agents: connecting to replica A", n)
	start := time.Now()
	f, err := startFleet(b.self, dir, fleetSpec{mode: modeHub, url: set.urls[0], clientID: clientID, secret: secret,
		agents: n, perChild: cfg.PerChild, dialConcurrency: 64})
	if err != nil {
		return run, err
	}
	defer f.stop()
	deadline := time.Now().Add(cfg.ConnectTimeout)
	for {
		got, err := a.connectedStreams(ctx)
		if err == nil && got == n && f.connectedTotal() == n {
			break
		}
		switch {
		case set.alive() != nil:
			return run, set.alive()
		case f.failed() != nil:
			return run, f.failed()
		case time.Now().After(deadline):
			return run, fmt.Errorf("after %s replica A counts %d streams (%v), the simulators %d, of %d (%s)",
				cfg.ConnectTimeout, got, err, f.connectedTotal(), n, f.streamErrors())
		}
		select {
		case <-ctx.Done():
			return run, errStopped
		case <-time.After(50 * time.Millisecond):
		}
	}
	run.ConnectSeconds = time.Since(start).Seconds()
	b.logf("%d agents: connected in %.1fs; %d commands per path", n, run.ConnectSeconds, cfg.Requests)

	// Warm both paths (connections, token caches, the script cache of Redis) before measuring.
	for i := range min(50, cfg.Requests) {
		for _, c := range []*adminClient{a, bb} {
			if _, err := c.command(ctx, agentName(i%n)); err != nil {
				return run, err
			}
		}
	}
	same := make([]float64, 0, cfg.Requests)
	cross := make([]float64, 0, cfg.Requests)
	for range cfg.Requests {
		d, err := a.command(ctx, agentName(rand.N(n)))
		if err != nil {
			return run, fmt.Errorf("same replica: %w", err)
		}
		same = append(same, d.Seconds())
		if d, err = bb.command(ctx, agentName(rand.N(n))); err != nil {
			return run, fmt.Errorf("across replicas: %w", err)
		}
		cross = append(cross, d.Seconds())
	}
	run.Same, run.Cross = summarize(same), summarize(cross)
	run.P50Ratio = ratio(run.Cross.P50, run.Same.P50)
	b.logf("%d agents: same replica p50 %s, across replicas p50 %s", n, us(run.Same.P50), us(run.Cross.P50))
	return run, nil
}

// startReplicaPair starts a private Redis and two sortie-server replicas sharing it, with
// the per-address caps lifted (every simulated agent dials from 127.0.0.1).
func startReplicaPair(ctx context.Context, b *bench, cfg commandsConfig, dir string) (*serverSet, error) {
	set := &serverSet{}
	redis, url, err := startRedis(ctx, cfg.RedisBin, filepath.Join(dir, "redis"))
	if err != nil {
		return nil, err
	}
	set.redis = redis
	for i := range 2 {
		args := []string{"--log-level", cfg.ServerLogLevel, "--redis-url", url, "--public-url", "http://sortie-bench.invalid",
			"--max-conns-per-ip", "0", "--hub-max-streams-per-ip", "0"}
		if err := set.startServer(ctx, b, dir, i, args); err != nil {
			set.stop()
			return nil, err
		}
	}
	return set, nil
}

// command sends one command to agent through the server and returns its round trip: the
// agent's live namespace listing, checked for the simulated agent's answer.
func (a *adminClient) command(ctx context.Context, agent string) (time.Duration, error) {
	var names []string
	start := time.Now()
	err := a.do(ctx, http.MethodGet, "/accounts/"+agent+"/namespaces", "", nil, &names)
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	if len(names) != 1 || names[0] != "default" {
		return d, fmt.Errorf("agent %s answered %v, want [default]", agent, names)
	}
	return d, nil
}

func us(s float64) string { return fmt.Sprintf("%.0f us", 1e6*s) }

func (r *commandsResult) print(w io.Writer) {
	fmt.Fprintf(w, "\ncommand round trip, %s, agents of one tenant on replica A of two sharing Redis (%d per path)\n\n", r.Command, r.Requests)
	fmt.Fprintln(w, "| agents | same replica p50 / p99 | across replicas p50 / p99 | across / same p50 |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, run := range r.Runs {
		fmt.Fprintf(w, "| %d | %s / %s | %s / %s | %.2f |\n", run.Agents, us(run.Same.P50), us(run.Same.P99),
			us(run.Cross.P50), us(run.Cross.P99), run.P50Ratio)
	}
	verdict := "met"
	if !r.WithinTarget {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "\ntarget: across-replicas p50 <= %.0fx same-replica at every size: %s (wall %.0fs)\n", r.TargetP50Ratio, verdict, r.WallSeconds)
}
