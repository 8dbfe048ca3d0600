package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
)

// agentsConfig configures the agents subcommand.
type agentsConfig struct {
	Agents          int
	PerChild        int
	ServerBin       string
	JSON            string
	Heartbeat       time.Duration
	TokenTTL        time.Duration
	Settle          time.Duration
	ConnectTimeout  time.Duration
	StormTimeout    time.Duration
	DialConcurrency int
	Bucket          time.Duration
	Keep            bool
	ServerLogLevel  string
	Sweep           []int  // agent counts to measure memory at, each on fresh processes; nil: Agents alone
	NoStorm         bool   // skip the reconnect storm
	Plot            string // PNG of memory per agent against agents
	PlotFrom        string // JSON of an earlier run to plot instead of running
}

func parseAgentsConfig(args []string, stderr io.Writer) (agentsConfig, error) {
	fs := flag.NewFlagSet("sortie-bench agents", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c agentsConfig
	fs.IntVar(&c.Agents, "agents", 10000, "simulated agents")
	fs.IntVar(&c.PerChild, "per-child", 4000, "most agents per simulator process (each holds one TCP connection per agent)")
	fs.StringVar(&c.ServerBin, "server-bin", "", "sortie-server binary (default: go build ./cmd/sortie-server into a temporary directory)")
	fs.StringVar(&c.JSON, "json", "", "write the results as JSON to this file")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 20*time.Second, "heartbeat interval of the hub and of the bare baseline")
	fs.DurationVar(&c.TokenTTL, "token-ttl", time.Hour, "access token lifetime of the server (simulators renew at 4/5 of it)")
	fs.DurationVar(&c.Settle, "settle", 5*time.Second, "how long agents stay idle before memory is measured")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 5*time.Minute, "how long all agents may take to connect the first time")
	fs.DurationVar(&c.StormTimeout, "storm-timeout", 3*time.Minute, "how long all agents may take to come back after the restart")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "first connections in flight per simulator process")
	fs.DurationVar(&c.Bucket, "bucket", time.Second, "bucket width of the reconnect-time histogram")
	fs.StringVar(&c.ServerLogLevel, "server-log-level", "warn", "--log-level of sortie-server (its log is in the temporary directory; see -keep)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory (server and simulator logs, data directory) and print its path")
	sweep := fs.String("sweep", "", "comma-separated agent counts (e.g. 1000,5000,10000,19000): measure idle memory at each on fresh processes, "+
		"and the reconnect storm at the last; overrides -agents")
	fs.BoolVar(&c.NoStorm, "no-storm", false, "measure idle memory only, without the reconnect storm")
	fs.StringVar(&c.Plot, "plot", "", "write a PNG plot of memory per agent against the agent count to this file")
	fs.StringVar(&c.PlotFrom, "plot-from", "", "only draw -plot from the -json file of an earlier run")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: sortie-bench agents [flags]\n\n"+
			"Measures the memory per idle agent held by sortie-server against bare connect-go streams,\n"+
			"then the reconnect storm after a server restart. Loopback only; cleans up after itself.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, "SORTIE_BENCH_", args); err != nil {
		return agentsConfig{}, err
	}
	if *sweep != "" {
		for _, f := range strings.Split(*sweep, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return agentsConfig{}, fmt.Errorf("-sweep: %q is not a positive agent count", f)
			}
			if len(c.Sweep) > 0 && n <= c.Sweep[len(c.Sweep)-1] {
				return agentsConfig{}, fmt.Errorf("-sweep: the counts must grow, %d follows %d", n, c.Sweep[len(c.Sweep)-1])
			}
			c.Sweep = append(c.Sweep, n)
		}
	}
	switch {
	case fs.NArg() > 0:
		return agentsConfig{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case c.Agents < 1 || c.PerChild < 1 || c.DialConcurrency < 1:
		return agentsConfig{}, errors.New("-agents, -per-child and -dial-concurrency must be positive")
	case c.Bucket <= 0 || c.Heartbeat < 100*time.Millisecond || c.TokenTTL < 5*time.Second:
		return agentsConfig{}, errors.New("-bucket must be positive, -heartbeat at least 100ms and -token-ttl at least 5s")
	}
	return c, nil
}

