package rollout_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/pipeline/rollout"
)

const (
	oldHash = "6b9d8c7f5d"
	newHash = "7c4f9d8b6a"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestObserve reads Rollouts shaped like what the argo-rollouts v1.10 controller writes
// (testdata/observe) and checks every field the engine acts on.
func TestObserve(t *testing.T) {
	t.Parallel()
	canary := func(rv string, f func(*rollout.Observation)) rollout.Observation {
		o := rollout.Observation{
			Exists: true, ResourceVersion: rv, Generation: 2, ObservedGeneration: "2", Observed: true,
			Pipeline: pipelineID, TotalSteps: 4, StableRS: oldHash, CurrentPodHash: newHash,
			DesiredReplicas: 5, Replicas: 5, ReadyReplicas: 5, UpdatedReplicas: 1, AvailableReplicas: 5,
		}
		f(&o)
		return o
	}
	blueGreen := func(rv string, f func(*rollout.Observation)) rollout.Observation {
		o := rollout.Observation{
			Exists: true, ResourceVersion: rv, Generation: 2, ObservedGeneration: "2", Observed: true,
			Pipeline: pipelineID, StableRS: oldHash, CurrentPodHash: newHash, ActiveSelector: oldHash, PreviewSelector: newHash,
			DesiredReplicas: 3, Replicas: 6, ReadyReplicas: 6, UpdatedReplicas: 3, AvailableReplicas: 6,
		}
		f(&o)
		return o
	}
	tests := []struct {
		file string
		want rollout.Observation
	}{
		{"canary-approval.json", canary("91823", func(o *rollout.Observation) {
			o.Phase, o.Message = "Paused", "CanaryPauseStep"
			o.Paused, o.PauseReason, o.PauseStart = true, "CanaryPauseStep", at("2026-12-01T10:02:11Z")
			o.StepIndex, o.HasStepIndex, o.Weight = 1, true, 20
		})},
		{"canary-timed-pause.json", canary("91904", func(o *rollout.Observation) {
			o.Phase, o.Message = "Paused", "CanaryPauseStep"
			o.Paused, o.PauseReason, o.PauseStart, o.PauseDuration = true, "CanaryPauseStep", at("2026-12-01T10:05:40Z"), 30*time.Second
			o.StepIndex, o.HasStepIndex, o.Weight = 3, true, 50
			o.UpdatedReplicas = 3
		})},
		{"canary-unpausing.json", canary("91850", func(o *rollout.Observation) {
			// Pause conditions cleared by a promote; the controller still says Paused.
			o.Phase, o.Message = "Progressing", "waiting for rollout to unpause"
			o.StepIndex, o.HasStepIndex, o.Weight = 1, true, 20
		})},
		{"canary-progressing.json", canary("91871", func(o *rollout.Observation) {
			o.Phase, o.Message = "Progressing", "more replicas need to be updated"
			o.StepIndex, o.HasStepIndex, o.Weight = 2, true, 50
			o.Replicas, o.UpdatedReplicas, o.ReadyReplicas, o.AvailableReplicas = 6, 3, 4, 4
		})},
		{"canary-healthy.json", canary("92011", func(o *rollout.Observation) {
			o.Phase, o.Healthy = "Healthy", true
			o.StepIndex, o.HasStepIndex, o.Weight = 4, true, 100
			o.StableRS, o.UpdatedReplicas = newHash, 5
		})},
		{"canary-spec-not-observed.json", canary("92240", func(o *rollout.Observation) {
			// The controller's Healthy is about generation 2; the spec is at 3.
			o.Generation, o.Observed, o.Pipeline = 3, false, "5a7e3f10-2c4b-4d8e-b1f6-9e0d7c6b5a43"
			o.Phase, o.Message = "Progressing", "waiting for rollout spec update to be observed"
			o.StepIndex, o.HasStepIndex, o.Weight = 4, true, 100
			o.StableRS, o.UpdatedReplicas = newHash, 5
		})},
		{"canary-new.json", rollout.Observation{
			Exists: true, ResourceVersion: "90002", Generation: 1, Pipeline: pipelineID, TotalSteps: 4, DesiredReplicas: 5,
			Phase: "Progressing", Message: "waiting for rollout spec update to be observed", Weight: 20,
		}},
		{"canary-aborted.json", canary("92102", func(o *rollout.Observation) {
			o.Phase, o.Message = "Degraded", "RolloutAborted: Rollout aborted update to revision 2"
			o.Aborted = true
			o.StepIndex, o.HasStepIndex, o.Weight = 0, true, 0
			o.UpdatedReplicas = 0
		})},
		{"canary-timed-out.json", canary("92330", func(o *rollout.Observation) {
			o.Phase, o.Message = "Degraded", `ProgressDeadlineExceeded: ReplicaSet "web-7c4f9d8b6a" has timed out progressing.`
			o.StepIndex, o.HasStepIndex, o.Weight = 0, true, 20
			o.Replicas = 6
		})},
		{"canary-manually-paused.json", canary("92410", func(o *rollout.Observation) {
			o.Generation, o.ObservedGeneration = 3, "3"
			o.Phase, o.Message = "Paused", "manually paused"
			o.Paused, o.SpecPaused = true, true
			o.StepIndex, o.HasStepIndex, o.Weight = 2, true, 50
			o.UpdatedReplicas = 3
		})},
		{"canary-legacy-no-phase.json", canary("92555", func(o *rollout.Observation) {
			// No status.phase: computed as the plugin does, the old pods are still there.
			o.Phase, o.Message = "Progressing", "old replicas are pending termination"
			o.StepIndex, o.HasStepIndex, o.Weight = 4, true, 100
			o.StableRS, o.UpdatedReplicas, o.Replicas = newHash, 5, 6
		})},
		{"bluegreen-approval.json", blueGreen("7712", func(o *rollout.Observation) {
			o.Phase, o.Message = "Paused", "BlueGreenPause"
			o.Paused, o.PauseReason, o.PauseStart = true, "BlueGreenPause", at("2026-12-01T11:20:03Z")
		})},
		{"bluegreen-healthy.json", blueGreen("7790", func(o *rollout.Observation) {
			o.Phase, o.Healthy, o.Weight = "Healthy", true, 100
			o.StableRS, o.ActiveSelector = newHash, newHash
			o.Replicas, o.ReadyReplicas, o.AvailableReplicas = 3, 3, 3
		})},
		{"bluegreen-legacy-cutover.json", blueGreen("7760", func(o *rollout.Observation) {
			o.Phase, o.Message, o.Weight = "Progressing", "waiting for post-promotion verification to complete", 100
			o.ActiveSelector = newHash
		})},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.file, ".json"), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join("testdata", "observe", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := rollout.Observe(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Observe (-want +got):\n%s", diff)
			}
		})
	}
}

