package config_test

import (
	"errors"
	"fmt"

	"github.com/sortie-dev/sortie/pipeline/config"
)

func ExampleParsePipeline() {
	body := []byte(`{
	  "application": "web",
	  "targets": {
	    "staging": {"account": "staging-cluster", "strategy": "canary"},
	    "prod": {"account": "prod-west", "strategy": "canary", "constraints": {"dependsOn": ["staging"]}}
	  },
	  "manifests": [{"path": "k8s/web.yaml"}],
	  "strategies": {"canary": {"canary": {"steps": [
	    {"setWeight": {"weight": 20}},
	    {"pause": {"untilApproved": true}}
	  ]}}},
	  "files": {"k8s/web.yaml": ["apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"]},
	  "colour": "blue"
	}`)
	req, warnings, err := config.ParsePipeline(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range req.Targets {
		fmt.Printf("%s on %s after %v: %d steps, %s %s\n", t.Name, t.Account, t.DependsOn,
			len(t.Canary.Steps), t.Documents[0].Kind, t.Documents[0].Name)
	}
	for _, w := range warnings {
		fmt.Println("warning:", w.Path, w.Message)
	}
	// Output:
	// prod on prod-west after [staging]: 2 steps, Deployment web
	// staging on staging-cluster after []: 2 steps, Deployment web
	// warning: colour unknown key "colour" ignored (known keys here: version, kind, application, targets, manifests, strategies, deploymentConfig, webhooks, analysis, trafficManagement, files, context, targetFilters, sourceControl)
}

func ExampleParseDeployment() {
	body := []byte(`{"account": "prod-west", "application": "web",
	  "manifests": [{"inline": {"value": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"}}],
	  "canary": {"steps": [
	    {"setWeight": {"weight": 150}},
	    {"pause": {"duration": 600, "unit": "SECONDS", "untilApproved": true}},
	    {"analysis": {"queries": ["error-rate"]}}]}}`)
	_, _, err := config.ParseDeployment(body)
	var invalid *config.ValidationError
	if errors.As(err, &invalid) {
		for _, p := range invalid.Problems {
			fmt.Println(p)
		}
	}
	// Output:
	// canary.steps[0].setWeight.weight: weight 150 is out of range: accepted 0 to 100
	// canary.steps[1].pause.duration: is set with untilApproved: true: a pause is either timed (duration and unit) or waits for approval, not both
	// canary.steps[2].analysis: analysis steps are not supported yet
}
