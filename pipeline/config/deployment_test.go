package config

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseDeploymentCanary(t *testing.T) {
	t.Parallel()
	req, warnings, err := ParseDeployment(encode(t, baseStage()))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %v, want none", warnings)
	}
	w25, w50 := 25, 50
	want := &Request{
		Version: "v1", Kind: "kubernetes", Application: "web", InProgress: Reject,
		Targets: []Target{{
			Name: "prod-west", Account: "prod-west", Namespace: "web", StrategyName: "canary",
			Canary: &Canary{Steps: []CanaryStep{
				{SetWeight: &w25},
				{Pause: &Pause{UntilApproved: true}},
				{SetWeight: &w50},
				{Pause: &Pause{Duration: 600 * time.Second}},
			}},
			Documents: []Document{{Source: "manifests[0].inline", YAML: []byte(deploymentYAML),
				APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}},
		}},
	}
	if diff := cmp.Diff(want, req, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ParseDeployment mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDeploymentBlueGreen(t *testing.T) {
	t.Parallel()
	body := encode(t, baseStage(),
		del("canary"),
		set("manifests", `[{"inline": {"value": `+strconv.Quote(deploymentYAML+"---\n"+servicesYAML)+`}}]`),
		set("blueGreen", `{"activeService": "web-active", "previewService": "web-preview",
			"redirectTrafficAfter": [{"pause": {"duration": 0, "unit": "NONE", "untilApproved": true}}],
			"shutDownOldVersionAfter": [{"pause": {"duration": 5, "unit": "MINUTES", "untilApproved": false}}]}`))
	req, _, err := ParseDeployment(body)
	if err != nil {
		t.Fatal(err)
	}
	want := &BlueGreen{ActiveService: "web-active", PreviewService: "web-preview",
		RedirectTrafficAfter:    []Pause{{UntilApproved: true}},
		ShutDownOldVersionAfter: []Pause{{Duration: 5 * time.Minute}}}
	got := req.Targets[0]
	if got.StrategyName != "blueGreen" || got.Canary != nil || len(got.Documents) != 3 {
		t.Errorf("target = %+v, want a blueGreen target with 3 documents", got)
	}
	if diff := cmp.Diff(want, got.BlueGreen); diff != "" {
		t.Errorf("BlueGreen mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDeploymentProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edits []edit
		kind  string
		want  []want
	}{
		{"account missing", []edit{del("account")}, "invalid",
			[]want{{"account", "is required: the identifier of the agent"}}},
		{"account invalid", []edit{set("account", `"prod/west"`)}, "invalid",
			[]want{{"account", `account "prod/west" is not valid`}}},
		{"application missing", []edit{del("application")}, "invalid",
			[]want{{"application", "is required"}}},
		{"namespace invalid", []edit{set("namespace", `"-web"`)}, "invalid",
			[]want{{"namespace", `namespace "-web" is not valid`}}},
		{"no strategy", []edit{del("canary")}, "invalid",
			[]want{{"canary", "needs exactly one of canary or blueGreen"}}},
		{"both strategies", []edit{set("blueGreen", `{"activeService": "web"}`)}, "invalid",
			[]want{{"canary", "sets both canary and blueGreen"}}},
		{"timed pause of zero", []edit{set("canary.steps.3.pause.duration", `0`)}, "invalid",
			[]want{{"canary.steps[3].pause.duration", "duration 0 must be above 0"}}},
		{"timed pause with NONE", []edit{set("canary.steps.3.pause.unit", `"NONE"`)}, "invalid",
			[]want{{"canary.steps[3].pause.unit", "unit NONE is only for a pause with untilApproved: true"}}},
		{"approval with a duration", []edit{set("canary.steps.1.pause.duration", `30`)}, "invalid",
			[]want{{"canary.steps[1].pause.duration", "is set with untilApproved: true"}}},
		{"approval with an unknown unit", []edit{set("canary.steps.1.pause.unit", `"DAYS"`)}, "invalid",
			[]want{{"canary.steps[1].pause.unit", `unit "DAYS" is not known`}}},
		{"weights decrease", []edit{set("canary.steps.2.setWeight.weight", `20`)}, "invalid",
			[]want{{"canary.steps[2].setWeight.weight", "weight 20 is lower than 25 at canary.steps[0]"}}},
		{"analysis step", []edit{set("canary.steps.1", `{"analysis": {"queries": ["q"]}}`)}, "unsupported",
			[]want{{"canary.steps[1].analysis", "analysis steps are not supported yet"}}},
		{"manifests missing", []edit{del("manifests")}, "invalid",
			[]want{{"manifests", `is required: [{"inline": {"value": "<YAML documents>"}}]`}}},
		{"path manifest", []edit{set("manifests", `[{"path": "web.yaml"}]`)}, "invalid",
			[]want{{"manifests[0]", `needs {"inline": {"value": "<YAML documents>"}}`}}},
		{"inline without value", []edit{set("manifests.0.inline", `{}`)}, "invalid",
			[]want{{"manifests[0].inline.value", "is required"}}},
		{"invalid YAML", []edit{set("manifests.0.inline.value", `"kind: [Deployment"`)}, "invalid",
			[]want{{"manifests[0].inline.value", "manifests[0].inline, document 1 is not valid YAML"}}},
		{"blue/green Service missing", []edit{del("canary"), set("blueGreen", `{"activeService": "web-active"}`)}, "invalid",
			[]want{{"blueGreen.activeService", `Service "web-active" is not among the manifests of target "prod-west" (Services there: none)`}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _, err := ParseDeployment(encode(t, baseStage(), tc.edits...))
			if req != nil {
				t.Errorf("got a Request with an error")
			}
			checkProblems(t, err, tc.kind, tc.want)
		})
	}
}

func TestParseDeploymentWarnings(t *testing.T) {
	t.Parallel()
	req, warnings, err := ParseDeployment(encode(t, baseStage(), set("strategies", `{}`), set("canary.steps.0.setWeight.step", `1`)))
	if err != nil {
		t.Fatal(err)
	}
	if req == nil || len(warnings) != 2 ||
		warnings[0].Path != "strategies" || !strings.Contains(warnings[0].Message, `unknown key "strategies" ignored`) ||
		warnings[1].Path != "canary.steps[0].setWeight.step" {
		t.Errorf("warnings = %v, want the unknown keys strategies and canary.steps[0].setWeight.step", warnings)
	}
}
