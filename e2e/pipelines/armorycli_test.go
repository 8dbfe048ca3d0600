package pipelines_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"sigs.k8s.io/yaml"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
)

// The Armory CLI (armory-io/armory-cli v1.20.0) on the wire, replayed byte for byte: what
// `armory deploy start -f deploy.yml -w --add-context commit=abc123 --addr <sortie>
// --authToken <token>` sends and how often.
const (
	cliVersionHeader = "armory-cli/v1.20.0" // X-Armory-Client and User-Agent of its REST calls
	cliPipelineMedia = "application/vnd.start.kubernetes.pipeline.v2+json"
	cliGraphQLMedia  = "application/json; charset=utf-8"
	// cliGraphQLTick is the waiter's interval between GraphQL calls after the first two, and
	// cliGraphQLLimit how long it keeps asking before the start fails.
	cliGraphQLTick  = 5 * time.Second
	cliGraphQLLimit = time.Minute
	// cliPollTick is the interval of its GET /pipelines/{id} polls under -w.
	cliPollTick = 10 * time.Second
	// cliPipelineQuery is its GraphQL document, as it appears on the wire.
	cliPipelineQuery = "\n  query ($pipelineID: uuid!) {\n    pipelineById(id: $pipelineID) {\n      id\n      status\n      blockedByPipeline {\n        id\n      }\n      application {\n        name\n      }\n    }\n  }\n"
)

// armoryCLI replays the CLI's requests against one server with one token, and records what
// it sent.
type armoryCLI struct {
	t     *testing.T
	base  string
	token string
	sent  []string // "METHOD path" of every request, in order
}

// send makes one request with exactly these headers (Authorization added) and body, as the
// CLI's HTTP/1.1 client does, and returns the status and body.
func (c *armoryCLI) send(method, path string, headers map[string]string, body []byte) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	c.sent = append(c.sent, method+" "+path)
	return resp.StatusCode, data
}

// startBody is the body the CLI builds from a deploy.yml: the YAML as a map, with
// application, files (every .yaml/.yml under each manifest path, read from disk), context
// (--add-context), sourceControl (empty without --with-scm) and targetFilters (null without
// -t), marshalled by encoding/json (keys sorted).
func (c *armoryCLI) startBody(deployYML string, addContext map[string]string) (body []byte, enqueue bool) {
	c.t.Helper()
	var payload map[string]any
	if err := yaml.Unmarshal([]byte(deployYML), &payload); err != nil {
		c.t.Fatalf("deploy.yml: %v", err)
	}
	files := map[string][]string{}
	manifests, _ := payload["manifests"].([]any)
	for _, m := range manifests {
		path, _ := m.(map[string]any)["path"].(string)
		if path == "" {
			continue
		}
		var contents []string
		err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				contents = append(contents, string(b))
			}
			return nil
		})
		if err != nil {
			c.t.Fatal(err)
		}
		files[path] = contents
	}
	ctx := map[string]any{}
	for k, v := range addContext {
		ctx[k] = v
	}
	payload["files"] = files
	payload["context"] = ctx
	payload["sourceControl"] = map[string]any{}
	payload["targetFilters"] = []map[string]any(nil)
	b, err := json.Marshal(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	dc, _ := payload["deploymentConfig"].(map[string]any)
	inProgress, _ := dc["ifDeploymentInProgress"].(map[string]any)
	return b, inProgress["strategy"] == "enqueueOne"
}

