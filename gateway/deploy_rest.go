package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/pipeline/config"
	"github.com/sortie-dev/sortie/store"
)

// Pipelines is what the gateway needs of the pipeline engine; *pipeline.Engine is one. REST
// and Connect both call it, so neither re-implements the other.
type Pipelines interface {
	Start(ctx context.Context, req pipeline.StartRequest) (pipeline.StartResult, error)
	Get(ctx context.Context, t store.Tenant, id string) (*pipeline.View, error)
	List(ctx context.Context, t store.Tenant, f pipeline.ListFilter) ([]*pipeline.View, string, error)
	Events(ctx context.Context, t store.Tenant, id string) ([]pipeline.Event, error)
	Approve(ctx context.Context, t store.Tenant, id, step string, a pipeline.Actor) (int, error)
	Resume(ctx context.Context, t store.Tenant, id string, a pipeline.Actor) (int, error)
	Abort(ctx context.Context, t store.Tenant, id string, a pipeline.Actor) (int, error)
	Watch(ctx context.Context, t store.Tenant, id string) (<-chan *pipeline.View, error)
	WatchTenant(ctx context.Context, t store.Tenant) (<-chan *pipeline.View, error)
}

// PipelineMediaType is the media type the Armory CLI sends, in Content-Type and Accept, when
// it starts a pipeline.
const PipelineMediaType = "application/vnd.start.kubernetes.pipeline.v2+json"

// Paging of GET /pipelines.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// errNoEngine answers the deployment routes of a gateway built without WithPipelines.
var errNoEngine = fmt.Errorf("the pipeline engine is not running on this server: %w", store.ErrUnavailable)

// actorOf is the principal of the verified token as the engine records it.
func actorOf(ctx context.Context) pipeline.Actor {
	p := principalFrom(ctx)
	return pipeline.Actor{Type: p.Type, Name: p.Name, ID: p.Subject, Roles: p.Roles}
}

// engine returns the pipeline engine, or errNoEngine.
func (g *Gateway) engine() (Pipelines, error) {
	if g.pipelines == nil {
		return nil, errNoEngine
	}
	return g.pipelines, nil
}

// start hands a request body to the engine; REST and Connect share it.
func (g *Gateway) start(ctx context.Context, form pipeline.Form, body []byte) (pipeline.StartResult, error) {
	e, err := g.engine()
	if err != nil {
		return pipeline.StartResult{}, err
	}
	return e.Start(ctx, pipeline.StartRequest{Tenant: principalFrom(ctx).Tenant(), Form: form, Body: body, Actor: actorOf(ctx)})
}

// act runs approve, resume or abort; REST and Connect share it.
func (g *Gateway) act(ctx context.Context, action, id, step string) (int, error) {
	e, err := g.engine()
	if err != nil {
		return 0, err
	}
	t, a := principalFrom(ctx).Tenant(), actorOf(ctx)
	switch action {
	case "approve":
		return e.Approve(ctx, t, id, step, a)
	case "resume":
		return e.Resume(ctx, t, id, a)
	default:
		return e.Abort(ctx, t, id, a)
	}
}

// view reads one pipeline of the caller's tenant.
func (g *Gateway) view(ctx context.Context, id string) (*pipeline.View, error) {
	e, err := g.engine()
	if err != nil {
		return nil, err
	}
	return e.Get(ctx, principalFrom(ctx).Tenant(), id)
}

// deploymentTarget finds the target a deployment id names: the target whose deployment id
// it is, or the single target of a pipeline started as a deployment (the ids are equal
// there). Other pipelines have no deployment of that id.
func deploymentTarget(v *pipeline.View, id string) (*pipeline.TargetView, error) {
	for i := range v.Targets {
		if v.Targets[i].DeploymentID == id {
			return &v.Targets[i], nil
		}
	}
	if v.Form == "deployment" && len(v.Targets) == 1 {
		return &v.Targets[0], nil
	}
	return nil, fmt.Errorf("deployment %s: %w", id, pipeline.ErrNotFound)
}

