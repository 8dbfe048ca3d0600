package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/pipeline/rollout"
	"github.com/sortie-dev/sortie/store"
)

// rec is one reconcile pass of one pipeline.
type rec struct {
	e      *Engine
	ctx    context.Context
	h      *held
	p      store.Pipeline
	st     *state
	now    time.Time
	events []store.PipelineEvent
	dirty  bool
	wake   time.Time // earliest timer the pipeline needs
}

// reconcile reads the pipeline and its Rollouts and takes the next actions. It returns when
// to look again (0: on the next hint or resync), whether the pipeline has finished, and an
// error (store.ErrStale when another writer came first).
func (e *Engine) reconcile(ctx context.Context, h *held) (time.Duration, bool, error) {
	p, err := e.st.GetPipeline(ctx, h.ref.Tenant, h.ref.ID)
	if err != nil {
		return 0, false, err
	}
	if store.TerminalStatus(p.Status) {
		return 0, true, nil
	}
	st, err := decodeState(p)
	if err != nil {
		return 0, false, err
	}
	r := &rec{e: e, ctx: ctx, h: h, p: p, st: st, now: e.now().UTC()}
	e.watch(h, st)
	r.run()
	if err := r.flush(); err != nil {
		return 0, false, err
	}
	done := store.TerminalStatus(r.p.Status)
	if done {
		e.m.finished.WithLabelValues(r.p.Status).Inc()
		e.log.Info("pipeline finished", "tenant", p.Tenant.String(), "pipeline", p.ID, "status", r.p.Status)
		e.kickQueued(ctx, p.Tenant, p.Application)
	}
	var wake time.Duration
	if !r.wake.IsZero() {
		wake = max(r.wake.Sub(e.now()), 10*time.Millisecond)
	}
	return wake, done, nil
}

// kickQueued wakes the application's queued pipeline once the one it waits for finished.
func (e *Engine) kickQueued(ctx context.Context, t store.Tenant, application string) {
	q, err := e.st.QueuedPipeline(ctx, t, application)
	if err == nil {
		e.kickEverywhere(ctx, store.PipelineRef{Tenant: t, ID: q.ID})
	}
}

// flush writes the pass's changes, conditioned on the lease and the revision read.
func (r *rec) flush() error {
	if !r.dirty && len(r.events) == 0 {
		return nil
	}
	b, err := json.Marshal(r.st)
	if err != nil {
		return fmt.Errorf("encode pipeline state: %w", err)
	}
	r.p.State = b
	r.p.UpdatedAt = r.now
	lease := r.h.currentLease()
	p, err := r.e.st.UpdatePipeline(r.ctx, r.p, &lease, r.events)
	if err != nil {
		return err
	}
	r.p = p
	r.events = nil
	r.dirty = false
	r.e.notify()
	return nil
}

// emit records an event of this pass.
func (r *rec) emit(ev Event) {
	r.events = append(r.events, r.e.event(ev))
	r.dirty = true
}

// event stamps ev and encodes it for the store.
func (e *Engine) event(ev Event) store.PipelineEvent {
	if ev.Time.IsZero() {
		ev.Time = e.now().UTC()
	}
	data, _ := json.Marshal(ev) // plain data always encodes
	return store.PipelineEvent{Time: ev.Time, Type: ev.Type, Data: data}
}

func (r *rec) wakeAt(t time.Time) {
	if r.wake.IsZero() || t.Before(r.wake) {
		r.wake = t
	}
}

