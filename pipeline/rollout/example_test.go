package rollout_test

import (
	"fmt"
	"time"

	"github.com/sortie-dev/sortie/pipeline/rollout"
)

func ExampleGenerate() {
	manifests := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27.3
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
`
	w := int32(25)
	out, err := rollout.Generate(rollout.Input{
		Application: "shop",
		PipelineID:  "0f9c2d4e-8b1a-4c3d-9e7f-2a6b5c4d3e1f",
		Target:      "staging",
		Namespace:   "shop-staging",
		Documents:   []rollout.Document{{Source: "web.yaml", YAML: []byte(manifests)}},
		Canary: &rollout.Canary{Steps: []rollout.Step{
			{SetWeight: &w},
			{Pause: &rollout.Pause{Duration: 10 * time.Minute}},
			{Pause: &rollout.Pause{}}, // wait for an approval
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, o := range out.Objects {
		fmt.Println("apply", o.Ref)
	}
	fmt.Println("watch", out.Rollouts)

	// A document Sortie cannot deploy.
	_, err = rollout.Generate(rollout.Input{
		Application: "shop", PipelineID: "0f9c2d4e-8b1a-4c3d-9e7f-2a6b5c4d3e1f", Target: "staging",
		Documents: []rollout.Document{{Source: "debug.yaml", YAML: []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\n")}},
		Canary:    &rollout.Canary{},
	})
	fmt.Println(err)
	// Output:
	// apply v1 Service shop-staging/web
	// apply argoproj.io/v1alpha1 Rollout shop-staging/web
	// watch [argoproj.io/v1alpha1 Rollout shop-staging/web]
	// generate rollout: debug.yaml: document 1 (Pod debug): a bare Pod cannot be rolled out: put its spec in an apps/v1 Deployment's pod template
}

func ExampleObserve() {
	// A Rollout the controller paused at its second step, waiting for an approval.
	obj := []byte(`{
  "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": "web", "namespace": "shop", "generation": 2, "resourceVersion": "91823",
               "labels": {"sortie.dev/pipeline": "0f9c2d4e-8b1a-4c3d-9e7f-2a6b5c4d3e1f"}},
  "spec": {"replicas": 4, "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}},
  "status": {"observedGeneration": "2", "phase": "Paused", "message": "CanaryPauseStep",
             "controllerPause": true, "currentStepIndex": 1,
             "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:02:11Z"}],
             "stableRS": "6b9d8c7f5d", "currentPodHash": "7c4f9d8b6a",
             "replicas": 5, "updatedReplicas": 1, "readyReplicas": 5, "availableReplicas": 5}
}`)
	o, err := rollout.Observe(obj)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s (%s) step %d/%d at %d%%, since %s\n", o.Phase, o.PauseReason, o.StepIndex, o.TotalSteps, o.Weight, o.PauseStart.Format(time.RFC3339))
	if o.Observed && o.Paused && o.PauseDuration == 0 {
		// An approval: patch the status subresource.
		fmt.Printf("approve: %s\n", rollout.PromotePatchAt(o.ResourceVersion))
	}
	// Output:
	// Paused (CanaryPauseStep) step 1/2 at 25%, since 2026-12-01T10:02:11Z
	// approve: {"metadata":{"resourceVersion":"91823"},"status":{"pauseConditions":null}}
}