// actionMessage is the human summary of an approve, resume or abort.
func actionMessage(action, kind, id string, n int) string {
	past := map[string]string{"approve": "approved", "resume": "resumed", "abort": "aborted"}[action]
	what := map[string]string{"approve": "step", "resume": "pause", "abort": "target"}[action]
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Sprintf("%s %d %s%s of %s %s", past, n, what, plural, kind, id)
}

// checkJSONBody refuses request bodies declared as something other than JSON (415), for
// example curl -d without -H 'Content-Type: application/json', which declares form
// encoding. A body sent without any Content-Type is read as JSON.
func checkJSONBody(contentType string) error {
	if contentType == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil
	}
	return newErrorBody(http.StatusUnsupportedMediaType,
		fmt.Sprintf("unsupported Content-Type %q: send application/json or %s", contentType, PipelineMediaType))
}

// timeOut renders a time as RFC 3339, or nil (JSON null) when it is zero.
func timeOut(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := rfc3339(t)
	return &s
}

// DeploymentStarted is the reply of POST /deployments/kubernetes.
type DeploymentStarted struct {
	DeploymentID string `json:"deploymentId" doc:"Read it at GET /deployments/{deploymentId}."`
}

// ActionResult is the reply of approve, resume and abort.
type ActionResult struct {
	Message        string `json:"message" doc:"A human summary of what was done."`
	NumberAffected int    `json:"numberAffected" doc:"How many steps, pauses or targets the action changed."`
}

// Deployment is a single-target deployment as the Spinnaker stage reads it.
type Deployment struct {
	ID                 string               `json:"id"`
	Application        string               `json:"application"`
	Account            string               `json:"account"`
	Namespace          string               `json:"namespace"`
	Status             string               `json:"status" enum:"NOT_STARTED,QUEUED,RUNNING,PAUSED,AWAITING_APPROVAL,SUCCEEDED,FAILED,CANCELLED,REJECTED"`
	StartedAtIso8601   *string              `json:"startedAtIso8601" format:"date-time" nullable:"true" doc:"RFC 3339; null until the deployment starts."`
	CompletedAtIso8601 *string              `json:"completedAtIso8601" format:"date-time" nullable:"true" doc:"RFC 3339; null while it runs."`
	Message            string               `json:"message,omitempty" doc:"Why it failed or was cancelled."`
	Kubernetes         DeploymentKubernetes `json:"kubernetes"`
}

// DeploymentKubernetes holds the progress of the deployment's strategy.
type DeploymentKubernetes struct {
	Canary DeploymentCanary `json:"canary" doc:"Progress through the strategy's steps (also for blue/green, whose steps are its conditions)."`
}

// DeploymentCanary is the progress of the strategy.
type DeploymentCanary struct {
	CurrentStep int        `json:"currentStep" doc:"Steps passed so far."`
	TotalSteps  int        `json:"totalSteps"`
	Weight      int        `json:"weight" doc:"Traffic weight of the new version, 0 to 100."`
	PauseInfo   *PauseInfo `json:"pauseInfo" doc:"Set while PAUSED or AWAITING_APPROVAL, else null."`
}

// PauseInfo says what a paused deployment waits for.
type PauseInfo struct {
	Reason           string   `json:"reason" enum:"timed,approval"`
	Step             string   `json:"step" doc:"The step's ref, for POST /pipelines/{pipelineId}/approve."`
	EndTimeIso8601   *string  `json:"endTimeIso8601" format:"date-time" nullable:"true" doc:"When a timed pause ends; null for approvals."`
	RequiresRoles    []string `json:"requiresRoles,omitempty" doc:"An approver needs one of these roles."`
	ExpiresAtIso8601 *string  `json:"expiresAtIso8601,omitempty" format:"date-time" doc:"When an unanswered approval fails the pipeline."`
}

