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
// through a real hub (Send, the stream's queue and writer, the agent's CommandResult, its
// delivery) against the same round trip on a bare connect-go bidirectional stream, where the
// server writes a message and waits for the echo. Both run on real loopback h2c listeners
// with a generated gRPC client answering at once, measured in the same run, in alternating
// rounds. It reports p50 and p99 of each and their ratios (target: <= 1.5).
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

	bare := &bareEcho{streams: make(chan *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse])}
	bareMux := http.NewServeMux()
	bareMux.Handle(hubv1connect.NewAgentHubServiceHandler(bare))
	bareURL := serveH2C(b, bareMux)

	agentErr := make(chan error, 2)
	go func() { agentErr <- answerCommands(ctx, hubURL, "bench-agent") }()
	go func() { agentErr <- answerCommands(ctx, bareURL, "bench-agent") }()
	defer func() {
		cancel() // the agents' errors from here on are the shutdown's
		for range 2 {
			<-agentErr
		}
	}()
	var bareStream *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]
	select {
	case bareStream = <-bare.streams:
	case err := <-agentErr:
		b.Fatalf("bare agent: %v", err)
	case <-time.After(10 * time.Second):
		b.Fatal("the bare stream did not open")
	}
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
	viaBare := func() (time.Duration, error) {
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

	// Warm both paths up (connection windows, pools), then alternate rounds.
	for range 50 {
		if _, err := viaBare(); err != nil {
			b.Fatal(err)
		}
		if _, err := viaHub(); err != nil {
			b.Fatal(err)
		}
	}
	const rounds = 10
	perRound := max(b.N/rounds, 1)
	hubTimes := make([]time.Duration, 0, perRound*rounds)
	bareTimes := make([]time.Duration, 0, perRound*rounds)
	b.ResetTimer()
	for range rounds {
		for range perRound {
			d, err := viaBare()
			if err != nil {
				b.Fatalf("bare round trip: %v", err)
			}
			bareTimes = append(bareTimes, d)
		}
		for range perRound {
			d, err := viaHub()
			if err != nil {
				b.Fatalf("hub round trip: %v", err)
			}
			hubTimes = append(hubTimes, d)
		}
	}
	b.StopTimer()

	slices.Sort(hubTimes)
	slices.Sort(bareTimes)
	hub50, hub99 := quantile(hubTimes, 0.50), quantile(hubTimes, 0.99)
	bare50, bare99 := quantile(bareTimes, 0.50), quantile(bareTimes, 0.99)
	ratio50, ratio99 := float64(hub50)/float64(bare50), float64(hub99)/float64(bare99)
	b.ReportMetric(float64(hub50.Microseconds()), "hub-p50-µs")
	b.ReportMetric(float64(hub99.Microseconds()), "hub-p99-µs")
	b.ReportMetric(float64(bare50.Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(bare99.Microseconds()), "bare-p99-µs")
	b.ReportMetric(ratio50, "p50-ratio")
	b.ReportMetric(ratio99, "p99-ratio")
	b.Logf("\n%-44s %10s %10s\n%-44s %10s %10s\n%-44s %10s %10s\n%-44s %10.2f %10.2f   (target <= 1.5)",
		fmt.Sprintf("command round trip (n=%d each)", len(hubTimes)), "p50", "p99",
		"hub: Send -> agent -> CommandResult", hub50.Round(time.Microsecond), hub99.Round(time.Microsecond),
		"bare connect-go bidi echo", bare50.Round(time.Microsecond), bare99.Round(time.Microsecond),
		"ratio", ratio50, ratio99)
	if *hubBenchJSON != "" {
		data, _ := json.MarshalIndent(map[string]any{
			"benchmark": "command_round_trip", "n": len(hubTimes),
			"hub_p50_seconds": hub50.Seconds(), "hub_p99_seconds": hub99.Seconds(),
			"bare_p50_seconds": bare50.Seconds(), "bare_p99_seconds": bare99.Seconds(),
			"p50_ratio": ratio50, "p99_ratio": ratio99, "target_ratio": 1.5,
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
