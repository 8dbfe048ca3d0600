package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
)

// pipelinesConfig configures the pipelines subcommand.
type pipelinesConfig struct {
	Pipelines      int
	Sizes          []int
	Agents         int
	Topologies     []string
	ServerBin      string
	RedisBin       string
	JSON           string
	Concurrency    int
	Poll           time.Duration
	PhaseTimeout   time.Duration
	Resync         time.Duration
	LeaseTTL       time.Duration
	ServerLogLevel string
	Keep           bool
}

// Topologies of the pipelines benchmark.
const (
	topologySingle   = "single"   // one sortie-server on its embedded store
	topologyReplicas = "replicas" // two sortie-servers sharing one Redis
)

func parsePipelinesConfig(args []string, stderr io.Writer) (pipelinesConfig, error) {
	fs := flag.NewFlagSet("sortie-bench pipelines", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c pipelinesConfig
	var sizes, topologies string
	fs.IntVar(&c.Pipelines, "pipelines", 1000, "concurrent pipelines of the largest size")
	fs.StringVar(&sizes, "sizes", "", "comma-separated pipeline counts to measure (default: a tenth, half and all of -pipelines)")
	fs.IntVar(&c.Agents, "agents", 20, "simulated agents (accounts) the pipelines are spread over, in one tenant")
	fs.StringVar(&topologies, "topologies", topologySingle+","+topologyReplicas, "which server set-ups to run: single (one server, embedded store), replicas (two servers on one Redis)")
	fs.StringVar(&c.ServerBin, "server-bin", "", "sortie-server binary (default: go build ./cmd/sortie-server into a temporary directory)")
	fs.StringVar(&c.RedisBin, "redis-server", "redis-server", "redis-server binary for the replicas topology")
	fs.StringVar(&c.JSON, "json", "", "write the results as JSON to this file")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "start requests in flight")
	fs.DurationVar(&c.Poll, "poll", 500*time.Millisecond, "how often GET /pipelines is polled for the end of a phase (latencies come from WatchPipelines streams when they see a change first)")
	fs.DurationVar(&c.PhaseTimeout, "phase-timeout", 5*time.Minute, "how long one phase may take before the run fails")
	fs.DurationVar(&c.Resync, "pipeline-resync", 3*time.Second, "--pipeline-resync of the servers")
	fs.DurationVar(&c.LeaseTTL, "pipeline-lease-ttl", 10*time.Second, "--pipeline-lease-ttl of the servers")
	fs.StringVar(&c.ServerLogLevel, "server-log-level", "warn", "--log-level of sortie-server (its log is in the temporary directory; see -keep)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory (server logs, data directories) and print its path")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: sortie-bench pipelines [flags]\n\n"+
			"Runs many concurrent canary pipelines through real sortie-server processes against simulated\n"+
			"agents, on one server and on two replicas sharing Redis, and reports reconcile latency,\n"+
			"wall time and memory per active pipeline at a few sizes. Loopback only; cleans up after itself.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, "SORTIE_BENCH_", args); err != nil {
		return pipelinesConfig{}, err
	}
	if fs.NArg() > 0 {
		return pipelinesConfig{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.Pipelines < 1 || c.Agents < 1 || c.Concurrency < 1 {
		return pipelinesConfig{}, errors.New("-pipelines, -agents and -concurrency must be positive")
	}
	if c.Poll < 10*time.Millisecond || c.PhaseTimeout <= 0 {
		return pipelinesConfig{}, errors.New("-poll must be at least 10ms and -phase-timeout positive")
	}
	var err error
	if c.Sizes, err = parseSizes(sizes, c.Pipelines); err != nil {
		return pipelinesConfig{}, err
	}
	for t := range strings.SplitSeq(topologies, ",") {
		switch t = strings.TrimSpace(t); t {
		case topologySingle, topologyReplicas:
			if !slices.Contains(c.Topologies, t) {
				c.Topologies = append(c.Topologies, t)
			}
		default:
			return pipelinesConfig{}, fmt.Errorf("-topologies: unknown topology %q: use single, replicas or both", t)
		}
	}
	return c, nil
}

// parseSizes reads -sizes, or makes a tenth, half and all of max.
func parseSizes(s string, largest int) ([]int, error) {
	var out []int
	if s == "" {
		for _, n := range []int{largest / 10, largest / 2, largest} {
			if n >= 1 && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-sizes: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// runPipelines runs every size on every topology, each on fresh servers, prints the table
// and writes JSON if asked.
func runPipelines(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parsePipelinesConfig(args, stderr)
	if err != nil {
		return err
	}
	b := &bench{log: stderr, start: time.Now()}
	cleanup, err := b.prepare(ctx, cfg.Keep, cfg.ServerBin)
	if err != nil {
		return err
	}
	defer cleanup()
	res := pipelinesResult{Benchmark: "pipelines", Agents: cfg.Agents, PollSeconds: cfg.Poll.Seconds(),
		ResyncSeconds: cfg.Resync.Seconds(), Canary: "setWeight 25, pause 1s, setWeight 100"}
	wall := time.Now()
	for _, topo := range cfg.Topologies {
		for _, n := range cfg.Sizes {
			r, err := runPipelineSize(ctx, b, cfg, topo, n)
			if err != nil {
				return fmt.Errorf("%s, %d pipelines: %w", topo, n, err)
			}
			res.Runs = append(res.Runs, r)
		}
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