func pauseOut(p *pipeline.Pause) *PauseInfo {
	if p == nil {
		return nil
	}
	return &PauseInfo{Reason: p.Reason, Step: p.Step, EndTimeIso8601: timeOut(p.EndTime),
		RequiresRoles: p.RequiresRoles, ExpiresAtIso8601: timeOut(p.ExpiresAt)}
}

func deploymentOut(v *pipeline.View, tg *pipeline.TargetView) Deployment {
	return Deployment{
		ID: tg.DeploymentID, Application: v.Application, Account: tg.Account, Namespace: tg.Namespace,
		Status: string(tg.Status), StartedAtIso8601: timeOut(tg.StartedAt), CompletedAtIso8601: timeOut(tg.CompletedAt),
		Message: tg.Message,
		Kubernetes: DeploymentKubernetes{Canary: DeploymentCanary{
			CurrentStep: tg.CurrentStep, TotalSteps: tg.TotalSteps, Weight: tg.Weight, PauseInfo: pauseOut(tg.Pause),
		}},
	}
}

// PipelineStarted is the reply of POST /pipelines/kubernetes and POST /pipelines.
type PipelineStarted struct {
	PipelineID string   `json:"pipelineId" doc:"Read it at GET /pipelines/{pipelineId}."`
	Warnings   []string `json:"warnings" doc:"What the config asked for that is ignored (\"path: message\"); empty when nothing is."`
}

func warningsOut(ws []config.Warning) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		if w.Path == "" {
			out = append(out, w.Message)
			continue
		}
		out = append(out, w.Path+": "+w.Message)
	}
	return out
}

// Pipeline is a pipeline as GET /pipelines/{pipelineId} shows it: the fields Armory
// clients read, plus Sortie's targets, decisions and blockedBy.
type Pipeline struct {
	ID                 string            `json:"id"`
	Application        string            `json:"application"`
	Status             string            `json:"status" enum:"NOT_STARTED,QUEUED,RUNNING,PAUSED,AWAITING_APPROVAL,SUCCEEDED,FAILED,CANCELLED,REJECTED"`
	Form               string            `json:"form" enum:"pipeline,deployment" doc:"Started as a deploy.yml (pipeline) or through POST /deployments/kubernetes (deployment)."`
	CreatedAtIso8601   string            `json:"createdAtIso8601" format:"date-time"`
	StartedAtIso8601   *string           `json:"startedAtIso8601" format:"date-time" nullable:"true" doc:"RFC 3339; null while QUEUED or NOT_STARTED."`
	CompletedAtIso8601 *string           `json:"completedAtIso8601" format:"date-time" nullable:"true" doc:"RFC 3339; null while active."`
	Context            map[string]string `json:"context"`
	Description        string            `json:"description"`
	InitiatedBy        ActorOut          `json:"initiatedBy"`
	Source             PipelineSource    `json:"source"`
	BlockedBy          *string           `json:"blockedBy" nullable:"true" doc:"The pipeline a QUEUED one waits for, else null."`
	Message            string            `json:"message,omitempty" doc:"Why it failed, was cancelled or rejected."`
	Steps              []PipelineStep    `json:"steps"`
	Environments       []PipelineTarget  `json:"environments" doc:"The targets, one deployment each."`
	Decisions          []DecisionOut     `json:"decisions" doc:"Every approval, resume and abort: who and when, oldest first."`
	SourceControl      any               `json:"sourceControl,omitempty" doc:"The request's sourceControl object, as sent."`
}

// ActorOut is who did something.
type ActorOut struct {
	Type  string   `json:"type" enum:"machine,user"`
	Name  string   `json:"name"`
	ID    string   `json:"id" doc:"The client id of a machine credential or the id of a user."`
	Roles []string `json:"roles,omitempty"`
}

