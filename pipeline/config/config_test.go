package config

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fullPipeline is a realistic body of the Armory CLI: two targets, the second after the
// first, a canary and a blue/green strategy, manifests from files (one a directory) and
// inline, and the keys the CLI adds.
var fullPipeline = `{
  "version": "v1",
  "kind": "kubernetes",
  "application": "potato-facts",
  "targets": {
    "staging": {
      "account": "staging-cluster",
      "namespace": "potato-staging",
      "strategy": "rolling",
      "constraints": {
        "afterDeployment": [{"pause": {"duration": 30, "unit": "SECONDS"}}]
      }
    },
    "prod": {
      "account": "prod-west",
      "namespace": "potato-prod",
      "strategy": "blue-green",
      "constraints": {
        "dependsOn": ["staging"],
        "beforeDeployment": [{"pause": {"untilApproved": true, "requiresRoles": ["Release Managers"],
                                        "approvalExpiration": {"duration": 2, "unit": "hours"}}}]
      }
    }
  },
  "manifests": [
    {"path": "manifests/potato-facts.yml"},
    {"path": "manifests/services", "targets": ["prod"]},
    {"inline": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  color: blue\n", "targets": ["staging"]}
  ],
  "strategies": {
    "rolling": {"canary": {"steps": [
      {"setWeight": {"weight": 25}},
      {"pause": {"duration": 1, "unit": "minutes"}},
      {"setWeight": {"weight": 75}},
      {"pause": {"untilApproved": true}}
    ]}},
    "blue-green": {"blueGreen": {
      "activeService": "potato-facts",
      "previewService": "potato-facts-preview",
      "redirectTrafficAfter": [{"pause": {"untilApproved": true}}],
      "shutDownOldVersionAfter": [{"pause": {"duration": 10, "unit": "Minutes"}}]
    }}
  },
  "deploymentConfig": {
    "timeout": {"duration": 30, "unit": "minutes"},
    "ifDeploymentInProgress": {"strategy": "enqueueOne"},
    "keepDeploymentObject": true
  },
  "files": {
    "manifests/potato-facts.yml": [` + strconv.Quote(deploymentYAML) + `],
    "manifests/services": [
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: potato-facts\n",
      "# preview\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: potato-facts-preview\n  namespace: potato-prod\n---\n"
    ]
  },
  "context": {"commit": "9f2c1e7", "branch": "main"},
  "targetFilters": null,
  "sourceControl": {"sha": "9f2c1e7",
                    "repository": "potato/facts"}
}`