// TestObservePhaseRules changes one field of a healthy Rollout at a time, with status.phase
// removed so the client-side rules decide, and checks the phase each rule gives.
func TestObservePhaseRules(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile(filepath.Join("testdata", "observe", "canary-healthy.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		edit        func(spec, status map[string]any)
		wantPhase   string
		wantMessage string
		wantHealthy bool
	}{
		{"healthy", func(_, _ map[string]any) {}, "Healthy", "", true},
		{"invalid spec", func(_, st map[string]any) {
			st["conditions"] = []any{map[string]any{"type": "InvalidSpec", "status": "True", "reason": "InvalidSpec", "message": "The Rollout \"web\" is invalid: spec.strategy.canary.steps[1].setWeight: Invalid value"}}
		}, "Degraded", "InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.canary.steps[1].setWeight: Invalid value", false},
		{"aborted condition", func(_, st map[string]any) {
			st["conditions"] = []any{map[string]any{"type": "Progressing", "status": "False", "reason": "RolloutAborted", "message": "Rollout aborted update to revision 2"}}
		}, "Degraded", "RolloutAborted: Rollout aborted update to revision 2", false},
		{"manually paused", func(sp, _ map[string]any) { sp["paused"] = true }, "Paused", "manually paused", false},
		{"pause condition", func(_, st map[string]any) {
			st["pauseConditions"] = []any{map[string]any{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:02:11Z"}}
		}, "Paused", "CanaryPauseStep", false},
		{"restarting", func(sp, _ map[string]any) { sp["restartAt"] = "2026-12-01T12:00:00Z" }, "Progressing", "rollout is restarting", false},
		{"replicas to update", func(_, st map[string]any) { st["updatedReplicas"] = 4 }, "Progressing", "more replicas need to be updated", false},
		{"replicas becoming available", func(_, st map[string]any) { st["availableReplicas"] = 4 }, "Progressing", "updated replicas are still becoming available", false},
		{"steps left", func(_, st map[string]any) { st["stableRS"] = oldHash }, "Progressing", "waiting for all steps to complete", false},
		{"more desired replicas than updated", func(sp, _ map[string]any) { sp["replicas"] = 7 }, "Progressing", "more replicas need to be updated", false},
		{"aborted is never healthy", func(_, st map[string]any) { st["abort"] = true }, "Healthy", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var obj map[string]any
			if err := json.Unmarshal(base, &obj); err != nil {
				t.Fatal(err)
			}
			spec, status := obj["spec"].(map[string]any), obj["status"].(map[string]any)
			delete(status, "phase")
			delete(status, "message")
			tc.edit(spec, status)
			b, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rollout.Observe(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Phase != tc.wantPhase || got.Message != tc.wantMessage || got.Healthy != tc.wantHealthy {
				t.Errorf("Observe = phase %q message %q healthy %v, want %q %q %v",
					got.Phase, got.Message, got.Healthy, tc.wantPhase, tc.wantMessage, tc.wantHealthy)
			}
		})
	}
}

func TestObserveAbsentAndInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "  \n", "null"} {
		got, err := rollout.Observe([]byte(in))
		if err != nil || got.Exists {
			t.Errorf("Observe(%q) = %+v, %v; want a Rollout that does not exist", in, got, err)
		}
	}
	tests := []struct{ in, want string }{
		{`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}`, `observe rollout: got "apps/v1" "Deployment", want an argoproj.io Rollout`},
		{`{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{}}`, `observe rollout: metadata.name is empty`},
		{`{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"web"},"status":{"currentStepIndex":"two"}}`, `observe rollout: json: cannot unmarshal string into Go struct field RolloutStatus.status.currentStepIndex of type int32`},
		{`[1,2]`, `observe rollout: json: cannot unmarshal array into Go value of type v1alpha1.Rollout`},
	}
	for _, tc := range tests {
		_, err := rollout.Observe([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Observe(%s) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestPatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"promote", rollout.PromotePatch(), `{"status":{"pauseConditions":null}}`},
		{"promote at a resource version", rollout.PromotePatchAt(`918"23`), `{"metadata":{"resourceVersion":"918\"23"},"status":{"pauseConditions":null}}`},
		{"resume", rollout.ResumePatch(), `{"spec":{"paused":false}}`},
		{"abort", rollout.AbortPatch(), `{"status":{"abort":true}}`},
	}
	for _, tc := range tests {
		if string(tc.got) != tc.want {
			t.Errorf("%s patch = %s, want %s", tc.name, tc.got, tc.want)
		}
		if !json.Valid(tc.got) {
			t.Errorf("%s patch is not JSON: %s", tc.name, tc.got)
		}
	}
}

// mergePatch applies an RFC 7386 JSON merge patch, as the API server does for a Rollout.
func mergePatch(t *testing.T, doc, patch []byte) []byte {
	t.Helper()
	var d, p any
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		t.Fatal(err)
	}
	var merge func(target, patch any) any
	merge = func(target, patch any) any {
		pm, ok := patch.(map[string]any)
		if !ok {
			return patch
		}
		tm, ok := target.(map[string]any)
		if !ok {
			tm = map[string]any{}
		}
		for k, v := range pm {
			if v == nil {
				delete(tm, k)
				continue
			}
			tm[k] = merge(tm[k], v)
		}
		return tm
	}
	out, err := json.Marshal(merge(d, p))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPatchesOnRollouts applies each patch, twice, to a Rollout in the state it is meant for
// and checks what the engine then observes.
func TestPatchesOnRollouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file string
		patch      []byte
		check      func(t *testing.T, o rollout.Observation)
	}{
		{"promote a canary pause", "canary-approval.json", rollout.PromotePatch(), func(t *testing.T, o rollout.Observation) {
			if o.Paused || o.PauseReason != "" || o.Phase != "Progressing" || o.Message != "waiting for rollout to unpause" {
				t.Errorf("after promote: paused %v reason %q phase %q message %q; want unpausing", o.Paused, o.PauseReason, o.Phase, o.Message)
			}
		}},
		{"promote a blue/green pause at its resource version", "bluegreen-approval.json", rollout.PromotePatchAt("7712"), func(t *testing.T, o rollout.Observation) {
			if o.Paused || o.Phase != "Progressing" || o.ResourceVersion != "7712" {
				t.Errorf("after promote: paused %v phase %q resourceVersion %q; want unpausing at 7712", o.Paused, o.Phase, o.ResourceVersion)
			}
		}},
		{"resume a manual pause", "canary-manually-paused.json", rollout.ResumePatch(), func(t *testing.T, o rollout.Observation) {
			if o.SpecPaused || o.Generation != 3 {
				t.Errorf("after resume: specPaused %v generation %d", o.SpecPaused, o.Generation)
			}
		}},
		{"abort", "canary-timed-pause.json", rollout.AbortPatch(), func(t *testing.T, o rollout.Observation) {
			if !o.Aborted || o.Weight != 0 || o.Healthy {
				t.Errorf("after abort: aborted %v weight %d healthy %v", o.Aborted, o.Weight, o.Healthy)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := os.ReadFile(filepath.Join("testdata", "observe", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			once := mergePatch(t, doc, tc.patch)
			o, err := rollout.Observe(once)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
			twice := mergePatch(t, once, tc.patch)
			if string(once) != string(twice) {
				t.Errorf("the patch is not idempotent:\nonce  %s\ntwice %s", once, twice)
			}
		})
	}
}