func actorOut(a pipeline.Actor) ActorOut {
	return ActorOut{Type: a.Type, Name: a.Name, ID: a.ID, Roles: a.Roles}
}

// PipelineSource names what runs the pipeline.
type PipelineSource struct {
	Product string `json:"product"`
	Version string `json:"version"`
}

// PipelineStep is one node of the pipeline graph.
type PipelineStep struct {
	Ref           string          `json:"ref" doc:"Identifies the step; approve takes it."`
	Type          string          `json:"type" enum:"deployment,pause,webhook,analysis"`
	Status        string          `json:"status"`
	DependsOn     []string        `json:"dependsOn"`
	ConstraintFor string          `json:"constraintFor,omitempty" doc:"The target a pause gates."`
	Deployment    *StepDeployment `json:"deployment,omitempty" doc:"Set for deployment steps."`
	Pause         *StepPause      `json:"pause,omitempty" doc:"Always set for pause steps."`
}

// StepDeployment is the deployment part of a deployment step.
type StepDeployment struct {
	ID          string `json:"id" doc:"The target's deployment id."`
	Environment string `json:"environment" doc:"The target's name."`
	Step        int    `json:"step"`
	TotalSteps  int    `json:"totalSteps"`
}

// StepPause is the pause part of a pause step.
type StepPause struct {
	Duration      int64    `json:"duration" doc:"In unit; 0 for approvals."`
	Unit          string   `json:"unit" enum:"SECONDS,MINUTES,HOURS,NONE"`
	UntilApproved bool     `json:"untilApproved"`
	RequiresRoles []string `json:"requiresRoles,omitempty"`
}

// PipelineTarget is one target of a pipeline and its deployment's progress.
type PipelineTarget struct {
	Name               string     `json:"name"`
	Account            string     `json:"account"`
	Namespace          string     `json:"namespace"`
	DeploymentID       string     `json:"deploymentId"`
	Status             string     `json:"status"`
	Strategy           string     `json:"strategy" enum:"canary,blueGreen"`
	DependsOn          []string   `json:"dependsOn"`
	CurrentStep        int        `json:"currentStep"`
	TotalSteps         int        `json:"totalSteps"`
	Weight             int        `json:"weight"`
	PauseInfo          *PauseInfo `json:"pauseInfo" doc:"Set while PAUSED or AWAITING_APPROVAL, else null."`
	StartedAtIso8601   *string    `json:"startedAtIso8601" format:"date-time" nullable:"true"`
	CompletedAtIso8601 *string    `json:"completedAtIso8601" format:"date-time" nullable:"true"`
	Message            string     `json:"message,omitempty"`
}

// DecisionOut is a human action on a pipeline.
type DecisionOut struct {
	Action    string   `json:"action" enum:"approve,resume,abort"`
	Step      string   `json:"step,omitempty"`
	Target    string   `json:"target,omitempty"`
	Actor     ActorOut `json:"actor"`
	AtIso8601 string   `json:"atIso8601" format:"date-time"`
}

