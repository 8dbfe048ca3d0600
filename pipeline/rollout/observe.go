package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Phases of a Rollout, as the controller writes them in status.phase.
const (
	PhaseHealthy     = string(v1alpha1.RolloutPhaseHealthy)
	PhaseProgressing = string(v1alpha1.RolloutPhaseProgressing)
	PhasePaused      = string(v1alpha1.RolloutPhasePaused)
	PhaseDegraded    = string(v1alpha1.RolloutPhaseDegraded)
)

// Pause reasons the engine acts on (status.pauseConditions[].reason).
const (
	PauseReasonCanaryStep = string(v1alpha1.PauseReasonCanaryPauseStep)
	PauseReasonBlueGreen  = string(v1alpha1.PauseReasonBlueGreenPause)
)

// Condition reasons (from argo-rollouts utils/conditions) that make a Rollout Degraded.
const (
	reasonAborted  = "RolloutAborted"
	reasonTimedOut = "ProgressDeadlineExceeded"
)

// Observation is what the engine needs to know about one Rollout, read from the object the
// controller maintains. Read Observed first: until the controller has seen the latest spec,
// the status fields describe the previous one.
type Observation struct {
	// Exists is false when there is no object (Observe of an empty document).
	Exists bool
	// ResourceVersion is metadata.resourceVersion, for PromotePatchAt.
	ResourceVersion string

	Generation int64
	// ObservedGeneration is status.observedGeneration, a string in this API.
	ObservedGeneration string
	// Observed says the controller has observed the latest spec.
	Observed bool
	// Pipeline is the Rollout's sortie.dev/pipeline label: which pipeline applied this spec.
	Pipeline string

	// Phase is Healthy, Progressing, Paused or Degraded, as the kubectl plugin shows it.
	Phase string
	// Message explains the phase: status.message once the controller has computed it
	// (the reason of a Degraded or aborted Rollout), else why the Rollout is Progressing.
	Message string

	// Paused is true while the Rollout is held: a pause condition, or spec.paused.
	Paused bool
	// PauseReason is the first pause condition's reason (CanaryPauseStep, BlueGreenPause;
	// the controller also pauses on inconclusive analysis); empty for a manual spec.paused.
	PauseReason string
	// PauseStart is when the pause condition started.
	PauseStart time.Time
	// PauseDuration is how long the current pause lasts before the controller resumes by
	// itself: the current canary step's pause.duration, or a blue/green autoPromotionSeconds.
	// Zero is a pause that waits for PromotePatch.
	PauseDuration time.Duration
	// SpecPaused is spec.paused (someone ran kubectl argo rollouts pause); ResumePatch
	// clears it.
	SpecPaused bool

	// StepIndex is status.currentStepIndex when HasStepIndex; TotalSteps counts the canary
	// steps. StepIndex == TotalSteps once every step has run.
	StepIndex    int32
	TotalSteps   int32
	HasStepIndex bool
	// Weight is the canary weight the plugin shows: the setWeight of the current or last
	// passed step, 100 when every step has run, 0 when aborted. For blue/green it is 100 once
	// the active Service points at the current pods, else 0.
	Weight int32

	// Aborted is status.abort.
	Aborted bool
	// Healthy is true when the current revision is fully rolled out: observed, stable
	// ReplicaSet == current pod hash (and, for blue/green, active selector == current pod
	// hash), every replica updated and available, not aborted.
	Healthy bool

	StableRS        string
	CurrentPodHash  string
	ActiveSelector  string
	PreviewSelector string

	// DesiredReplicas is spec.replicas (1 when unset).
	DesiredReplicas   int32
	Replicas          int32
	ReadyReplicas     int32
	UpdatedReplicas   int32
	AvailableReplicas int32
}

