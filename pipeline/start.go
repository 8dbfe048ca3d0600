package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/pipeline/config"
	"github.com/sortie-dev/sortie/pipeline/rollout"
	"github.com/sortie-dev/sortie/store"
)

// Start validates a request, generates every target's objects, and stores the new pipeline,
// applying the application's in-progress rule in the same atomic store operation. Nothing
// is stored when anything is wrong. The pipeline then runs in the background (on whichever
// replica takes its lease).
func (e *Engine) Start(ctx context.Context, req StartRequest) (StartResult, error) {
	var (
		cfg      *config.Request
		warnings []config.Warning
		err      error
	)
	switch req.Form {
	case FormDeployment:
		cfg, warnings, err = config.ParseDeployment(req.Body)
	default:
		cfg, warnings, err = config.ParsePipeline(req.Body)
	}
	if err != nil {
		return StartResult{}, err
	}
	if err := e.checkAccounts(ctx, req.Tenant, req.Form, cfg); err != nil {
		return StartResult{}, err
	}
	if cfg.KeepDeploymentObject {
		warnings = append(warnings, config.Warning{Path: "deploymentConfig.keepDeploymentObject",
			Message: "Sortie deploys each Deployment as an Argo Rollout of the same name and never creates the Deployment object, so there is none to keep; the key changes nothing"})
	}

	id := uuid.NewString()
	now := e.now().UTC()
	st := &state{InitiatedBy: req.Actor, Timeout: cfg.Timeout.Milliseconds(), Decisions: []Decision{}}
	sp := spec{Context: cfg.Context, SourceControl: cfg.SourceControl, Objects: map[string][]json.RawMessage{}}
	st.Form = "pipeline"
	if req.Form == FormDeployment {
		st.Form = "deployment"
	}
	var problems []config.Problem
	for _, ct := range cfg.Targets {
		tg, objects, perr := planTarget(cfg.Application, id, ct)
		if perr != nil {
			problems = append(problems, perr...)
			continue
		}
		if req.Form == FormDeployment {
			tg.DeploymentID = id
		}
		st.Targets = append(st.Targets, tg)
		sp.Objects[tg.Name] = objects
	}
	if len(problems) > 0 {
		return StartResult{}, &config.ValidationError{Problems: problems}
	}

	sealed, err := e.sealSpec(req.Tenant, id, &sp)
	if err != nil {
		return StartResult{}, err
	}
	stateJSON, err := json.Marshal(st)
	if err != nil {
		return StartResult{}, fmt.Errorf("encode pipeline state: %w", err)
	}
	rule := store.RejectInProgress
	if cfg.InProgress == config.EnqueueOne {
		rule = store.EnqueueOne
	}
	actor := req.Actor
	created := e.event(Event{Type: "pipeline.created", Status: NotStarted, Actor: &actor,
		Message: fmt.Sprintf("%s started %s of application %s with %d target(s)", actorName(actor), st.Form, cfg.Application, len(st.Targets))})
	res, err := e.st.CreatePipeline(ctx, store.Pipeline{
		ID: id, Tenant: req.Tenant, Application: cfg.Application, Status: string(NotStarted),
		CreatedAt: now, UpdatedAt: now, State: stateJSON, Sealed: sealed,
	}, rule, []store.PipelineEvent{created})
	if err != nil {
		return StartResult{}, err
	}
	ref := store.PipelineRef{Tenant: req.Tenant, ID: id}
	e.kick(ref)
	out := StartResult{PipelineID: id, Status: Status(res.Pipeline.Status), BlockedBy: res.Pipeline.BlockedBy, Warnings: warnings}
	if req.Form == FormDeployment {
		out.DeploymentID = id
	}
	if res.Replaced != nil {
		out.Replaced = res.Replaced.ID
		e.kickEverywhere(ctx, store.PipelineRef{Tenant: req.Tenant, ID: res.Replaced.ID})
	}
	e.m.started.Inc()
	e.log.Info("pipeline created", "tenant", req.Tenant.String(), "pipeline", id,
		"application", cfg.Application, "status", res.Pipeline.Status, "targets", len(st.Targets))
	return out, nil
}

// checkAccounts refuses targets whose account has no agent (connected now or within the
// hub's grace period).
func (e *Engine) checkAccounts(ctx context.Context, t store.Tenant, form Form, cfg *config.Request) error {
	accounts, err := e.cl.Accounts(ctx, t)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, a := range accounts {
		known[a.Name] = true
	}
	for _, tg := range cfg.Targets {
		if !known[tg.Account] {
			path := "targets." + tg.Name + ".account"
			if form == FormDeployment {
				path = "account"
			}
			return &unknownAccountError{account: tg.Account, path: path}
		}
	}
	return nil
}

