package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

// cliPipelineQuery is the GraphQL document the Armory CLI (v1.20.0) sends after a start, as it
// appears on the wire (its variable is typed uuid!).
const cliPipelineQuery = "\n  query ($pipelineID: uuid!) {\n    pipelineById(id: $pipelineID) {\n      id\n      status\n      blockedByPipeline {\n        id\n      }\n      application {\n        name\n      }\n    }\n  }\n"

// cliGraphQLBody is the request body the CLI's GraphQL client writes: an encoding/json
// Encoder's output, so it ends with a newline.
func cliGraphQLBody(pipelineID string) []byte {
	q, _ := json.Marshal(cliPipelineQuery)
	return fmt.Appendf(nil, `{"query":%s,"variables":{"pipelineID":"%s"}}`+"\n", q, pipelineID)
}

// cliGraphQLHeaders are the headers of the CLI's GraphQL requests (besides Authorization).
var cliGraphQLHeaders = map[string]string{
	"Content-Type": "application/json; charset=utf-8",
	"Accept":       "application/json; charset=utf-8",
	"X-Request-ID": "0b6f9a52-7c1e-4d3a-8f2b-5e9d1c4a7b30",
}

// askLikeTheCLI sends the CLI's pipelineById request and returns the exchange.
func (f *deployFixture) askLikeTheCLI(t *testing.T, token, pipelineID string) response {
	t.Helper()
	return f.rawRequest(t, "POST", "/v1/graphql", token, cliGraphQLHeaders, cliGraphQLBody(pipelineID))
}

// graphQL sends a query with variables as a generic client would.
func (f *deployFixture) graphQL(t *testing.T, token, query string, vars map[string]any) response {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	return f.rawRequest(t, "POST", "/v1/graphql", token, map[string]string{"Content-Type": "application/json"}, body)
}

// graphQLErrors is GraphQL's error format.
type graphQLErrors struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
		Locations  []struct{ Line, Column int }
	} `json:"errors"`
}

// wantGraphQLError asserts a reply is GraphQL's error format with status and a first message
// containing msg.
func wantGraphQLError(t *testing.T, what string, r response, status int, msg string) graphQLErrors {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var e graphQLErrors
	if err := json.Unmarshal(r.Body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("%s: not a GraphQL error reply (%v): %s", what, err, r.Body)
	}
	if !strings.Contains(e.Errors[0].Message, msg) {
		t.Errorf("%s: message %q does not say %q", what, e.Errors[0].Message, msg)
	}
	return e
}

// TestGraphQLAnswersTheArmoryCLI replays the CLI's request for a running, a queued and a
// replaced (REJECTED) pipeline and pins the exact reply bytes it decodes.
func TestGraphQLAnswersTheArmoryCLI(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	running := f.startPipeline(t, gated("web"))
	f.waitStatus(t, running, "AWAITING_APPROVAL")
	enqueue := gated("web")
	enqueue["deploymentConfig"] = map[string]any{"ifDeploymentInProgress": map[string]any{"strategy": "enqueueOne"}}
	older := f.startPipeline(t, enqueue)
	olderQueued := f.askLikeTheCLI(t, f.tok, older)
	newer := f.startPipeline(t, enqueue)

	want := func(id, status, blockedBy string) string {
		b := "null"
		if blockedBy != "" {
			b = `{"id":"` + blockedBy + `"}`
		}
		return `{"data":{"pipelineById":{"id":"` + id + `","status":"` + status + `","blockedByPipeline":` + b + `,"application":{"name":"web"}}}}` + "\n"
	}
	for _, c := range []struct {
		name string
		r    response
		want string
	}{
		{"running", f.askLikeTheCLI(t, f.tok, running), want(running, "AWAITING_APPROVAL", "")},
		{"queued", olderQueued, want(older, "QUEUED", running)},
		{"replaced", f.askLikeTheCLI(t, f.tok, older), want(older, "REJECTED", newer)},
		{"newer queued", f.askLikeTheCLI(t, f.tok, newer), want(newer, "QUEUED", running)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.r.Status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", c.r.Status, c.r.Body)
			}
			if ct := c.r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q, want application/json; charset=utf-8", ct)
			}
			if diff := cmp.Diff(c.want, string(c.r.Body)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}

	// A read:deploy token is enough; it reads the same thing.
	reader := f.token(t, f.admin.Admin.ClientID, f.admin.Secret, identity.ScopeReadDeploy)
	if r := f.askLikeTheCLI(t, reader, running); r.Status != http.StatusOK || !strings.Contains(string(r.Body), running) {
		t.Errorf("read:deploy token: %d %s", r.Status, r.Body)
	}
}

