package spinnaker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim/simagent"
)

func TestMain(m *testing.M) {
	dir, err := sortie.BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sortie.BinDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a sortie-server with a simulated agent for one account and the token of a
// "Deployments Full Access" credential, as a Spinnaker operator would set it up.
type server struct {
	url                  string
	admin                string
	clientID, secret     string // the spinnaker credential
	deployToken, account string
}

func startServer(t *testing.T, account string) *server {
	t.Helper()
	dir := t.TempDir()
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dir, Args: []string{"--pipeline-resync", "200ms"}})
	id, secret := sortie.AdminCredential(t, dir)
	s := &server{url: srv.URL, admin: sortie.Token(t, srv.URL, id, secret), account: account}

	agentID, agentSecret := sortie.AgentCredential(t, srv.URL, s.admin, "agent-"+account)
	ctx, cancel := context.WithCancel(context.Background())
	agent, err := simagent.Dial(ctx, simagent.H2CClient(), srv.URL, sortie.Token(t, srv.URL, agentID, agentSecret), account, rolloutsim.New(nil), 20*time.Millisecond)
	if err != nil {
		cancel()
		t.Fatalf("simulated agent: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = agent.Close() })
	sortie.WaitFor(t, 10*time.Second, "the simulated agent to be an account", func() bool {
		return len(sortie.ConnectedAgents(t, srv.URL, s.admin, account)) > 0
	})

	status, body := sortie.Call(t, "POST", srv.URL+"/credentials", s.admin, map[string]any{"name": "spinnaker", "roles": []string{"Deployments Full Access"}})
	if status != http.StatusCreated {
		t.Fatalf("create the spinnaker credential: %d %s", status, body)
	}
	var cred struct{ ClientID, ClientSecret string }
	_ = json.Unmarshal(body, &cred)
	s.clientID, s.secret = cred.ClientID, cred.ClientSecret
	s.deployToken = sortie.Token(t, srv.URL, cred.ClientID, cred.ClientSecret)
	return s
}

func deploymentYAML(image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
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
        image: %s
`, image)
}

// exchange sends a request with exactly these headers and body and decodes a JSON reply.
func exchange(t *testing.T, method, u string, headers http.Header, body []byte) (int, map[string]any, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = headers.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out, data
}

// --- the preconfigured webhook stage, as Orca runs it ---

// stageConfig is the part of orca-local.yml the stage file holds.
type stageConfig struct {
	Webhook struct {
		Preconfigured []preconfiguredWebhook `json:"preconfigured"`
	} `json:"webhook"`
}

// preconfiguredWebhook mirrors the fields of Orca's WebhookProperties.PreconfiguredWebhook
// the stage uses; unknown fields fail the test, so a typo in the YAML cannot pass.
type preconfiguredWebhook struct {
	Label               string              `json:"label"`
	Type                string              `json:"type"`
	Enabled             bool                `json:"enabled"`
	Description         string              `json:"description"`
	Method              string              `json:"method"`
	URL                 string              `json:"url"`
	CustomHeaders       map[string][]string `json:"customHeaders"`
	Payload             string              `json:"payload"`
	FailFastStatusCodes []int               `json:"failFastStatusCodes"`
	WaitForCompletion   bool                `json:"waitForCompletion"`
	StatusURLResolution string              `json:"statusUrlResolution"`
	StatusURLJSONPath   string              `json:"statusUrlJsonPath"`
	StatusJSONPath      string              `json:"statusJsonPath"`
	SuccessStatuses     string              `json:"successStatuses"`
	CanceledStatuses    string              `json:"canceledStatuses"`
	TerminalStatuses    string              `json:"terminalStatuses"`
	Parameters          []struct {
		Name         string `json:"name"`
		Label        string `json:"label"`
		Description  string `json:"description"`
		DefaultValue string `json:"defaultValue"`
		Type         string `json:"type"`
		Order        int    `json:"order"`
	} `json:"parameters"`
}

// springPlaceholder is a ${NAME} Spring resolves from Orca's environment at start-up.
var springPlaceholder = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)

// loadStage reads orca-webhook-stage.yml and resolves its placeholders from env, as Spring
// does when Orca starts.
func loadStage(t *testing.T, env map[string]string) preconfiguredWebhook {
	t.Helper()
	data, err := os.ReadFile("orca-webhook-stage.yml")
	if err != nil {
		t.Fatal(err)
	}
	resolved := springPlaceholder.ReplaceAllStringFunc(string(data), func(m string) string {
		name := springPlaceholder.FindStringSubmatch(m)[1]
		v, ok := env[name]
		if !ok {
			t.Fatalf("the stage reads ${%s}, which the guide does not ask Orca's environment for", name)
		}
		return v
	})
	var cfg stageConfig
	if err := yaml.UnmarshalStrict([]byte(resolved), &cfg); err != nil {
		t.Fatalf("orca-webhook-stage.yml: %v", err)
	}
	if len(cfg.Webhook.Preconfigured) != 1 {
		t.Fatalf("want one preconfigured webhook, found %d", len(cfg.Webhook.Preconfigured))
	}
	return cfg.Webhook.Preconfigured[0]
}

// spelExpr matches the two SpEL forms the stage uses: a parameter value, raw or as JSON.
var (
	spelAny   = regexp.MustCompile(`\$\{[^}]*\}`)
	spelParam = regexp.MustCompile(`^\$\{(#toJson\()?parameterValues\['([a-zA-Z]+)'\](\))?\}$`)
)

// evaluate replaces the stage's expressions with parameter values, as Orca does before each
// task; an expression of another form fails the test, since this replay could not vouch for it.
func evaluate(t *testing.T, s string, params map[string]string) string {
	t.Helper()
	return spelAny.ReplaceAllStringFunc(s, func(expr string) string {
		m := spelParam.FindStringSubmatch(expr)
		if m == nil || (m[1] == "") != (m[3] == "") {
			t.Fatalf("expression %s is not one this test knows how Orca evaluates", expr)
		}
		v, ok := params[m[2]]
		if !ok {
			t.Fatalf("expression %s names an unknown parameter", expr)
		}
		if m[1] != "" {
			b, _ := json.Marshal(v)
			return string(b)
		}
		return v
	})
}

// jsonPath evaluates the two JsonPath forms the stage uses: $.a.b and
// $.concat("literal", $.a.b) (Jayway's concat, which Orca's JsonPath provides).
func jsonPath(t *testing.T, doc map[string]any, expr string) string {
	t.Helper()
	field := func(path string) string {
		if !strings.HasPrefix(path, "$.") {
			t.Fatalf("JsonPath %q: want $.field", path)
		}
		var cur any = doc
		for _, k := range strings.Split(strings.TrimPrefix(path, "$."), ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("JsonPath %s: no %s in %v", path, k, cur)
			}
			if cur, ok = m[k]; !ok {
				t.Fatalf("JsonPath %s: the reply has no %s: %v", path, k, doc)
			}
		}
		s, ok := cur.(string)
		if !ok {
			t.Fatalf("JsonPath %s resolves to %v, not a string", path, cur)
		}
		return s
	}
	if m := regexp.MustCompile(`^\$\.concat\("([^"]*)", (\$\.[a-zA-Z.]+)\)$`).FindStringSubmatch(expr); m != nil {
		return m[1] + field(m[2])
	}
	return field(expr)
}

// orcaStatus maps a status value as Orca's MonitorWebhookTask does: upper-cased and looked
// up in the three lists; anything else keeps the stage RUNNING.
func orcaStatus(w preconfiguredWebhook, value string) string {
	in := func(list string) bool {
		for _, s := range strings.Split(list, ",") {
			if strings.ToUpper(strings.TrimSpace(s)) == strings.ToUpper(value) {
				return true
			}
		}
		return false
	}
	switch {
	case in(w.SuccessStatuses):
		return "SUCCEEDED"
	case in(w.CanceledStatuses):
		return "CANCELED"
	case in(w.TerminalStatuses):
		return "TERMINAL"
	}
	return "RUNNING"
}

// stageRun is one execution of the stage: its create call done, its status endpoint known.
type stageRun struct {
	w              preconfiguredWebhook
	headers        http.Header
	statusEndpoint string
	deploymentID   string
}

// runStage sends the stage's create request with the user's parameter values (Deck fills in
// the defaults) and resolves the status endpoint from the reply.
func runStage(t *testing.T, w preconfiguredWebhook, values map[string]string) *stageRun {
	t.Helper()
	params := map[string]string{}
	for _, p := range w.Parameters {
		params[p.Name] = p.DefaultValue
	}
	for k, v := range values {
		if _, ok := params[k]; !ok {
			t.Fatalf("the stage has no parameter %s", k)
		}
		params[k] = v
	}
	headers := http.Header{}
	for k, vs := range w.CustomHeaders {
		for _, v := range vs {
			headers.Add(k, evaluate(t, v, params))
		}
	}
	payload := evaluate(t, w.Payload, params)
	if !json.Valid([]byte(payload)) {
		t.Fatalf("the evaluated payload is not JSON:\n%s", payload)
	}
	status, reply, raw := exchange(t, w.Method, evaluate(t, w.URL, params), headers, []byte(payload))
	if status < 200 || status > 299 || slices.Contains(w.FailFastStatusCodes, status) {
		t.Fatalf("the stage's create call failed: %d %s", status, raw)
	}
	if w.StatusURLResolution != "webhookResponse" {
		t.Fatalf("statusUrlResolution %s: this replay resolves webhookResponse only", w.StatusURLResolution)
	}
	run := &stageRun{w: w, headers: headers, statusEndpoint: jsonPath(t, reply, w.StatusURLJSONPath)}
	run.deploymentID = jsonPath(t, reply, "$.deploymentId")
	return run
}

// poll is one status check of the monitor task: GET with the stage's headers and no body.
func (r *stageRun) poll(t *testing.T) (orca, sortieStatus string) {
	t.Helper()
	status, reply, raw := exchange(t, http.MethodGet, r.statusEndpoint, r.headers, nil)
	if status != http.StatusOK {
		t.Fatalf("status check %s: %d %s", r.statusEndpoint, status, raw)
	}
	v := jsonPath(t, reply, r.w.StatusJSONPath)
	return orcaStatus(r.w, v), v
}

// until polls until the deployment's status is want and returns Orca's view of it.
func (r *stageRun) until(t *testing.T, want string) string {
	t.Helper()
	var orca, got string
	sortie.WaitFor(t, 20*time.Second, "deployment status "+want, func() bool {
		orca, got = r.poll(t)
		return got == want
	})
	return orca
}

func TestWebhookStageFollowsADeployment(t *testing.T) {
	t.Parallel()
	s := startServer(t, "prod-west")
	env := map[string]string{"SORTIE_URL": s.url, "SORTIE_TOKEN": s.deployToken}
	w := loadStage(t, env)
	if w.Type == "" || w.Label == "" || !w.Enabled || !w.WaitForCompletion || w.Method != "POST" {
		t.Fatalf("incomplete stage: %+v", w)
	}
	values := func(image string) map[string]string {
		return map[string]string{"account": s.account, "application": "web", "namespace": "web", "manifest": deploymentYAML(image)}
	}

	// The first revision of a Rollout is stable at once: the stage succeeds without pauses.
	first := runStage(t, w, values("web:1"))
	if orca := first.until(t, "SUCCEEDED"); orca != "SUCCEEDED" {
		t.Fatalf("first version: Orca sees %s", orca)
	}
	if want := s.url + "/deployments/" + first.deploymentID; first.statusEndpoint != want {
		t.Errorf("status endpoint %s, want %s", first.statusEndpoint, want)
	}

	second := runStage(t, w, values("web:2"))
	if orca := second.until(t, "AWAITING_APPROVAL"); orca != "RUNNING" {
		t.Errorf("awaiting approval: Orca sees %s, want RUNNING", orca)
	}
	if st, body := sortie.Call(t, "POST", s.url+"/deployments/"+second.deploymentID+"/resume", s.deployToken, nil); st != 200 {
		t.Fatalf("approve: %d %s", st, body)
	}
	if orca := second.until(t, "PAUSED"); orca != "RUNNING" {
		t.Errorf("timed pause: Orca sees %s, want RUNNING", orca)
	}
	if st, body := sortie.Call(t, "POST", s.url+"/deployments/"+second.deploymentID+"/resume", s.deployToken, nil); st != 200 {
		t.Fatalf("skip the timed pause: %d %s", st, body)
	}
	if orca := second.until(t, "SUCCEEDED"); orca != "SUCCEEDED" {
		t.Errorf("finished: Orca sees %s", orca)
	}

	// An aborted deployment ends the stage as canceled.
	third := runStage(t, w, values("web:3"))
	third.until(t, "AWAITING_APPROVAL")
	if st, body := sortie.Call(t, "POST", s.url+"/deployments/"+third.deploymentID+"/abort", s.deployToken, nil); st != 200 {
		t.Fatalf("abort: %d %s", st, body)
	}
	if orca := third.until(t, "CANCELLED"); orca != "CANCELED" {
		t.Errorf("aborted: Orca sees %s, want CANCELED", orca)
	}

	// A stale token fails the create call with 401, a status the stage fails fast on.
	status, _, _ := exchange(t, "POST", s.url+"/deployments/kubernetes", http.Header{"Authorization": {"Bearer expired"}, "Content-Type": {"application/json"}}, []byte(`{}`))
	if status != http.StatusUnauthorized || !slices.Contains(w.FailFastStatusCodes, status) {
		t.Errorf("a bad token: %d, want a 401 the stage fails fast on (%v)", status, w.FailFastStatusCodes)
	}
}

// --- the Armory.Deployments plugin ("Kubernetes Progressive" stage) ---

// pluginAudience is the audience the plugin asks its tokens for.
const pluginAudience = "https://api.cloud.armory.io"

// pluginHeaders are the headers of the plugin's API calls.
func pluginHeaders(token string) http.Header {
	return http.Header{
		"Authorization": {"Bearer " + token},
		"Content-Type":  {"application/json; charset=UTF-8"},
		"Accept":        {"application/json"},
	}
}

// wantFields fails unless every path is present in doc with a value of the kind given
// ("string", "number", "object", "null-or-string", "null-or-object").
func wantFields(t *testing.T, what string, doc map[string]any, fields map[string]string) {
	t.Helper()
	for path, kind := range fields {
		var cur any = doc
		present := true
		for _, k := range strings.Split(path, ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				present = false
				break
			}
			if cur, ok = m[k]; !ok {
				present = false
				break
			}
		}
		if !present {
			t.Errorf("%s: no %s in %v", what, path, doc)
			continue
		}
		ok := false
		switch v := cur.(type) {
		case string:
			ok = kind == "string" || kind == "null-or-string"
		case float64:
			ok = kind == "number"
		case map[string]any:
			ok = kind == "object" || kind == "null-or-object"
		case nil:
			ok = strings.HasPrefix(kind, "null-or-")
		default:
			_ = v
		}
		if !ok {
			t.Errorf("%s: %s is %v (%T), want %s", what, path, cur, cur, kind)
		}
	}
}

