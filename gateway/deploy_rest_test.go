package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestStartPipelineAsTheCLI starts pipelines with both media types and reads them back as
// the Armory CLI does: exactly 202, warnings an array, polls with Content-Type and no body.
func TestStartPipelineAsTheCLI(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	for _, c := range []struct {
		name, path, app string
		headers         map[string]string
	}{
		{"cli media type", "/pipelines/kubernetes", "web",
			map[string]string{"Content-Type": gatewayPipelineMediaType, "Accept": gatewayPipelineMediaType}},
		{"plain json", "/pipelines/kubernetes", "api", map[string]string{"Content-Type": "application/json"}},
		{"POST /pipelines", "/pipelines", "worker", map[string]string{"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.rawRequest(t, "POST", c.path, f.tok, c.headers, mustJSON(t, deployYML(c.app, deploymentYAML, nil)))
			if r.Status != http.StatusAccepted {
				t.Fatalf("status %d, want exactly 202: %s", r.Status, r.Body)
			}
			// Plain JSON whatever the Accept: the CLI's client decodes any JSON media type.
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("reply Content-Type %q, want application/json", ct)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(r.Body, &raw); err != nil {
				t.Fatal(err)
			}
			if string(raw["warnings"]) != "[]" || len(raw) != 2 {
				t.Errorf("reply %s, want exactly {pipelineId, warnings: []}", r.Body)
			}
			started := decode[pipelineStartedJSON](t, r.Body)
			if _, err := uuid.Parse(started.PipelineID); err != nil {
				t.Fatalf("pipelineId %q: %v", started.PipelineID, err)
			}

			p := f.getPipeline(t, started.PipelineID)
			if p.ID != started.PipelineID || p.Application != c.app || p.Context["commit"] != "abc123" ||
				p.InitiatedBy.Name != f.credName || p.InitiatedBy.Type != "machine" || p.Source == nil || p.Description == nil ||
				p.SourceControl["sha"] != "abc123" || p.Decisions == nil {
				t.Errorf("pipeline: %+v", p)
			}
			if len(p.Environments) != 1 || p.Environments[0].Name != "prod" || p.Environments[0].Account != "prod-west" {
				t.Errorf("environments: %+v", p.Environments)
			}
			var deployment bool
			for _, s := range p.Steps {
				if s.Type == "pause" && s.Pause == nil {
					t.Errorf("pause step %s has no pause object", s.Ref)
				}
				if s.Type == "deployment" {
					deployment = s.Deployment != nil && s.Deployment.Environment == "prod" && s.Deployment.TotalSteps == 2
				}
			}
			if !deployment {
				t.Errorf("steps lack prod's deployment step: %+v", p.Steps)
			}
			running := f.waitStatus(t, started.PipelineID, "RUNNING")
			if running.StartedAtIso8601 == nil || running.CompletedAtIso8601 != nil {
				t.Fatalf("running pipeline: started %v, completed %v", running.StartedAtIso8601, running.CompletedAtIso8601)
			}
			if _, err := time.Parse(time.RFC3339, *running.StartedAtIso8601); err != nil {
				t.Errorf("startedAtIso8601 %q: %v", *running.StartedAtIso8601, err)
			}
		})
	}

	t.Run("unknown keys are warnings", func(t *testing.T) {
		r := f.rawRequest(t, "POST", "/pipelines", f.tok, map[string]string{"Content-Type": "application/json"},
			mustJSON(t, deployYML("warned", deploymentYAML, map[string]any{"colour": "blue"})))
		started := decode[pipelineStartedJSON](t, r.Body)
		if r.Status != http.StatusAccepted || len(started.Warnings) != 1 || !strings.HasPrefix(started.Warnings[0], "colour: ") {
			t.Errorf("%d %s, want 202 with one warning about colour", r.Status, r.Body)
		}
	})

	t.Run("a finished pipeline cannot be approved or aborted", func(t *testing.T) {
		id := f.startPipeline(t, deployYML("finished", refusedYAML, nil))
		p := f.waitStatus(t, id, "FAILED")
		if p.CompletedAtIso8601 == nil || !strings.Contains(string(f.do(t, "GET", "/pipelines/"+id, f.tok, nil).Body), "admission webhook denied") {
			t.Errorf("failed pipeline does not say when and why: %+v", p)
		}
		wantError(t, "approve", f.do(t, "POST", "/pipelines/"+id+"/approve", f.tok, nil), http.StatusConflict)
		wantError(t, "abort", f.do(t, "POST", "/pipelines/"+id+"/abort", f.tok, nil), http.StatusConflict)
	})
}