func TestParsePipelineFull(t *testing.T) {
	t.Parallel()
	req, warnings, err := ParsePipeline([]byte(fullPipeline))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %v, want none", warnings)
	}
	deployment := Document{Source: "manifests/potato-facts.yml", YAML: []byte(deploymentYAML),
		APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}
	w25, w75 := 25, 75
	want := &Request{
		Version: "v1", Kind: "kubernetes", Application: "potato-facts",
		Timeout: 30 * time.Minute, InProgress: EnqueueOne, KeepDeploymentObject: true,
		Context:       map[string]string{"commit": "9f2c1e7", "branch": "main"},
		SourceControl: json.RawMessage(`{"sha":"9f2c1e7","repository":"potato/facts"}`),
		Targets: []Target{
			{
				Name: "prod", Account: "prod-west", Namespace: "potato-prod",
				DependsOn: []string{"staging"},
				BeforeDeployment: []Pause{{UntilApproved: true, RequiresRoles: []string{"Release Managers"},
					ApprovalExpiration: 2 * time.Hour}},
				StrategyName: "blue-green",
				BlueGreen: &BlueGreen{
					ActiveService: "potato-facts", PreviewService: "potato-facts-preview",
					RedirectTrafficAfter:    []Pause{{UntilApproved: true}},
					ShutDownOldVersionAfter: []Pause{{Duration: 10 * time.Minute}},
				},
				Documents: []Document{
					deployment,
					{Source: "manifests/services (file 1)", APIVersion: "v1", Kind: "Service", Name: "potato-facts",
						YAML: []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: potato-facts\n")},
					{Source: "manifests/services (file 2)", APIVersion: "v1", Kind: "Service", Name: "potato-facts-preview",
						Namespace: "potato-prod",
						YAML:      []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: potato-facts-preview\n  namespace: potato-prod\n")},
				},
			},
			{
				Name: "staging", Account: "staging-cluster", Namespace: "potato-staging",
				AfterDeployment: []Pause{{Duration: 30 * time.Second}},
				StrategyName:    "rolling",
				Canary: &Canary{Steps: []CanaryStep{
					{SetWeight: &w25},
					{Pause: &Pause{Duration: time.Minute}},
					{SetWeight: &w75},
					{Pause: &Pause{UntilApproved: true}},
				}},
				Documents: []Document{
					deployment,
					{Source: "manifests[2].inline", APIVersion: "v1", Kind: "ConfigMap", Name: "flags",
						YAML: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  color: blue\n")},
				},
			},
		},
	}
	if diff := cmp.Diff(want, req, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ParsePipeline mismatch (-want +got):\n%s", diff)
	}
}

// TestParsePipelineAccepts proves the lenient forms: each body is accepted and yields what
// check expects.
func TestParsePipelineAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edits []edit
		check func(t *testing.T, req *Request)
	}{
		{"defaults", nil, func(t *testing.T, req *Request) {
			if req.Version != "v1" || req.Kind != "kubernetes" || req.InProgress != Reject || req.Timeout != 0 {
				t.Errorf("defaults = %q %q %q %v", req.Version, req.Kind, req.InProgress, req.Timeout)
			}
		}},
		{"whole number written as a decimal", []edit{set("strategies.c1.canary.steps.0.setWeight.weight", `25.0`)},
			func(t *testing.T, req *Request) {
				if got := *targetNamed(t, req, "staging").Canary.Steps[0].SetWeight; got != 25 {
					t.Errorf("weight = %d, want 25", got)
				}
			}},
		{"units in any case", []edit{set("strategies.c1.canary.steps.1.pause", `{"duration": 2, "unit": "HoUrS"}`)},
			func(t *testing.T, req *Request) {
				if got := targetNamed(t, req, "staging").Canary.Steps[1].Pause.Duration; got != 2*time.Hour {
					t.Errorf("duration = %v, want 2h", got)
				}
			}},
		{"the stage's approval form", []edit{set("strategies.c1.canary.steps.1.pause", `{"duration": 0, "unit": "NONE", "untilApproved": true}`)},
			func(t *testing.T, req *Request) {
				if got := *targetNamed(t, req, "staging").Canary.Steps[1].Pause; !cmp.Equal(got, Pause{UntilApproved: true}) {
					t.Errorf("pause = %+v, want an approval", got)
				}
			}},
		{"the stage's timed form", []edit{set("strategies.c1.canary.steps.1.pause", `{"duration": 600, "unit": "SECONDS", "untilApproved": false}`)},
			func(t *testing.T, req *Request) {
				if got := *targetNamed(t, req, "staging").Canary.Steps[1].Pause; !cmp.Equal(got, Pause{Duration: 10 * time.Minute}) {
					t.Errorf("pause = %+v, want 10m", got)
				}
			}},
		{"canary without steps", []edit{set("strategies.c1.canary", `{}`)},
			func(t *testing.T, req *Request) {
				if c := targetNamed(t, req, "staging").Canary; c == nil || len(c.Steps) != 0 {
					t.Errorf("canary = %+v, want one with no steps", c)
				}
			}},
		{"equal weights", []edit{set("strategies.c1.canary.steps.2.setWeight.weight", `25`)}, nil},
		{"weights 0 and 100", []edit{set("strategies.c1.canary.steps.0.setWeight.weight", `0`),
			set("strategies.c1.canary.steps.2.setWeight.weight", `100`)}, nil},
		{"null means absent", []edit{set("targets.staging.namespace", `null`), set("deploymentConfig", `null`),
			set("webhooks", `null`), set("targetFilters", `null`), set("context", `null`)},
			func(t *testing.T, req *Request) {
				if got := targetNamed(t, req, "staging").Namespace; got != "" {
					t.Errorf("namespace = %q, want none", got)
				}
			}},
		{"empty unsupported features ask for nothing", []edit{set("webhooks", `[]`), set("analysis", `{}`), set("trafficManagement", `[]`)}, nil},
		{"manifest targets empty means every target", []edit{set("manifests.1.targets", `[]`)},
			func(t *testing.T, req *Request) {
				if got := len(targetNamed(t, req, "staging").Documents); got != 3 {
					t.Errorf("staging has %d documents, want 3", got)
				}
			}},
		{"inline as the stage's object", []edit{set("manifests.1.inline", `{"value": `+strconv.Quote(servicesYAML)+`}`)},
			func(t *testing.T, req *Request) {
				docs := targetNamed(t, req, "prod").Documents
				if len(docs) != 3 || docs[1].Source != "manifests[1].inline" || docs[2].Name != "web-preview" {
					t.Errorf("prod documents = %+v", docs)
				}
			}},
		{"separator with a comment and content after it", []edit{set("manifests.1.inline",
			strconv.Quote("--- # first\napiVersion: v1\nkind: Service\nmetadata: {name: web-active}\n--- {apiVersion: v1, kind: Service, metadata: {name: web-preview}}\n...\n"))},
			func(t *testing.T, req *Request) {
				docs := targetNamed(t, req, "prod").Documents
				if len(docs) != 3 || docs[1].Name != "web-active" || docs[2].Name != "web-preview" {
					t.Errorf("prod documents = %+v", docs)
				}
			}},
		{"in-progress strategy in any case", []edit{set("deploymentConfig", `{"ifDeploymentInProgress": {"strategy": "ENQUEUEONE"}}`)},
			func(t *testing.T, req *Request) {
				if req.InProgress != EnqueueOne {
					t.Errorf("InProgress = %q, want enqueueOne", req.InProgress)
				}
			}},
		{"application at the length limit", []edit{set("application", strconv.Quote("a"+strings.Repeat("-b", 31)))}, nil},
		{"targetFilters keeps the named targets", []edit{set("targetFilters", `[{"includeTarget": "staging"}]`)},
			func(t *testing.T, req *Request) {
				if len(req.Targets) != 1 || req.Targets[0].Name != "staging" {
					t.Errorf("targets = %+v, want only staging", req.Targets)
				}
			}},
		{"targetFilters empty keeps every target", []edit{set("targetFilters", `[]`)},
			func(t *testing.T, req *Request) {
				if len(req.Targets) != 2 {
					t.Errorf("got %d targets, want 2", len(req.Targets))
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _, err := ParsePipeline(encode(t, baseBody(), tc.edits...))
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, req)
			}
		})
	}
}