func (r *rec) run() {
	if Status(r.p.Status) == Queued {
		if !r.dequeue() {
			return
		}
	}
	if r.st.StartedAt.IsZero() {
		r.st.StartedAt = r.now
		if r.st.Timeout > 0 {
			r.st.Deadline = r.now.Add(time.Duration(r.st.Timeout) * time.Millisecond)
		}
		r.emit(Event{Type: "pipeline.started", Status: Running})
	}
	if !r.st.Deadline.IsZero() {
		if !r.now.Before(r.st.Deadline) {
			r.stopAll(Failed, fmt.Sprintf("the deployment timed out after %s (deploymentConfig.timeout)",
				time.Duration(r.st.Timeout)*time.Millisecond))
		} else {
			r.wakeAt(r.st.Deadline)
		}
	}
	if a := r.st.Abort; a != nil {
		r.stopAll(Cancelled, "aborted by "+actorName(a.Actor))
	}
	// A target that finishes lets its dependents start in the same pass.
	for range len(r.st.Targets) + 1 {
		before := r.progress()
		for _, tg := range r.st.Targets {
			if r.ctx.Err() != nil {
				return
			}
			r.target(tg)
		}
		if r.progress() == before {
			break
		}
	}
	r.derive()
}

// progress summarizes the targets' phases, to tell whether a pass moved anything.
func (r *rec) progress() string {
	var b strings.Builder
	for _, tg := range r.st.Targets {
		b.WriteString(tg.Phase + string(tg.Status) + "|")
	}
	return b.String()
}

// dequeue starts a QUEUED pipeline once the pipeline it waits for has finished.
func (r *rec) dequeue() bool {
	if r.p.BlockedBy != "" {
		b, err := r.e.st.GetPipeline(r.ctx, r.p.Tenant, r.p.BlockedBy)
		if err == nil && !store.TerminalStatus(b.Status) {
			return false
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false
		}
	}
	r.emit(Event{Type: "pipeline.dequeued", Status: NotStarted,
		Message: fmt.Sprintf("pipeline %s finished; this one starts", r.p.BlockedBy)})
	r.p.Status = string(NotStarted)
	r.p.BlockedBy = ""
	return true
}

// stopAll ends every unfinished target with status end: targets that have not applied
// anything end at once; Rollouts in flight are aborted first.
func (r *rec) stopAll(end Status, reason string) {
	if r.st.Message == "" {
		r.st.Message = reason
		r.dirty = true
	}
	for _, tg := range r.st.Targets {
		r.stop(tg, end, reason)
	}
}

// stop ends one target with status end, aborting its Rollouts when they are in flight.
func (r *rec) stop(tg *target, end Status, reason string) {
	if tg.Status.Terminal() || tg.EndAs != "" {
		return
	}
	switch tg.Phase {
	case phaseApply, phaseRollout:
		if tg.ApplyAttempts == 0 {
			r.finish(tg, end, reason)
			return
		}
		tg.EndAs, tg.Reason = end, reason
		tg.Phase = phaseRollout
		r.dirty = true
		r.emit(Event{Type: "target.stopping", Target: tg.Name, Status: end, Message: reason})
	default:
		r.finish(tg, end, reason)
	}
}

func (r *rec) setStatus(tg *target, s Status) {
	if tg.Status == s {
		return
	}
	tg.Status = s
	r.dirty = true
	r.emit(Event{Type: "target.status", Target: tg.Name, Status: s, Step: tg.PauseRef})
}

func (r *rec) finish(tg *target, s Status, msg string) {
	tg.EndedIn, tg.Phase = tg.Phase, phaseDone
	tg.CompletedAt = r.now
	tg.Message = msg
	r.clearPause(tg)
	if tg.Status != s {
		tg.Status = s
		r.emit(Event{Type: "target.status", Target: tg.Name, Status: s, Message: msg})
	}
	r.dirty = true
}

func (r *rec) setPause(tg *target, kind, ref string, end, expiry time.Time, roles []string) {
	if tg.PauseKind == kind && tg.PauseRef == ref && tg.PauseEnd.Equal(end) && tg.PauseExpiry.Equal(expiry) {
		return
	}
	tg.PauseKind, tg.PauseRef, tg.PauseEnd, tg.PauseExpiry, tg.PauseRoles = kind, ref, end, expiry, roles
	r.dirty = true
}

func (r *rec) clearPause(tg *target) {
	if tg.PauseKind == "" && tg.PauseRef == "" {
		return
	}
	tg.PauseKind, tg.PauseRef, tg.PauseEnd, tg.PauseExpiry, tg.PauseRoles = "", "", time.Time{}, time.Time{}, nil
	r.dirty = true
}