func pipelineOut(v *pipeline.View) Pipeline {
	out := Pipeline{
		ID: v.ID, Application: v.Application, Status: string(v.Status), Form: v.Form,
		CreatedAtIso8601: rfc3339(v.CreatedAt), StartedAtIso8601: timeOut(v.StartedAt), CompletedAtIso8601: timeOut(v.CompletedAt),
		Context: v.Context, InitiatedBy: actorOut(v.InitiatedBy), Source: PipelineSource{Product: "sortie", Version: Version},
		Message: v.Message, Steps: make([]PipelineStep, 0, len(v.Steps)),
		Environments: make([]PipelineTarget, 0, len(v.Targets)), Decisions: make([]DecisionOut, 0, len(v.Decisions)),
	}
	if out.Context == nil {
		out.Context = map[string]string{}
	}
	if v.BlockedBy != "" {
		out.BlockedBy = &v.BlockedBy
	}
	if len(v.SourceControl) > 0 {
		var sc any
		if json.Unmarshal(v.SourceControl, &sc) == nil {
			out.SourceControl = sc
		}
	}
	for _, s := range v.Steps {
		step := PipelineStep{Ref: s.Ref, Type: s.Type, Status: string(s.Status), DependsOn: nonNil(s.DependsOn), ConstraintFor: s.ConstraintFor}
		if d := s.Deployment; d != nil {
			step.Deployment = &StepDeployment{ID: d.ID, Environment: d.Environment, Step: d.Step, TotalSteps: d.TotalSteps}
		}
		if p := s.Pause; p != nil {
			step.Pause = &StepPause{Duration: p.Duration, Unit: p.Unit, UntilApproved: p.UntilApproved, RequiresRoles: p.RequiresRoles}
		}
		if s.Type == "pause" && step.Pause == nil { // clients read pause on every pause step
			step.Pause = &StepPause{Unit: "NONE", UntilApproved: true}
		}
		out.Steps = append(out.Steps, step)
	}
	for _, tg := range v.Targets {
		out.Environments = append(out.Environments, PipelineTarget{
			Name: tg.Name, Account: tg.Account, Namespace: tg.Namespace, DeploymentID: tg.DeploymentID,
			Status: string(tg.Status), Strategy: tg.Strategy, DependsOn: nonNil(tg.DependsOn),
			CurrentStep: tg.CurrentStep, TotalSteps: tg.TotalSteps, Weight: tg.Weight, PauseInfo: pauseOut(tg.Pause),
			StartedAtIso8601: timeOut(tg.StartedAt), CompletedAtIso8601: timeOut(tg.CompletedAt), Message: tg.Message,
		})
	}
	for _, d := range v.Decisions {
		out.Decisions = append(out.Decisions, DecisionOut{Action: d.Action, Step: d.Step, Target: d.Target,
			Actor: actorOut(d.Actor), AtIso8601: rfc3339(d.At)})
	}
	return out
}

// PipelineList is one page of GET /pipelines, newest first.
type PipelineList struct {
	Pipelines     []Pipeline `json:"pipelines"`
	NextPageToken string     `json:"nextPageToken" doc:"Pass it as pageToken for the next page; empty on the last page."`
}

// EventOut is one entry of a pipeline's history.
type EventOut struct {
	Seq         int64     `json:"seq"`
	TimeIso8601 string    `json:"timeIso8601" format:"date-time"`
	Type        string    `json:"type"`
	Target      string    `json:"target,omitempty"`
	Step        string    `json:"step,omitempty"`
	Status      string    `json:"status,omitempty"`
	Message     string    `json:"message,omitempty"`
	Actor       *ActorOut `json:"actor,omitempty"`
}

// EventList is the history of a pipeline, oldest first.
type EventList struct {
	Events []EventOut `json:"events"`
}

type startInput struct {
	ContentType string `header:"Content-Type"`
	RawBody     []byte
}

type deploymentIDInput struct {
	DeploymentID string `path:"deploymentId" doc:"The id POST /deployments/kubernetes returned."`
}

type pipelineIDInput struct {
	PipelineID string `path:"pipelineId" doc:"The id the start reply returned."`
}

type approveInput struct {
	PipelineID string `path:"pipelineId" doc:"The id the start reply returned."`
	Body       *struct {
		Step string `json:"step,omitempty" doc:"The ref of the step to approve; absent approves every step awaiting approval."`
	} `required:"false"`
}

type listPipelinesInput struct {
	Application string   `query:"application" doc:"Only this application's pipelines."`
	Status      []string `query:"status,explode" doc:"Only pipelines in one of these statuses; repeat the parameter or separate values with commas."`
	Limit       int      `query:"limit" minimum:"1" maximum:"500" doc:"Page size (default 50)."`
	PageToken   string   `query:"pageToken" doc:"nextPageToken of the previous page."`
	Cursor      string   `query:"cursor" doc:"Alias of pageToken."`
}