func targetNamed(t *testing.T, req *Request, name string) *Target {
	t.Helper()
	for i := range req.Targets {
		if req.Targets[i].Name == name {
			return &req.Targets[i]
		}
	}
	t.Fatalf("no target %q in %+v", name, req.Targets)
	return nil
}

// TestParsePipelineWarnings proves what is ignored is said, with its path, and that a
// warning alone never fails a request.
func TestParsePipelineWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edits []edit
		want  []Warning
	}{
		{"unknown top-level key", []edit{set("notifications", `{"slack": "#deploys"}`)}, []Warning{
			{"notifications", `unknown key "notifications" ignored (known keys here: version, kind, application`}}},
		{"unknown key in a target", []edit{set("targets.prod.region", `"us-west"`)}, []Warning{
			{"targets.prod.region", `unknown key "region" ignored (known keys here: account, namespace, strategy, constraints)`}}},
		{"unknown key beside a step type", []edit{set("strategies.c1.canary.steps.0.comment", `"first"`)}, []Warning{
			{"strategies.c1.canary.steps[0].comment", `unknown key "comment" ignored (a step has one key naming its type: setWeight)`}}},
		{"unknown key in a pause", []edit{set("strategies.c1.canary.steps.1.pause.reason", `"soak"`)}, []Warning{
			{"strategies.c1.canary.steps[1].pause.reason", `unknown key "reason" ignored`}}},
		{"unknown key with an odd name", []edit{set("deploymentConfig", `{"retry policy": 3}`)}, []Warning{
			{`deploymentConfig["retry policy"]`, `unknown key "retry policy" ignored`}}},
		{"unused strategy", []edit{set("strategies.spare", `{"canary": {"steps": []}}`)}, []Warning{
			{"strategies.spare", `strategy "spare" is not used by any target`}}},
		{"dependency listed twice", []edit{set("targets.prod.constraints.dependsOn", `["staging", "staging"]`)}, []Warning{
			{"targets.prod.constraints.dependsOn[1]", `target "staging" is listed twice`}}},
		{"dependency left out by targetFilters", []edit{set("targetFilters", `[{"includeTarget": "prod"}]`)}, []Warning{
			{"targets.prod.constraints.dependsOn[0]", `target "staging" is not deployed in this run (targetFilters), so "prod" does not wait for it`}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, warnings, err := ParsePipeline(encode(t, baseBody(), tc.edits...))
			if err != nil {
				t.Fatal(err)
			}
			if req == nil {
				t.Fatal("no Request")
			}
			if len(warnings) != len(tc.want) {
				t.Fatalf("warnings = %v, want %v", warnings, tc.want)
			}
			for i, w := range tc.want {
				if warnings[i].Path != w.Path || !strings.HasPrefix(warnings[i].Message, w.Message) {
					t.Errorf("warning %d = %+v, want path %q and a message starting %q", i, warnings[i], w.Path, w.Message)
				}
			}
		})
	}
}

