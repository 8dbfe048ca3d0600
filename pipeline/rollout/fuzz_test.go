package rollout_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/pipeline/rollout"
)

// FuzzGenerate feeds arbitrary documents to Generate: it never panics, fails only with an
// *Error that lists its problems, and on success writes JSON bodies that carry Sortie's
// labels.
func FuzzGenerate(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "manifests"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", "manifests", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "", false)
		f.Add(b, "prod", true)
	}
	for _, s := range []string{
		"", "---", "null", "[]", "{}", "kind: List\napiVersion: v1\nitems: []",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  template: 3",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  labels: [a]",
		"apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: x\nspec:\n  scaleTargetRef: 7",
		"a: &a [*a, *a]", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: 1e400",
	} {
		f.Add([]byte(s), "", false)
	}
	f.Fuzz(func(t *testing.T, doc []byte, namespace string, blueGreen bool) {
		in := rollout.Input{
			Application: "shop", PipelineID: pipelineID, Target: "prod", Namespace: namespace,
			Documents: []rollout.Document{{Source: "fuzz.yaml", YAML: doc}},
		}
		if blueGreen {
			in.BlueGreen = &rollout.BlueGreen{ActiveService: "web", ScaleDownDelay: time.Minute}
		} else {
			in.Canary = &rollout.Canary{Steps: []rollout.Step{weight(50), pause(0)}}
		}
		out, err := rollout.Generate(in)
		if err != nil {
			var gerr *rollout.Error
			if !errors.As(err, &gerr) || len(gerr.Problems) == 0 {
				t.Fatalf("Generate error %v (%T) is not an *Error with problems", err, err)
			}
			return
		}
		for _, o := range out.Objects {
			var obj struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(o.JSON, &obj); err != nil {
				t.Fatalf("%s: body is not JSON: %v\n%s", o.Ref, err, o.JSON)
			}
			if obj.Metadata.Labels["sortie.dev/pipeline"] != pipelineID {
				t.Fatalf("%s: no pipeline label: %s", o.Ref, o.JSON)
			}
		}
	})
}

// FuzzObserve feeds arbitrary JSON to Observe: it never panics.
func FuzzObserve(f *testing.F) {
	// Every Rollout in testdata/observe, the real controller's under real/ too, is a seed.
	err := filepath.WalkDir(filepath.Join("testdata", "observe"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(b)
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"x"},"spec":{"strategy":{"canary":{"steps":[{"pause":{"duration":"x"}}]}}},"status":{"currentStepIndex":-3,"pauseConditions":[{"reason":"CanaryPauseStep"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := rollout.Observe(b)
		if err == nil && o.Exists && o.Healthy && !o.Observed {
			t.Fatalf("healthy but not observed: %+v", o)
		}
	})
}
