package gateway_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"sigs.k8s.io/yaml"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/identity"
)

// fakeAgent is a protocol-level agent on a real HTTP/2 stream: it says Hello, reports a
// one-namespace inventory and answers ListNamespaces commands.
func fakeAgent(t *testing.T, ts *testServer, token, identifier string, namespaces ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client := hubv1connect.NewAgentHubServiceClient(h2cClient(), ts.URL, connect.WithGRPC(), connect.WithInterceptors(bearerAll(token)))
	stream := client.Connect(ctx)
	send := func(m *hubv1.ConnectRequest) {
		if err := stream.Send(m); err != nil {
			t.Errorf("agent send: %v", err)
		}
	}
	send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: identifier, AgentInstanceUuid: uuid.NewString(), AgentVersion: "test", KubernetesVersion: "v1.37.2",
	}}})
	var inventory []*hubv1.Resource
	for _, ns := range namespaces {
		inventory = append(inventory, &hubv1.Resource{
			Ref: &hubv1.ObjectReference{ApiVersion: "v1", Kind: "Namespace", Name: ns}, Uid: uuid.NewString(),
			Object: []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"` + ns + `"}}`),
		})
	}
	send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventorySnapshot{InventorySnapshot: &hubv1.InventorySnapshot{
		SnapshotId: uuid.NewString(), Resources: inventory, Last: true,
	}}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := stream.Receive()
			if err != nil {
				return
			}
			if cmd := msg.GetCommand(); cmd != nil {
				send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: &hubv1.CommandResult{
					CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
					Payload: &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: namespaces}},
				}}})
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = stream.CloseRequest()
		<-done
	})
}

func TestInfrastructureRoutes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)
	agentTok := ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeConnectAgentHub)
	fakeAgent(t, ts, agentTok, "prod-west", "default", "web")

	var agents []agentJSON
	deadline := time.Now().Add(10 * time.Second)
	for len(agents) == 0 && time.Now().Before(deadline) {
		agents = decode[[]agentJSON](t, ts.do(t, "GET", "/identity/connected-agents?agent-identifier=prod-west", admin, nil).Body)
		time.Sleep(20 * time.Millisecond)
	}
	if len(agents) != 1 {
		t.Fatalf("connected agents: %+v", agents)
	}
	a := agents[0]
	if a.AgentIdentifier != "prod-west" || a.ClientID != ts.admin.Admin.ClientID || a.OrgID != ts.admin.Organization.ID ||
		a.EnvID != ts.admin.Environment.ID || a.StreamID == "" || a.HubInstanceUUID != ts.hub.InstanceID() || a.IPAddress != "127.0.0.1" {
		t.Errorf("agent entry: %+v", a)
	}
	if _, err := time.Parse(time.RFC3339, a.ConnectedAtIso8601); err != nil {
		t.Errorf("connectedAtIso8601 %q: %v", a.ConnectedAtIso8601, err)
	}
	if other := decode[[]agentJSON](t, ts.do(t, "GET", "/identity/connected-agents?agent-identifier=elsewhere", admin, nil).Body); len(other) != 0 {
		t.Errorf("filter by another identifier: %+v", other)
	}

	for _, path := range []string{"/accounts?provider=kubernetes", "/v1/accounts"} {
		r := ts.do(t, "GET", path, admin, nil)
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"accounts":[{"provider":"kubernetes","account":"prod-west"}]}` {
			t.Errorf("GET %s: %d %s", path, r.Status, r.Body)
		}
	}
	r := ts.do(t, "GET", "/accounts/prod-west/namespaces", admin, nil)
	if names := decode[[]string](t, r.Body); r.Status != 200 || !slices.Equal(names, []string{"default", "web"}) {
		t.Errorf("live namespaces: %d %s", r.Status, r.Body)
	}
	e := wantError(t, "unknown account", ts.do(t, "GET", "/accounts/nowhere/namespaces", admin, nil), http.StatusUnprocessableEntity)
	if !strings.Contains(e.Errors[0].Message, "account 'nowhere' does not exist") {
		t.Errorf("422 message: %q", e.Errors[0].Message)
	}

	res := ts.do(t, "POST", "/sortie.infra.v1.InfrastructureService/ListResources", admin, `{"account":"prod-west","kind":"Namespace"}`)
	if res.Status != 200 || !strings.Contains(string(res.Body), `"name":"web"`) {
		t.Errorf("ListResources from the cached inventory: %d %s", res.Status, res.Body)
	}
	if r := ts.do(t, "POST", "/sortie.infra.v1.InfrastructureService/ListNamespaces", admin, `{"account":"nowhere"}`); r.Status == 200 || !strings.Contains(string(r.Body), "failed_precondition") {
		t.Errorf("Connect ListNamespaces of an unknown account: %d %s", r.Status, r.Body)
	}
}