// statuses are the values of the one status enum.
var statuses = []pipeline.Status{pipeline.NotStarted, pipeline.Queued, pipeline.Running, pipeline.Paused,
	pipeline.AwaitingApproval, pipeline.Succeeded, pipeline.Failed, pipeline.Cancelled, pipeline.Rejected}

// parseStatuses reads repeated or comma-separated status filters, in any case.
func parseStatuses(values []string) ([]pipeline.Status, error) {
	var out []pipeline.Status
	var problems []error
	for _, v := range values {
		for s := range strings.SplitSeq(v, ",") {
			s = strings.ToUpper(strings.TrimSpace(s))
			if s == "" {
				continue
			}
			known := false
			for _, k := range statuses {
				if string(k) == s {
					known = true
				}
			}
			if !known {
				problems = append(problems, &huma.ErrorDetail{Location: "query.status",
					Message: fmt.Sprintf("unknown status %q: use one of NOT_STARTED, QUEUED, RUNNING, PAUSED, AWAITING_APPROVAL, SUCCEEDED, FAILED, CANCELLED, REJECTED", s)})
				continue
			}
			out = append(out, pipeline.Status(s))
		}
	}
	if len(problems) > 0 {
		return nil, newErrorBody(http.StatusUnprocessableEntity, "validation failed", problems...)
	}
	return out, nil
}