// TestParsePipelineFilterDropsDependency proves the kept target no longer waits for the
// target the CLI does not deploy.
func TestParsePipelineFilterDropsDependency(t *testing.T) {
	t.Parallel()
	req, _, err := ParsePipeline(encode(t, baseBody(), set("targetFilters", `[{"includeTarget": "prod"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Targets) != 1 || req.Targets[0].Name != "prod" || len(req.Targets[0].DependsOn) != 0 {
		t.Errorf("targets = %+v, want prod alone without dependencies", req.Targets)
	}
}

// TestParsePipelineWarningsWithErrors proves warnings come back beside an error too.
func TestParsePipelineWarningsWithErrors(t *testing.T) {
	t.Parallel()
	_, warnings, err := ParsePipeline(encode(t, baseBody(), set("colour", `"blue"`), del("application")))
	checkProblems(t, err, "invalid", []want{{"application", "is required"}})
	if len(warnings) != 1 || warnings[0].Path != "colour" {
		t.Errorf("warnings = %v, want the unknown key colour", warnings)
	}
}

// TestParsePipelineTargetsDoNotShareStrategies proves a change to one target's steps does
// not leak into another target using the same strategy.
func TestParsePipelineTargetsDoNotShareStrategies(t *testing.T) {
	t.Parallel()
	req, _, err := ParsePipeline(encode(t, baseBody(), set("targets.prod.strategy", `"c1"`), del("strategies.bg")))
	if err != nil {
		t.Fatal(err)
	}
	prod, staging := targetNamed(t, req, "prod"), targetNamed(t, req, "staging")
	*prod.Canary.Steps[0].SetWeight = 99
	prod.Canary.Steps[1].Pause.Duration = time.Hour
	if *staging.Canary.Steps[0].SetWeight != 25 || staging.Canary.Steps[1].Pause.Duration != time.Minute {
		t.Errorf("staging's canary changed with prod's: %+v", staging.Canary.Steps)
	}
}