// agentJSON mirrors gateway.Agent for decoding, so the test pins the JSON names.
type agentJSON struct {
	AgentIdentifier        string `json:"agentIdentifier"`
	AgentInstanceUUID      string `json:"agentInstanceUuid"`
	AgentVersion           string `json:"agentVersion"`
	ClientID               string `json:"clientId"`
	ConnectedAtIso8601     string `json:"connectedAtIso8601"`
	LastHeartbeatAtIso8601 string `json:"lastHeartbeatAtIso8601"`
	OrgID                  string `json:"orgId"`
	EnvID                  string `json:"envId"`
	HubInstanceUUID        string `json:"hubInstanceUuid"`
	StreamID               string `json:"streamId"`
	IPAddress              string `json:"ipAddress"`
	NodeIP                 string `json:"nodeIp"`
	K8sClusterRoleSupport  bool   `json:"k8sClusterRoleSupport"`
}

func TestAgentManifest(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)

	r := ts.do(t, "GET", "/kubernetes/agent/manifest?agentIdentifier=prod-west&namespace=sortie-system", admin, nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/yaml") {
		t.Fatalf("manifest: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	kinds := map[string]map[string]any{}
	for _, doc := range strings.Split(string(r.Body), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("manifest document does not parse: %v\n%s", err, doc)
		}
		kinds[obj["kind"].(string)] = obj
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "Deployment"} {
		if kinds[k] == nil {
			t.Errorf("manifest lacks a %s", k)
		}
	}
	if spec := kinds["Deployment"]["spec"].(map[string]any); spec["replicas"] != float64(2) {
		t.Errorf("Deployment replicas %v, want 2", spec["replicas"])
	}
	data := kinds["Secret"]["stringData"].(map[string]any)
	id, secret := data["clientId"].(string), data["clientSecret"].(string)
	// The credential in the Secret is an agent credential that works.
	tok := ts.token(t, id, secret, "")
	who := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/WhoAmI", tok, "{}")
	if !strings.Contains(string(who.Body), `"scopes":["connect:agentHub"]`) || !strings.Contains(string(who.Body), `"name":"agent-prod-west"`) {
		t.Errorf("manifest credential: %s", who.Body)
	}
	// The image of ?image= (default sortie-agent:latest) is the one the pods run.
	if c := kinds["Deployment"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any); c["image"] != "sortie-agent:latest" {
		t.Errorf("Deployment image %v, want sortie-agent:latest", c["image"])
	}
	if !strings.Contains(string(r.Body), ts.URL) || !strings.Contains(string(r.Body), `"prod-west"`) {
		t.Error("manifest does not point the agent at this server with its identifier")
	}

	// Asking again changes nothing and says why.
	before := ts.do(t, "GET", "/credentials", admin, nil).Body
	wantError(t, "second manifest", ts.do(t, "GET", "/kubernetes/agent/manifest?agentIdentifier=prod-west&namespace=sortie-system", admin, nil), http.StatusConflict)
	e := wantError(t, "bad parameters", ts.do(t, "GET", "/kubernetes/agent/manifest?agentIdentifier=bad%20id&namespace=Not_A_Namespace", admin, nil), http.StatusUnprocessableEntity)
	var fields []string
	for _, it := range e.Errors {
		fields = append(fields, it.Metadata["field"].(string))
	}
	if !slices.Equal(fields, []string{"query.agentIdentifier", "query.namespace"}) {
		t.Errorf("problems %v, want both parameters", fields)
	}
	if after := ts.do(t, "GET", "/credentials", admin, nil).Body; string(after) != string(before) {
		t.Errorf("refused manifest requests changed the credentials")
	}
}