func (g *Gateway) registerDeployREST() {
	dtags, ptags := []string{"Deployments"}, []string{"Pipelines"}
	conflicts := []int{http.StatusBadRequest, http.StatusConflict, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity, http.StatusServiceUnavailable}

	register(g, identity.ScopeManageDeploy, huma.Operation{
		OperationID: "start-deployment", Method: http.MethodPost, Path: "/deployments/kubernetes", Tags: dtags,
		Summary: "Start a single-target deployment (the Spinnaker Kubernetes Progressive stage)",
		Description: "The body names one account, namespace and manifests and a canary or blueGreen strategy. " +
			"Every problem is reported at once (422, each with metadata.field); an account with no agent " +
			"connected is 422 `account 'x' does not exist`; a deployment of the same application in " +
			"progress is 409 naming it in metadata.pipelineId. Unknown keys are ignored.",
		Errors: conflicts,
	}, func(ctx context.Context, in *startInput) (*bodyOut[DeploymentStarted], error) {
		if err := checkJSONBody(in.ContentType); err != nil {
			return nil, err
		}
		res, err := g.start(ctx, pipeline.FormDeployment, in.RawBody)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		id := res.DeploymentID
		if id == "" {
			id = res.PipelineID
		}
		return &bodyOut[DeploymentStarted]{Body: DeploymentStarted{DeploymentID: id}}, nil
	})
	g.documentStartBody("/deployments/kubernetes", reflect.TypeFor[deploymentRequest](), "application/json")

	register(g, identity.ScopeReadDeploy, huma.Operation{
		OperationID: "get-deployment", Method: http.MethodGet, Path: "/deployments/{deploymentId}", Tags: dtags,
		Summary:     "Read a deployment",
		Description: "A deployment is a target of a pipeline; for deployments started by POST /deployments/kubernetes its id is also its pipeline's.",
		Errors:      []int{http.StatusNotFound},
	}, func(ctx context.Context, in *deploymentIDInput) (*bodyOut[Deployment], error) {
		v, err := g.view(ctx, in.DeploymentID)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		tg, err := deploymentTarget(v, in.DeploymentID)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[Deployment]{Body: deploymentOut(v, tg)}, nil
	})

	for _, a := range []struct{ action, id, summary, desc string }{
		{"resume", "resume-deployment", "Resume a paused deployment",
			"Approves a pause awaiting approval, or skips the rest of a timed pause. A finished deployment is 409."},
		{"abort", "abort-deployment", "Abort a deployment",
			"Stops the deployment and rolls back to the stable version. A finished deployment is 409."},
	} {
		register(g, identity.ScopeManageDeploy, huma.Operation{
			OperationID: a.id, Method: http.MethodPost, Path: "/deployments/{deploymentId}/" + a.action, Tags: dtags,
			Summary: a.summary, Description: a.desc, Errors: []int{http.StatusNotFound, http.StatusConflict},
		}, func(ctx context.Context, in *deploymentIDInput) (*bodyOut[ActionResult], error) {
			n, err := g.act(ctx, a.action, in.DeploymentID, "")
			if err != nil {
				return nil, restError(ctx, g.log, err)
			}
			return &bodyOut[ActionResult]{Body: ActionResult{Message: actionMessage(a.action, "deployment", in.DeploymentID, n), NumberAffected: n}}, nil
		})
	}

	startPipeline := func(ctx context.Context, in *startInput) (*bodyOut[PipelineStarted], error) {
		if err := checkJSONBody(in.ContentType); err != nil {
			return nil, err
		}
		res, err := g.start(ctx, pipeline.FormPipeline, in.RawBody)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[PipelineStarted]{Body: PipelineStarted{PipelineID: res.PipelineID, Warnings: warningsOut(res.Warnings)}}, nil
	}
	startDesc := "The body is a deploy.yml as JSON, with the keys the Armory CLI adds (files, context, " +
		"targetFilters, sourceControl). Every problem is reported at once (422, each with " +
		"metadata.field); unknown keys are warnings in the reply. When a pipeline of the same " +
		"application is in progress, deploymentConfig.ifDeploymentInProgress.strategy decides: " +
		"reject (the default) is 409 naming it in metadata.pipelineId, enqueueOne queues the new " +
		"pipeline as QUEUED (GET shows blockedBy)."
	for _, p := range []struct{ id, path string }{
		{"start-kubernetes-pipeline", "/pipelines/kubernetes"},
		{"start-pipeline", "/pipelines"},
	} {
		register(g, identity.ScopeManageDeploy, huma.Operation{
			OperationID: p.id, Method: http.MethodPost, Path: p.path, Tags: ptags, DefaultStatus: http.StatusAccepted,
			Summary: "Start a pipeline from a deploy.yml", Description: startDesc, Errors: conflicts,
		}, startPipeline)
		g.documentStartBody(p.path, reflect.TypeFor[pipelineConfig](), "application/json", PipelineMediaType)
	}

	register(g, identity.ScopeReadDeploy, huma.Operation{
		OperationID: "get-pipeline", Method: http.MethodGet, Path: "/pipelines/{pipelineId}", Tags: ptags,
		Summary: "Read a pipeline", Errors: []int{http.StatusNotFound},
		Description: "Any request body and Content-Type are ignored (the Armory CLI polls with " +
			"Content-Type: application/json and no body).",
	}, func(ctx context.Context, in *pipelineIDInput) (*bodyOut[Pipeline], error) {
		v, err := g.view(ctx, in.PipelineID)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[Pipeline]{Body: pipelineOut(v)}, nil
	})

	register(g, identity.ScopeReadDeploy, huma.Operation{
		OperationID: "list-pipelines", Method: http.MethodGet, Path: "/pipelines", Tags: ptags,
		Summary: "List pipelines, newest first", Errors: []int{http.StatusUnprocessableEntity},
	}, func(ctx context.Context, in *listPipelinesInput) (*bodyOut[PipelineList], error) {
		sts, err := parseStatuses(in.Status)
		if err != nil {
			return nil, err
		}
		e, err := g.engine()
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		limit := in.Limit
		if limit == 0 {
			limit = defaultPageSize
		}
		after := in.PageToken
		if after == "" {
			after = in.Cursor
		}
		views, next, err := e.List(ctx, principalFrom(ctx).Tenant(), pipeline.ListFilter{
			Application: in.Application, Statuses: sts, After: after, Limit: limit,
		})
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		out := PipelineList{Pipelines: make([]Pipeline, 0, len(views)), NextPageToken: next}
		for _, v := range views {
			out.Pipelines = append(out.Pipelines, pipelineOut(v))
		}
		return &bodyOut[PipelineList]{Body: out}, nil
	})

	register(g, identity.ScopeManageDeploy, huma.Operation{
		OperationID: "approve-pipeline", Method: http.MethodPost, Path: "/pipelines/{pipelineId}/approve", Tags: ptags,
		Summary: "Approve a step, or every step awaiting approval",
		Description: "Without a body (or without step) every step awaiting approval is approved. Nothing " +
			"awaiting is 409; an approval that needs a role the caller lacks is 403. The decision is " +
			"recorded with the caller and the time.",
		Errors: []int{http.StatusNotFound, http.StatusConflict},
	}, func(ctx context.Context, in *approveInput) (*bodyOut[ActionResult], error) {
		step := ""
		if in.Body != nil {
			step = in.Body.Step
		}
		n, err := g.act(ctx, "approve", in.PipelineID, step)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[ActionResult]{Body: ActionResult{Message: actionMessage("approve", "pipeline", in.PipelineID, n), NumberAffected: n}}, nil
	})

	register(g, identity.ScopeManageDeploy, huma.Operation{
		OperationID: "abort-pipeline", Method: http.MethodPost, Path: "/pipelines/{pipelineId}/abort", Tags: ptags,
		Summary:     "Abort a pipeline",
		Description: "Stops every active target and rolls it back to its stable version. A finished pipeline is 409.",
		Errors:      []int{http.StatusNotFound, http.StatusConflict},
	}, func(ctx context.Context, in *pipelineIDInput) (*bodyOut[ActionResult], error) {
		n, err := g.act(ctx, "abort", in.PipelineID, "")
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[ActionResult]{Body: ActionResult{Message: actionMessage("abort", "pipeline", in.PipelineID, n), NumberAffected: n}}, nil
	})

	register(g, identity.ScopeReadDeploy, huma.Operation{
		OperationID: "list-pipeline-events", Method: http.MethodGet, Path: "/pipelines/{pipelineId}/events", Tags: ptags,
		Summary: "Read the history of a pipeline, oldest first", Errors: []int{http.StatusNotFound},
	}, func(ctx context.Context, in *pipelineIDInput) (*bodyOut[EventList], error) {
		e, err := g.engine()
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		events, err := e.Events(ctx, principalFrom(ctx).Tenant(), in.PipelineID)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		out := EventList{Events: make([]EventOut, 0, len(events))}
		for _, ev := range events {
			item := EventOut{Seq: ev.Seq, TimeIso8601: rfc3339(ev.Time), Type: ev.Type, Target: ev.Target,
				Step: ev.Step, Status: string(ev.Status), Message: ev.Message}
			if ev.Actor != nil {
				a := actorOut(*ev.Actor)
				item.Actor = &a
			}
			out.Events = append(out.Events, item)
		}
		return &bodyOut[EventList]{Body: out}, nil
	})
}

// documentStartBody replaces the opaque request body of a start route in the OpenAPI
// document with the schema of the config, under each accepted media type. The route reads
// the raw body and the engine validates it strictly, so Huma must not; this only documents.
func (g *Gateway) documentStartBody(path string, t reflect.Type, mediaTypes ...string) {
	oapi := g.api.OpenAPI()
	op := oapi.Paths[path].Post
	schema := oapi.Components.Schemas.Schema(t, true, "")
	op.RequestBody = &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{}}
	for _, mt := range mediaTypes {
		op.RequestBody.Content[mt] = &huma.MediaType{Schema: schema}
	}
}

var _ Pipelines = (*pipeline.Engine)(nil)
