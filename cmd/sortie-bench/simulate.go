package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sortie-dev/sortie/agent"
	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
)

// Simulation modes: against the real hub (tokens, Hello/Welcome) or against bare-server.
const (
	modeHub  = "hub"
	modeBare = "bare"
)

// simulateConfig configures the hidden simulate subcommand: one child process holding
// Count simulated agents, numbered from First.
type simulateConfig struct {
	Mode            string
	URL             string
	ClientID        string
	ClientSecret    string
	First           int
	Count           int
	DialConcurrency int
	WelcomeTimeout  time.Duration
}

func parseSimulateConfig(args []string, stderr io.Writer) (simulateConfig, error) {
	fs := flag.NewFlagSet("sortie-bench simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c simulateConfig
	fs.StringVar(&c.Mode, "mode", modeHub, "hub (real sortie-server) or bare (bare-server)")
	fs.StringVar(&c.URL, "url", "", "base URL of the server, http:// (h2c)")
	fs.StringVar(&c.ClientID, "client-id", "", "client id of a Remote Network Agent credential (hub mode)")
	fs.StringVar(&c.ClientSecret, "client-secret", "", "its secret (hub mode; the parent passes it in the environment)")
	fs.IntVar(&c.First, "first", 0, "number of the first simulated agent")
	fs.IntVar(&c.Count, "count", 1, "how many agents this process simulates")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "first connections in flight at once (reconnects are not limited)")
	fs.DurationVar(&c.WelcomeTimeout, "welcome-timeout", 30*time.Second, "how long to wait for the Welcome of a stream")
	if err := flagenv.Parse(fs, "SORTIE_BENCH_", args); err != nil {
		return simulateConfig{}, err
	}
	switch {
	case c.Mode != modeHub && c.Mode != modeBare:
		return simulateConfig{}, fmt.Errorf("-mode must be %s or %s", modeHub, modeBare)
	case !strings.HasPrefix(c.URL, "http://"):
		return simulateConfig{}, errors.New("-url must be an http:// URL")
	case c.Mode == modeHub && (c.ClientID == "" || c.ClientSecret == ""):
		return simulateConfig{}, errors.New("hub mode needs -client-id and -client-secret")
	case c.Count < 1 || c.First < 0 || c.DialConcurrency < 1:
		return simulateConfig{}, errors.New("-count and -dial-concurrency must be positive, -first not negative")
	}
	return c, nil
}

