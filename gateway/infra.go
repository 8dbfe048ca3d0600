package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/danielgtaylor/huma/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	infrav1 "github.com/sortie-dev/sortie/gen/sortie/infra/v1"
	"github.com/sortie-dev/sortie/gen/sortie/infra/v1/infrav1connect"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
)

// infraProcedureScopes declares what each InfrastructureService procedure requires.
var infraProcedureScopes = procedureScopes{
	infrav1connect.InfrastructureServiceListAgentsProcedure:     identity.ScopeReadInfrastructure,
	infrav1connect.InfrastructureServiceListAccountsProcedure:   identity.ScopeReadInfrastructure,
	infrav1connect.InfrastructureServiceListNamespacesProcedure: identity.ScopeReadInfrastructure,
	infrav1connect.InfrastructureServiceListResourcesProcedure:  identity.ScopeReadInfrastructure,
	infrav1connect.InfrastructureServiceWatchAgentsProcedure:    identity.ScopeReadInfrastructure,
}

// namespacesTimeout bounds a live namespace listing through an agent.
const namespacesTimeout = 15 * time.Second

// Agent is the REST shape of one connected agent stream (api.md section 3).
type Agent struct {
	AgentIdentifier        string `json:"agentIdentifier"`
	AgentInstanceUUID      string `json:"agentInstanceUuid"`
	AgentVersion           string `json:"agentVersion"`
	ClientID               string `json:"clientId"`
	ConnectedAtIso8601     string `json:"connectedAtIso8601" format:"date-time"`
	LastHeartbeatAtIso8601 string `json:"lastHeartbeatAtIso8601" format:"date-time"`
	OrgID                  string `json:"orgId"`
	EnvID                  string `json:"envId"`
	HubInstanceUUID        string `json:"hubInstanceUuid"`
	StreamID               string `json:"streamId"`
	IPAddress              string `json:"ipAddress"`
	NodeIP                 string `json:"nodeIp"`
	K8sClusterRoleSupport  bool   `json:"k8sClusterRoleSupport"`
}

func agentOut(a hub.Agent) Agent {
	return Agent{
		AgentIdentifier: a.AgentIdentifier, AgentInstanceUUID: a.AgentInstanceUUID, AgentVersion: a.AgentVersion,
		ClientID: a.ClientID, ConnectedAtIso8601: rfc3339(a.ConnectedAt), LastHeartbeatAtIso8601: rfc3339(a.LastHeartbeatAt),
		OrgID: a.OrgID, EnvID: a.EnvID, HubInstanceUUID: a.HubInstanceUUID, StreamID: a.StreamID,
		IPAddress: a.IPAddress, NodeIP: a.NodeIP, K8sClusterRoleSupport: a.K8sClusterRoleSupport,
	}
}

func agentPB(a hub.Agent) *infrav1.Agent {
	return &infrav1.Agent{
		AgentIdentifier: a.AgentIdentifier, AgentInstanceUuid: a.AgentInstanceUUID, AgentVersion: a.AgentVersion,
		ClientId: a.ClientID, ConnectTime: timestamppb.New(a.ConnectedAt), LastHeartbeatTime: timestamppb.New(a.LastHeartbeatAt),
		OrgId: a.OrgID, EnvId: a.EnvID, HubInstanceUuid: a.HubInstanceUUID, StreamId: a.StreamID,
		IpAddress: a.IPAddress, NodeIp: a.NodeIP, K8SClusterRoleSupport: a.K8sClusterRoleSupport,
		KubernetesVersion: a.KubernetesVersion,
	}
}

// AccountRef is one deployment target account.
type AccountRef struct {
	Provider string `json:"provider" enum:"kubernetes"`
	Account  string `json:"account" doc:"The agent identifier."`
}

// AccountList is the reply of GET /accounts.
type AccountList struct {
	Accounts []AccountRef `json:"accounts"`
}

type connectedAgentsInput struct {
	AgentIdentifier string `query:"agent-identifier" doc:"Only the agents of this identifier."`
}