// start posts the deploy.yml as the CLI does: to /pipelines/kubernetes with its media type
// in Content-Type and Accept, or, with strategy enqueueOne, to /pipelines as plain JSON.
// Anything but exactly 202 fails the start.
func (c *armoryCLI) start(deployYML string, addContext map[string]string) string {
	c.t.Helper()
	body, enqueue := c.startBody(deployYML, addContext)
	path, headers := "/pipelines/kubernetes", map[string]string{
		"Content-Type": cliPipelineMedia, "Accept": cliPipelineMedia,
		"X-Armory-Client": cliVersionHeader, "User-Agent": cliVersionHeader,
	}
	if enqueue {
		path, headers = "/pipelines", map[string]string{
			"Content-Type": "application/json", "X-Armory-Client": cliVersionHeader, "User-Agent": cliVersionHeader,
		}
	}
	status, reply := c.send("POST", path, headers, body)
	if status != http.StatusAccepted {
		c.t.Fatalf("POST %s: %d %s; the CLI accepts only 202", path, status, reply)
	}
	var r struct {
		PipelineID string   `json:"pipelineId"`
		Warnings   []string `json:"warnings"`
	}
	if err := json.Unmarshal(reply, &r); err != nil || r.PipelineID == "" || r.Warnings == nil {
		c.t.Fatalf("start reply %s: want pipelineId and warnings", reply)
	}
	return r.PipelineID
}

// cliPipeline is what the CLI decodes from data.pipelineById.
type cliPipeline struct {
	ID                string       `json:"id"`
	Status            string       `json:"status"`
	BlockedByPipeline *cliPipeline `json:"blockedByPipeline"`
	Application       struct {
		Name string `json:"name"`
	} `json:"application"`
}

// graphQL sends the CLI's pipelineById request; only HTTP 200 with data and no errors counts.
func (c *armoryCLI) graphQL(id string) (*cliPipeline, []byte) {
	c.t.Helper()
	q, _ := json.Marshal(cliPipelineQuery)
	body := fmt.Appendf(nil, `{"query":%s,"variables":{"pipelineID":"%s"}}`+"\n", q, id)
	status, reply := c.send("POST", "/v1/graphql", map[string]string{
		"Content-Type": cliGraphQLMedia, "Accept": cliGraphQLMedia, "X-Request-ID": uuid.NewString(),
		"User-Agent": "Go-http-client/1.1",
	}, body)
	if status != http.StatusOK {
		c.t.Fatalf("POST /v1/graphql: %d %s; the CLI retries non-200 replies until its start fails", status, reply)
	}
	var r struct {
		Data struct {
			PipelineByID *cliPipeline `json:"pipelineById"`
		} `json:"data"`
		Errors []any `json:"errors"`
	}
	if err := json.Unmarshal(reply, &r); err != nil || len(r.Errors) > 0 || r.Data.PipelineByID == nil {
		c.t.Fatalf("POST /v1/graphql: %s; the CLI wants data.pipelineById", reply)
	}
	return r.Data.PipelineByID, reply
}

// processed is the CLI's test of a GraphQL answer: done unless QUEUED without a blocker (or
// REJECTED before its blocker is known).
func processed(p *cliPipeline) bool {
	if p.Status == "REJECTED" && p.BlockedByPipeline == nil {
		return false
	}
	return p.Status != "QUEUED" || p.BlockedByPipeline != nil
}

// waitProcessed is the CLI's wait right after a 202: two calls back to back, then one every
// cliGraphQLTick, for up to cliGraphQLLimit.
func (c *armoryCLI) waitProcessed(id string) *cliPipeline {
	c.t.Helper()
	first, firstRaw := c.graphQL(id)
	second, secondRaw := c.graphQL(id)
	if !bytes.Equal(firstRaw, secondRaw) {
		c.t.Errorf("two back-to-back GraphQL calls answered differently:\n%s\n%s", firstRaw, secondRaw)
	}
	if first.ID != id || second.ID != id {
		c.t.Fatalf("GraphQL answered for %q, asked for %s", first.ID, id)
	}
	deadline := time.Now().Add(cliGraphQLLimit)
	p := second
	for !processed(p) {
		if time.Now().After(deadline) {
			c.t.Fatalf("pipeline %s still unprocessed after %s: the CLI's start would fail", id, cliGraphQLLimit)
		}
		time.Sleep(cliGraphQLTick)
		p, _ = c.graphQL(id)
	}
	return p
}