// TestPipelineInProgress proves the in-progress rules on the wire: reject is a 409 naming
// the blocking pipeline; enqueueOne queues, and a newer queued pipeline replaces an older.
func TestPipelineInProgress(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	first := f.startPipeline(t, gated("web"))

	for _, path := range []string{"/pipelines/kubernetes", "/pipelines"} {
		r := f.do(t, "POST", path, f.tok, mustJSON(t, gated("web")))
		e := wantError(t, "second pipeline of web", r, http.StatusConflict)
		if e.Errors[0].Metadata["pipelineId"] != first || !strings.Contains(e.Errors[0].Message, first) {
			t.Errorf("%s: 409 does not name the blocking pipeline %s: %s", path, first, r.Body)
		}
	}

	enqueue := gated("web")
	enqueue["deploymentConfig"] = map[string]any{"ifDeploymentInProgress": map[string]any{"strategy": "enqueueOne"}}
	queued := f.startPipeline(t, enqueue)
	q := f.getPipeline(t, queued)
	if q.Status != "QUEUED" || q.BlockedBy == nil || *q.BlockedBy != first || q.StartedAtIso8601 != nil {
		t.Errorf("queued pipeline: status %s, blockedBy %v, started %v", q.Status, q.BlockedBy, q.StartedAtIso8601)
	}
	newer := f.startPipeline(t, enqueue)
	if old := f.getPipeline(t, queued); old.Status != "REJECTED" {
		t.Errorf("older queued pipeline is %s, want REJECTED", old.Status)
	}
	if p := f.getPipeline(t, newer); p.Status != "QUEUED" || p.BlockedBy == nil || *p.BlockedBy != first {
		t.Errorf("newer queued pipeline: %s blocked by %v", p.Status, p.BlockedBy)
	}
	if p := f.getPipeline(t, first); p.BlockedBy != nil {
		t.Errorf("a running pipeline shows blockedBy %v", *p.BlockedBy)
	}
}

