// Package simagent is a simulated Sortie agent: it dials a hub's AgentHubService over
// cleartext HTTP/2 like sortie-agent, but serves the hub's commands from a rolloutsim
// cluster instead of a real one, and reports that cluster's Rollouts as inventory. Tests and
// benchmarks use it to drive real pipelines through a real server without Kubernetes; the
// end-to-end tests use the real agent and cluster.
package simagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"golang.org/x/net/http2"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim"
)

// Agent is one simulated agent stream.
type Agent struct {
	Cluster *rolloutsim.Cluster

	stream *connect.BidiStreamForClient[hubv1.ConnectRequest, hubv1.ConnectResponse]
	sendMu sync.Mutex // serializes Send on the stream
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// H2CClient is an HTTP client speaking cleartext HTTP/2 with prior knowledge, as agents do
// without TLS.
func H2CClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// Dial connects to the hub at baseURL with token as agent identifier, backed by cluster, and
// serves it until Close. tick, if positive, is how often the cluster's controller acts on
// time (timed pauses); a benchmark with many agents may drive Tick itself instead.
func Dial(ctx context.Context, client *http.Client, baseURL, token, identifier string, cluster *rolloutsim.Cluster, tick time.Duration) (*Agent, error) {
	ctx, cancel := context.WithCancel(ctx)
	hc := hubv1connect.NewAgentHubServiceClient(client, baseURL, connect.WithGRPC())
	stream := hc.Connect(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+token)
	a := &Agent{Cluster: cluster, stream: stream, cancel: cancel, done: make(chan struct{})}
	if err := a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: identifier, AgentInstanceUuid: uuid.NewString(), AgentVersion: "simagent", KubernetesVersion: "v1.37.2",
		ClusterRoleSupport: true,
	}}}); err != nil {
		cancel()
		return nil, fmt.Errorf("send hello: %w", err)
	}
	first, err := stream.Receive()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("await welcome: %w", err)
	}
	w := first.GetWelcome()
	if w == nil {
		cancel()
		return nil, fmt.Errorf("the hub answered the hello with %v", first)
	}
	if err := a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventorySnapshot{InventorySnapshot: &hubv1.InventorySnapshot{
		SnapshotId: uuid.NewString(), Last: true,
	}}}); err != nil {
		cancel()
		return nil, err
	}
	cluster.OnChange = func(r rolloutsim.Ref, obj []byte) {
		if r.Kind != "Rollout" {
			return
		}
		_ = a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventoryDelta{InventoryDelta: &hubv1.InventoryDelta{
			Upserts: []*hubv1.Resource{{Ref: protoRef(r), Object: obj}},
		}}})
	}
	beat := w.GetHeartbeatInterval().AsDuration()
	go a.serve(ctx, beat, tick)
	return a, nil
}

func (a *Agent) send(m *hubv1.ConnectRequest) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return a.stream.Send(m)
}

func (a *Agent) serve(ctx context.Context, beat, tick time.Duration) {
	defer close(a.done)
	var wg sync.WaitGroup
	wg.Go(func() {
		beats := time.NewTicker(max(beat, 10*time.Millisecond))
		defer beats.Stop()
		var ticks <-chan time.Time
		if tick > 0 {
			t := time.NewTicker(tick)
			defer t.Stop()
			ticks = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-beats.C:
				_ = a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}})
			case <-ticks:
				a.Cluster.Tick()
			}
		}
	})
	for {
		msg, err := a.stream.Receive()
		if err != nil {
			a.err = err
			break
		}
		if cmd := msg.GetCommand(); cmd != nil {
			_ = a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: a.execute(cmd)}})
		}
		if msg.GetGoodbye() != nil {
			break
		}
	}
	a.cancel()
	wg.Wait()
}

// execute runs one command against the simulated cluster.
func (a *Agent) execute(cmd *hubv1.Command) *hubv1.CommandResult {
	var objs [][]byte
	var err error
	switch act := cmd.GetAction().(type) {
	case *hubv1.Command_Apply:
		objs, err = a.Cluster.Apply(act.Apply.GetManifests(), act.Apply.GetNamespace())
	case *hubv1.Command_Get:
		var obj []byte
		obj, err = a.Cluster.Get(simRef(act.Get.GetRef()))
		objs = [][]byte{obj}
	case *hubv1.Command_Patch:
		if act.Patch.GetSubresource() != "status" {
			err = fmt.Errorf("%w: simagent patches only the status subresource", rolloutsim.ErrInvalid)
			break
		}
		var obj []byte
		obj, err = a.Cluster.PatchStatus(simRef(act.Patch.GetRef()), act.Patch.GetPatch())
		objs = [][]byte{obj}
	case *hubv1.Command_ListNamespaces:
		return &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
			Payload: &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: []string{"default"}}}}
	default:
		return &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_FAILED,
			Error: &hubv1.CommandError{Code: hubv1.CommandError_CODE_UNIMPLEMENTED, Message: fmt.Sprintf("simagent does not do %T", act)}}
	}
	if err != nil {
		code := hubv1.CommandError_CODE_INVALID
		switch {
		case errors.Is(err, rolloutsim.ErrNotFound):
			code = hubv1.CommandError_CODE_NOT_FOUND
		case errors.Is(err, rolloutsim.ErrConflict):
			code = hubv1.CommandError_CODE_CONFLICT
		}
		return &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_FAILED,
			Error: &hubv1.CommandError{Code: code, Message: err.Error()}}
	}
	rs := make([]*hubv1.Resource, 0, len(objs))
	for _, o := range objs {
		rs = append(rs, &hubv1.Resource{Object: o})
	}
	return &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
		Payload: &hubv1.CommandResult_Resources{Resources: &hubv1.ResourceList{Resources: rs}}}
}

// Close says goodbye and ends the stream.
func (a *Agent) Close() error {
	_ = a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Goodbye{Goodbye: &hubv1.Goodbye{
		Reason: hubv1.Goodbye_REASON_AGENT_SHUTTING_DOWN, Message: "simagent closing"}}})
	_ = a.stream.CloseRequest()
	a.cancel()
	<-a.done
	return nil
}

// Done is closed when the stream has ended.
func (a *Agent) Done() <-chan struct{} { return a.done }

func simRef(r *hubv1.ObjectReference) rolloutsim.Ref {
	return rolloutsim.Ref{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Namespace: r.GetNamespace(), Name: r.GetName()}
}

func protoRef(r rolloutsim.Ref) *hubv1.ObjectReference {
	return &hubv1.ObjectReference{ApiVersion: r.APIVersion, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
}