// poll is one GET /pipelines/{id} of the CLI's -w loop: Content-Type set, no body. One
// non-200 ends the CLI's watch, so it fails the test.
func (c *armoryCLI) poll(id string) pipelineView {
	c.t.Helper()
	status, body := c.send("GET", "/pipelines/"+id, map[string]string{
		"Content-Type": "application/json", "X-Armory-Client": cliVersionHeader, "User-Agent": cliVersionHeader,
	}, nil)
	if status != http.StatusOK {
		c.t.Fatalf("GET /pipelines/%s: %d %s; one failed poll ends the CLI's watch", id, status, body)
	}
	var v pipelineView
	if err := json.Unmarshal(body, &v); err != nil {
		c.t.Fatalf("poll reply: %v", err)
	}
	for _, s := range v.Steps {
		if s.Type == "pause" && s.Pause == nil {
			c.t.Errorf("pause step %s without its pause object: the CLI's status view needs it", s.Ref)
		}
	}
	return v
}

// watch polls every cliPollTick, as -w does, calling each for every reply, until the
// pipeline is SUCCEEDED, FAILED or CANCELLED (the CLI's final states) or limit passes.
func (c *armoryCLI) watch(id string, limit time.Duration, each func(pipelineView)) pipelineView {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		time.Sleep(cliPollTick)
		v := c.poll(id)
		each(v)
		switch v.Status {
		case "SUCCEEDED", "FAILED", "CANCELLED":
			return v
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pipeline %s still %s after %s", id, v.Status, limit)
		}
	}
}