// TestStartRefusals proves that bad requests get a precise 4xx and store nothing.
func TestStartRefusals(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	bad := deployYML("web", deploymentYAML, map[string]any{
		"targets": map[string]any{
			"prod":    map[string]any{"namespace": "web", "strategy": "missing"},
			"staging": map[string]any{"account": "prod-west", "strategy": "rolling", "constraints": map[string]any{"dependsOn": []string{"nowhere"}}},
		},
	})
	cases := []struct {
		name, path, contentType string
		body                    []byte
		status                  int
		fields                  []string // metadata.field of each problem, in any order
		message                 string
	}{
		{"malformed JSON", "/pipelines/kubernetes", "application/json", []byte(`{"application": "web",`), http.StatusBadRequest, nil, "malformed request body"},
		{"not an object", "/pipelines", "application/json", []byte(`[1, 2]`), http.StatusBadRequest, nil, "send a JSON object"},
		{"empty body", "/pipelines/kubernetes", gatewayPipelineMediaType, nil, http.StatusBadRequest, nil, ""},
		{"every problem listed", "/pipelines/kubernetes", gatewayPipelineMediaType, mustJSON(t, bad), http.StatusUnprocessableEntity,
			[]string{"targets.prod.account", "targets.prod.strategy", "targets.staging.constraints.dependsOn[0]"}, ""},
		{"unsupported kind", "/pipelines", "application/json", mustJSON(t, deployYML("web", deploymentYAML, map[string]any{"kind": "lambda"})),
			http.StatusUnprocessableEntity, []string{"kind"}, ""},
		{"unknown account", "/pipelines/kubernetes", "application/json", mustJSON(t, deployYML("web", deploymentYAML, map[string]any{
			"targets": map[string]any{"prod": map[string]any{"account": "nowhere", "strategy": "rolling"}}})),
			http.StatusUnprocessableEntity, []string{"targets.prod.account"}, "account 'nowhere' does not exist"},
		{"unknown account, stage", "/deployments/kubernetes", "application/json",
			mustJSON(t, map[string]any{"account": "nowhere", "application": "web", "namespace": "web",
				"manifests": []any{map[string]any{"inline": map[string]any{"value": deploymentYAML}}}, "canary": map[string]any{"steps": []any{}}}),
			http.StatusUnprocessableEntity, []string{"account"}, "account 'nowhere' does not exist"},
		{"not JSON", "/pipelines/kubernetes", "text/yaml", []byte("application: web\n"), http.StatusUnsupportedMediaType, nil, "Content-Type"},
		{"stage body not JSON", "/deployments/kubernetes", "application/xml", []byte("<a/>"), http.StatusUnsupportedMediaType, nil, "Content-Type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			headers := map[string]string{"Content-Type": c.contentType}
			e := wantError(t, c.name, f.rawRequest(t, "POST", c.path, f.tok, headers, c.body), c.status)
			var fields []string
			for _, it := range e.Errors {
				if field, ok := it.Metadata["field"].(string); ok {
					fields = append(fields, field)
				}
				if c.status == http.StatusUnprocessableEntity && it.Code != "validation_failed" {
					t.Errorf("problem %q has code %q", it.Message, it.Code)
				}
			}
			slices.Sort(fields)
			if c.fields != nil && !slices.Equal(fields, c.fields) {
				t.Errorf("problems at %v, want %v: %+v", fields, c.fields, e.Errors)
			}
			if c.message != "" && !strings.Contains(e.Errors[0].Message, c.message) {
				t.Errorf("message %q does not say %q", e.Errors[0].Message, c.message)
			}
		})
	}
	list := decode[pipelineListJSON](t, f.do(t, "GET", "/pipelines", f.tok, nil).Body)
	if len(list.Pipelines) != 0 {
		t.Errorf("refused requests stored %d pipelines", len(list.Pipelines))
	}
	// And the application is free: nothing refused holds it.
	f.startPipeline(t, deployYML("web", deploymentYAML, nil))
}

type pipelineListJSON struct {
	Pipelines     []pipelineJSON `json:"pipelines"`
	NextPageToken string         `json:"nextPageToken"`
}