// target moves one target as far as its state and its cluster allow.
func (r *rec) target(tg *target) {
	if tg.Status.Terminal() {
		return
	}
	switch tg.Phase {
	case phasePending:
		for _, dep := range tg.DependsOn {
			d := r.st.target(dep)
			if d == nil {
				continue // filtered out
			}
			if d.Status.Terminal() && d.Status != Succeeded {
				r.finish(tg, Cancelled, fmt.Sprintf("target %s, which it depends on, ended %s", dep, d.Status))
				return
			}
			if d.Status != Succeeded {
				return
			}
		}
		tg.Phase, tg.Gate, tg.GateStart, tg.StartedAt = phaseBefore, 0, r.now, r.now
		r.dirty = true
		r.emit(Event{Type: "target.started", Target: tg.Name, Status: Running})
		r.setStatus(tg, Running)
		fallthrough
	case phaseBefore:
		if !r.gates(tg, tg.Before, beforeRef, r.now) {
			return
		}
		tg.Phase, tg.Gate, tg.GateStart = phaseApply, 0, time.Time{}
		r.dirty = true
		fallthrough
	case phaseApply:
		if !r.apply(tg) {
			return
		}
		tg.Phase = phaseRollout
		r.dirty = true
		fallthrough
	case phaseRollout:
		if !r.rollout(tg) {
			return
		}
		tg.Phase, tg.Gate, tg.GateStart = phaseAfter, 0, r.now
		tg.Weight, tg.CurrentStep = 100, tg.totalSteps()
		r.dirty = true
		r.emit(Event{Type: "target.rolled_out", Target: tg.Name, Message: "every Rollout is healthy at the new version"})
		fallthrough
	case phaseAfter:
		if !r.gates(tg, tg.After, afterRef, r.now) {
			return
		}
		r.finish(tg, Succeeded, "")
	}
}

// gates runs a target's pauses in order from tg.Gate, and reports whether all have passed.
// start is when the first one began.
func (r *rec) gates(tg *target, gs []gate, ref func(string, int) string, start time.Time) bool {
	if tg.GateStart.IsZero() {
		tg.GateStart = start
		r.dirty = true
	}
	for tg.Gate < len(gs) {
		g, id := gs[tg.Gate], ref(tg.Name, tg.Gate)
		if r.pause(tg, g, id, tg.GateStart) {
			tg.Gate++
			tg.GateStart = r.now
			r.dirty = true
			r.emit(Event{Type: "gate.passed", Target: tg.Name, Step: id})
			continue
		}
		return false
	}
	r.clearPause(tg)
	return true
}

// pause decides one pause that began at start: it reports whether it is over, and
// otherwise shows the target as PAUSED or AWAITING_APPROVAL (or fails it when an approval
// expired).
func (r *rec) pause(tg *target, g gate, id string, start time.Time) bool {
	if tg.approved(id) {
		return true
	}
	if g.UntilApproved {
		var expiry time.Time
		if g.Expiration > 0 {
			expiry = start.Add(g.Expiration)
			if !r.now.Before(expiry) {
				r.emit(Event{Type: "approval.expired", Target: tg.Name, Step: id})
				r.stop(tg, Failed, fmt.Sprintf("the approval of %s expired after %s (approvalExpiration)", id, g.Expiration))
				r.stopOthers(tg, fmt.Sprintf("target %s failed: its approval expired", tg.Name))
				return false
			}
			r.wakeAt(expiry)
		}
		r.setPause(tg, "approval", id, time.Time{}, expiry, g.RequiresRoles)
		r.setStatus(tg, AwaitingApproval)
		return false
	}
	end := start.Add(g.Duration)
	if !r.now.Before(end) {
		return true
	}
	r.wakeAt(end)
	r.setPause(tg, "timed", id, end, time.Time{}, nil)
	r.setStatus(tg, Paused)
	return false
}