type accountsInput struct {
	Provider string `query:"provider" doc:"Only kubernetes is known; other providers have no accounts."`
}

type namespacesInput struct {
	Account string `path:"account" doc:"The agent identifier."`
}

// accounts lists a tenant's account names; REST and Connect share it.
func (g *Gateway) accounts(ctx context.Context) ([]hub.Account, error) {
	return g.hub.Accounts(ctx, principalFrom(ctx).Tenant())
}

// namespaces asks an account's agent for its namespaces, live; REST and Connect share it.
func (g *Gateway) namespaces(ctx context.Context, account string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, namespacesTimeout)
	defer cancel()
	res, err := g.hub.Send(ctx, principalFrom(ctx).Tenant(), account, &hubv1.Command{
		Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}},
	})
	switch {
	case errors.Is(err, hub.ErrNotConnected), errors.Is(err, hub.ErrUnknownAccount):
		return nil, fmt.Errorf("account '%s' does not exist: %w", account, err)
	case err != nil:
		return nil, fmt.Errorf("account '%s': %w", account, err)
	}
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		return nil, &agentError{account: account, result: res}
	}
	return res.GetNamespaces().GetNames(), nil
}

// agentError is a command the agent ran and reported as failed.
type agentError struct {
	account string
	result  *hubv1.CommandResult
}

func (e *agentError) Error() string {
	return fmt.Sprintf("the agent of account '%s' failed: %s", e.account, e.result.GetError().GetMessage())
}

func (g *Gateway) registerInfraREST() {
	tags := []string{"Infrastructure"}
	register(g, identity.ScopeReadInfrastructure, huma.Operation{
		OperationID: "list-connected-agents", Method: http.MethodGet, Path: "/identity/connected-agents",
		Summary: "List the connected agents", Tags: tags,
		Description: "One entry per connected agent replica (stream), across every server replica.",
	}, func(ctx context.Context, in *connectedAgentsInput) (*bodyOut[[]Agent], error) {
		agents, err := g.hub.Agents(ctx, principalFrom(ctx).Tenant(), in.AgentIdentifier)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		out := make([]Agent, len(agents))
		for i, a := range agents {
			out[i] = agentOut(a)
		}
		return &bodyOut[[]Agent]{Body: out}, nil
	})

	listAccounts := func(ctx context.Context, in *accountsInput) (*bodyOut[AccountList], error) {
		out := AccountList{Accounts: []AccountRef{}}
		if in.Provider != "" && in.Provider != "kubernetes" {
			return &bodyOut[AccountList]{Body: out}, nil
		}
		accounts, err := g.accounts(ctx)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		for _, a := range accounts {
			out.Accounts = append(out.Accounts, AccountRef{Provider: "kubernetes", Account: a.Name})
		}
		return &bodyOut[AccountList]{Body: out}, nil
	}
	register(g, identity.ScopeReadInfrastructure, huma.Operation{
		OperationID: "list-accounts", Method: http.MethodGet, Path: "/accounts",
		Summary: "List the deployment target accounts", Tags: tags,
		Description: "Agent identifiers connected now or within the grace period after their last stream closed.",
	}, listAccounts)
	register(g, identity.ScopeReadInfrastructure, huma.Operation{
		OperationID: "list-accounts-v1", Method: http.MethodGet, Path: "/v1/accounts",
		Summary: "List the deployment target accounts (alias of GET /accounts)", Tags: tags,
	}, listAccounts)

	register(g, identity.ScopeReadInfrastructure, huma.Operation{
		OperationID: "list-account-namespaces", Method: http.MethodGet, Path: "/accounts/{account}/namespaces",
		Summary: "List the namespaces of an account's cluster", Tags: tags,
		Description: "Asks the account's agent, live. 422 when no agent of the account is connected, " +
			"504 when it does not answer in time.",
		Errors: []int{http.StatusUnprocessableEntity, http.StatusGatewayTimeout},
	}, func(ctx context.Context, in *namespacesInput) (*bodyOut[[]string], error) {
		names, err := g.namespaces(ctx, in.Account)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[[]string]{Body: nonNil(names)}, nil
	})
}