// TestApproveAndAbort drives a pipeline through an approval gate and an abort over REST.
func TestApproveAndAbort(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	id := f.startPipeline(t, gated("web"))
	p := f.waitStatus(t, id, "AWAITING_APPROVAL")
	env := p.Environments[0]
	if env.Status != "AWAITING_APPROVAL" || env.PauseInfo == nil || env.PauseInfo.Reason != "approval" || env.PauseInfo.Step == "" {
		t.Fatalf("awaiting target: %+v", env)
	}
	var gate bool
	for _, s := range p.Steps {
		if s.Ref == env.PauseInfo.Step {
			gate = s.Type == "pause" && s.Pause != nil && s.Pause.UntilApproved && s.Pause.Unit == "NONE" && s.ConstraintFor == "prod"
		}
	}
	if !gate {
		t.Errorf("the awaited step %s is not a pause step gating prod: %+v", env.PauseInfo.Step, p.Steps)
	}

	e := wantError(t, "approve another step", f.do(t, "POST", "/pipelines/"+id+"/approve", f.tok, `{"step":"prod/after/7"}`), http.StatusConflict)
	if !strings.Contains(e.Errors[0].Message, "prod/after/7") {
		t.Errorf("409 message %q does not name the step", e.Errors[0].Message)
	}
	wantError(t, "approve with an unknown key", f.do(t, "POST", "/pipelines/"+id+"/approve", f.tok, `{"stepp":"x"}`), http.StatusUnprocessableEntity)

	// No body at all, Content-Type set, as curl -X POST -H 'Content-Type: application/json' sends.
	r := f.rawRequest(t, "POST", "/pipelines/"+id+"/approve", f.tok, map[string]string{"Content-Type": "application/json"}, nil)
	res := decode[actionJSON](t, r.Body)
	if r.Status != http.StatusOK || res.NumberAffected != 1 || res.Message == "" {
		t.Fatalf("approve everything awaiting: %d %s", r.Status, r.Body)
	}
	wantError(t, "approve twice", f.do(t, "POST", "/pipelines/"+id+"/approve", f.tok, nil), http.StatusConflict)
	p = f.getPipeline(t, id)
	if len(p.Decisions) != 1 || p.Decisions[0].Action != "approve" || p.Decisions[0].Actor.Name != f.credName || p.Decisions[0].Step != env.PauseInfo.Step {
		t.Fatalf("decisions: %+v", p.Decisions)
	}
	if _, err := time.Parse(time.RFC3339, p.Decisions[0].AtIso8601); err != nil {
		t.Errorf("decision time: %v", err)
	}

	// A second application waits for approval; aborting it ends it before anything is applied.
	other := f.startPipeline(t, gated("api"))
	f.waitStatus(t, other, "AWAITING_APPROVAL")
	r = f.do(t, "POST", "/pipelines/"+other+"/abort", f.tok, nil)
	if res := decode[actionJSON](t, r.Body); r.Status != http.StatusOK || res.NumberAffected != 1 || !strings.Contains(res.Message, other) {
		t.Fatalf("abort: %d %s", r.Status, r.Body)
	}
	p = f.waitStatus(t, other, "CANCELLED")
	if len(p.Decisions) != 1 || p.Decisions[0].Action != "abort" || p.Decisions[0].Actor.ID == "" || p.CompletedAtIso8601 == nil {
		t.Errorf("aborted pipeline: %+v", p)
	}
	wantError(t, "abort a cancelled pipeline", f.do(t, "POST", "/pipelines/"+other+"/abort", f.tok, nil), http.StatusConflict)
	wantError(t, "approve a cancelled pipeline", f.do(t, "POST", "/pipelines/"+other+"/approve", f.tok, nil), http.StatusConflict)

	events := decode[struct {
		Events []struct {
			Seq   int64  `json:"seq"`
			Type  string `json:"type"`
			Actor *struct {
				Name string `json:"name"`
			} `json:"actor"`
		} `json:"events"`
	}](t, f.do(t, "GET", "/pipelines/"+other+"/events", f.tok, nil).Body)
	var aborted bool
	for i, ev := range events.Events {
		if ev.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, ev.Seq)
		}
		aborted = aborted || (ev.Type == "decision.abort" && ev.Actor != nil && ev.Actor.Name == f.credName)
	}
	if !aborted {
		t.Errorf("history lacks the abort and who did it: %+v", events.Events)
	}
}

type actionJSON struct {
	Message        string `json:"message"`
	NumberAffected int    `json:"numberAffected"`
}

