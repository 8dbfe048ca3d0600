package rollout_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/pipeline/rollout"
)

// TestObserveRealController reads Rollouts the Argo Rollouts v1.10.0 controller wrote in the
// real-cluster tests (testdata/observe/real, captured from e2e/pipelines runs: a canary of
// [setWeight 25, pause 20s, setWeight 50, pause until approved] and a blue/green with an
// approval before promotion).
func TestObserveRealController(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file                string
		phase               string
		paused              bool
		reason              string
		duration            time.Duration
		step                int32
		weight              int32
		healthy, aborted    bool
		observed, hasStepIx bool
	}{
		{"canary-first-healthy.json", "Healthy", false, "", 0, 2, 100, true, false, true, true},
		{"canary-timed-pause.json", "Paused", true, "CanaryPauseStep", 20 * time.Second, 1, 25, false, false, true, true},
		{"canary-approval.json", "Paused", true, "CanaryPauseStep", 0, 3, 50, false, false, true, true},
		{"canary-healthy.json", "Healthy", false, "", 0, 4, 100, true, false, true, true},
		{"canary-aborted.json", "Degraded", false, "", 0, 0, 0, false, true, true, true},
		{"bluegreen-pause.json", "Paused", true, "BlueGreenPause", 0, 0, 0, false, false, true, false},
		{"bluegreen-healthy.json", "Healthy", false, "", 0, 0, 100, true, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			obj, err := os.ReadFile(filepath.Join("testdata", "observe", "real", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			o, err := rollout.Observe(obj)
			if err != nil {
				t.Fatal(err)
			}
			if o.Phase != tt.phase || o.Paused != tt.paused || o.PauseReason != tt.reason || o.PauseDuration != tt.duration ||
				o.StepIndex != tt.step || o.HasStepIndex != tt.hasStepIx || o.Weight != tt.weight || o.Healthy != tt.healthy ||
				o.Aborted != tt.aborted || o.Observed != tt.observed || !o.Exists {
				t.Errorf("Observe = phase %q paused %v reason %q duration %s step %d (%v) weight %d healthy %v aborted %v observed %v;\n"+
					"want phase %q paused %v reason %q duration %s step %d (%v) weight %d healthy %v aborted %v observed %v",
					o.Phase, o.Paused, o.PauseReason, o.PauseDuration, o.StepIndex, o.HasStepIndex, o.Weight, o.Healthy, o.Aborted, o.Observed,
					tt.phase, tt.paused, tt.reason, tt.duration, tt.step, tt.hasStepIx, tt.weight, tt.healthy, tt.aborted, tt.observed)
			}
			if tt.paused && o.PauseStart.IsZero() {
				t.Error("a paused Rollout without its pause's start time")
			}
			if o.Pipeline == "" {
				t.Error("the sortie.dev/pipeline label was not read")
			}
		})
	}
}