// stopOthers fails the pipeline's other unfinished targets after one failed, so the pipeline
// ends instead of waiting on targets that can no longer matter.
func (r *rec) stopOthers(failed *target, reason string) {
	for _, tg := range r.st.Targets {
		if tg != failed && !tg.Status.Terminal() && tg.Phase == phasePending {
			r.finish(tg, Cancelled, reason)
		}
	}
}

// apply sends the target's objects with server-side apply and reports whether it succeeded.
func (r *rec) apply(tg *target) bool {
	if tg.EndAs != "" && tg.ApplyAttempts == 0 {
		r.finish(tg, tg.EndAs, tg.Reason)
		return false
	}
	r.clearPause(tg)
	r.setStatus(tg, Running)
	if tg.ApplyAttempts == 0 {
		if msg := r.unmanaged(tg); msg != "" {
			r.finish(tg, Failed, msg)
			r.stopOthers(tg, fmt.Sprintf("target %s failed", tg.Name))
			return false
		}
	}
	sp, err := r.spec()
	if err != nil {
		r.finish(tg, Failed, "the pipeline's stored manifests cannot be read: "+err.Error())
		return false
	}
	// Record the intent before sending, so a new lease holder knows an apply may have run.
	tg.ApplyAttempts++
	r.emit(Event{Type: "target.apply", Target: tg.Name, Message: fmt.Sprintf("attempt %d", tg.ApplyAttempts)})
	if err := r.flush(); err != nil {
		return false
	}
	objects, err := r.keepSelectors(tg, sp.Objects[tg.Name])
	if err != nil {
		r.waiting(tg, err)
		return false
	}
	var docs bytes.Buffer
	for i, o := range objects {
		if i > 0 {
			docs.WriteString("\n---\n")
		}
		docs.Write(o)
	}
	res, err := r.send(tg, &hubv1.Command{Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{
		Manifests: docs.Bytes(), Namespace: namespaceOf(tg.Namespace), Force: true,
	}}})
	if err != nil {
		r.waiting(tg, err)
		return false
	}
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		if retryable(res.GetError()) {
			r.waiting(tg, errors.New(res.GetError().GetMessage()))
			return false
		}
		msg := "applying the manifests failed: " + res.GetError().GetMessage()
		r.finish(tg, Failed, msg)
		r.stopOthers(tg, fmt.Sprintf("target %s failed", tg.Name))
		return false
	}
	r.emit(Event{Type: "target.applied", Target: tg.Name})
	if tg.Message != "" {
		tg.Message = ""
	}
	return true
}

// podHashLabel is the selector key the Argo Rollouts controller adds to a blue/green
// Service to point it at one version.
const podHashLabel = "rollouts-pod-template-hash"