// TestStageDeployment drives the routes of the Spinnaker stage.
func TestStageDeployment(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	stage := func(app, manifest string) []byte {
		return mustJSON(t, map[string]any{
			"account": "prod-west", "application": app, "namespace": "web",
			"manifests": []any{map[string]any{"inline": map[string]any{"value": manifest}}},
			"canary": map[string]any{"steps": []any{
				map[string]any{"setWeight": map[string]any{"weight": 25}},
				map[string]any{"pause": map[string]any{"duration": 0, "unit": "NONE", "untilApproved": true}},
				map[string]any{"setWeight": map[string]any{"weight": 50}},
				map[string]any{"pause": map[string]any{"duration": 10, "unit": "seconds", "untilApproved": false}},
			}},
		})
	}
	r := f.do(t, "POST", "/deployments/kubernetes", f.tok, stage("web", deploymentYAML))
	started := decode[struct {
		DeploymentID string `json:"deploymentId"`
	}](t, r.Body)
	if r.Status != http.StatusOK || started.DeploymentID == "" {
		t.Fatalf("start deployment: %d %s", r.Status, r.Body)
	}
	type deploymentJSON struct {
		ID                 string  `json:"id"`
		Application        string  `json:"application"`
		Account            string  `json:"account"`
		Namespace          string  `json:"namespace"`
		Status             string  `json:"status"`
		StartedAtIso8601   *string `json:"startedAtIso8601"`
		CompletedAtIso8601 *string `json:"completedAtIso8601"`
		Kubernetes         struct {
			Canary struct {
				CurrentStep int             `json:"currentStep"`
				TotalSteps  int             `json:"totalSteps"`
				Weight      int             `json:"weight"`
				PauseInfo   json.RawMessage `json:"pauseInfo"`
			} `json:"canary"`
		} `json:"kubernetes"`
	}
	get := f.do(t, "GET", "/deployments/"+started.DeploymentID, f.tok, nil)
	d := decode[deploymentJSON](t, get.Body)
	if get.Status != http.StatusOK || d.ID != started.DeploymentID || d.Application != "web" || d.Account != "prod-west" ||
		d.Namespace != "web" || d.Kubernetes.Canary.TotalSteps != 4 || d.Kubernetes.Canary.CurrentStep != 0 {
		t.Fatalf("GET deployment: %d %s", get.Status, get.Body)
	}
	if !strings.Contains(string(get.Body), `"completedAtIso8601":null`) || string(d.Kubernetes.Canary.PauseInfo) != "null" {
		t.Errorf("an active deployment's completion time and pause are not null: %s", get.Body)
	}
	// The same deployment is a pipeline of its own id.
	if p := f.getPipeline(t, started.DeploymentID); p.Application != "web" || len(p.Environments) != 1 {
		t.Errorf("the deployment's pipeline: %+v", p)
	}
	e := wantError(t, "resume a running deployment", f.do(t, "POST", "/deployments/"+started.DeploymentID+"/resume", f.tok, nil), http.StatusConflict)
	if !strings.Contains(e.Errors[0].Message, "nothing is awaiting approval") {
		t.Errorf("409 message: %q", e.Errors[0].Message)
	}
	r = f.do(t, "POST", "/deployments/"+started.DeploymentID+"/abort", f.tok, nil)
	if res := decode[actionJSON](t, r.Body); r.Status != http.StatusOK || res.NumberAffected != 1 || !strings.Contains(res.Message, "deployment "+started.DeploymentID) {
		t.Errorf("abort deployment: %d %s", r.Status, r.Body)
	}

	// A deployment whose manifests the cluster refuses ends FAILED; acting on it is a 409.
	r = f.do(t, "POST", "/deployments/kubernetes", f.tok, stage("refused", refusedYAML))
	id := decode[struct {
		DeploymentID string `json:"deploymentId"`
	}](t, r.Body).DeploymentID
	f.waitStatus(t, id, "FAILED")
	d = decode[deploymentJSON](t, f.do(t, "GET", "/deployments/"+id, f.tok, nil).Body)
	if d.Status != "FAILED" || d.CompletedAtIso8601 == nil || d.StartedAtIso8601 == nil {
		t.Errorf("failed deployment: %+v", d)
	}
	wantError(t, "resume a failed deployment", f.do(t, "POST", "/deployments/"+id+"/resume", f.tok, nil), http.StatusConflict)
	wantError(t, "abort a failed deployment", f.do(t, "POST", "/deployments/"+id+"/abort", f.tok, nil), http.StatusConflict)

	// A pipeline of several targets has no deployment of its own id.
	multi := deployYML("multi", deploymentYAML, map[string]any{"targets": map[string]any{
		"a": map[string]any{"account": "prod-west", "namespace": "a", "strategy": "rolling"},
		"b": map[string]any{"account": "prod-west", "namespace": "b", "strategy": "rolling"},
	}})
	pid := f.startPipeline(t, multi)
	wantError(t, "deployment by a pipeline id", f.do(t, "GET", "/deployments/"+pid, f.tok, nil), http.StatusNotFound)
	for _, env := range f.getPipeline(t, pid).Environments {
		if env.DeploymentID == "" {
			continue
		}
		if r := f.do(t, "GET", "/deployments/"+env.DeploymentID, f.tok, nil); r.Status == http.StatusOK &&
			!strings.Contains(string(r.Body), `"id":"`+env.DeploymentID+`"`) {
			t.Errorf("deployment %s of target %s: %s", env.DeploymentID, env.Name, r.Body)
		}
	}
}