// Observe reads one Rollout, as JSON (the object the agent reports, status included). An
// empty document or JSON null is a Rollout that does not exist.
func Observe(obj []byte) (Observation, error) {
	obj = bytes.TrimSpace(obj)
	if len(obj) == 0 || bytes.Equal(obj, []byte("null")) {
		return Observation{}, nil
	}
	var ro v1alpha1.Rollout
	if err := json.Unmarshal(obj, &ro); err != nil {
		return Observation{}, fmt.Errorf("observe rollout: %w", err)
	}
	gv, err := schema.ParseGroupVersion(ro.APIVersion)
	if err != nil || gv.Group != "argoproj.io" || ro.Kind != "Rollout" {
		return Observation{}, fmt.Errorf("observe rollout: got %q %q, want an argoproj.io Rollout", ro.APIVersion, ro.Kind)
	}
	if ro.Name == "" {
		return Observation{}, errors.New("observe rollout: metadata.name is empty")
	}

	st := ro.Status
	o := Observation{
		Exists:             true,
		ResourceVersion:    ro.ResourceVersion,
		Generation:         ro.Generation,
		ObservedGeneration: st.ObservedGeneration,
		Observed:           generationObserved(&ro),
		Pipeline:           ro.Labels[LabelPipeline],
		SpecPaused:         ro.Spec.Paused,
		Aborted:            st.Abort,
		StableRS:           st.StableRS,
		CurrentPodHash:     st.CurrentPodHash,
		ActiveSelector:     st.BlueGreen.ActiveSelector,
		PreviewSelector:    st.BlueGreen.PreviewSelector,
		DesiredReplicas:    desiredReplicas(&ro),
		Replicas:           st.Replicas,
		ReadyReplicas:      st.ReadyReplicas,
		UpdatedReplicas:    st.UpdatedReplicas,
		AvailableReplicas:  st.AvailableReplicas,
	}
	o.Phase, o.Message = phase(&ro, o.Observed)

	canary, blueGreen := ro.Spec.Strategy.Canary, ro.Spec.Strategy.BlueGreen
	if canary != nil {
		o.TotalSteps = int32(len(canary.Steps))
	}
	if st.CurrentStepIndex != nil {
		o.StepIndex, o.HasStepIndex = *st.CurrentStepIndex, true
	}

	if len(st.PauseConditions) > 0 {
		c := st.PauseConditions[0]
		o.Paused, o.PauseReason, o.PauseStart = true, string(c.Reason), c.StartTime.Time
		switch {
		case c.Reason == v1alpha1.PauseReasonCanaryPauseStep && canary != nil:
			if step := currentStep(&ro); step != nil && step.Pause != nil && step.Pause.Duration != nil {
				if secs := step.Pause.DurationSeconds(); secs > 0 {
					o.PauseDuration = time.Duration(secs) * time.Second
				}
			}
		case c.Reason == v1alpha1.PauseReasonBlueGreenPause && blueGreen != nil:
			auto := blueGreen.AutoPromotionEnabled == nil || *blueGreen.AutoPromotionEnabled
			if auto && blueGreen.AutoPromotionSeconds > 0 {
				o.PauseDuration = time.Duration(blueGreen.AutoPromotionSeconds) * time.Second
			}
		}
	} else if ro.Spec.Paused {
		o.Paused = true
	}

	switch {
	case canary != nil:
		o.Weight = canaryWeight(&ro)
	case blueGreen != nil && st.CurrentPodHash != "" && st.BlueGreen.ActiveSelector == st.CurrentPodHash:
		o.Weight = 100
	}

	o.Healthy = o.Observed && o.Phase == PhaseHealthy && !st.Abort &&
		st.StableRS != "" && st.StableRS == st.CurrentPodHash &&
		st.UpdatedReplicas >= o.DesiredReplicas && st.AvailableReplicas >= st.UpdatedReplicas &&
		(blueGreen == nil || st.BlueGreen.ActiveSelector == st.CurrentPodHash)
	return o, nil
}

// generationObserved follows argo-rollouts' isGenerationObserved, except that an empty
// status.observedGeneration (a Rollout the controller has not written yet) is not observed:
// v1.10 always writes a number, and only pre-v0.10 controllers wrote a hash there.
func generationObserved(ro *v1alpha1.Rollout) bool {
	s := ro.Status.ObservedGeneration
	if s == "" {
		return false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return true // a pre-v0.10 hash: nothing to compare
	}
	return n >= ro.Generation
}

// phase follows argo-rollouts' GetRolloutPhase: the controller's status.phase once it has
// observed the spec and is not in the middle of unpausing.
func phase(ro *v1alpha1.Rollout, observed bool) (string, string) {
	st := ro.Status
	if !observed {
		return PhaseProgressing, "waiting for rollout spec update to be observed"
	}
	if st.ControllerPause && len(st.PauseConditions) == 0 {
		// A promote cleared the pause conditions; the controller has not reacted yet.
		return PhaseProgressing, "waiting for rollout to unpause"
	}
	if st.Phase != "" {
		return string(st.Phase), st.Message
	}
	return calculatePhase(ro)
}