// TestGraphQLAuthorization proves the endpoint's token and scope checks, in GraphQL's error
// format.
func TestGraphQLAuthorization(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	id := f.startPipeline(t, gated("web"))

	r := f.askLikeTheCLI(t, "", id)
	wantGraphQLError(t, "no token", r, http.StatusUnauthorized, "missing bearer token")
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	wantGraphQLError(t, "garbage token", f.askLikeTheCLI(t, "not-a-jwt", id), http.StatusUnauthorized, "")

	for _, scope := range []string{identity.ScopeManageCredentials, identity.ScopeConnectAgentHub, identity.ScopeReadInfrastructure, identity.ScopeManageTenant} {
		tok := f.token(t, f.admin.Admin.ClientID, f.admin.Secret, scope)
		e := wantGraphQLError(t, "scope "+scope, f.askLikeTheCLI(t, tok, id), http.StatusForbidden, identity.ScopeReadDeploy)
		if e.Errors[0].Extensions["code"] != "forbidden" || strings.Contains(string(e.Data), "web") {
			t.Errorf("scope %s: %+v", scope, e)
		}
	}
	for _, scope := range []string{identity.ScopeReadDeploy, identity.ScopeManageDeploy} {
		tok := f.token(t, f.admin.Admin.ClientID, f.admin.Secret, scope)
		if r := f.askLikeTheCLI(t, tok, id); r.Status != http.StatusOK {
			t.Errorf("scope %s: %d %s", scope, r.Status, r.Body)
		}
	}
}