// TestListPipelines filters by application and status and pages, newest first.
func TestListPipelines(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	var ids []string
	for _, app := range []string{"a", "b", "c"} {
		ids = append(ids, f.startPipeline(t, gated(app)))
	}
	done := f.startPipeline(t, deployYML("d", refusedYAML, nil))
	f.waitStatus(t, done, "FAILED")
	f.waitStatus(t, ids[2], "AWAITING_APPROVAL")
	ids = append(ids, done)

	listIDs := func(query string) ([]string, string) {
		t.Helper()
		r := f.do(t, "GET", "/pipelines"+query, f.tok, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /pipelines%s: %d %s", query, r.Status, r.Body)
		}
		l := decode[pipelineListJSON](t, r.Body)
		var out []string
		for _, p := range l.Pipelines {
			out = append(out, p.ID)
		}
		return out, l.NextPageToken
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)
	if got, next := listIDs(""); !slices.Equal(got, newestFirst) || next != "" {
		t.Errorf("all: %v (next %q), want %v", got, next, newestFirst)
	}
	if got, _ := listIDs("?application=b"); !slices.Equal(got, []string{ids[1]}) {
		t.Errorf("application b: %v", got)
	}
	if got, _ := listIDs("?status=FAILED"); !slices.Equal(got, []string{done}) {
		t.Errorf("FAILED: %v", got)
	}
	for _, q := range []string{"?status=failed,awaiting_approval", "?status=FAILED&status=AWAITING_APPROVAL"} {
		if got, _ := listIDs(q); len(got) != 4 {
			t.Errorf("%s: %v, want all 4", q, got)
		}
	}
	page1, next := listIDs("?limit=3")
	if len(page1) != 3 || next == "" {
		t.Fatalf("first page: %v next %q", page1, next)
	}
	page2, last := listIDs("?limit=3&pageToken=" + next)
	if got := append(page1, page2...); !slices.Equal(got, newestFirst) || last != "" {
		t.Errorf("pages: %v then %v (next %q), want %v", page1, page2, last, newestFirst)
	}
	if viaCursor, _ := listIDs("?limit=3&cursor=" + next); !slices.Equal(viaCursor, page2) {
		t.Errorf("cursor alias: %v, want %v", viaCursor, page2)
	}
	e := wantError(t, "unknown status", f.do(t, "GET", "/pipelines?status=RUNNING,DONE", f.tok, nil), http.StatusUnprocessableEntity)
	if e.Errors[0].Metadata["field"] != "query.status" || !strings.Contains(e.Errors[0].Message, `"DONE"`) {
		t.Errorf("unknown status: %+v", e.Errors)
	}
	wantError(t, "limit too large", f.do(t, "GET", "/pipelines?limit=501", f.tok, nil), http.StatusUnprocessableEntity)
}

