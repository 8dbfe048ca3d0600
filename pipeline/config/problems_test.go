package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestParsePipelineProblems proves each rule: the body is the valid base with one change,
// and the error lists exactly the expected problems, each with its path.
func TestParsePipelineProblems(t *testing.T) {
	t.Parallel()
	q := strconv.Quote
	tests := []struct {
		name  string
		edits []edit
		kind  string // "invalid" or "unsupported"
		want  []want
	}{
		// Top level.
		{"unknown version", []edit{set("version", `"v2"`)}, "invalid",
			[]want{{"version", `version "v2" is not known: accepted v1`}}},
		{"unknown kind", []edit{set("kind", `"ecs"`)}, "invalid",
			[]want{{"kind", `kind "ecs" is not known: accepted kubernetes`}}},
		{"kind lambda", []edit{set("kind", `"lambda"`)}, "unsupported",
			[]want{{"kind", "kind lambda is not supported yet"}}},
		{"application missing", []edit{del("application")}, "invalid",
			[]want{{"application", "is required"}}},
		{"application not a string", []edit{set("application", `7`)}, "invalid",
			[]want{{"application", "must be a string, not the number 7"}}},
		{"application not a label value", []edit{set("application", `"web app!"`)}, "invalid",
			[]want{{"application", `application "web app!" is not valid: at most 63 characters`}}},
		{"application too long", []edit{set("application", q(strings.Repeat("a", 64)))}, "invalid",
			[]want{{"application", "is not valid: at most 63 characters"}}},
		{"webhooks", []edit{set("webhooks", `[{"name": "notify"}]`)}, "unsupported",
			[]want{{"webhooks", "webhooks is not supported yet"}}},
		{"analysis", []edit{set("analysis", `{"queries": []}`)}, "unsupported",
			[]want{{"analysis", "analysis is not supported yet"}}},
		{"trafficManagement", []edit{set("trafficManagement", `[{"smi": []}]`)}, "unsupported",
			[]want{{"trafficManagement", "trafficManagement is not supported yet"}}},
		{"context value not a string", []edit{set("context", `{"sha": 12}`)}, "invalid",
			[]want{{"context.sha", "must be a string, not the number 12"}}},
		{"sourceControl not an object", []edit{set("sourceControl", `"github"`)}, "invalid",
			[]want{{"sourceControl", "must be an object, not a string"}}},

		// Targets.
		{"targets missing", []edit{del("targets")}, "invalid", []want{
			{"targets", "is required"},
			{"manifests[1].targets[0]", `target "prod" is not defined`}}},
		{"targets empty", []edit{set("targets", `{}`)}, "invalid", []want{
			{"targets", "must define at least one target"},
			{"manifests[1].targets[0]", `target "prod" is not defined`}}},
		{"targets not an object", []edit{set("targets", `["prod"]`)}, "invalid", []want{
			{"targets", "must be an object, not an array"},
			{"manifests[1].targets[0]", `target "prod" is not defined`}}},
		{"target name not a label value", []edit{set("targets.bad name!", `{"account": "a", "strategy": "c1"}`)}, "invalid",
			[]want{{`targets["bad name!"]`, `target name "bad name!" is not valid`}}},
		{"account missing", []edit{del("targets.prod.account")}, "invalid",
			[]want{{"targets.prod.account", "is required: the identifier of the agent"}}},
		{"account invalid", []edit{set("targets.prod.account", `"prod west"`)}, "invalid",
			[]want{{"targets.prod.account", "account \"prod west\" is not valid: does not match regex pattern `^[a-zA-Z0-9_-]+$` (an agent identifier)"}}},
		{"account too long", []edit{set("targets.prod.account", q(strings.Repeat("a", 64)))}, "invalid",
			[]want{{"targets.prod.account", "at most 63 characters"}}},
		{"long value cut short in the message", []edit{set("targets.prod.account", q(strings.Repeat("é", 60)))}, "invalid",
			[]want{{"targets.prod.account", `account "` + strings.Repeat("é", 40) + `..." is not valid`}}},
		{"namespace invalid", []edit{set("targets.staging.namespace", `"Web_NS"`)}, "invalid",
			[]want{{"targets.staging.namespace", `namespace "Web_NS" is not valid: at most 63 characters: lower-case`}}},
		{"strategy missing", []edit{del("targets.staging.strategy")}, "invalid",
			[]want{{"targets.staging.strategy", `is required: the name of a strategy under strategies (defined: "bg", "c1")`}}},
		{"strategy undefined", []edit{set("targets.staging.strategy", `"rolling"`)}, "invalid",
			[]want{{"targets.staging.strategy", `strategy "rolling" is not defined under strategies`}}},
		{"strategy not a string", []edit{set("targets.staging.strategy", `{"canary": {}}`)}, "invalid",
			[]want{{"targets.staging.strategy", "must be a string, not an object"}}},
		{"dependsOn unknown target", []edit{set("targets.prod.constraints.dependsOn", `["qa"]`)}, "invalid",
			[]want{{"targets.prod.constraints.dependsOn[0]", `target "qa" is not defined: known targets are "prod", "staging"`}}},
		{"dependsOn itself", []edit{set("targets.prod.constraints.dependsOn", `["staging", "prod"]`)}, "invalid",
			[]want{{"targets.prod.constraints.dependsOn[1]", `target "prod" depends on itself`}}},
		{"dependsOn not a list", []edit{set("targets.prod.constraints.dependsOn", `"staging"`)}, "invalid",
			[]want{{"targets.prod.constraints.dependsOn", "must be an array, not a string"}}},
		{"dependency cycle of two", []edit{set("targets.staging.constraints", `{"dependsOn": ["prod"]}`)}, "invalid",
			[]want{{"targets.prod.constraints.dependsOn[0]", `dependency cycle prod -> staging -> prod`}}},
		{"dependency cycle of three", []edit{
			set("targets.qa", `{"account": "qa", "strategy": "c1", "constraints": {"dependsOn": ["prod"]}}`),
			set("targets.staging.constraints", `{"dependsOn": ["qa"]}`)}, "invalid",
			[]want{{"targets.prod.constraints.dependsOn[0]", `dependency cycle prod -> staging -> qa -> prod`}}},
		{"two dependency cycles", []edit{
			set("targets.qa", `{"account": "qa", "strategy": "c1", "constraints": {"dependsOn": ["prod"]}}`),
			set("targets.prod.constraints.dependsOn", `["staging", "qa"]`),
			set("targets.staging.constraints", `{"dependsOn": ["prod"]}`)}, "invalid", []want{
			{"targets.prod.constraints.dependsOn[0]", "dependency cycle prod -> staging -> prod"},
			{"targets.prod.constraints.dependsOn[1]", "dependency cycle prod -> qa -> prod"}}},
		{"beforeDeployment runWebhook", []edit{set("targets.prod.constraints.beforeDeployment", `[{"runWebhook": {"name": "check"}}]`)}, "unsupported",
			[]want{{"targets.prod.constraints.beforeDeployment[0].runWebhook", "runWebhook steps are not supported yet"}}},
		{"afterDeployment analysis", []edit{set("targets.prod.constraints.afterDeployment", `[{"analysis": {}}]`)}, "unsupported",
			[]want{{"targets.prod.constraints.afterDeployment[0].analysis", "analysis steps are not supported yet"}}},
		{"beforeDeployment setWeight", []edit{set("targets.prod.constraints.beforeDeployment", `[{"setWeight": {"weight": 5}}]`)}, "invalid",
			[]want{{"targets.prod.constraints.beforeDeployment[0]", `has no known step type (found "setWeight"): accepted pause`}}},
		{"beforeDeployment bad pause", []edit{set("targets.prod.constraints.beforeDeployment", `[{"pause": {"duration": 5}}]`)}, "invalid",
			[]want{{"targets.prod.constraints.beforeDeployment[0].pause.unit", "is required with duration: seconds, minutes or hours"}}},

		// Strategies and canary steps.
		{"strategy with both", []edit{set("strategies.c1.blueGreen", `{"activeService": "web-active"}`)}, "invalid",
			[]want{{"strategies.c1", "sets both canary and blueGreen"}}},
		{"strategy with neither", []edit{set("strategies.c1", `{}`)}, "invalid",
			[]want{{"strategies.c1", "needs exactly one of canary or blueGreen"}}},
		{"strategies not an object", []edit{set("strategies", `[]`)}, "invalid", []want{
			{"strategies", "must be an object, not an array"},
			{"targets.prod.strategy", `strategy "bg" is not defined under strategies (defined: none)`},
			{"targets.staging.strategy", `strategy "c1" is not defined`}}},
		{"steps not a list", []edit{set("strategies.c1.canary.steps", `{"setWeight": 5}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps", "must be an array, not an object"}}},
		{"weight not a number", []edit{set("strategies.c1.canary.steps.0.setWeight.weight", `"x"`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[0].setWeight.weight", "must be a whole number, not a string"}}},
		{"weight above 100", []edit{set("strategies.c1.canary.steps.2.setWeight.weight", `101`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[2].setWeight.weight", "weight 101 is out of range: accepted 0 to 100"}}},
		{"weight negative", []edit{set("strategies.c1.canary.steps.0.setWeight.weight", `-1`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[0].setWeight.weight", "weight -1 is out of range"}}},
		{"weight fractional", []edit{set("strategies.c1.canary.steps.0.setWeight.weight", `2.5`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[0].setWeight.weight", "must be a whole number, not 2.5"}}},
		{"weight huge", []edit{set("strategies.c1.canary.steps.0.setWeight.weight", `1e400`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[0].setWeight.weight", "the number 1e400 is too large"}}},
		{"weight missing", []edit{set("strategies.c1.canary.steps.0.setWeight", `{}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[0].setWeight.weight", "is required: a whole number from 0 to 100"}}},
		{"weights decrease", []edit{set("strategies.c1.canary.steps.2.setWeight.weight", `10`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[2].setWeight.weight", "weight 10 is lower than 25 at strategies.c1.canary.steps[0]: weights must not decrease"}}},
		{"two types in one step", []edit{set("strategies.c1.canary.steps.0.pause", `{"untilApproved": true}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[0]", "sets pause and setWeight in one step"}}},
		{"unknown step type", []edit{set("strategies.c1.canary.steps.1", `{"pasue": {"untilApproved": true}}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1]", `has no known step type (found "pasue"): accepted setWeight, pause`}}},
		{"empty step", []edit{set("strategies.c1.canary.steps.1", `{}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1]", "is an empty step"}}},
		{"step not an object", []edit{set("strategies.c1.canary.steps.1", `"pause"`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1]", "must be an object, not a string"}}},
		{"canary analysis step", []edit{set("strategies.c1.canary.steps.1", `{"analysis": {"queries": ["q"]}}`)}, "unsupported",
			[]want{{"strategies.c1.canary.steps[1].analysis", "analysis steps are not supported yet"}}},
		{"canary runWebhook step", []edit{set("strategies.c1.canary.steps.1", `{"runWebhook": {"name": "n"}}`)}, "unsupported",
			[]want{{"strategies.c1.canary.steps[1].runWebhook", "runWebhook steps are not supported yet"}}},
		{"canary exposeServices step", []edit{set("strategies.c1.canary.steps.1", `{"exposeServices": {"services": ["web"]}}`)}, "unsupported",
			[]want{{"strategies.c1.canary.steps[1].exposeServices", "exposeServices steps are not supported yet"}}},

		// Pauses.
		{"pause unknown unit", []edit{set("strategies.c1.canary.steps.1.pause.unit", `"days"`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.unit", `unit "DAYS" is not known: accepted seconds, minutes or hours`}}},
		{"pause duration zero", []edit{set("strategies.c1.canary.steps.1.pause.duration", `0`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.duration", "duration 0 must be above 0"}}},
		{"pause duration not a number", []edit{set("strategies.c1.canary.steps.1.pause.duration", `"5m"`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.duration", "must be a whole number, not a string"}}},
		{"pause without duration", []edit{del("strategies.c1.canary.steps.1.pause.duration")}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.duration", "is required with unit"}}},
		{"pause empty", []edit{set("strategies.c1.canary.steps.1.pause", `{}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause", "needs duration and unit (seconds, minutes or hours (any case)) for a timed pause, or untilApproved: true"}}},
		{"pause timed and approval", []edit{set("strategies.c1.canary.steps.1.pause.untilApproved", `true`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.duration", "is set with untilApproved: true: a pause is either timed"}}},
		{"pause timed with NONE", []edit{set("strategies.c1.canary.steps.1.pause.unit", `"NONE"`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.unit", "unit NONE is only for a pause with untilApproved: true"}}},
		{"pause too long", []edit{set("strategies.c1.canary.steps.1.pause", `{"duration": 8761, "unit": "hours"}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.duration", "8761 hours is longer than the limit of 365 days"}}},
		{"untilApproved not a boolean", []edit{set("strategies.c1.canary.steps.1.pause", `{"untilApproved": "yes"}`)}, "invalid", []want{
			{"strategies.c1.canary.steps[1].pause.untilApproved", "must be true or false, not a string"},
			{"strategies.c1.canary.steps[1].pause", "needs duration and unit"}}},
		{"requiresRoles on a timed pause", []edit{set("strategies.c1.canary.steps.1.pause.requiresRoles", `["ops"]`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.requiresRoles", "applies only to a pause with untilApproved: true"}}},
		{"requiresRoles with an empty name", []edit{set("strategies.c1.canary.steps.1.pause", `{"untilApproved": true, "requiresRoles": ["ops", " "]}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.requiresRoles[1]", "must not be empty"}}},
		{"approvalExpiration bad unit", []edit{set("strategies.c1.canary.steps.1.pause", `{"untilApproved": true, "approvalExpiration": {"duration": 2, "unit": "weeks"}}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.approvalExpiration.unit", `unit "WEEKS" is not known`}}},
		{"approvalExpiration without duration", []edit{set("strategies.c1.canary.steps.1.pause", `{"untilApproved": true, "approvalExpiration": {"unit": "hours"}}`)}, "invalid",
			[]want{{"strategies.c1.canary.steps[1].pause.approvalExpiration.duration", "is required: a whole number above 0"}}},

		// Blue/green.
		{"activeService missing", []edit{del("strategies.bg.blueGreen.activeService")}, "invalid",
			[]want{{"strategies.bg.blueGreen.activeService", "is required: the name of a Service among the target's manifests"}}},
		{"activeService not in manifests", []edit{set("strategies.bg.blueGreen.activeService", `"web"`)}, "invalid",
			[]want{{"strategies.bg.blueGreen.activeService", `Service "web" is not among the manifests of target "prod" (Services there: "web-active", "web-preview")`}}},
		{"activeService only in another target's manifests", []edit{set("manifests.1.targets", `["staging"]`)}, "invalid", []want{
			{"strategies.bg.blueGreen.activeService", `Service "web-active" is not among the manifests of target "prod" (Services there: none)`},
			{"strategies.bg.blueGreen.previewService", `Service "web-preview" is not among the manifests of target "prod"`}}},
		{"previewService not in manifests", []edit{set("strategies.bg.blueGreen.previewService", `"web-canary"`)}, "invalid",
			[]want{{"strategies.bg.blueGreen.previewService", `Service "web-canary" is not among the manifests of target "prod"`}}},
		{"previewService same as active", []edit{set("strategies.bg.blueGreen.previewService", `"web-active"`)}, "invalid",
			[]want{{"strategies.bg.blueGreen.previewService", `names the same Service as activeService ("web-active")`}}},
		{"shutDownOldVersionAfter approval", []edit{set("strategies.bg.blueGreen.shutDownOldVersionAfter", `[{"pause": {"duration": 5, "unit": "minutes"}}, {"pause": {"untilApproved": true}}]`)}, "unsupported",
			[]want{{"strategies.bg.blueGreen.shutDownOldVersionAfter[1].pause.untilApproved", "approval before shutting down the old version is not supported yet"}}},
		{"redirectTrafficAfter exposeServices", []edit{set("strategies.bg.blueGreen.redirectTrafficAfter", `[{"exposeServices": {}}]`)}, "unsupported",
			[]want{{"strategies.bg.blueGreen.redirectTrafficAfter[0].exposeServices", "exposeServices steps are not supported yet"}}},
		{"redirectTrafficAfter bad pause", []edit{set("strategies.bg.blueGreen.redirectTrafficAfter", `[{"pause": {"duration": -3, "unit": "seconds"}}]`)}, "invalid",
			[]want{{"strategies.bg.blueGreen.redirectTrafficAfter[0].pause.duration", "duration -3 must be above 0"}}},
		{"exposeServices key", []edit{set("strategies.bg.blueGreen.exposeServices", `{"services": ["web"]}`)}, "unsupported",
			[]want{{"strategies.bg.blueGreen.exposeServices", "exposeServices is not supported yet"}}},

		// deploymentConfig.
		{"timeout bad unit", []edit{set("deploymentConfig", `{"timeout": {"duration": 30, "unit": "fortnights"}}`)}, "invalid",
			[]want{{"deploymentConfig.timeout.unit", `unit "FORTNIGHTS" is not known`}}},
		{"timeout without unit", []edit{set("deploymentConfig", `{"timeout": {"duration": 30}}`)}, "invalid",
			[]want{{"deploymentConfig.timeout.unit", "is required: seconds, minutes or hours"}}},
		{"ifDeploymentInProgress unknown", []edit{set("deploymentConfig", `{"ifDeploymentInProgress": {"strategy": "queue"}}`)}, "invalid",
			[]want{{"deploymentConfig.ifDeploymentInProgress.strategy", `strategy "queue" is not known: accepted reject (the default) or enqueueOne`}}},
		{"keepDeploymentObject not a boolean", []edit{set("deploymentConfig", `{"keepDeploymentObject": "yes"}`)}, "invalid",
			[]want{{"deploymentConfig.keepDeploymentObject", "must be true or false, not a string"}}},
		{"deploymentConfig not an object", []edit{set("deploymentConfig", `true`)}, "invalid",
			[]want{{"deploymentConfig", "must be an object, not a boolean"}}},

		// targetFilters.
		{"targetFilters unknown target", []edit{set("targetFilters", `[{"includeTarget": "qa"}]`)}, "invalid",
			[]want{{"targetFilters[0].includeTarget", `target "qa" is not defined: known targets are "prod", "staging"`}}},
		{"targetFilters without includeTarget", []edit{set("targetFilters", `[{}]`)}, "invalid",
			[]want{{"targetFilters[0].includeTarget", "is required"}}},
		{"targetFilters not a list", []edit{set("targetFilters", `{"includeTarget": "prod"}`)}, "invalid",
			[]want{{"targetFilters", "must be an array, not an object"}}},

		// Manifests and files.
		{"manifests missing", []edit{del("manifests")}, "invalid",
			[]want{{"manifests", "is required"}}},
		{"manifests empty", []edit{set("manifests", `[]`)}, "invalid",
			[]want{{"manifests", "must list at least one manifest"}}},
		{"manifest path not in files", []edit{set("manifests.0.path", `"k8s/api.yaml"`)}, "invalid",
			[]want{{"manifests[0].path", `manifest "k8s/api.yaml" is not in files`}}},
		{"manifest path null in files", []edit{set("files", `{"k8s/web.yaml": null}`)}, "invalid",
			[]want{{"manifests[0].path", `manifest "k8s/web.yaml" has no content in files (null or empty)`}}},
		{"manifest content null in files", []edit{set("files", `{"k8s/web.yaml": [null]}`)}, "invalid",
			[]want{{"manifests[0].path", `manifest "k8s/web.yaml" has no content in files`}}},
		{"files value not a list", []edit{set("files", `{"k8s/web.yaml": "apiVersion: v1"}`)}, "invalid",
			[]want{{`files["k8s/web.yaml"]`, "must be an array, not a string"}}},
		{"manifest path and inline", []edit{set("manifests.0.inline", q(deploymentYAML))}, "invalid",
			[]want{{"manifests[0]", "sets both path and inline"}}},
		{"manifest with neither", []edit{set("manifests.0", `{}`)}, "invalid",
			[]want{{"manifests[0]", `needs {"path": "<a key of files>"} or {"inline": "<YAML documents>"}`}}},
		{"manifest for an unknown target", []edit{set("manifests.1.targets", `["prod", "qa"]`)}, "invalid",
			[]want{{"manifests[1].targets[1]", `target "qa" is not defined`}}},
		{"target without manifests", []edit{set("manifests.0.targets", `["prod"]`)}, "invalid",
			[]want{{"targets.staging", `no manifests entry applies to target "staging"`}}},
		{"invalid YAML", []edit{set("manifests.1.inline", q("apiVersion: v1\nkind: Service\nmetadata: {name: [\n"))}, "invalid",
			[]want{{"manifests[1].inline", "manifests[1].inline, document 1 is not valid YAML: line"}}},
		{"duplicate YAML key", []edit{set("manifests.1.inline", q(servicesYAML+"---\napiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: x}\n"))}, "invalid",
			[]want{{"manifests[1].inline", `manifests[1].inline, document 3 is not valid YAML: line 3: key "kind" already set in map`}}},
		{"YAML list document", []edit{set("manifests.1.inline", q(servicesYAML+"---\n- a\n- b\n"))}, "invalid",
			[]want{{"manifests[1].inline", "document 3 is a YAML list: a Kubernetes object is a YAML mapping"}}},
		{"document without kind", []edit{set("files", `{"k8s/web.yaml": ["apiVersion: v1\nmetadata:\n  name: x\n"]}`)}, "invalid",
			[]want{{"manifests[0].path", "k8s/web.yaml, document 1 has no kind"}}},
		{"document without name", []edit{set("files", `{"k8s/web.yaml": ["apiVersion: v1\nkind: ConfigMap\n"]}`)}, "invalid",
			[]want{{"manifests[0].path", "document 1 has no metadata.name"}}},
		{"bare ReplicaSet", []edit{set("files", `{"k8s/web.yaml": ["apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\n"]}`)}, "invalid",
			[]want{{"manifests[0].path", `document 1 is a bare ReplicaSet ("web")`}}},
		{"bare Pod in a directory", []edit{set("files", `{"k8s/web.yaml": [`+q(deploymentYAML)+`, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\n"]}`)}, "invalid",
			[]want{{"manifests[0].path", `k8s/web.yaml (file 2), document 1 is a bare Pod ("debug")`}}},
		{"inline without documents", []edit{set("manifests.1.inline", `"# nothing here\n---\n"`)}, "invalid",
			[]want{{"manifests[1].inline", "holds no Kubernetes documents"}}},
		{"inline value not a string", []edit{set("manifests.1.inline", `{"value": 5}`)}, "invalid",
			[]want{{"manifests[1].inline.value", "must be a string of one or more YAML documents, not the number 5"}}},
		{"inline not a string", []edit{set("manifests.1.inline", `["a"]`)}, "invalid",
			[]want{{"manifests[1].inline", "must be a string of one or more YAML documents, not an array"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _, err := ParsePipeline(encode(t, baseBody(), tc.edits...))
			if req != nil {
				t.Errorf("got a Request with an error")
			}
			checkProblems(t, err, tc.kind, tc.want)
		})
	}
}

// TestParsePipelineEveryProblemAtOnce proves problems are collected, not stopped at the
// first, and that unsupported features ride along with the problems.
func TestParsePipelineEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	body := encode(t, baseBody(),
		del("targets.prod.account"),
		set("strategies.c1.canary.steps.0.setWeight.weight", `"x"`),
		set("strategies.c1.canary.steps.1", `{"analysis": {}}`),
		set("manifests.0.path", `"missing.yaml"`),
		set("webhooks", `[{"name": "w"}]`))
	_, _, err := ParsePipeline(body)
	checkProblems(t, err, "invalid", []want{
		{"strategies.c1.canary.steps[0].setWeight.weight", "must be a whole number"},
		{"targets.prod.account", "is required"},
		{"manifests[0].path", `manifest "missing.yaml" is not in files`},
		{"webhooks", "webhooks is not supported yet"},
		{"strategies.c1.canary.steps[1].analysis", "analysis steps are not supported yet"},
	})
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("errors.As(%T, *UnsupportedError) = false, want the unsupported features", err)
	}
	if len(ue.Features) != 2 || ue.Features[0].Path != "webhooks" {
		t.Errorf("unsupported features = %v, want webhooks and the analysis step", ue.Features)
	}
	if got := err.Error(); !strings.HasPrefix(got, "invalid deployment config: strategies.c1.canary.steps[0].setWeight.weight: must be a whole number") {
		t.Errorf("Error() = %q", got)
	}
}

// TestParseSyntaxErrors proves a body that is not one usable JSON object is a 400 that says
// where.
func TestParseSyntaxErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       string // the whole Error()
	}{
		{"empty", ``, "malformed request body: the body is empty: send a JSON object"},
		{"not JSON", `application: web`, "malformed request body at line 1, column 1: invalid character 'a' looking for beginning of value"},
		{"array", `[{"application": "web"}]`, "malformed request body: the body is an array: send a JSON object"},
		{"string", `"web"`, "malformed request body: the body is a string: send a JSON object"},
		{"truncated", "{\"application\": \"web\",\n \"targets\": {", "malformed request body at line 2, column 14 (targets): the body ends before the JSON value is complete"},
		{"missing colon", `{"application" "web"}`, "malformed request body at line 1, column 16 (application): invalid character '\"' after object key"},
		{"trailing data", `{"application": "web"} {}`, "malformed request body at line 1, column 24: unexpected data after the JSON object: send exactly one object"},
		{"duplicate top-level key", `{"application": "web", "application": "api"}`, `malformed request body at line 1, column 24 (application): duplicate key "application": each key may appear once per object`},
		{"duplicate nested key", `{"targets": {"prod": {"account": "a", "account": "b"}}}`, `(targets.prod.account): duplicate key "account"`},
		{"duplicate key in a list", `{"manifests": [{"path": "a"}, {"path": "a", "path": "b"}]}`, `(manifests[1].path): duplicate key "path"`},
		{"too deep", `{"sourceControl": ` + strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200) + `}`, "the body nests deeper than 100 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for name, parse := range map[string]func([]byte) (*Request, []Warning, error){
				"ParsePipeline": ParsePipeline, "ParseDeployment": ParseDeployment} {
				req, _, err := parse([]byte(tc.body))
				var se *SyntaxError
				if !errors.As(err, &se) || req != nil {
					t.Fatalf("%s: got %v, %T %v; want a *SyntaxError", name, req, err, err)
				}
				if got := err.Error(); !strings.Contains(got, tc.want) {
					t.Errorf("%s: Error() = %q, want it to contain %q", name, got, tc.want)
				}
			}
		})
	}
}
