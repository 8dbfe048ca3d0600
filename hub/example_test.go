package hub_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"golang.org/x/net/http2"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// Example serves the hub, lets an agent dial in, and sends it a command.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	h, tenant, url, stop := serveExample(ctx)

	// An agent dials in, says Hello, and answers commands.
	welcomed := make(chan struct{})
	go runAgent(ctx, url, welcomed, nil)
	<-welcomed

	res, err := h.Send(ctx, tenant, "cluster-1", &hubv1.Command{
		Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Outcome, res.GetNamespaces().GetNames())
	agents, _ := h.Agents(ctx, tenant, "")
	fmt.Println(agents[0].AgentIdentifier, agents[0].IPAddress)
	_, err = h.Send(ctx, tenant, "cluster-2", &hubv1.Command{})
	fmt.Println(err, errors.Is(err, hub.ErrOutcomeUnknown))

	// Stopping Run says Goodbye to every agent.
	cancel()
	stop()
	// Output:
	// OUTCOME_SUCCEEDED [default kube-system]
	// cluster-1 127.0.0.1
	// agent 'cluster-2' is not connected false
}

// ExampleHub_Subscribe follows an account's inventory and reads the objects that change.
func ExampleHub_Subscribe() {
	ctx, cancel := context.WithCancel(context.Background())
	h, tenant, url, stop := serveExample(ctx)
	sub := h.Subscribe(tenant, "cluster-1", 0)
	defer sub.Close()

	// The agent reports a Deployment once welcomed.
	api := &hubv1.Resource{
		Ref:             &hubv1.ObjectReference{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "web", Name: "api"},
		ResourceVersion: "42",
		Object:          []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","namespace":"web"}}`),
	}
	welcomed := make(chan struct{})
	go runAgent(ctx, url, welcomed, []*hubv1.Resource{api})

	c := <-sub.C()
	fmt.Println(c.Account, c.Ref.GetKind(), c.Ref.GetName(), c.Deleted, c.Resync)
	obj, err := h.CachedObject(ctx, tenant, c.Account, c.Ref)
	fmt.Println(obj.GetResourceVersion(), err)
	_, err = h.CachedObject(ctx, tenant, c.Account, &hubv1.ObjectReference{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "web", Name: "gone"})
	fmt.Println(errors.Is(err, hub.ErrObjectNotCached))

	cancel()
	stop()
	// Output:
	// cluster-1 Deployment api false false
	// 42 <nil>
	// true
}

// serveExample starts a hub on a loopback listener and returns it, its tenant, its URL and
// a function that waits for Run to end (once ctx is done) and closes the server.
func serveExample(ctx context.Context) (*hub.Hub, store.Tenant, string, func()) {
	h := hub.New(slog.New(slog.DiscardHandler), hub.Config{})
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(ctx) }()

	// In sortie-server the gateway's auth interceptor verifies the agent's token (scope
	// connect:agentHub) and puts its principal into the context; here every caller is one
	// machine credential of tenant acme/prod.
	tenant := store.Tenant{OrgID: "acme", EnvID: "prod"}
	path, handler := h.Handler(connect.WithInterceptors(asPrincipal(identity.Principal{
		Type: identity.PrincipalMachine, Subject: "agent-client", OrgID: tenant.OrgID, EnvID: tenant.EnvID,
	})))
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols}
	go func() { _ = srv.Serve(ln) }()
	return h, tenant, "http://" + ln.Addr().String(), func() {
		<-runDone
		_ = srv.Close()
	}
}

// runAgent is a minimal agent: Hello, then report inventory (if any) and answer every
// command until Goodbye.
func runAgent(ctx context.Context, url string, welcomed chan<- struct{}, inventory []*hubv1.Resource) {
	client := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	stream := hubv1connect.NewAgentHubServiceClient(client, url).Connect(ctx)
	defer stream.CloseResponse()
	_ = stream.Send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: "cluster-1", AgentInstanceUuid: uuid.NewString(), AgentVersion: "0.1.0",
	}}})
	for {
		msg, err := stream.Receive()
		if err != nil {
			return
		}
		switch m := msg.Message.(type) {
		case *hubv1.ConnectResponse_Welcome:
			if len(inventory) > 0 {
				_ = stream.Send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventoryDelta{InventoryDelta: &hubv1.InventoryDelta{Upserts: inventory}}})
			}
			close(welcomed)
		case *hubv1.ConnectResponse_Command:
			_ = stream.Send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: &hubv1.CommandResult{
				CommandId: m.Command.Id,
				Outcome:   hubv1.CommandResult_OUTCOME_SUCCEEDED,
				Payload:   &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: []string{"default", "kube-system"}}},
			}}})
		case *hubv1.ConnectResponse_Goodbye:
			_ = stream.CloseRequest()
			return
		}
	}
}

// asPrincipal stands in for the gateway's auth interceptor.
type asPrincipal identity.Principal

func (p asPrincipal) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (p asPrincipal) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (p asPrincipal) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(identity.WithPrincipal(ctx, identity.Principal(p)), conn)
	}
}
