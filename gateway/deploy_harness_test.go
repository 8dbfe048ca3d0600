package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/identity"
)

// failMarker in a manifest makes the fake deploy agent refuse to apply it, as an admission
// webhook would.
const failMarker = "sortie-test/refuse-apply"

// fakeDeployAgent is a protocol-level agent on a real HTTP/2 stream that deploys nothing:
// it applies every manifest with success (except those carrying failMarker), answers reads
// with "not found" and patches with success. It proves the API's shapes, not rollouts,
// which the real-cluster tests prove.
func fakeDeployAgent(t testing.TB, ts *testServer, token, identifier string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client := hubv1connect.NewAgentHubServiceClient(h2cClient(), ts.URL, connect.WithGRPC(), connect.WithInterceptors(bearerAll(token)))
	stream := client.Connect(ctx)
	send := func(m *hubv1.ConnectRequest) {
		if err := stream.Send(m); err != nil && ctx.Err() == nil {
			t.Errorf("agent send: %v", err)
		}
	}
	send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Hello{Hello: &hubv1.Hello{
		AgentIdentifier: identifier, AgentInstanceUuid: uuid.NewString(), AgentVersion: "test", KubernetesVersion: "v1.37.2",
	}}})
	send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventorySnapshot{InventorySnapshot: &hubv1.InventorySnapshot{
		SnapshotId: uuid.NewString(), Last: true,
	}}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := stream.Receive()
			if err != nil {
				return
			}
			cmd := msg.GetCommand()
			if cmd == nil {
				continue
			}
			res := &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
				Payload: &hubv1.CommandResult_Resources{Resources: &hubv1.ResourceList{}}}
			switch {
			case cmd.GetGet() != nil:
				res = &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_FAILED,
					Error: &hubv1.CommandError{Code: hubv1.CommandError_CODE_NOT_FOUND, Message: "not found"}}
			case cmd.GetApply() != nil && bytes.Contains(cmd.GetApply().GetManifests(), []byte(failMarker)):
				res = &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_FAILED,
					Error: &hubv1.CommandError{Code: hubv1.CommandError_CODE_INVALID, Message: "admission webhook denied the request"}}
			case cmd.GetListNamespaces() != nil:
				res.Payload = &hubv1.CommandResult_Namespaces{Namespaces: &hubv1.NamespaceList{Names: []string{"web"}}}
			}
			send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: res}})
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = stream.CloseRequest()
		<-done
	})
	// Deployments need the account listed: wait until the hub has registered the agent.
	admin := ts.adminToken(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(getOnce(t, ts.URL+"/v1/accounts", admin)), `"account":"`+identifier+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("agent %s never became an account", identifier)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deployFixture is a server with an agent for account prod-west and a token with
// manage:deploy (the Deployments Full Access role).
type deployFixture struct {
	*testServer
	tok      string // Deployments Full Access
	credName string
}

func newDeployFixture(t *testing.T) *deployFixture {
	t.Helper()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)
	cred := decode[credentialJSON](t, ts.do(t, "POST", "/credentials", admin,
		`{"name":"ci-pipeline","roles":["Deployments Full Access"]}`).Body)
	agentTok := ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeConnectAgentHub)
	fakeDeployAgent(t, ts, agentTok, "prod-west")
	return &deployFixture{testServer: ts, tok: ts.token(t, cred.ClientID, cred.ClientSecret, ""), credName: cred.Name}
}

// credentialJSON is the created credential, as the test needs it.
type credentialJSON struct {
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	Name         string `json:"name"`
}