// keepSelectors returns objects with the controller's version selector kept on the target's
// blue/green Services. A Service's spec.selector is an atomic map under server-side apply:
// applying the user's selector alone would drop the key the controller set, and the
// controller would then take the next version for a first deployment and promote it at
// once, skipping every condition.
func (r *rec) keepSelectors(tg *target, objects []json.RawMessage) ([]json.RawMessage, error) {
	if len(tg.Services) == 0 {
		return objects, nil
	}
	out := slices.Clone(objects)
	for i, o := range objects {
		var svc struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if json.Unmarshal(o, &svc) != nil || svc.Kind != "Service" || !slices.Contains(tg.Services, svc.Metadata.Name) {
			continue
		}
		ref := objectRef{APIVersion: svc.APIVersion, Kind: "Service", Namespace: namespaceOf(svc.Metadata.Namespace), Name: svc.Metadata.Name}
		live, err := r.live(tg, ref)
		if err != nil {
			return nil, err
		}
		var current struct {
			Spec struct {
				Selector map[string]string `json:"selector"`
			} `json:"spec"`
		}
		if live == nil || json.Unmarshal(live, &current) != nil || current.Spec.Selector[podHashLabel] == "" {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(o, &obj); err != nil {
			continue
		}
		spec, _ := obj["spec"].(map[string]any)
		if spec == nil {
			spec = map[string]any{}
			obj["spec"] = spec
		}
		sel, _ := spec["selector"].(map[string]any)
		if sel == nil {
			sel = map[string]any{}
			spec["selector"] = sel
		}
		sel[podHashLabel] = current.Spec.Selector[podHashLabel]
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// waiting notes a command that did not go through; the next pass tries again.
func (r *rec) waiting(tg *target, err error) {
	msg := "waiting for the cluster: " + err.Error()
	if tg.Message != msg {
		tg.Message = msg
		r.dirty = true
	}
	r.wakeAt(r.now.Add(r.e.cfg.Resync))
}

// retryable reports whether a failed command may succeed when sent again.
func retryable(ce *hubv1.CommandError) bool {
	switch ce.GetCode() {
	case hubv1.CommandError_CODE_UNAVAILABLE, hubv1.CommandError_CODE_DEADLINE_EXCEEDED:
		return true
	}
	return false
}

// unmanaged refuses to create a Rollout beside a Deployment, or over a Rollout, of the same
// name that Sortie did not create.
func (r *rec) unmanaged(tg *target) string {
	for _, ro := range tg.Rollouts {
		for _, kind := range []objectRef{
			{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ro.Namespace, Name: ro.Name},
			{APIVersion: ro.APIVersion, Kind: ro.Kind, Namespace: ro.Namespace, Name: ro.Name},
		} {
			obj, err := r.live(tg, kind)
			if err != nil || obj == nil {
				continue // absent, or unknown: the apply decides
			}
			var meta struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			_ = json.Unmarshal(obj, &meta)
			if meta.Metadata.Labels[rollout.LabelManagedBy] == rollout.ManagedByValue {
				continue
			}
			if kind.Kind == "Deployment" {
				return fmt.Sprintf("%s already exists in the cluster and is not managed by Sortie; Sortie deploys it as an "+
					"Argo Rollout of the same name, which would run beside it. Delete the Deployment (or rename one of them) "+
					"and start again: see \"Migrating a Deployment\" in the README", kind)
			}
			return fmt.Sprintf("%s already exists in the cluster and is not managed by Sortie; delete it or label it "+
				"%s=%s to let Sortie take it over", kind, rollout.LabelManagedBy, rollout.ManagedByValue)
		}
	}
	return ""
}

// rollout follows the target's Rollouts: it approves, promotes and aborts them as decided,
// shows their progress, and reports whether all are healthy at the new version.
func (r *rec) rollout(tg *target) bool {
	healthy := true
	var shown bool
	for _, ref := range tg.Rollouts {
		obs, ok := r.observe(tg, ref)
		if !ok {
			// Not knowing is not a change: the target keeps what the Rollout showed last (an
			// approval stays open to approve while the agent reconnects after a restart).
			healthy = false
			continue
		}
		done, failed := r.follow(tg, ref, obs, !shown)
		shown = true
		if tg.Status.Terminal() || failed {
			return false
		}
		healthy = healthy && done
	}
	if tg.EndAs != "" {
		if healthy {
			// Finished before the abort reached it: nothing is left to stop.
			r.finish(tg, tg.EndAs, tg.Reason)
		}
		return false
	}
	return healthy
}

// follow handles one observed Rollout; show says whether its progress is the target's.
func (r *rec) follow(tg *target, ref objectRef, obs rollout.Observation, show bool) (done, failed bool) {
	if tg.EndAs != "" {
		if obs.Aborted {
			r.finish(tg, tg.EndAs, tg.Reason)
			return false, true
		}
		if obs.Healthy {
			return true, false
		}
		if r.patch(tg, ref, rollout.AbortPatch(), "status") {
			if !tg.AbortSent {
				tg.AbortSent = true
				r.dirty = true
				r.emit(Event{Type: "rollout.abort", Target: tg.Name, Message: ref.String()})
			}
		}
		return false, false
	}
	if show {
		if w := int(obs.Weight); w != tg.Weight || int(obs.StepIndex) != tg.CurrentStep {
			tg.Weight, tg.CurrentStep = w, int(obs.StepIndex)
			r.dirty = true
		}
	}
	switch {
	case obs.Healthy:
		return true, false
	case obs.Aborted:
		r.finish(tg, Failed, "the Rollout was aborted in the cluster: "+obs.Message)
		r.stopOthers(tg, fmt.Sprintf("target %s failed", tg.Name))
		return false, true
	case obs.Phase == "Degraded":
		r.finish(tg, Failed, "the Rollout is Degraded: "+obs.Message)
		r.stopOthers(tg, fmt.Sprintf("target %s failed", tg.Name))
		return false, true
	case obs.Paused && obs.PauseReason == "CanaryPauseStep" && tg.Strategy == "canary":
		i := int(obs.StepIndex)
		if i < 0 || i >= len(tg.Canary) || tg.Canary[i].Pause == nil {
			break
		}
		g, id := *tg.Canary[i].Pause, canaryRef(tg.Name, i)
		if !g.UntilApproved {
			// The controller ends a timed pause by itself; resume skips the rest of it.
			if tg.approved(id) {
				r.promote(tg, ref, obs, i)
			} else if show {
				end := obs.PauseStart.Add(g.Duration)
				r.setPause(tg, "timed", id, end, time.Time{}, nil)
				r.setStatus(tg, Paused)
				r.wakeAt(end)
			}
			return false, false
		}
		if r.pause(tg, g, id, obs.PauseStart) {
			r.promote(tg, ref, obs, i)
			r.setStatus(tg, Running)
			r.clearPause(tg)
		}
		return false, false
	case obs.Paused && obs.PauseReason == "BlueGreenPause" && tg.Strategy == "blueGreen":
		if show && tg.GateStart.IsZero() {
			tg.Gate, tg.GateStart = 0, obs.PauseStart
			r.dirty = true
		}
		if r.gates(tg, tg.Redirect, redirectRef, obs.PauseStart) {
			r.promote(tg, ref, obs, -1)
			r.setStatus(tg, Running)
		}
		return false, false
	case obs.Paused && show:
		r.setPause(tg, "timed", tg.Name, time.Time{}, time.Time{}, nil)
		r.setStatus(tg, Paused)
		if tg.Message != "paused in the cluster (kubectl argo rollouts pause)" {
			tg.Message = "paused in the cluster (kubectl argo rollouts pause)"
			r.dirty = true
		}
		return false, false
	}
	if show {
		r.clearPause(tg)
		r.setStatus(tg, Running)
	}
	return false, false
}

// promote clears the Rollout's pause at step i (-1: the blue/green promotion), once per
// observed pause: the patch is conditioned on the observed resourceVersion, so a late
// duplicate cannot approve a later pause.
func (r *rec) promote(tg *target, ref objectRef, obs rollout.Observation, i int) {
	if !r.patch(tg, ref, rollout.PromotePatchAt(obs.ResourceVersion), "status") {
		return
	}
	if !tg.promoted(i) {
		tg.Promoted = append(tg.Promoted, i)
		r.dirty = true
		step := fmt.Sprintf("%s/canary/%d", tg.Name, i)
		if i < 0 {
			step = tg.Name + "/promote"
		}
		r.emit(Event{Type: "rollout.promote", Target: tg.Name, Step: step, Message: ref.String()})
	}
	delete(r.h.lastLive, ref) // read it live next time instead of waiting for the feed
}

// patch sends a merge patch to a Rollout and reports whether it went through (a conflict
// means the Rollout moved on: the next pass sees where).
func (r *rec) patch(tg *target, ref objectRef, body []byte, sub string) bool {
	res, err := r.send(tg, &hubv1.Command{Action: &hubv1.Command_Patch{Patch: &hubv1.PatchAction{
		Ref: ref.proto(), Type: hubv1.PatchAction_TYPE_MERGE, Patch: body, Subresource: sub,
	}}})
	if err != nil {
		r.waiting(tg, err)
		return false
	}
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		if res.GetError().GetCode() != hubv1.CommandError_CODE_CONFLICT {
			r.waiting(tg, errors.New(res.GetError().GetMessage()))
		}
		return false
	}
	return true
}

// observe reads a Rollout: from the hub's cache when it shows this pipeline's spec, else
// live through the agent at most once per resync.
func (r *rec) observe(tg *target, ref objectRef) (rollout.Observation, bool) {
	ours := func(obs rollout.Observation) bool {
		return obs.Exists && obs.Pipeline == r.p.ID && obs.Observed
	}
	res, err := r.e.cl.CachedObject(r.ctx, r.p.Tenant, tg.Account, ref.proto())
	if err == nil {
		if obs, oerr := rollout.Observe(res.GetObject()); oerr == nil && ours(obs) {
			return obs, true
		}
	}
	if last, ok := r.h.lastLive[ref]; ok && r.now.Sub(last) < r.e.cfg.Resync {
		r.wakeAt(last.Add(r.e.cfg.Resync))
		return rollout.Observation{}, false
	}
	r.h.lastLive[ref] = r.now
	obj, err := r.live(tg, ref)
	if err != nil {
		r.waiting(tg, err)
		return rollout.Observation{}, false
	}
	obs, err := rollout.Observe(obj)
	if err != nil || !ours(obs) {
		r.wakeAt(r.now.Add(r.e.cfg.Resync))
		return rollout.Observation{}, false
	}
	return obs, true
}

// live gets one object through the agent: nil when it does not exist.
func (r *rec) live(tg *target, ref objectRef) ([]byte, error) {
	res, err := r.send(tg, &hubv1.Command{Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: ref.proto()}}})
	if err != nil {
		return nil, err
	}
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		if res.GetError().GetCode() == hubv1.CommandError_CODE_NOT_FOUND {
			return nil, nil
		}
		return nil, errors.New(res.GetError().GetMessage())
	}
	rs := res.GetResources().GetResources()
	if len(rs) == 0 {
		return nil, nil
	}
	return rs[0].GetObject(), nil
}