// bench is one run of the agents benchmarks.
type bench struct {
	cfg       agentsConfig
	log       io.Writer // progress
	dir       string    // temporary directory, removed at the end
	self      string    // this executable, re-run as simulate and bare-server
	serverBin string
	start     time.Time
	agents    int    // of the size being measured
	sizeDir   string // its logs and data directory, in dir
}

// prepare makes the run's temporary directory, finds this executable (re-run as simulate
// and bare-server) and builds sortie-server into the directory unless serverBin names one.
// cleanup removes the directory, or with keep says where it is.
func (b *bench) prepare(ctx context.Context, keep bool, serverBin string) (cleanup func(), err error) {
	if b.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "sortie-bench-"); err != nil {
		return nil, err
	}
	cleanup = func() { os.RemoveAll(b.dir) }
	if keep {
		cleanup = func() { b.logf("kept %s", b.dir) }
	}
	if b.serverBin = serverBin; b.serverBin == "" {
		b.serverBin = filepath.Join(b.dir, "sortie-server")
		b.logf("building sortie-server")
		build := exec.CommandContext(ctx, "go", "build", "-o", b.serverBin, "github.com/sortie-dev/sortie/cmd/sortie-server")
		build.Stdout, build.Stderr = b.log, b.log
		if err := build.Run(); err != nil {
			cleanup()
			return nil, fmt.Errorf("build sortie-server (run from the module, or pass -server-bin): %w", err)
		}
	}
	return cleanup, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%6.1fs] "+format+"\n", append([]any{time.Since(b.start).Seconds()}, args...)...)
}