// TestDeployTenantIsolation proves that another tenant's pipelines are unknown ids, on
// every deployment route, and never listed.
func TestDeployTenantIsolation(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	id := f.startPipeline(t, gated("web"))
	f.waitStatus(t, id, "AWAITING_APPROVAL")
	stage := decode[struct {
		DeploymentID string `json:"deploymentId"`
	}](t, f.do(t, "POST", "/deployments/kubernetes", f.tok, mustJSON(t, map[string]any{
		"account": "prod-west", "application": "stage", "namespace": "web",
		"manifests": []any{map[string]any{"inline": map[string]any{"value": deploymentYAML}}},
		"canary":    map[string]any{"steps": []any{map[string]any{"setWeight": map[string]any{"weight": 25}}}},
	})).Body).DeploymentID
	before := f.getPipeline(t, id)

	beta, err := f.svc.CreateOrganization(context.Background(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	betaTok := f.token(t, beta.Admin.ClientID, beta.Secret, "")
	created := decode[struct {
		AdminCredential credentialJSON `json:"adminCredential"`
	}](t, f.do(t, "POST", "/environments", f.adminToken(t), `{"name":"staging"}`).Body)
	stagingTok := f.token(t, created.AdminCredential.ClientID, created.AdminCredential.ClientSecret, "")

	for name, tok := range map[string]string{"other organization": betaTok, "other environment": stagingTok} {
		t.Run(name, func(t *testing.T) {
			for _, r := range []struct{ method, path string }{
				{"GET", "/pipelines/" + id},
				{"GET", "/pipelines/" + id + "/events"},
				{"POST", "/pipelines/" + id + "/approve"},
				{"POST", "/pipelines/" + id + "/abort"},
				{"GET", "/deployments/" + stage},
				{"POST", "/deployments/" + stage + "/resume"},
				{"POST", "/deployments/" + stage + "/abort"},
				{"GET", "/pipelines/" + uuid.NewString()},
			} {
				wantError(t, r.method+" "+r.path, f.do(t, r.method, r.path, tok, nil), http.StatusNotFound)
			}
			if l := f.do(t, "GET", "/pipelines", tok, nil); l.Status != 200 || strings.Contains(string(l.Body), id) || strings.Contains(string(l.Body), stage) {
				t.Errorf("GET /pipelines shows the other tenant's pipelines: %d %s", l.Status, l.Body)
			}
			for _, proc := range []string{"GetPipeline", "ApprovePipeline", "AbortPipeline", "ListPipelineEvents"} {
				r := f.do(t, "POST", "/sortie.deploy.v1.DeploymentService/"+proc, tok, `{"id":"`+id+`"}`)
				if r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "not_found") {
					t.Errorf("Connect %s: %d %s, want 404 not_found", proc, r.Status, r.Body)
				}
			}
			// The other tenant has no agent of that name: its start is refused, not run here.
			e := wantError(t, "start in the other tenant", f.do(t, "POST", "/pipelines", tok, mustJSON(t, gated("web"))), http.StatusUnprocessableEntity)
			if !strings.Contains(e.Errors[0].Message, "account 'prod-west' does not exist") {
				t.Errorf("422 message: %q", e.Errors[0].Message)
			}
		})
	}
	after := f.getPipeline(t, id)
	if after.Status != before.Status || len(after.Decisions) != 0 {
		t.Errorf("the other tenants changed the pipeline: %+v", after)
	}
}

// TestNotFound answers unknown ids with 404 on every route that takes one.
func TestDeployNotFound(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	for _, r := range []struct{ method, path string }{
		{"GET", "/pipelines/nope"},
		{"GET", "/pipelines/" + uuid.NewString() + "/events"},
		{"POST", "/pipelines/nope/approve"},
		{"POST", "/pipelines/nope/abort"},
		{"GET", "/deployments/nope"},
		{"POST", "/deployments/nope/resume"},
		{"POST", "/deployments/nope/abort"},
	} {
		e := wantError(t, r.method+" "+r.path, f.do(t, r.method, r.path, f.tok, nil), http.StatusNotFound)
		if e.Errors[0].Code != "not_found" {
			t.Errorf("%s %s: code %q", r.method, r.path, e.Errors[0].Code)
		}
	}
}

// TestApprovalNeedsRole refuses an approval that requires a role the caller lacks with 403,
// and records nothing; a caller with the role approves.
func TestApprovalNeedsRole(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	body := gated("web")
	body["targets"] = map[string]any{"prod": map[string]any{"account": "prod-west", "namespace": "web", "strategy": "rolling",
		"constraints": map[string]any{"beforeDeployment": []any{map[string]any{"pause": map[string]any{
			"untilApproved": true, "requiresRoles": []string{"Organization Admin"}}}}}}}
	id := f.startPipeline(t, body)
	f.waitStatus(t, id, "AWAITING_APPROVAL")
	e := wantError(t, "approve without the role", f.do(t, "POST", "/pipelines/"+id+"/approve", f.tok, nil), http.StatusForbidden)
	if !strings.Contains(e.Errors[0].Message, "Organization Admin") {
		t.Errorf("403 message %q does not name the role", e.Errors[0].Message)
	}
	if p := f.getPipeline(t, id); len(p.Decisions) != 0 || p.Status != "AWAITING_APPROVAL" {
		t.Fatalf("a refused approval changed the pipeline: %+v", p)
	}
	r := f.do(t, "POST", "/pipelines/"+id+"/approve", f.adminToken(t), `{"step":"prod"}`)
	if res := decode[actionJSON](t, r.Body); r.Status != http.StatusOK || res.NumberAffected != 1 {
		t.Errorf("approve with the role: %d %s", r.Status, r.Body)
	}
}

// TestStartBodyTooLarge refuses bodies over 10 MiB with 413 and the error contract.
func TestStartBodyTooLarge(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	huge := `{"application":"web","padding":"` + strings.Repeat("x", 10<<20) + `"}`
	for _, path := range []string{"/pipelines/kubernetes", "/deployments/kubernetes"} {
		wantError(t, path, f.do(t, "POST", path, f.tok, huge), http.StatusRequestEntityTooLarge)
	}
}
