package hub_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

var hubBenchJSON = flag.String("hubbenchjson", "", "write the hub benchmark results as JSON to this file")

// benchPrincipal is the verified caller the benchmark's interceptor puts on every stream, as
// the gateway's auth interceptor does after checking a token.
var benchPrincipal = identity.Principal{
	Type: identity.PrincipalMachine, Subject: "bench-agent-credential", Name: "bench",
	OrgID: "bench-org", EnvID: "bench-env", Scopes: []string{identity.ScopeConnectAgentHub},
}

// BenchmarkCommandRoundTrip measures a command's round trip server -> agent -> server
// through a real hub (Send writing the command to the stream, the agent's CommandResult read
// by the stream's handler, its delivery to Send) against the same round trip on bare
// connect-go bidirectional streams, where the server writes a message and waits for the echo:
// one with connect-go's defaults (every message gzipped, as the client accepts gzip), and one
// with the hub's transport settings (messages under compressMinBytes sent as they are), which
// leaves the hub's own cost. All run on real loopback h2c listeners with a generated gRPC
// client answering at once, measured in the same run, in alternating rounds. It reports p50
// and p99 of each and the hub's ratios to both (target: <= 1.15 to the bare stream with the
// same settings).
func BenchmarkCommandRoundTrip(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tenant := benchPrincipal.Tenant()

	h := hub.New(slog.New(slog.DiscardHandler), hub.Config{})
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-hubDone; err != nil {
			b.Errorf("hub: %v", err)
		}
	}()
	mux := http.NewServeMux()
	mux.Handle(h.Handler(connect.WithInterceptors(principalInterceptor{benchPrincipal})))
	hubURL := serveH2C(b, mux)

	agentErr := make(chan error, 3)
	go func() { agentErr <- answerCommands(ctx, hubURL, "bench-agent") }()
	defer func() {
		cancel() // the agents' errors from here on are the shutdown's
		for range 3 {
			<-agentErr
		}
	}()
	// bareStream serves a bare echo handler with opts and returns its stream.
	bareStream := func(opts ...connect.HandlerOption) *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse] {
		bare := &bareEcho{streams: make(chan *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse])}
		bareMux := http.NewServeMux()
		bareMux.Handle(hubv1connect.NewAgentHubServiceHandler(bare, opts...))
		bareURL := serveH2C(b, bareMux)
		go func() { agentErr <- answerCommands(ctx, bareURL, "bench-agent") }()
		select {
		case s := <-bare.streams:
			return s
		case err := <-agentErr:
			b.Fatalf("bare agent: %v", err)
		case <-time.After(10 * time.Second):
			b.Fatal("the bare stream did not open")
		}
		return nil
	}
	defaults := bareStream()
	same := bareStream(connect.WithCompressMinBytes(hub.CompressMinBytes))
	waitAgent(b, h, tenant, "bench-agent")

	cmd := func(id string) *hubv1.Command {
		return &hubv1.Command{Id: id, Action: &hubv1.Command_Get{Get: &hubv1.GetAction{
			Ref: &hubv1.ObjectReference{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "web"},
		}}}
	}
	var seq int
	viaHub := func() (time.Duration, error) {
		seq++
		start := time.Now()
		res, err := h.Send(ctx, tenant, "bench-agent", cmd("hub-"+strconv.Itoa(seq)))
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
			return 0, fmt.Errorf("outcome %s", res.GetOutcome())
		}
		return d, nil
	}
	viaBare := func(bareStream *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) (time.Duration, error) {
		seq++
		id := "bare-" + strconv.Itoa(seq)
		c := cmd(id)
		start := time.Now()
		if err := bareStream.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Command{Command: c}}); err != nil {
			return 0, err
		}
		msg, err := bareStream.Receive()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if got := msg.GetCommandResult().GetCommandId(); got != id {
			return 0, fmt.Errorf("echo of %s answered %q", id, got)
		}
		return d, nil
	}

	bareDefaults := func() (time.Duration, error) { return viaBare(defaults) }
	bareSame := func() (time.Duration, error) { return viaBare(same) }
	paths := []struct {
		name  string
		trip  func() (time.Duration, error)
		times []time.Duration
	}{
		{name: "hub: Send -> agent -> CommandResult", trip: viaHub},
		{name: "bare bidi echo, hub's settings", trip: bareSame},
		{name: "bare bidi echo, connect-go defaults", trip: bareDefaults},
	}
	// Warm every path up (connection windows, pools), then alternate rounds.
	for range 50 {
		for _, p := range paths {
			if _, err := p.trip(); err != nil {
				b.Fatal(err)
			}
		}
	}
	const rounds = 10
	perRound := max(b.N/rounds, 1)
	b.ResetTimer()
	for range rounds {
		for i := range paths {
			p := &paths[i]
			for range perRound {
				d, err := p.trip()
				if err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
				p.times = append(p.times, d)
			}
		}
	}
	b.StopTimer()

	var p50, p99 [3]time.Duration
	for i, p := range paths {
		slices.Sort(p.times)
		p50[i], p99[i] = quantile(p.times, 0.50), quantile(p.times, 0.99)
	}
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
	same50, same99 := ratio(p50[0], p50[1]), ratio(p99[0], p99[1])
	def50, def99 := ratio(p50[0], p50[2]), ratio(p99[0], p99[2])
	b.ReportMetric(float64(p50[0].Microseconds()), "hub-p50-µs")
	b.ReportMetric(float64(p99[0].Microseconds()), "hub-p99-µs")
	b.ReportMetric(float64(p50[1].Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(p99[1].Microseconds()), "bare-p99-µs")
	b.ReportMetric(same50, "p50-ratio")
	b.ReportMetric(same99, "p99-ratio")
	b.ReportMetric(def50, "p50-ratio-defaults")
	table := fmt.Sprintf("\n%-44s %10s %10s\n", fmt.Sprintf("command round trip (n=%d each)", len(paths[0].times)), "p50", "p99")
	for i, p := range paths {
		table += fmt.Sprintf("%-44s %10s %10s\n", p.name, p50[i].Round(time.Microsecond), p99[i].Round(time.Microsecond))
	}
	table += fmt.Sprintf("%-44s %10.2f %10.2f   (target p50 <= 1.15)\n", "ratio to the bare echo, hub's settings", same50, same99)
	table += fmt.Sprintf("%-44s %10.2f %10.2f", "ratio to the bare echo, connect-go defaults", def50, def99)
	if b.N > 1 {
		// Not the first probing run of one iteration, whose log would crowd out this one's
		// (the testing package keeps a benchmark's first lines only).
		b.Log(table)
	}
	if *hubBenchJSON != "" {
		data, _ := json.MarshalIndent(map[string]any{
			"benchmark": "command_round_trip", "n": len(paths[0].times),
			"hub_p50_seconds": p50[0].Seconds(), "hub_p99_seconds": p99[0].Seconds(),
			"bare_p50_seconds": p50[1].Seconds(), "bare_p99_seconds": p99[1].Seconds(),
			"bare_defaults_p50_seconds": p50[2].Seconds(), "bare_defaults_p99_seconds": p99[2].Seconds(),
			"p50_ratio": same50, "p99_ratio": same99, "p50_ratio_defaults": def50, "p99_ratio_defaults": def99,
			"target_p50_ratio": 1.15,
		}, "", "  ")
		if err := os.WriteFile(*hubBenchJSON, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// quantile returns the q-quantile of sorted ds, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// principalInterceptor puts a fixed verified principal on every stream.
type principalInterceptor struct{ p identity.Principal }

func (i principalInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (i principalInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i principalInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(identity.WithPrincipal(ctx, i.p), conn)
	}
}

// bareEcho is the baseline server: it hands each stream, once its Hello arrived, to the
// benchmark, which writes to it and reads the answer itself.
type bareEcho struct {
	hubv1connect.UnimplementedAgentHubServiceHandler
	streams chan *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]
}

func (e *bareEcho) Connect(ctx context.Context, stream *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) error {
	if _, err := stream.Receive(); err != nil {
		return err
	}
	if err := stream.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Welcome{Welcome: &hubv1.Welcome{}}}); err != nil {
		return err
	}
	select {
	case e.streams <- stream:
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

// serveH2C serves h on a loopback listener with HTTP/1.1 and h2c, as sortie-server does
// without TLS, until the benchmark ends.
func serveH2C(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// answerCommands is a simulated agent: it says Hello and answers every Command at once with
// a successful CommandResult, until ctx ends.
func answerCommands(ctx context.Context, baseURL, agent string) error {
	client := hubv1connect.NewAgentHubServiceClient(&http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}, baseURL, connect.WithGRPC())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := client.Connect(ctx)
	// The HTTP/2 transport does not abort a stream with an open request body when ctx ends;
	// closing the response does.
	defer context.AfterFunc(ctx, func() { _ = stream.CloseResponse() })()
	hello := &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: agent, AgentInstanceUuid: "00000000-0000-4000-8000-000000000001", AgentVersion: "bench",
	}}}
	if err := stream.Send(hello); err != nil {
		_, rerr := stream.Receive()
		return errors.Join(err, rerr)
	}
	for {
		msg, err := stream.Receive()
		if err != nil {
			return err
		}
		c := msg.GetCommand()
		if c == nil {
			continue // Welcome, heartbeats
		}
		res := &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: &hubv1.CommandResult{
			CommandId: c.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
		}}}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

// waitAgent waits until the hub lists agent in tenant.
func waitAgent(b *testing.B, h *hub.Hub, t store.Tenant, agent string) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		agents, err := h.Agents(context.Background(), t, agent)
		if err == nil && len(agents) == 1 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent %s did not connect to the hub: %v", agent, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