// planTarget turns one validated target into its plan and generated objects.
func planTarget(application, pipelineID string, ct config.Target) (*target, []json.RawMessage, []config.Problem) {
	tg := &target{
		Name: ct.Name, Account: ct.Account, Namespace: ct.Namespace, DeploymentID: uuid.NewString(),
		DependsOn: ct.DependsOn, Phase: phasePending, Status: NotStarted,
		Before: gates(ct.BeforeDeployment), After: gates(ct.AfterDeployment),
	}
	in := rollout.Input{Application: application, PipelineID: pipelineID, Target: ct.Name, Namespace: ct.Namespace}
	for _, d := range ct.Documents {
		in.Documents = append(in.Documents, rollout.Document{Source: d.Source, YAML: d.YAML})
	}
	switch {
	case ct.Canary != nil:
		tg.Strategy = "canary"
		in.Canary = &rollout.Canary{}
		for _, s := range ct.Canary.Steps {
			switch {
			case s.SetWeight != nil:
				w := *s.SetWeight
				w32 := int32(w)
				tg.Canary = append(tg.Canary, canaryStep{Weight: &w})
				in.Canary.Steps = append(in.Canary.Steps, rollout.Step{SetWeight: &w32})
			case s.Pause != nil:
				g := gateOf(*s.Pause)
				tg.Canary = append(tg.Canary, canaryStep{Pause: &g})
				d := g.Duration
				if g.UntilApproved {
					d = 0
				}
				in.Canary.Steps = append(in.Canary.Steps, rollout.Step{Pause: &rollout.Pause{Duration: d}})
			}
		}
	case ct.BlueGreen != nil:
		tg.Strategy = "blueGreen"
		tg.Redirect = gates(ct.BlueGreen.RedirectTrafficAfter)
		tg.Services = []string{ct.BlueGreen.ActiveService}
		if ct.BlueGreen.PreviewService != "" {
			tg.Services = append(tg.Services, ct.BlueGreen.PreviewService)
		}
		// shutDownOldVersionAfter holds only timed pauses (config refuses approvals there):
		// together they are how long the controller keeps the old version after promotion.
		var scaleDown time.Duration
		for _, p := range ct.BlueGreen.ShutDownOldVersionAfter {
			scaleDown += p.Duration
		}
		// The engine holds the promotion itself while redirect conditions remain, so the
		// controller never promotes on its own when there are any.
		in.BlueGreen = &rollout.BlueGreen{
			ActiveService: ct.BlueGreen.ActiveService, PreviewService: ct.BlueGreen.PreviewService,
			AutoPromotion: len(tg.Redirect) == 0, ScaleDownDelay: scaleDown,
		}
	}
	out, err := rollout.Generate(in)
	if err != nil {
		var gerr *rollout.Error
		if !errors.As(err, &gerr) {
			return nil, nil, []config.Problem{{Path: "targets." + ct.Name, Message: err.Error()}}
		}
		var problems []config.Problem
		for _, p := range gerr.Problems {
			problems = append(problems, config.Problem{Path: manifestPath(ct.Name, p.Source), Message: p.Message})
		}
		return nil, nil, problems
	}
	if len(out.Rollouts) == 0 {
		return nil, nil, []config.Problem{{Path: "targets." + ct.Name,
			Message: "the target's manifests hold no apps/v1 Deployment; a target needs at least one Deployment for Sortie to roll out"}}
	}
	objects := make([]json.RawMessage, 0, len(out.Objects))
	for _, o := range out.Objects {
		objects = append(objects, o.JSON)
	}
	for _, r := range out.Rollouts {
		tg.Rollouts = append(tg.Rollouts, objectRef{APIVersion: r.APIVersion, Kind: r.Kind, Namespace: namespaceOf(r.Namespace), Name: r.Name})
	}
	return tg, objects, nil
}

// manifestPath names where a manifest problem is, for the error contract's metadata.field.
func manifestPath(target, source string) string {
	if source == "" || source == "input" {
		return "targets." + target
	}
	return "manifests (" + source + ") for target " + target
}

func gateOf(p config.Pause) gate {
	return gate{Duration: p.Duration, UntilApproved: p.UntilApproved, RequiresRoles: p.RequiresRoles, Expiration: p.ApprovalExpiration}
}

func gates(ps []config.Pause) []gate {
	var out []gate
	for _, p := range ps {
		out = append(out, gateOf(p))
	}
	return out
}

func actorName(a Actor) string {
	if a.Name != "" {
		return a.Name
	}
	if a.ID != "" {
		return a.ID
	}
	return "someone"
}