// event is one JSON line a simulate child writes to its parent.
type event struct {
	// Event is "status" (periodic counts) or "reconnect" (an agent is back after losing its
	// stream).
	Event string `json:"event"`
	// Connected is how many of the child's agents hold a welcomed stream (status).
	Connected int `json:"connected"`
	// Agent, LostUnixMilli, Seconds and Attempts describe one reconnect: when the stream was
	// lost, how long until the next Welcome, and how many connection attempts it took.
	Agent         string  `json:"agent,omitempty"`
	LostUnixMilli int64   `json:"lost_unix_ms,omitempty"`
	Seconds       float64 `json:"seconds,omitempty"`
	Attempts      int     `json:"attempts,omitempty"`
	// Failures counts the streams that ended in an error rather than a Goodbye, and LastError
	// is the last such error (status).
	Failures  int64  `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// eventWriter writes events as JSON lines; it is safe for concurrent use.
type eventWriter struct {
	mu  sync.Mutex // guards enc
	enc *json.Encoder
}

func (w *eventWriter) write(e event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(e) // the parent gone means we are about to be stopped anyway
}

// runSimulate holds cfg.Count simulated agents until stdin closes (the parent's way to stop
// it) or ctx ends.
func runSimulate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseSimulateConfig(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()

	sim := &simulator{cfg: cfg, out: &eventWriter{enc: json.NewEncoder(stdout)}, firstDial: make(chan struct{}, cfg.DialConcurrency)}
	if cfg.Mode == modeHub {
		sim.tokens = &tokenSource{client: &http.Client{Timeout: 30 * time.Second}, url: cfg.URL + "/oauth/token", clientID: cfg.ClientID, secret: cfg.ClientSecret}
		if _, err := sim.tokens.token(ctx); err != nil {
			return err
		}
	}

	var wg sync.WaitGroup
	for i := range cfg.Count {
		wg.Go(func() { sim.runAgent(ctx, cfg.First+i) })
	}
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			lastErr, _ := sim.lastErr.Load().(string)
			sim.out.write(event{Event: "status", Connected: int(sim.connected.Load()), Failures: sim.failures.Load(), LastError: lastErr})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	wg.Wait()
	return nil
}

// simulator holds the shared parts of the agents of one child process.
type simulator struct {
	cfg       simulateConfig
	tokens    *tokenSource // nil in bare mode
	out       *eventWriter
	firstDial chan struct{} // bounds first connections in flight
	connected atomic.Int64
	failures  atomic.Int64 // streams that ended in an error other than a Goodbye
	lastErr   atomic.Value // string: the last such error
}

// agentName is the agent identifier of simulated agent n.
func agentName(n int) string { return fmt.Sprintf("sim-%06d", n) }

// runAgent is one simulated agent: it connects, serves its stream, and reconnects with the
// agent's policy until ctx ends: the backoff after every stream end (reset by a stable
// minute), and at once, with a new token, when the hub says the token expired.
func (s *simulator) runAgent(ctx context.Context, n int) {
	a := &simAgent{
		sim: s, id: agentName(n), instance: uuid.NewString(),
		client: hubv1connect.NewAgentHubServiceClient(newH2CClient(), s.cfg.URL, connect.WithGRPC()),
	}
	retry := agent.NewBackoff(rand.Float64)
	var lostAt time.Time // when the last welcomed stream ended; zero while connected
	var lastImmediate time.Time
	attempts := 0
	first := true
	for ctx.Err() == nil {
		if first {
			select {
			case s.firstDial <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		attempts++
		end := a.session(ctx, func() {
			if first {
				<-s.firstDial
				first = false
			}
			s.connected.Add(1)
			if !lostAt.IsZero() {
				s.out.write(event{Event: "reconnect", Agent: a.id, LostUnixMilli: lostAt.UnixMilli(), Seconds: time.Since(lostAt).Seconds(), Attempts: attempts})
				lostAt = time.Time{}
			}
			attempts = 0
		})
		if first {
			<-s.firstDial // this first attempt failed; let another agent dial meanwhile
		}
		var connectedFor time.Duration
		if !end.welcomedAt.IsZero() {
			s.connected.Add(-1)
			lostAt = time.Now()
			connectedFor = lostAt.Sub(end.welcomedAt)
		}
		if ctx.Err() != nil {
			return
		}
		if end.err != nil && end.goodbye == hubv1.Goodbye_REASON_UNSPECIFIED {
			s.failures.Add(1)
			s.lastErr.Store(strings.ReplaceAll(end.err.Error(), "\n", "; "))
		}
		delay := retry.After(connectedFor)
		if end.goodbye == hubv1.Goodbye_REASON_TOKEN_EXPIRED {
			s.tokens.invalidate(end.token)
			if time.Since(lastImmediate) >= 10*time.Second { // as the agent: at most one immediate reconnect per 10 s
				lastImmediate, delay = time.Now(), 0
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sessionEnd is how a stream ended.
type sessionEnd struct {
	welcomedAt time.Time // zero if no Welcome came
	goodbye    hubv1.Goodbye_Reason
	token      string // the token the stream used
	err        error
}

// simAgent is one simulated agent.
type simAgent struct {
	sim      *simulator
	id       string
	instance string
	client   hubv1connect.AgentHubServiceClient
}

// session runs one stream: Hello, Welcome, then heartbeats and command results until the
// stream ends. onWelcome runs when the Welcome arrives.
func (a *simAgent) session(ctx context.Context, onWelcome func()) (end sessionEnd) {
	ctx, cancel := context.WithCancel(ctx)
	stream := a.client.Connect(ctx)
	defer func() {
		cancel()
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
	}()
	// The HTTP/2 transport does not abort a stream whose request body is still open when ctx
	// ends; closing the response does, and unblocks Receive.
	defer context.AfterFunc(ctx, func() { _ = stream.CloseResponse() })()
	if a.sim.tokens != nil {
		tok, err := a.sim.tokens.token(ctx)
		if err != nil {
			end.err = err
			return end
		}
		end.token = tok
		stream.RequestHeader().Set("Authorization", "Bearer "+tok)
	}
	hello := &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: a.id, AgentInstanceUuid: a.instance, AgentVersion: "sortie-bench",
		KubernetesVersion: "v1.37.0", ClusterRoleSupport: true,
	}}}
	if err := stream.Send(hello); err != nil {
		_, rerr := stream.Receive()
		end.err = errors.Join(err, rerr)
		return end
	}

	welcomeTimer := time.AfterFunc(a.sim.cfg.WelcomeTimeout, cancel)
	msg, err := stream.Receive()
	welcomeTimer.Stop()
	if err != nil {
		end.err = err
		return end
	}
	welcome := msg.GetWelcome()
	if welcome == nil {
		end.goodbye = msg.GetGoodbye().GetReason()
		end.err = fmt.Errorf("first message is %T, not a Welcome", msg.GetMessage())
		return end
	}
	end.welcomedAt = time.Now()
	onWelcome()

	var sendMu sync.Mutex // serializes Send on the stream
	send := func(m *hubv1.ConnectRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	interval := welcome.GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		interval = 20 * time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		// Agents' heartbeats spread over the interval as their connect times do.
		t := time.NewTimer(rand.N(interval) + 1)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{SendTime: timestamppb.Now()}}}); err != nil {
				cancel()
				return
			}
			t.Reset(interval)
		}
	})
	for {
		msg, err := stream.Receive()
		if err != nil {
			end.err = err
			return end
		}
		switch m := msg.GetMessage().(type) {
		case *hubv1.ConnectResponse_Command:
			if err := send(commandResult(m.Command)); err != nil {
				end.err = err
				return end
			}
		case *hubv1.ConnectResponse_Goodbye:
			end.goodbye = m.Goodbye.GetReason()
			end.err = fmt.Errorf("goodbye: %s", end.goodbye)
			return end
		}
		// Hub heartbeats need no answer: ours go out on our own timer, as the agent's do.
	}
}

// commandResult is a simulated agent's instant answer to a command.
func commandResult(c *hubv1.Command) *hubv1.ConnectRequest {
	res := &hubv1.CommandResult{CommandId: c.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED}
	if c.GetListNamespaces() != nil {
		res.Payload = &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: []string{"default"}}}
	}
	return &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: res}}
}

// newH2CClient returns a client with its own HTTP/2 cleartext transport, so that each
// simulated agent holds its own TCP connection as real agents do.
func newH2CClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     15 * time.Second,
	}}
}

// tokenSource gets access tokens by the client-credentials grant, one shared by every agent
// of a child, renewed when four fifths of its lifetime have passed.
type tokenSource struct {
	client   *http.Client
	url      string
	clientID string
	secret   string

	mu        sync.Mutex // guards tok, renewAt and expiresAt; held while fetching
	tok       string
	renewAt   time.Time
	expiresAt time.Time
}

func (s *tokenSource) token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.tok != "" && now.Before(s.renewAt) {
		return s.tok, nil
	}
	tok, ttl, err := s.fetch(ctx)
	if err != nil {
		if s.tok != "" && now.Before(s.expiresAt) {
			return s.tok, nil // renew later; the old one still works
		}
		return "", err
	}
	s.tok, s.renewAt, s.expiresAt = tok, now.Add(ttl*4/5), now.Add(ttl)
	return tok, nil
}

// invalidate forgets tok if it is still the current token, so that the next call fetches.
func (s *tokenSource) invalidate(tok string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == tok {
		s.renewAt = time.Time{}
	}
}

func (s *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.clientID}, "client_secret": {s.secret}, "scope": {"connect:agentHub"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("get token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		return "", 0, fmt.Errorf("get token: status %d (%v)", resp.StatusCode, err)
	}
	return out.AccessToken, time.Duration(out.ExpiresIn) * time.Second, nil
}
