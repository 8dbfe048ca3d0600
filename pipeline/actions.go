package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sortie-dev/sortie/store"
)

// decide applies a human decision to a stored pipeline: f changes the state and says how
// many things it affected. The write is conditioned on the revision read (any replica may
// take the action; the lease holder is woken to pick it up) and retried when another
// writer came first.
func (e *Engine) decide(ctx context.Context, t store.Tenant, id string, f func(p *store.Pipeline, st *state) (int, []Event, error)) (int, error) {
	for range 20 {
		p, err := e.st.GetPipeline(ctx, t, id)
		if errors.Is(err, store.ErrNotFound) {
			return 0, ErrNotFound
		}
		if err != nil {
			return 0, err
		}
		st, err := decodeState(p)
		if err != nil {
			return 0, err
		}
		n, evs, err := f(&p, st)
		if err != nil {
			return 0, err
		}
		if p.State, err = json.Marshal(st); err != nil {
			return 0, fmt.Errorf("encode pipeline state: %w", err)
		}
		p.UpdatedAt = e.now().UTC()
		stored := make([]store.PipelineEvent, 0, len(evs))
		for _, ev := range evs {
			stored = append(stored, e.event(ev))
		}
		if _, err := e.st.UpdatePipeline(ctx, p, nil, stored); errors.Is(err, store.ErrStale) {
			continue
		} else if err != nil {
			return 0, err
		}
		e.notify()
		e.kickEverywhere(ctx, store.PipelineRef{Tenant: t, ID: id})
		return n, nil
	}
	return 0, fmt.Errorf("pipeline %s changes too fast to record the decision; try again: %w", id, store.ErrUnavailable)
}

// Approve approves what the pipeline is waiting for: the pause named step (a ref from the
// pipeline's view, or a target's name for whatever that target awaits), or, with step "",
// every pause awaiting approval that a's roles allow. It returns how many it approved.
// ErrFinished when the pipeline has ended, ErrNothingToApprove when nothing (of that step)
// awaits approval, ErrForbidden when the approvals need roles a lacks.
func (e *Engine) Approve(ctx context.Context, t store.Tenant, id, step string, a Actor) (int, error) {
	return e.decide(ctx, t, id, func(p *store.Pipeline, st *state) (int, []Event, error) {
		return e.approve(p, st, step, a, "approve", "approval")
	})
}

// Resume is the Spinnaker stage's resume: it approves a manual pause, or skips the rest of
// a timed pause, of every target.
func (e *Engine) Resume(ctx context.Context, t store.Tenant, id string, a Actor) (int, error) {
	return e.decide(ctx, t, id, func(p *store.Pipeline, st *state) (int, []Event, error) {
		return e.approve(p, st, "", a, "resume", "approval", "timed")
	})
}

func (e *Engine) approve(p *store.Pipeline, st *state, step string, a Actor, action string, kinds ...string) (int, []Event, error) {
	if store.TerminalStatus(p.Status) {
		return 0, nil, ErrFinished
	}
	now := e.now().UTC()
	var (
		n         int
		evs       []Event
		forbidden bool
	)
	for _, tg := range st.Targets {
		if tg.Status.Terminal() || tg.PauseRef == "" || !slices.Contains(kinds, tg.PauseKind) || tg.EndAs != "" {
			continue
		}
		if step != "" && step != tg.PauseRef && step != tg.Name {
			continue
		}
		if tg.PauseKind == "approval" && !hasRole(a, tg.PauseRoles) {
			forbidden = true
			continue
		}
		if tg.approved(tg.PauseRef) {
			continue
		}
		tg.Approved = append(tg.Approved, tg.PauseRef)
		d := Decision{Action: action, Step: tg.PauseRef, Target: tg.Name, Actor: a, At: now}
		st.Decisions = append(st.Decisions, d)
		actor := a
		evs = append(evs, Event{Type: "decision." + action, Target: tg.Name, Step: tg.PauseRef, Actor: &actor,
			Message: fmt.Sprintf("%s by %s", action, actorName(a))})
		n++
	}
	switch {
	case n > 0:
		return n, evs, nil
	case forbidden:
		return 0, nil, fmt.Errorf("%w: approving needs one of the roles %s", ErrForbidden, rolesOf(st, step))
	case step != "":
		return 0, nil, fmt.Errorf("%w: step %q of pipeline %s is not waiting", ErrNothingToApprove, step, p.ID)
	}
	return 0, nil, fmt.Errorf("%w: pipeline %s is %s", ErrNothingToApprove, p.ID, p.Status)
}

func hasRole(a Actor, need []string) bool {
	if len(need) == 0 {
		return true
	}
	for _, r := range need {
		if slices.Contains(a.Roles, r) {
			return true
		}
	}
	return false
}

func rolesOf(st *state, step string) string {
	var roles []string
	for _, tg := range st.Targets {
		if step == "" || step == tg.PauseRef || step == tg.Name {
			for _, r := range tg.PauseRoles {
				if !slices.Contains(roles, r) {
					roles = append(roles, r)
				}
			}
		}
	}
	return "'" + strings.Join(roles, "', '") + "'"
}

// Abort stops the pipeline: targets not started yet are cancelled, Rollouts in flight are
// aborted back to their stable version, and the pipeline ends CANCELLED once they are. It
// returns how many targets it stops; aborting twice is harmless (0 the second time).
// ErrFinished when the pipeline has ended.
func (e *Engine) Abort(ctx context.Context, t store.Tenant, id string, a Actor) (int, error) {
	return e.decide(ctx, t, id, func(p *store.Pipeline, st *state) (int, []Event, error) {
		if store.TerminalStatus(p.Status) {
			return 0, nil, ErrFinished
		}
		if st.Abort != nil {
			return 0, nil, nil
		}
		d := Decision{Action: "abort", Actor: a, At: e.now().UTC()}
		st.Abort = &d
		st.Decisions = append(st.Decisions, d)
		n := 0
		for _, tg := range st.Targets {
			if !tg.Status.Terminal() {
				n++
			}
		}
		if Status(p.Status) == Queued || Status(p.Status) == NotStarted {
			// Nothing runs yet: it ends here, without waiting for a lease holder.
			for _, tg := range st.Targets {
				tg.Status, tg.Phase, tg.Message, tg.CompletedAt = Cancelled, phaseDone, "aborted by "+actorName(a), d.At
			}
			p.Status, p.CompletedAt = string(Cancelled), d.At
			st.Message = "aborted by " + actorName(a)
		}
		actor := a
		return n, []Event{{Type: "decision.abort", Actor: &actor, Message: "abort by " + actorName(a)}}, nil
	})
}