// send sends one command to the target's agent within the pass's deadline.
func (r *rec) send(tg *target, cmd *hubv1.Command) (*hubv1.CommandResult, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.e.cfg.CommandTimeout)
	defer cancel()
	res, err := r.e.cl.Send(ctx, r.p.Tenant, tg.Account, cmd)
	if err != nil {
		if errors.Is(err, hub.ErrNotConnected) || errors.Is(err, hub.ErrUnknownAccount) {
			return nil, fmt.Errorf("agent '%s' is not connected", tg.Account)
		}
		return nil, err
	}
	return res, nil
}

// spec opens the pipeline's sealed part once per lease.
func (r *rec) spec() (*spec, error) {
	if r.h.spec == nil {
		sp, err := r.e.openSpec(r.p, true)
		if err != nil {
			return nil, err
		}
		r.h.spec = sp
	}
	return r.h.spec, nil
}

// derive computes the pipeline's status from its targets'.
func (r *rec) derive() {
	s := derivedStatus(r.st.Targets)
	if string(s) == r.p.Status {
		return
	}
	r.p.Status = string(s)
	if s.Terminal() {
		r.p.CompletedAt = r.now
		if r.st.Message == "" {
			for _, tg := range r.st.Targets {
				if tg.Status == s && tg.Message != "" {
					r.st.Message = tg.Name + ": " + tg.Message
					break
				}
			}
		}
	}
	r.dirty = true
	r.emit(Event{Type: "pipeline.status", Status: s, Message: r.st.Message})
}

func derivedStatus(ts []*target) Status {
	all := true
	var failed, cancelled, approval, paused bool
	for _, tg := range ts {
		switch tg.Status {
		case Failed:
			failed = true
		case Cancelled:
			cancelled = true
		case AwaitingApproval:
			approval = true
		case Paused:
			paused = true
		}
		if !tg.Status.Terminal() {
			all = false
		}
	}
	switch {
	case all && failed:
		return Failed
	case all && cancelled:
		return Cancelled
	case all:
		return Succeeded
	case approval:
		return AwaitingApproval
	case paused:
		return Paused
	}
	return Running
}

func (o objectRef) proto() *hubv1.ObjectReference {
	return &hubv1.ObjectReference{ApiVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
}

// namespaceOf is the namespace objects that name none are applied in.
func namespaceOf(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}