// infraServer implements InfrastructureService over the same hub calls as REST.
type infraServer struct {
	g *Gateway
}

var _ infrav1connect.InfrastructureServiceHandler = (*infraServer)(nil)

func (s *infraServer) ListAgents(ctx context.Context, req *connect.Request[infrav1.ListAgentsRequest]) (*connect.Response[infrav1.ListAgentsResponse], error) {
	agents, err := s.g.hub.Agents(ctx, principalFrom(ctx).Tenant(), req.Msg.GetAgentIdentifier())
	if err != nil {
		return nil, connectError(ctx, s.g.log, err)
	}
	resp := &infrav1.ListAgentsResponse{}
	for _, a := range agents {
		resp.Agents = append(resp.Agents, agentPB(a))
	}
	return connect.NewResponse(resp), nil
}

func (s *infraServer) ListAccounts(ctx context.Context, _ *connect.Request[infrav1.ListAccountsRequest]) (*connect.Response[infrav1.ListAccountsResponse], error) {
	accounts, err := s.g.accounts(ctx)
	if err != nil {
		return nil, connectError(ctx, s.g.log, err)
	}
	resp := &infrav1.ListAccountsResponse{}
	for _, a := range accounts {
		resp.Accounts = append(resp.Accounts, &infrav1.Account{Provider: "kubernetes", Account: a.Name, Connected: a.Connected})
	}
	return connect.NewResponse(resp), nil
}

func (s *infraServer) ListNamespaces(ctx context.Context, req *connect.Request[infrav1.ListNamespacesRequest]) (*connect.Response[infrav1.ListNamespacesResponse], error) {
	names, err := s.g.namespaces(ctx, req.Msg.GetAccount())
	if err != nil {
		return nil, connectError(ctx, s.g.log, err)
	}
	return connect.NewResponse(&infrav1.ListNamespacesResponse{Namespaces: names}), nil
}

func (s *infraServer) ListResources(ctx context.Context, req *connect.Request[infrav1.ListResourcesRequest]) (*connect.Response[infrav1.ListResourcesResponse], error) {
	res, err := s.g.hub.Resources(ctx, principalFrom(ctx).Tenant(), req.Msg.GetAccount(), req.Msg.GetKind(), req.Msg.GetNamespace())
	if err != nil {
		return nil, connectError(ctx, s.g.log, err)
	}
	resp := &infrav1.ListResourcesResponse{}
	for _, r := range res {
		ref := r.GetRef()
		resp.Resources = append(resp.Resources, &infrav1.Resource{
			ApiVersion: ref.GetApiVersion(), Kind: ref.GetKind(), Namespace: ref.GetNamespace(), Name: ref.GetName(),
			Uid: r.GetUid(), ResourceVersion: r.GetResourceVersion(), ObjectJson: r.GetObject(),
		})
	}
	return connect.NewResponse(resp), nil
}

func (s *infraServer) WatchAgents(ctx context.Context, _ *connect.Request[infrav1.WatchAgentsRequest], stream *connect.ServerStream[infrav1.WatchAgentsResponse]) error {
	ctx, stop := s.g.authorizedStream(ctx)
	defer stop()
	events, err := s.g.hub.WatchAgents(ctx, principalFrom(ctx).Tenant())
	if err != nil {
		return connectError(ctx, s.g.log, err)
	}
	for ev := range events {
		typ := infrav1.WatchAgentsResponse_TYPE_CONNECTED
		if ev.Type == hub.AgentDisconnected {
			typ = infrav1.WatchAgentsResponse_TYPE_DISCONNECTED
		}
		if err := stream.Send(&infrav1.WatchAgentsResponse{Type: typ, Agent: agentPB(ev.Agent)}); err != nil {
			return streamEnd(ctx, err)
		}
	}
	return streamEnd(ctx, nil)
}