// calculatePhase follows argo-rollouts' CalculateRolloutPhase, for a Rollout whose controller
// has not written status.phase.
func calculatePhase(ro *v1alpha1.Rollout) (string, string) {
	st, spec := ro.Status, ro.Spec
	for _, c := range st.Conditions {
		if c.Type == v1alpha1.InvalidSpec {
			return PhaseDegraded, fmt.Sprintf("%s: %s", v1alpha1.InvalidSpec, c.Message)
		}
		if c.Reason == reasonAborted || c.Reason == reasonTimedOut {
			return PhaseDegraded, fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
	}
	if spec.Paused {
		return PhasePaused, "manually paused"
	}
	if len(st.PauseConditions) > 0 {
		return PhasePaused, string(st.PauseConditions[0].Reason)
	}
	if spec.RestartAt != nil && (st.RestartedAt == nil || !spec.RestartAt.Equal(st.RestartedAt)) {
		return PhaseProgressing, "rollout is restarting"
	}
	if st.UpdatedReplicas < desiredReplicas(ro) {
		return PhaseProgressing, "more replicas need to be updated"
	}
	if st.AvailableReplicas < st.UpdatedReplicas {
		return PhaseProgressing, "updated replicas are still becoming available"
	}
	fullyPromoted := st.StableRS != "" && st.StableRS == st.CurrentPodHash
	if bg := spec.Strategy.BlueGreen; bg != nil {
		if st.BlueGreen.ActiveSelector == "" || st.BlueGreen.ActiveSelector != st.CurrentPodHash {
			return PhaseProgressing, "active service cutover pending"
		}
		if !fullyPromoted {
			if bg.PostPromotionAnalysis != nil && (st.BlueGreen.PostPromotionAnalysisRunStatus == nil ||
				!st.BlueGreen.PostPromotionAnalysisRunStatus.Status.Completed()) {
				return PhaseProgressing, "waiting for analysis to complete"
			}
			return PhaseProgressing, "waiting for post-promotion verification to complete"
		}
	} else if c := spec.Strategy.Canary; c != nil {
		if c.TrafficRouting == nil && st.Replicas > st.UpdatedReplicas {
			return PhaseProgressing, "old replicas are pending termination"
		}
		if !fullyPromoted {
			return PhaseProgressing, "waiting for all steps to complete"
		}
	}
	return PhaseHealthy, ""
}

func desiredReplicas(ro *v1alpha1.Rollout) int32 {
	if ro.Spec.Replicas == nil {
		return 1
	}
	return *ro.Spec.Replicas
}

// currentStep is the canary step at status.currentStepIndex (0 when unset); nil once every
// step has run or for a Rollout without steps.
func currentStep(ro *v1alpha1.Rollout) *v1alpha1.CanaryStep {
	c := ro.Spec.Strategy.Canary
	if c == nil {
		return nil
	}
	i := int32(0)
	if ro.Status.CurrentStepIndex != nil {
		i = *ro.Status.CurrentStepIndex
	}
	if i < 0 || int(i) >= len(c.Steps) {
		return nil
	}
	return &c.Steps[i]
}

// canaryWeight follows argo-rollouts' GetCurrentSetWeight, the SetWeight the plugin shows.
func canaryWeight(ro *v1alpha1.Rollout) int32 {
	if ro.Status.Abort {
		return 0
	}
	maxWeight := int32(100)
	if tr := ro.Spec.Strategy.Canary.TrafficRouting; tr != nil && tr.MaxTrafficWeight != nil {
		maxWeight = *tr.MaxTrafficWeight
	}
	if currentStep(ro) == nil {
		return maxWeight
	}
	i := int32(0)
	if ro.Status.CurrentStepIndex != nil {
		i = *ro.Status.CurrentStepIndex
	}
	steps := ro.Spec.Strategy.Canary.Steps
	for ; i >= 0; i-- {
		if w := steps[i].SetWeight; w != nil {
			return *w
		}
	}
	return 0
}
