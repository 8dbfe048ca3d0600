package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// watchPoll is how often a watch re-reads when no local write woke it: writes by other
// replicas reach watchers this way.
const watchPoll = time.Second

// Get returns the pipeline's view, or ErrNotFound.
func (e *Engine) Get(ctx context.Context, t store.Tenant, id string) (*View, error) {
	p, err := e.st.GetPipeline(ctx, t, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return e.view(p, true)
}

// List returns a page of the tenant's pipelines, newest first, and the cursor of the next
// page ("" on the last).
func (e *Engine) List(ctx context.Context, t store.Tenant, f ListFilter) ([]*View, string, error) {
	sf := store.PipelineFilter{Application: f.Application, After: f.After, Limit: f.Limit}
	for _, s := range f.Statuses {
		sf.Statuses = append(sf.Statuses, string(s))
	}
	ps, next, err := e.st.ListPipelines(ctx, t, sf)
	if err != nil {
		return nil, "", err
	}
	out := make([]*View, 0, len(ps))
	for _, p := range ps {
		v, err := e.view(p, false)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, next, nil
}

// Events returns the pipeline's history, oldest first.
func (e *Engine) Events(ctx context.Context, t store.Tenant, id string) ([]Event, error) {
	if _, err := e.st.GetPipeline(ctx, t, id); errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	evs, err := e.st.ListPipelineEvents(ctx, t, id, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(evs))
	for _, se := range evs {
		var ev Event
		if err := json.Unmarshal(se.Data, &ev); err != nil {
			ev = Event{Type: se.Type, Message: "undecodable event"}
		}
		ev.Seq, ev.Time, ev.Type = se.Seq, se.Time, se.Type
		out = append(out, ev)
	}
	return out, nil
}

// Watch sends the pipeline's view now and again after every change, and closes the
// channel after the final view of a finished pipeline or when ctx ends.
func (e *Engine) Watch(ctx context.Context, t store.Tenant, id string) (<-chan *View, error) {
	v, err := e.Get(ctx, t, id)
	if err != nil {
		return nil, err
	}
	out := make(chan *View, 1)
	out <- v
	go func() {
		defer close(out)
		last := v.Revision
		if v.Status.Terminal() {
			return
		}
		for e.wait(ctx) {
			v, err := e.Get(ctx, t, id)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					return
				}
				continue
			}
			if v.Revision == last {
				continue
			}
			last = v.Revision
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
			if v.Status.Terminal() {
				return
			}
		}
	}()
	return out, nil
}

// WatchTenant sends the views of the tenant's pipelines that change (the 50 newest are
// followed), starting with their current views, until ctx ends.
func (e *Engine) WatchTenant(ctx context.Context, t store.Tenant) (<-chan *View, error) {
	if _, _, err := e.st.ListPipelines(ctx, t, store.PipelineFilter{Limit: 1}); err != nil {
		return nil, err
	}
	out := make(chan *View, 16)
	go func() {
		defer close(out)
		seen := map[string]int64{}
		for {
			ps, _, err := e.st.ListPipelines(ctx, t, store.PipelineFilter{Limit: 50})
			if err == nil {
				for _, p := range ps {
					if seen[p.ID] == p.Revision {
						continue
					}
					v, err := e.view(p, false)
					if err != nil {
						continue
					}
					seen[p.ID] = p.Revision
					select {
					case out <- v:
					case <-ctx.Done():
						return
					}
				}
			}
			if !e.wait(ctx) {
				return
			}
		}
	}()
	return out, nil
}

// wait blocks until a local write, the poll interval, or the end of ctx (false).
func (e *Engine) wait(ctx context.Context) bool {
	t := time.NewTimer(watchPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-e.changedChan():
	case <-t.C:
	}
	return true
}