// deploymentYAML becomes a Rollout, which the fake agent never reports: its target stays
// RUNNING. (A target needs a Deployment; finished pipelines come from refusedYAML and
// aborts, since only a real Rollouts controller makes a Rollout healthy.)
const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`

// refusedYAML is deploymentYAML with a ConfigMap the fake agent refuses to apply: its target
// ends FAILED.
const refusedYAML = deploymentYAML + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  reason: " + failMarker + "\n"

// deployYML is a deploy.yml (as the CLI sends it, JSON) of one target prod on prod-west;
// extra replaces top-level keys.
func deployYML(app string, manifest string, extra map[string]any) map[string]any {
	m := map[string]any{
		"version":     "v1",
		"kind":        "kubernetes",
		"application": app,
		"targets": map[string]any{
			"prod": map[string]any{"account": "prod-west", "namespace": "web", "strategy": "rolling"},
		},
		"manifests": []any{map[string]any{"path": "k8s/app.yaml"}},
		"files":     map[string]any{"k8s/app.yaml": []string{manifest}},
		"strategies": map[string]any{"rolling": map[string]any{"canary": map[string]any{"steps": []any{
			map[string]any{"setWeight": map[string]any{"weight": 50}},
			map[string]any{"pause": map[string]any{"duration": 1, "unit": "hours"}},
		}}}},
		"context":       map[string]string{"commit": "abc123"},
		"targetFilters": nil,
		"sourceControl": map[string]any{"sha": "abc123"},
	}
	maps.Copy(m, extra)
	return m
}

// gated is deploy.yml extra keys that make prod wait for an approval before deploying.
func gated(app string) map[string]any {
	return deployYML(app, deploymentYAML, map[string]any{"targets": map[string]any{
		"prod": map[string]any{"account": "prod-west", "namespace": "web", "strategy": "rolling",
			"constraints": map[string]any{"beforeDeployment": []any{map[string]any{"pause": map[string]any{"untilApproved": true}}}}},
	}})
}

// rawRequest sends a request with exactly the given headers and body.
func (ts *testServer) rawRequest(t *testing.T, method, path, token string, headers map[string]string, body []byte) response {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// startPipeline starts a pipeline as the Armory CLI does and returns its id.
func (f *deployFixture) startPipeline(t *testing.T, body map[string]any) string {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	r := f.rawRequest(t, "POST", "/pipelines/kubernetes", f.tok,
		map[string]string{"Content-Type": gatewayPipelineMediaType, "Accept": gatewayPipelineMediaType}, data)
	if r.Status != http.StatusAccepted {
		t.Fatalf("start pipeline: %d %s", r.Status, r.Body)
	}
	return decode[pipelineStartedJSON](t, r.Body).PipelineID
}

const gatewayPipelineMediaType = "application/vnd.start.kubernetes.pipeline.v2+json"

type pipelineStartedJSON struct {
	PipelineID string   `json:"pipelineId"`
	Warnings   []string `json:"warnings"`
}

// pipelineJSON mirrors the GET /pipelines/{id} reply, pinning the JSON names clients read.
type pipelineJSON struct {
	ID                 string            `json:"id"`
	Application        string            `json:"application"`
	Status             string            `json:"status"`
	StartedAtIso8601   *string           `json:"startedAtIso8601"`
	CompletedAtIso8601 *string           `json:"completedAtIso8601"`
	Context            map[string]string `json:"context"`
	Description        *string           `json:"description"`
	InitiatedBy        struct {
		Type, Name, ID string
	} `json:"initiatedBy"`
	Source *struct {
		Product string `json:"product"`
		Version string `json:"version"`
	} `json:"source"`
	BlockedBy *string `json:"blockedBy"`
	Steps     []struct {
		Ref           string   `json:"ref"`
		Type          string   `json:"type"`
		Status        string   `json:"status"`
		DependsOn     []string `json:"dependsOn"`
		ConstraintFor string   `json:"constraintFor"`
		Deployment    *struct {
			ID          string `json:"id"`
			Environment string `json:"environment"`
			Step        int    `json:"step"`
			TotalSteps  int    `json:"totalSteps"`
		} `json:"deployment"`
		Pause *struct {
			Duration      int64  `json:"duration"`
			Unit          string `json:"unit"`
			UntilApproved bool   `json:"untilApproved"`
		} `json:"pause"`
	} `json:"steps"`
	Environments []struct {
		Name         string `json:"name"`
		Account      string `json:"account"`
		DeploymentID string `json:"deploymentId"`
		Status       string `json:"status"`
		PauseInfo    *struct {
			Reason string `json:"reason"`
			Step   string `json:"step"`
		} `json:"pauseInfo"`
	} `json:"environments"`
	Decisions []struct {
		Action    string `json:"action"`
		Step      string `json:"step"`
		AtIso8601 string `json:"atIso8601"`
		Actor     struct {
			Type, Name, ID string
		} `json:"actor"`
	} `json:"decisions"`
	SourceControl map[string]any `json:"sourceControl"`
}

// getPipeline reads a pipeline as the Armory CLI polls it: Content-Type set, no body.
func (f *deployFixture) getPipeline(t *testing.T, id string) pipelineJSON {
	t.Helper()
	r := f.rawRequest(t, "GET", "/pipelines/"+id, f.tok, map[string]string{"Content-Type": "application/json"}, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /pipelines/%s: %d %s", id, r.Status, r.Body)
	}
	return decode[pipelineJSON](t, r.Body)
}

// waitStatus polls the pipeline until it has status want, as the CLI does (faster).
func (f *deployFixture) waitStatus(t *testing.T, id, want string) pipelineJSON {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := f.getPipeline(t, id)
		if p.Status == want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline %s is %s, want %s", id, p.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