// principalEnvID reads envId from the token's principal claim, as the CLI does for its
// status links.
func principalEnvID(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("the token is not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]json.RawMessage
	_ = json.Unmarshal(payload, &claims)
	var p struct {
		EnvID string `json:"envId"`
	}
	if err := json.Unmarshal(claims["https://cloud.armory.io/principal"], &p); err != nil {
		t.Fatalf("principal claim: %v", err)
	}
	return p.EnvID
}

// cliDeployYML is a deploy.yml of application app on one target, its manifests in dir.
func cliDeployYML(app, account, ns, dir string, enqueue bool, steps string) string {
	s := fmt.Sprintf(`version: v1
kind: kubernetes
application: %[1]s
targets:
  prod:
    account: %[2]s
    namespace: %[3]s
    strategy: canary-approval
manifests:
  - path: %[4]s
strategies:
  canary-approval:
    canary:
      steps:
%[5]s`, app, account, ns, dir, steps)
	if enqueue {
		s += "deploymentConfig:\n  ifDeploymentInProgress:\n    strategy: enqueueOne\n"
	}
	return s
}

// manifestDir writes the namespace and the Deployment of app running image into a new
// directory, as a repository would hold them.
func manifestDir(t *testing.T, ns, app, image string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"00-namespace.yaml": namespaceYAML(ns), "deployment.yml": deploymentYAML(app, image)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestArmoryCLIStartQueueApproveSucceed replays `armory deploy start -w` twice against a real
// server, agent and cluster: a first CLI pipeline that runs at once and waits at an approval,
// and a second one that queues behind it (enqueueOne), is reported queued by GraphQL, starts
// when the first succeeds, waits at its own approval and succeeds.
func TestArmoryCLIStartQueueApproveSucceed(t *testing.T) {
	t.Parallel()
	app := unique("cli")
	e := newEnv(t, sortie.ServerConfig{})
	e.agent(t, e.srv.URL, "cli-cluster")
	e.firstVersion(t, app, "cli-cluster", app, "cli:1")

	// The CLI runs with a Deployments Full Access token of the environment.
	status, body := sortie.Call(t, "POST", e.srv.URL+"/credentials", e.admin, map[string]any{"name": "ci", "roles": []string{"Deployments Full Access"}})
	if status != http.StatusCreated {
		t.Fatalf("create credential: %d %s", status, body)
	}
	var cred struct{ ClientID, ClientSecret string }
	_ = json.Unmarshal(body, &cred)
	cli := &armoryCLI{t: t, base: e.srv.URL, token: sortie.Token(t, e.srv.URL, cred.ClientID, cred.ClientSecret)}
	if got, want := principalEnvID(t, cli.token), tenantOf(t, e).EnvID; got == "" || got != want {
		t.Fatalf("the token's principal envId is %q, want %q", got, want)
	}

	const approvalSteps = "        - setWeight:\n            weight: 25\n        - pause:\n            untilApproved: true\n"
	blocker := cli.start(cliDeployYML(app, "cli-cluster", app, manifestDir(t, app, app, "cli:2"), false, approvalSteps), map[string]string{"commit": "abc123"})
	if p := cli.waitProcessed(blocker); p.Status == "QUEUED" || p.BlockedByPipeline != nil || p.Application.Name != app {
		t.Fatalf("the first pipeline after its start: %+v", p)
	}
	e.await(t, blocker, "AWAITING_APPROVAL")

	queued := cli.start(cliDeployYML(app, "cli-cluster", app, manifestDir(t, app, app, "cli:3"), true, approvalSteps), map[string]string{"commit": "def456"})
	p := cli.waitProcessed(queued)
	if p.Status != "QUEUED" || p.BlockedByPipeline == nil || p.BlockedByPipeline.ID != blocker || p.Application.Name != app {
		t.Fatalf("the queued pipeline after its start: %+v, want QUEUED blocked by %s", p, blocker)
	}

	// -w: poll every 10 s. The first pipeline is approved from another terminal; the queued
	// one then runs to its own approval, which is given when the CLI shows it.
	approvedBlocker, approvedQueued := false, false
	seen := map[string]bool{}
	done := cli.watch(queued, 4*time.Minute, func(v pipelineView) {
		seen[v.Status] = true
		if !approvedBlocker {
			if st, b := e.post(t, "/pipelines/"+blocker+"/approve", nil); st != http.StatusOK {
				t.Fatalf("approve the first pipeline: %d %s", st, b)
			}
			approvedBlocker = true
		}
		if v.Status == "AWAITING_APPROVAL" && !approvedQueued {
			if _, _, reason, step := v.target("prod"); reason != "approval" || step == "" {
				t.Errorf("awaiting approval without its pause: %q %q", reason, step)
			}
			if st, b := cli.send("POST", "/pipelines/"+queued+"/approve", map[string]string{"Content-Type": "application/json"}, []byte(`{}`)); st != http.StatusOK {
				t.Fatalf("approve the queued pipeline: %d %s", st, b)
			}
			approvedQueued = true
		}
	})
	if done.Status != "SUCCEEDED" || !seen["QUEUED"] || !approvedQueued {
		t.Fatalf("the queued pipeline ended %s (%s), statuses seen %v, approved %v", done.Status, done.Message, seen, approvedQueued)
	}
	if done.Context["commit"] != "def456" || len(done.Decisions) != 1 || done.Decisions[0].Action != "approve" {
		t.Errorf("finished pipeline: context %v, decisions %+v", done.Context, done.Decisions)
	}
	if v := e.get(t, blocker); v.Status != "SUCCEEDED" {
		t.Errorf("the first pipeline is %s, want SUCCEEDED", v.Status)
	}
	sortie.WaitFor(t, 60*time.Second, "4 Ready pods of the queued version", func() bool { return readyPods(t, app, app, "cli:3") == 4 })

	// The CLI never used anything but these routes.
	for _, r := range cli.sent {
		switch {
		case r == "POST /pipelines/kubernetes", r == "POST /pipelines", r == "POST /v1/graphql",
			strings.HasPrefix(r, "GET /pipelines/"), strings.HasPrefix(r, "POST /pipelines/") && strings.HasSuffix(r, "/approve"):
		default:
			t.Errorf("unexpected request %s", r)
		}
	}
}