// guideExampleURL is the Sortie address the guide's configuration shows.
const guideExampleURL = "https://sortie.example.com"

// pluginConfig is the armory.cloud block of the guide (README.md), with its example address
// replaced by base: the URLs the plugin is told to use.
type pluginConfig struct {
	TokenIssuerURL, APIBaseURL string
}

func guidePluginConfig(t *testing.T, base string) pluginConfig {
	t.Helper()
	guide, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(guide), -1) {
		if strings.Contains(m[1], "armory.cloud:") {
			block = m[1]
		}
	}
	if block == "" {
		t.Fatal("README.md has no yaml block with armory.cloud")
	}
	var cfg struct {
		ArmoryCloud struct {
			Enabled bool `json:"enabled"`
			IAM     struct {
				TokenIssuerURL string `json:"tokenIssuerUrl"`
				ClientID       string `json:"clientId"`
				ClientSecret   string `json:"clientSecret"`
			} `json:"iam"`
			API struct {
				BaseURL string `json:"baseUrl"`
			} `json:"api"`
		} `json:"armory.cloud"`
		Spinnaker struct {
			Extensibility struct {
				Plugins map[string]struct {
					Enabled bool `json:"enabled"`
				} `json:"plugins"`
			} `json:"extensibility"`
		} `json:"spinnaker"`
	}
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(block, guideExampleURL, base)), &cfg); err != nil {
		t.Fatalf("the guide's configuration: %v", err)
	}
	ac := cfg.ArmoryCloud
	if !ac.Enabled || ac.IAM.ClientID == "" || ac.IAM.ClientSecret == "" || !cfg.Spinnaker.Extensibility.Plugins["Armory.Deployments"].Enabled {
		t.Fatalf("the guide's configuration lacks a part the plugin needs: %+v", cfg)
	}
	return pluginConfig{TokenIssuerURL: ac.IAM.TokenIssuerURL, APIBaseURL: ac.API.BaseURL}
}

func TestArmoryDeploymentsPluginRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t, "prod-east")
	// The plugin's URLs, as the guide configures them, for this server.
	cfg := guidePluginConfig(t, s.url)
	base := cfg.APIBaseURL

	// 1. The token, from the configured token issuer URL with the client credential.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.clientID}, "client_secret": {s.secret}, "audience": {pluginAudience}}
	status, tok, raw := exchange(t, "POST", cfg.TokenIssuerURL, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form.Encode()))
	if status != http.StatusOK {
		t.Fatalf("token: %d %s", status, raw)
	}
	wantFields(t, "token", tok, map[string]string{"access_token": "string", "token_type": "string", "expires_in": "number"})
	if tok["token_type"] != "Bearer" {
		t.Errorf("token_type %v, want Bearer", tok["token_type"])
	}
	token, _ := tok["access_token"].(string)
	h := pluginHeaders(token)

	start := func(image string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{
			"account": s.account, "application": "shop", "namespace": "shop",
			"manifests": []any{map[string]any{"inline": map[string]any{"value": deploymentYAML(image)}}},
			"canary": map[string]any{"steps": []any{
				map[string]any{"setWeight": map[string]any{"weight": 25}},
				map[string]any{"pause": map[string]any{"duration": 0, "unit": "NONE", "untilApproved": true}},
				map[string]any{"setWeight": map[string]any{"weight": 50}},
				map[string]any{"pause": map[string]any{"duration": 600, "unit": "SECONDS", "untilApproved": false}},
			}},
		})
		status, reply, raw := exchange(t, "POST", base+"/deployments/kubernetes", h, body)
		if status != http.StatusOK {
			t.Fatalf("start: %d %s", status, raw)
		}
		wantFields(t, "start", reply, map[string]string{"deploymentId": "string"})
		return reply["deploymentId"].(string)
	}
	get := func(id string) map[string]any {
		t.Helper()
		status, reply, raw := exchange(t, "GET", base+"/deployments/"+id, h, nil)
		if status != http.StatusOK {
			t.Fatalf("status: %d %s", status, raw)
		}
		return reply
	}
	until := func(id, want string) map[string]any {
		t.Helper()
		var d map[string]any
		sortie.WaitFor(t, 20*time.Second, "deployment "+want, func() bool { d = get(id); return d["status"] == want })
		return d
	}
	// Every field the stage reads, in every state it shows.
	common := map[string]string{
		"id": "string", "application": "string", "account": "string", "namespace": "string", "status": "string",
		"startedAtIso8601": "null-or-string", "completedAtIso8601": "null-or-string",
		"kubernetes.canary.currentStep": "number", "kubernetes.canary.totalSteps": "number",
		"kubernetes.canary.weight": "number", "kubernetes.canary.pauseInfo": "null-or-object",
	}
	action := func(id, verb string, wantStatus int) {
		t.Helper()
		status, reply, raw := exchange(t, "POST", base+"/deployments/"+id+"/"+verb, h, []byte(`{}`))
		if status != wantStatus {
			t.Fatalf("%s: %d %s, want %d", verb, status, raw, wantStatus)
		}
		if status == http.StatusOK {
			wantFields(t, verb, reply, map[string]string{"message": "string", "numberAffected": "number"})
			if reply["numberAffected"].(float64) < 1 {
				t.Errorf("%s affected nothing: %s", verb, raw)
			}
		}
	}

	first := start("shop:1")
	d := until(first, "SUCCEEDED")
	wantFields(t, "first version", d, common)
	wantFields(t, "first version", d, map[string]string{"startedAtIso8601": "string", "completedAtIso8601": "string"})

	id := start("shop:2")
	d = until(id, "AWAITING_APPROVAL")
	wantFields(t, "awaiting approval", d, common)
	wantFields(t, "awaiting approval", d, map[string]string{"kubernetes.canary.pauseInfo.reason": "string", "kubernetes.canary.pauseInfo.endTimeIso8601": "null-or-string"})
	if d["id"] != id || d["application"] != "shop" || d["account"] != s.account || d["namespace"] != "shop" {
		t.Errorf("awaiting approval: %v", d)
	}
	c := d["kubernetes"].(map[string]any)["canary"].(map[string]any)
	if c["weight"] != 25.0 || c["totalSteps"] != 4.0 || c["pauseInfo"].(map[string]any)["reason"] != "approval" {
		t.Errorf("awaiting approval: canary %v", c)
	}
	action(id, "resume", http.StatusOK)
	d = until(id, "PAUSED")
	wantFields(t, "timed pause", d, map[string]string{"kubernetes.canary.pauseInfo.reason": "string", "kubernetes.canary.pauseInfo.endTimeIso8601": "string"})
	action(id, "resume", http.StatusOK)
	d = until(id, "SUCCEEDED")
	wantFields(t, "succeeded", d, common)
	if c := d["kubernetes"].(map[string]any)["canary"].(map[string]any); c["pauseInfo"] != nil {
		t.Errorf("a finished deployment shows a pause: %v", c)
	}
	action(id, "abort", http.StatusConflict)

	aborted := start("shop:3")
	until(aborted, "AWAITING_APPROVAL")
	action(aborted, "abort", http.StatusOK)
	until(aborted, "CANCELLED")
}