// TestGraphQLTenantIsolation proves another tenant's ids are null and never listed.
func TestGraphQLTenantIsolation(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	id := f.startPipeline(t, gated("web"))
	beta, err := f.svc.CreateOrganization(context.Background(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	created := decode[struct {
		AdminCredential credentialJSON `json:"adminCredential"`
	}](t, f.do(t, "POST", "/environments", f.adminToken(t), `{"name":"staging"}`).Body)
	for name, tok := range map[string]string{
		"other organization": f.token(t, beta.Admin.ClientID, beta.Secret, ""),
		"other environment":  f.token(t, created.AdminCredential.ClientID, created.AdminCredential.ClientSecret, ""),
	} {
		t.Run(name, func(t *testing.T) {
			r := f.askLikeTheCLI(t, tok, id)
			if r.Status != http.StatusOK || string(r.Body) != `{"data":{"pipelineById":null}}`+"\n" {
				t.Errorf("another tenant's id: %d %s, want data.pipelineById null", r.Status, r.Body)
			}
			r = f.graphQL(t, tok, `{ pipelines { id } }`, nil)
			if r.Status != http.StatusOK || string(r.Body) != `{"data":{"pipelines":[]}}`+"\n" {
				t.Errorf("another tenant's list: %d %s, want empty", r.Status, r.Body)
			}
		})
	}
}

// TestGraphQLPipelinesQuery proves the list query's filters and fields.
func TestGraphQLPipelinesQuery(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	web := f.startPipeline(t, gated("web"))
	f.waitStatus(t, web, "AWAITING_APPROVAL")
	api := f.startPipeline(t, deployYML("api", refusedYAML, nil))
	f.waitStatus(t, api, "FAILED")

	type env struct {
		Name, Account, Namespace, DeploymentID, Status string
	}
	type pl struct {
		ID                 string `json:"id"`
		Status             string `json:"status"`
		Application        struct{ Name string }
		Message            *string `json:"message"`
		CompletedAtIso8601 *string `json:"completedAtIso8601"`
		Environments       []env   `json:"environments"`
	}
	const q = `query ($app: String, $status: [PipelineStatus!]) {
  pipelines(application: $app, status: $status) { id status application { name } message completedAtIso8601
    environments { name account namespace deploymentId status } } }`
	list := func(vars map[string]any) []pl {
		t.Helper()
		r := f.graphQL(t, f.tok, q, vars)
		if r.Status != http.StatusOK {
			t.Fatalf("pipelines %v: %d %s", vars, r.Status, r.Body)
		}
		out := decode[struct {
			Data   struct{ Pipelines []pl }
			Errors []any
		}](t, r.Body)
		if out.Errors != nil {
			t.Fatalf("pipelines %v: errors %s", vars, r.Body)
		}
		return out.Data.Pipelines
	}
	ids := func(ps []pl) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		vars map[string]any
		want []string
	}{
		{"all, newest first", nil, []string{api, web}},
		{"by application", map[string]any{"app": "web"}, []string{web}},
		{"by status", map[string]any{"status": []string{"FAILED"}}, []string{api}},
		{"single status value", map[string]any{"status": "AWAITING_APPROVAL"}, []string{web}},
		{"both", map[string]any{"app": "web", "status": []string{"FAILED"}}, []string{}},
	} {
		if diff := cmp.Diff(c.want, ids(list(c.vars))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	r := f.graphQL(t, f.tok, `query ($n: Int) { pipelines(first: $n) { id } }`, map[string]any{"n": 1})
	if want := `{"data":{"pipelines":[{"id":"` + api + `"}]}}` + "\n"; r.Status != http.StatusOK || string(r.Body) != want {
		t.Errorf("first: 1 as a variable: %d %s, want %s", r.Status, r.Body, want)
	}
	failed := list(map[string]any{"app": "api"})[0]
	if failed.Status != "FAILED" || failed.Message == nil || *failed.Message == "" || failed.CompletedAtIso8601 == nil {
		t.Errorf("failed pipeline: %+v", failed)
	}
	wantEnv := []env{{Name: "prod", Account: "prod-west", Namespace: "web", DeploymentID: failed.Environments[0].DeploymentID, Status: "FAILED"}}
	if diff := cmp.Diff(wantEnv, failed.Environments); diff != "" || len(failed.Environments[0].DeploymentID) != 36 {
		t.Errorf("environments (-want +got):\n%s", diff)
	}
}

// TestGraphQLRefusals proves bad requests get a precise error in GraphQL's format.
func TestGraphQLRefusals(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	json := map[string]string{"Content-Type": "application/json"}
	raw := func(method string, headers map[string]string, body string) response {
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		return f.rawRequest(t, method, "/v1/graphql", f.tok, headers, b)
	}
	cases := []struct {
		name   string
		r      response
		status int
		msg    string
		code   string
	}{
		{"GET", raw("GET", nil, ""), http.StatusMethodNotAllowed, "send the query with POST", "method_not_allowed"},
		{"form body", raw("POST", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "query=x"), http.StatusUnsupportedMediaType, "send application/json", "unsupported_media_type"},
		{"not JSON", raw("POST", json, `{"query": `), http.StatusBadRequest, "not a GraphQL request", "bad_request"},
		{"query not a string", raw("POST", json, `{"query": 3}`), http.StatusBadRequest, "query must be string", "bad_request"},
		{"no query", raw("POST", json, `{"variables": {}}`), http.StatusBadRequest, "the body has no query", "bad_request"},
		{"too large", raw("POST", json, `{"query": "`+strings.Repeat("x", 10<<20)+`"}`), http.StatusRequestEntityTooLarge, "larger than", "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := wantGraphQLError(t, c.name, c.r, c.status, c.msg)
			if e.Errors[0].Extensions["code"] != c.code {
				t.Errorf("code %v, want %s", e.Errors[0].Extensions["code"], c.code)
			}
		})
	}

	// Errors of the query itself are GraphQL's own, on a 200 as GraphQL over HTTP has it.
	for _, c := range []struct {
		name, query string
		vars        map[string]any
		msg         string
	}{
		{"not a uuid", cliPipelineQuery, map[string]any{"pipelineID": "web-123"}, `"web-123" is not a uuid`},
		{"missing variable", cliPipelineQuery, nil, "pipelineID"},
		{"syntax", `{ pipelineById(id: "x" { id } }`, nil, "syntax error"},
		{"unknown field", `{ pipelines { id owner } }`, nil, `Cannot query field "owner"`},
		{"unknown status", `{ pipelines(status: [DONE]) { id } }`, nil, "DONE"},
		{"page too large", `{ pipelines(first: 501) { id } }`, nil, "first must be between 1 and 500, not 501"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := wantGraphQLError(t, c.name, f.graphQL(t, f.tok, c.query, c.vars), http.StatusOK, c.msg)
			if c.name == "syntax" && len(e.Errors[0].Locations) == 0 {
				t.Errorf("a syntax error without its location: %+v", e.Errors[0])
			}
		})
	}
}