// view renders a stored pipeline; withSpec also opens the sealed part for the context.
func (e *Engine) view(p store.Pipeline, withSpec bool) (*View, error) {
	st, err := decodeState(p)
	if err != nil {
		return nil, err
	}
	v := &View{
		ID: p.ID, Application: p.Application, Status: Status(p.Status), Form: st.Form,
		CreatedAt: p.CreatedAt, StartedAt: st.StartedAt, CompletedAt: p.CompletedAt,
		InitiatedBy: st.InitiatedBy, BlockedBy: p.BlockedBy, Message: st.Message,
		Decisions: append([]Decision{}, st.Decisions...), Revision: p.Revision,
		Targets: []TargetView{}, Steps: []StepView{},
	}
	if v.Status == Rejected && v.Message == "" && p.BlockedBy != "" {
		v.Message = "replaced by the newer queued pipeline " + p.BlockedBy
	}
	if withSpec {
		sp, err := e.openSpec(p, false)
		if err != nil {
			return nil, err
		}
		v.Context, v.SourceControl = sp.Context, sp.SourceControl
	}
	for _, tg := range st.Targets {
		tv := TargetView{
			Name: tg.Name, Account: tg.Account, Namespace: namespaceOf(tg.Namespace), DeploymentID: tg.DeploymentID,
			Status: tg.Status, Strategy: tg.Strategy, DependsOn: tg.DependsOn, CurrentStep: tg.CurrentStep,
			TotalSteps: tg.totalSteps(), Weight: tg.Weight, StartedAt: tg.StartedAt, CompletedAt: tg.CompletedAt,
			Message: tg.Message,
		}
		if tg.Status == Succeeded {
			tv.Weight, tv.CurrentStep = 100, tv.TotalSteps
		}
		if tg.PauseKind != "" && !tg.Status.Terminal() {
			tv.Pause = &Pause{Reason: tg.PauseKind, Step: tg.PauseRef, EndTime: tg.PauseEnd,
				RequiresRoles: tg.PauseRoles, ExpiresAt: tg.PauseExpiry}
		}
		v.Targets = append(v.Targets, tv)
		v.Steps = append(v.Steps, steps(tg)...)
	}
	return v, nil
}

// steps renders a target as pipeline steps: its before pauses, its deployment, its after
// pauses, each depending on the one before.
func steps(tg *target) []StepView {
	var out []StepView
	prev := append([]string{}, tg.DependsOn...)
	eff := tg.Phase
	if eff == phaseDone {
		eff = tg.EndedIn
	}
	at := phaseOrder[eff]
	// status of the step at position pos (gate index i, or -1 for the deployment).
	status := func(pos, i int) Status {
		switch {
		case at > pos, at == pos && i >= 0 && tg.Gate > i:
			return Succeeded
		case at == pos && (i < 0 || tg.Gate == i):
			return tg.Status
		case tg.Status.Terminal():
			return Cancelled // never reached
		}
		return NotStarted
	}
	for i, g := range tg.Before {
		ref := beforeRef(tg.Name, i)
		out = append(out, StepView{Ref: ref, Type: "pause", Status: status(1, i), DependsOn: prev, ConstraintFor: tg.Name, Pause: stepPause(g)})
		prev = []string{ref}
	}
	dep := status(2, -1)
	step := tg.CurrentStep
	if dep == Succeeded {
		step = tg.totalSteps()
	}
	out = append(out, StepView{Ref: tg.Name, Type: "deployment", Status: dep, DependsOn: prev,
		Deployment: &StepDeployment{ID: tg.DeploymentID, Environment: tg.Name, Step: step, TotalSteps: tg.totalSteps()}})
	prev = []string{tg.Name}
	for i, g := range tg.After {
		ref := afterRef(tg.Name, i)
		out = append(out, StepView{Ref: ref, Type: "pause", Status: status(3, i), DependsOn: prev, ConstraintFor: tg.Name, Pause: stepPause(g)})
		prev = []string{ref}
	}
	return out
}

// phaseOrder ranks phases for the step view; apply and rollout are the deployment step.
var phaseOrder = map[string]int{phasePending: 0, phaseBefore: 1, phaseApply: 2, phaseRollout: 2, phaseAfter: 3, phaseDone: 4}

func stepPause(g gate) *StepPause {
	if g.UntilApproved {
		return &StepPause{Duration: 0, Unit: "NONE", UntilApproved: true, RequiresRoles: g.RequiresRoles}
	}
	d, unit := int64(g.Duration/time.Second), "SECONDS"
	switch {
	case g.Duration%time.Hour == 0:
		d, unit = int64(g.Duration/time.Hour), "HOURS"
	case g.Duration%time.Minute == 0:
		d, unit = int64(g.Duration/time.Minute), "MINUTES"
	}
	return &StepPause{Duration: d, Unit: unit}
}
