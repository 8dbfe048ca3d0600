package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
)

// bareStreamsMetric counts the streams bare-server holds.
const bareStreamsMetric = "sortie_bench_bare_streams"

// runBareServer is the hidden bare-server subcommand: the baseline of the idle-agents
// benchmark. It serves AgentHubService with a trivial handler (no authentication, no
// registry, no queues: Hello gets an empty Welcome, a Heartbeat gets a Heartbeat) on the same
// kind of listener as sortie-server, and the same Go runtime metrics at /metrics.
func runBareServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sortie-bench bare-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	heartbeat := fs.Duration("heartbeat", 20*time.Second, "heartbeat interval told to agents in the Welcome")
	if err := flagenv.Parse(fs, "SORTIE_BENCH_", args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	streams := prometheus.NewGauge(prometheus.GaugeOpts{Name: bareStreamsMetric, Help: "Open AgentHubService streams."})
	reg.MustRegister(streams)

	mux := http.NewServeMux()
	mux.Handle(hubv1connect.NewAgentHubServiceHandler(&bareHub{heartbeat: *heartbeat, streams: streams}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })

	// The same server settings as gateway.Serve uses for sortie-server in cleartext.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	fmt.Fprintf(stdout, "bare-server listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Streams never finish by themselves: close them.
	_ = srv.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareHub keeps streams open and answers them trivially.
type bareHub struct {
	hubv1connect.UnimplementedAgentHubServiceHandler
	heartbeat time.Duration
	streams   prometheus.Gauge
}

func (h *bareHub) Connect(ctx context.Context, stream *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) error {
	h.streams.Inc()
	defer h.streams.Dec()
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *hubv1.ConnectResponse
		switch req.GetMessage().(type) {
		case *hubv1.ConnectRequest_Hello:
			resp = &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Welcome{Welcome: &hubv1.Welcome{
				HeartbeatInterval: durationpb.New(h.heartbeat),
			}}}
		case *hubv1.ConnectRequest_Heartbeat:
			resp = &hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Heartbeat{Heartbeat: &hubv1.Heartbeat{SendTime: timestamppb.Now()}}}
		default:
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