// runAgents runs the idle-memory benchmark (hub and bare baseline) and the reconnect storm,
// prints the table to stdout and writes JSON if asked.
func runAgents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseAgentsConfig(args, stderr)
	if err != nil {
		return err
	}
	if cfg.PlotFrom != "" {
		return replot(cfg.PlotFrom, cfg.Plot)
	}
	b := &bench{cfg: cfg, log: stderr, start: time.Now()}
	cleanup, err := b.prepare(ctx, cfg.Keep, cfg.ServerBin)
	if err != nil {
		return err
	}
	defer cleanup()

	sizes := cfg.Sweep
	if len(sizes) == 0 {
		sizes = []int{cfg.Agents}
	}
	out := sweepResult{Benchmark: "agents", HeartbeatSeconds: cfg.Heartbeat.Seconds(),
		TargetMemoryRatio: targetMemoryRatio, TargetStormSeconds: targetStormSeconds}
	for i, n := range sizes {
		b.agents = n
		b.sizeDir = filepath.Join(b.dir, fmt.Sprintf("agents-%d", n))
		if err := os.Mkdir(b.sizeDir, 0o755); err != nil {
			return err
		}
		storm := i == len(sizes)-1 && !cfg.NoStorm
		res := agentsResult{Agents: n, Processes: (n + cfg.PerChild - 1) / cfg.PerChild}
		if res.Bare, err = b.runBare(ctx); err != nil {
			return fmt.Errorf("bare baseline, %d agents: %w", n, err)
		}
		var st stormResult
		if res.Hub, st, err = b.runHub(ctx, storm); err != nil {
			return fmt.Errorf("hub, %d agents: %w", n, err)
		}
		if storm {
			res.Storm = &st
		}
		res.finish(cfg.Bucket)
		out.Sizes = append(out.Sizes, res)
		b.logf("%d agents: RSS per agent %s (hub) against %s (bare), ratio %.2f", n,
			bytesIEC(res.Hub.RSSPerAgent), bytesIEC(res.Bare.RSSPerAgent), res.RSSRatio)
	}
	out.finish()
	out.print(stdout)
	if cfg.JSON != "" {
		data, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(cfg.JSON, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if cfg.Plot != "" {
		if err := writePlot(out, cfg.Plot); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		b.logf("wrote %s", cfg.Plot)
	}
	return nil
}

// replot draws the plot of the results in the JSON file from.
func replot(from, to string) error {
	if to == "" {
		return errors.New("-plot-from needs -plot")
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var r sweepResult
	if err := json.Unmarshal(data, &r); err != nil || len(r.Sizes) == 0 {
		return fmt.Errorf("%s is not the -json of a sortie-bench agents run (%v)", from, err)
	}
	return writePlot(r, to)
}

// runBare measures bare-server holding the agents' streams.
func (b *bench) runBare(ctx context.Context) (memoryPhase, error) {
	addr, err := freePort()
	if err != nil {
		return memoryPhase{}, err
	}
	srv, err := startChild(childSpec{
		name: "bare-server", bin: b.self, logPath: filepath.Join(b.sizeDir, "bare-server.log"),
		args: []string{"bare-server", "-addr", addr, "-heartbeat", b.cfg.Heartbeat.String()},
	})
	if err != nil {
		return memoryPhase{}, err
	}
	defer srv.stop(15 * time.Second)
	baseURL := "http://" + addr
	if err := waitOK(ctx, srv, baseURL, "/healthz", 30*time.Second); err != nil {
		return memoryPhase{}, err
	}
	count := func(ctx context.Context) (int, error) {
		m, err := scrapeMetrics(ctx, baseURL)
		return int(m[bareStreamsMetric]), err
	}
	f, phase, err := b.holdAgents(ctx, "bare", srv, baseURL, count, fleetSpec{mode: modeBare, url: baseURL})
	if f != nil {
		f.stop()
	}
	return phase, err
}

// runHub measures sortie-server holding the agents, then, with storm, restarts it under
// them.
func (b *bench) runHub(ctx context.Context, storm bool) (memoryPhase, stormResult, error) {
	addr, err := freePort()
	if err != nil {
		return memoryPhase{}, stormResult{}, err
	}
	baseURL := "http://" + addr
	dataDir := filepath.Join(b.sizeDir, "data")
	starts := 0
	// startServer starts sortie-server and waits until it is healthy. listening receives the
	// time it said it listens: under a reconnect storm /healthz answers late, as the agents
	// are served first.
	startServer := func(listening chan<- time.Time) (*child, error) {
		starts++
		srv, err := startChild(childSpec{
			name: "sortie-server", bin: b.serverBin, dropEnvPrefix: "SORTIE_",
			logPath: filepath.Join(b.sizeDir, fmt.Sprintf("sortie-server-%d.log", starts)),
			args: []string{"--addr", addr, "--data-dir", dataDir, "--log-level", b.cfg.ServerLogLevel,
				"--hub-heartbeat", b.cfg.Heartbeat.String(), "--token-ttl", b.cfg.TokenTTL.String(),
				// Every simulated agent dials from 127.0.0.1: lift the per-address caps.
				"--max-conns-per-ip", "0", "--hub-max-streams-per-ip", "0"},
			logStdout: true,
			onLine: func(line []byte) {
				if bytes.HasPrefix(line, []byte("Sortie is listening on")) {
					select {
					case listening <- time.Now():
					default:
					}
				}
			},
		})
		if err != nil {
			return nil, err
		}
		if err := waitOK(ctx, srv, baseURL, "/healthz", 2*time.Minute); err != nil {
			srv.stop(15 * time.Second)
			return nil, err
		}
		return srv, nil
	}
	srv, err := startServer(nil)
	if err != nil {
		return memoryPhase{}, stormResult{}, err
	}
	defer func() { srv.stop(15 * time.Second) }()

	admin := &adminClient{baseURL: baseURL}
	if err := admin.login(ctx, filepath.Join(dataDir, "admin-credentials.json")); err != nil {
		return memoryPhase{}, stormResult{}, err
	}
	clientID, secret, err := admin.createAgentCredential(ctx)
	if err != nil {
		return memoryPhase{}, stormResult{}, err
	}
	count := func(ctx context.Context) (int, error) { return admin.connectedStreams(ctx) }
	f, phase, err := b.holdAgents(ctx, "hub", srv, baseURL, count,
		fleetSpec{mode: modeHub, url: baseURL, clientID: clientID, secret: secret})
	if f != nil {
		defer f.stop()
	}
	if err != nil || !storm {
		return phase, stormResult{}, err
	}

	b.logf("hub: restarting sortie-server under %d agents", b.agents)
	return b.storm(ctx, phase, f, &srv, startServer, count)
}

// storm restarts *srv under the agents of f and measures how they come back.
func (b *bench) storm(ctx context.Context, phase memoryPhase, f *fleet, srv **child,
	startServer func(chan<- time.Time) (*child, error), count func(context.Context) (int, error)) (memoryPhase, stormResult, error) {
	var storm stormResult
	t0 := time.Now()
	storm.ShutdownSeconds = (*srv).stop(30 * time.Second).Seconds()
	listening := make(chan time.Time, 1)
	restarted, err := startServer(listening)
	if err != nil {
		return phase, storm, fmt.Errorf("restart: %w", err)
	}
	*srv = restarted
	storm.HealthySeconds = time.Since(t0).Seconds()
	select {
	case at := <-listening:
		storm.ListeningSeconds = at.Sub(t0).Seconds()
	default:
		return phase, storm, errors.New("restart: sortie-server did not say it is listening")
	}
	b.logf("hub: old server exited after %.2fs, new one listening after %.2fs, healthy after %.2fs",
		storm.ShutdownSeconds, storm.ListeningSeconds, storm.HealthySeconds)
	all, err := b.waitConnected(ctx, "hub after restart", f, *srv, count, b.cfg.StormTimeout)
	if err != nil {
		return phase, storm, err
	}
	storm.AllBackSeconds = all.Sub(t0).Seconds()
	if storm.ServerCPUSeconds, err = processCPU((*srv).pid()); err != nil {
		return phase, storm, err
	}
	storm.AllBackAfterListeningSeconds = storm.AllBackSeconds - storm.ListeningSeconds
	// The simulators' reports trail the server's count by up to their status period.
	deadline := time.Now().Add(10 * time.Second)
	for len(f.reconnectsSince(t0)) < b.agents && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, e := range f.reconnectsSince(t0) {
		storm.times = append(storm.times, e.Seconds)
		storm.MaxAttempts = max(storm.MaxAttempts, e.Attempts)
	}
	return phase, storm, nil
}

// holdAgents measures srv's memory, connects the agents of spec, waits for them to settle
// and measures again. The caller stops the returned fleet.
func (b *bench) holdAgents(ctx context.Context, name string, srv *child, baseURL string, count func(context.Context) (int, error), spec fleetSpec) (*fleet, memoryPhase, error) {
	var phase memoryPhase
	var err error
	if phase.Before, err = measureMemory(ctx, srv.pid(), baseURL); err != nil {
		return nil, phase, err
	}
	spec.agents, spec.perChild, spec.dialConcurrency = b.agents, b.cfg.PerChild, b.cfg.DialConcurrency
	b.logf("%s: connecting %d agents", name, spec.agents)
	cpu0, err := processCPU(srv.pid())
	if err != nil {
		return nil, phase, err
	}
	start := time.Now()
	f, err := startFleet(b.self, b.sizeDir, spec)
	if err != nil {
		return nil, phase, err
	}
	all, err := b.waitConnected(ctx, name, f, srv, count, b.cfg.ConnectTimeout)
	if err != nil {
		return f, phase, err
	}
	phase.ConnectSeconds = all.Sub(start).Seconds()
	cpu1, err := processCPU(srv.pid())
	if err != nil {
		return f, phase, err
	}
	phase.ConnectCPUSeconds = cpu1 - cpu0
	b.logf("%s: %d agents connected in %.1fs; idle for %s", name, spec.agents, phase.ConnectSeconds, b.cfg.Settle)
	select {
	case <-ctx.Done():
		return f, phase, errStopped
	case <-time.After(b.cfg.Settle):
	}
	if phase.After, err = measureMemory(ctx, srv.pid(), baseURL); err != nil {
		return f, phase, err
	}
	if n, err := count(ctx); err != nil || n != spec.agents {
		return f, phase, fmt.Errorf("%s: %d of %d streams left after the measurement (%v)", name, n, spec.agents, err)
	}
	phase.perAgent(spec.agents)
	return f, phase, nil
}

// waitConnected waits until both the server and the simulators count every agent, and
// returns when the server first did.
func (b *bench) waitConnected(ctx context.Context, name string, f *fleet, srv *child, count func(context.Context) (int, error), timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	var allAt time.Time
	for {
		n, err := count(ctx)
		now := time.Now()
		if err == nil && n == b.agents && allAt.IsZero() {
			allAt = now
		}
		if !allAt.IsZero() && f.connectedTotal() == b.agents {
			return allAt, nil
		}
		switch {
		case srv.exited():
			return allAt, srv.failure()
		case f.failed() != nil:
			return allAt, f.failed()
		case now.After(deadline):
			return allAt, fmt.Errorf("%s: after %s the server counts %d streams (%v) and the simulators %d, of %d (%s)",
				name, timeout, n, err, f.connectedTotal(), b.agents, f.streamErrors())
		case now.Sub(lastLog) >= 5*time.Second:
			b.logf("%s: server counts %d, simulators %d of %d (%s)", name, n, f.connectedTotal(), b.agents, f.streamErrors())
			lastLog = now
		}
		select {
		case <-ctx.Done():
			return allAt, errStopped
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// adminClient calls sortie-server's REST API with the bootstrap admin credential.
type adminClient struct {
	baseURL string
	token   string
	client  http.Client
}

func (a *adminClient) login(ctx context.Context, credsPath string) error {
	data, err := os.ReadFile(credsPath)
	if err != nil {
		return fmt.Errorf("read the bootstrap admin credential: %w", err)
	}
	var creds struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	if err := json.Unmarshal(data, &creds); err != nil {
		return fmt.Errorf("%s: %w", credsPath, err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {creds.ClientID}, "client_secret": {creds.ClientSecret}}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := a.do(ctx, http.MethodPost, "/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), &out); err != nil {
		return err
	}
	a.token = out.AccessToken
	return nil
}

// createAgentCredential creates the credential every simulated agent uses.
func (a *adminClient) createAgentCredential(ctx context.Context) (clientID, secret string, err error) {
	body := `{"name": "sortie-bench-agents", "roles": ["Remote Network Agent"]}`
	var out struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	if err := a.do(ctx, http.MethodPost, "/credentials", "application/json", strings.NewReader(body), &out); err != nil {
		return "", "", err
	}
	return out.ClientID, out.ClientSecret, nil
}

// connectedStreams counts the hub's streams: the hub's stream gauge when the server exports
// one, otherwise the length of GET /identity/connected-agents.
func (a *adminClient) connectedStreams(ctx context.Context) (int, error) {
	m, err := scrapeMetrics(ctx, a.baseURL)
	if err != nil {
		return 0, err
	}
	if v, ok := m[hubStreamsMetric]; ok {
		return int(v), nil
	}
	var agents []json.RawMessage
	if err := a.do(ctx, http.MethodGet, "/identity/connected-agents", "", nil, &agents); err != nil {
		return 0, err
	}
	return len(agents), nil
}

// hubStreamsMetric is the hub's gauge of open agent streams.
const hubStreamsMetric = "sortie_hub_streams"

func (a *adminClient) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.baseURL+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

// sortedCopy returns xs sorted.
func sortedCopy(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}
