package rollout_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/sortie-dev/sortie/pipeline/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const pipelineID = "0f9c2d4e-8b1a-4c3d-9e7f-2a6b5c4d3e1f"

func weight(w int32) rollout.Step { return rollout.Step{SetWeight: &w} }
func pause(d time.Duration) rollout.Step {
	return rollout.Step{Pause: &rollout.Pause{Duration: d}}
}

var defaultCanary = &rollout.Canary{Steps: []rollout.Step{
	weight(20), pause(30 * time.Second), weight(50), pause(0), weight(80), pause(5 * time.Minute),
}}

// corpus is the golden-file corpus: each case generates testdata/golden/<name>.yaml from
// manifests in testdata/manifests.
var corpus = []struct {
	name      string
	files     []string
	namespace string
	canary    *rollout.Canary
	blueGreen *rollout.BlueGreen
}{
	{name: "nginx", files: []string{"nginx.yaml"}, canary: defaultCanary},
	{name: "api-full", files: []string{"api-full.yaml"}, canary: &rollout.Canary{Steps: []rollout.Step{
		weight(10), pause(90 * time.Second), weight(25), pause(2 * time.Hour), weight(60), pause(0),
	}}},
	{name: "scheduling", files: []string{"scheduling.yaml"}, namespace: "shop-canary", canary: defaultCanary},
	{name: "sidecar", files: []string{"sidecar.yaml"}, canary: &rollout.Canary{}},
	{name: "stack", files: []string{"stack.yaml"}, namespace: "guestbook", canary: defaultCanary},
	{name: "bluegreen", files: []string{"bluegreen.yaml"}, blueGreen: &rollout.BlueGreen{
		ActiveService: "payments-active", PreviewService: "payments-preview", ScaleDownDelay: 10 * time.Minute,
	}},
	{name: "bluegreen-auto", files: []string{"bluegreen.yaml"}, blueGreen: &rollout.BlueGreen{
		ActiveService: "payments-active", AutoPromotion: true,
	}},
	{name: "platform", files: []string{"platform.yaml"}, namespace: "analytics", canary: defaultCanary},
	{name: "platform-own-namespaces", files: []string{"platform.yaml"}, canary: defaultCanary},
	{name: "several-files", files: []string{"worker.json", "sidecar.yaml", "nginx.yaml"}, canary: defaultCanary},
}

func readDocs(t *testing.T, files []string) []rollout.Document {
	t.Helper()
	var docs []rollout.Document
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", "manifests", f))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, rollout.Document{Source: f, YAML: b})
	}
	return docs
}

// render writes the output as YAML documents, each headed by its reference.
func render(t *testing.T, out rollout.Output) []byte {
	t.Helper()
	var b bytes.Buffer
	for i, o := range out.Objects {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := yaml.JSONToYAML(o.JSON)
		if err != nil {
			t.Fatalf("object %s: %v", o.Ref, err)
		}
		b.WriteString("# " + o.Ref.String() + "\n")
		b.Write(y)
	}
	return b.Bytes()
}

func TestGenerateGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := rollout.Generate(rollout.Input{
				Application: "shop", PipelineID: pipelineID, Target: "prod-eu",
				Namespace: tc.namespace, Documents: readDocs(t, tc.files),
				Canary: tc.canary, BlueGreen: tc.blueGreen,
			})
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, out)
			path := filepath.Join("testdata", "golden", tc.name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("generated objects differ from %s (-want +got); run go test -update if intended:\n%s", path, diff)
			}
			checkInvariants(t, out)
		})
	}
}

// checkInvariants asserts what must hold for every successful Generate, whatever the golden
// files say.
func checkInvariants(t *testing.T, out rollout.Output) {
	t.Helper()
	wantLabels := map[string]string{
		"sortie.dev/application":       "shop",
		"sortie.dev/pipeline":          pipelineID,
		"sortie.dev/target":            "prod-eu",
		"app.kubernetes.io/managed-by": "sortie",
	}
	lastClass := -1
	var rollouts []rollout.Ref
	for _, o := range out.Objects {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name, Namespace string
				Labels          map[string]string
			} `json:"metadata"`
			Status *json.RawMessage `json:"status"`
		}
		if err := json.Unmarshal(o.JSON, &obj); err != nil {
			t.Fatalf("%s: body is not JSON: %v", o.Ref, err)
		}
		if got := (rollout.Ref{APIVersion: obj.APIVersion, Kind: obj.Kind, Namespace: obj.Metadata.Namespace, Name: obj.Metadata.Name}); got != o.Ref {
			t.Errorf("Ref %v does not describe its body %v", o.Ref, got)
		}
		for k, v := range wantLabels {
			if obj.Metadata.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", o.Ref, k, obj.Metadata.Labels[k], v)
			}
		}
		c := applyClass(o.Ref)
		if c < lastClass {
			t.Errorf("%s (class %d) comes after an object of class %d: not in apply order", o.Ref, c, lastClass)
		}
		lastClass = c
		if o.Ref.Kind != "Rollout" {
			continue
		}
		rollouts = append(rollouts, o.Ref)
		if obj.Status != nil {
			t.Errorf("%s: the apply body carries a status: %s", o.Ref, *obj.Status)
		}
		// The body is a valid Rollout to the letter of the v1alpha1 types.
		dec := json.NewDecoder(bytes.NewReader(o.JSON))
		dec.DisallowUnknownFields()
		var ro v1alpha1.Rollout
		if err := dec.Decode(&ro); err != nil {
			t.Errorf("%s: not a v1alpha1 Rollout: %v", o.Ref, err)
		}
		for k := range wantLabels {
			if _, ok := ro.Spec.Template.Labels[k]; ok {
				t.Errorf("%s: pod template carries label %s: it would change the pod-template hash every pipeline", o.Ref, k)
			}
		}
	}
	if diff := cmp.Diff(rollouts, out.Rollouts); diff != "" {
		t.Errorf("Output.Rollouts differs from the Rollouts in Objects (-objects +Rollouts):\n%s", diff)
	}
}

func applyClass(r rollout.Ref) int {
	switch r.Kind {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	case "ServiceAccount", "ConfigMap", "Secret", "Service":
		return 2
	case "Rollout":
		return 4
	}
	return 3
}

// quantities compares resource.Quantity by value: its cached string form is no part of it.
var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// TestGenerateKeepsPodTemplate proves nothing of a pod template is lost: for every Deployment
// in the corpus, the Rollout's spec.template equals the Deployment's, compared as typed
// structs. It also checks the rest of the spec that carries over.
func TestGenerateKeepsPodTemplate(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(filepath.Join("testdata", "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	deployments := 0
	for _, e := range entries {
		docs := readDocs(t, []string{e.Name()})
		out, err := rollout.Generate(rollout.Input{
			Application: "shop", PipelineID: pipelineID, Target: "prod-eu", Documents: docs, Canary: defaultCanary,
		})
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		generated := map[string]v1alpha1.Rollout{}
		for _, o := range out.Objects {
			if o.Ref.Kind == "Rollout" {
				var ro v1alpha1.Rollout
				if err := json.Unmarshal(o.JSON, &ro); err != nil {
					t.Fatal(err)
				}
				generated[ro.Name] = ro
			}
		}
		for _, chunk := range bytes.Split(docs[0].YAML, []byte("\n---\n")) {
			var probe struct{ Kind string }
			if err := yaml.Unmarshal(chunk, &probe); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			if probe.Kind != "Deployment" {
				continue
			}
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(chunk, &d); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			deployments++
			ro, ok := generated[d.Name]
			if !ok {
				t.Errorf("%s: Deployment %s produced no Rollout", e.Name(), d.Name)
				continue
			}
			if diff := cmp.Diff(d.Spec.Template, ro.Spec.Template, quantities); diff != "" {
				t.Errorf("%s: Rollout %s lost part of the pod template (-deployment +rollout):\n%s", e.Name(), d.Name, diff)
			}
			type carried struct {
				Replicas, RevisionHistoryLimit, ProgressDeadlineSeconds *int32
				MinReadySeconds                                         int32
				Selector                                                any
				Labels                                                  map[string]string
			}
			wantLabels := map[string]string{}
			for k, v := range d.Labels {
				wantLabels[k] = v
			}
			for k := range ro.Labels {
				if strings.HasPrefix(k, "sortie.dev/") || k == "app.kubernetes.io/managed-by" {
					wantLabels[k] = ro.Labels[k]
				}
			}
			want := carried{d.Spec.Replicas, d.Spec.RevisionHistoryLimit, d.Spec.ProgressDeadlineSeconds, d.Spec.MinReadySeconds, d.Spec.Selector, wantLabels}
			got := carried{ro.Spec.Replicas, ro.Spec.RevisionHistoryLimit, ro.Spec.ProgressDeadlineSeconds, ro.Spec.MinReadySeconds, ro.Spec.Selector, ro.Labels}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: Rollout %s spec differs from the Deployment's (-deployment +rollout):\n%s", e.Name(), d.Name, diff)
			}
		}
	}
	if deployments < 7 {
		t.Fatalf("the corpus holds %d Deployments; the test is not looking at it", deployments)
	}
}

func TestGenerateStrategy(t *testing.T) {
	t.Parallel()
	docs := readDocs(t, []string{"bluegreen.yaml"})
	tests := []struct {
		name      string
		canary    *rollout.Canary
		blueGreen *rollout.BlueGreen
		want      v1alpha1.RolloutStrategy
	}{
		{
			name: "canary steps map one to one, durations in the largest exact unit",
			canary: &rollout.Canary{Steps: []rollout.Step{
				weight(0), pause(30 * time.Second), weight(25), pause(5 * time.Minute), pause(time.Hour),
				pause(90 * time.Minute), pause(0), weight(100), pause(61 * time.Second),
			}},
			want: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: new(int32(0))}, {Pause: durationPause("30s")}, {SetWeight: new(int32(25))},
				{Pause: durationPause("5m")}, {Pause: durationPause("1h")}, {Pause: durationPause("90m")},
				{Pause: &v1alpha1.RolloutPause{}}, {SetWeight: new(int32(100))}, {Pause: durationPause("61s")},
			}}},
		},
		{
			name:   "canary without steps",
			canary: &rollout.Canary{},
			want:   v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{}},
		},
		{
			name:      "blue/green waits for approval unless told",
			blueGreen: &rollout.BlueGreen{ActiveService: "payments-active"},
			want: v1alpha1.RolloutStrategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
				ActiveService: "payments-active", AutoPromotionEnabled: new(false),
			}},
		},
		{
			name: "blue/green with preview, auto promotion and a scale-down delay",
			blueGreen: &rollout.BlueGreen{
				ActiveService: "payments-active", PreviewService: "payments-preview", AutoPromotion: true, ScaleDownDelay: 45 * time.Second,
			},
			want: v1alpha1.RolloutStrategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
				ActiveService: "payments-active", PreviewService: "payments-preview",
				AutoPromotionEnabled: new(true), ScaleDownDelaySeconds: new(int32(45)),
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := rollout.Generate(rollout.Input{
				Application: "shop", PipelineID: pipelineID, Target: "prod-eu", Documents: docs,
				Canary: tc.canary, BlueGreen: tc.blueGreen,
			})
			if err != nil {
				t.Fatal(err)
			}
			last := out.Objects[len(out.Objects)-1]
			var ro v1alpha1.Rollout
			if err := json.Unmarshal(last.JSON, &ro); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ro.Spec.Strategy); diff != "" {
				t.Errorf("strategy (-want +got):\n%s", diff)
			}
			// Indefinite pauses are written as "pause: {}", which the controller reads as
			// "wait for promote".
			if tc.canary != nil && len(tc.canary.Steps) > 0 && !bytes.Contains(last.JSON, []byte(`{"pause":{}}`)) {
				t.Errorf("no indefinite pause written as {\"pause\":{}} in %s", last.JSON)
			}
		})
	}
}

func durationPause(s string) *v1alpha1.RolloutPause {
	v := intstr.FromString(s)
	return &v1alpha1.RolloutPause{Duration: &v}
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	in := rollout.Input{
		Application: "shop", PipelineID: pipelineID, Target: "prod-eu",
		Documents: readDocs(t, []string{"stack.yaml", "api-full.yaml", "platform.yaml"}), Canary: defaultCanary,
	}
	first, err := rollout.Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, err := rollout.Generate(in)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, again); diff != "" {
			t.Fatalf("a second Generate of the same input differs:\n%s", diff)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
`
	doc := func(src, y string) rollout.Document { return rollout.Document{Source: src, YAML: []byte(y)} }
	valid := rollout.Input{Application: "shop", PipelineID: pipelineID, Target: "prod", Canary: defaultCanary}
	with := func(f func(*rollout.Input)) rollout.Input {
		in := valid
		in.Documents = []rollout.Document{doc("web.yaml", deployment)}
		f(&in)
		return in
	}
	tests := []struct {
		name string
		in   rollout.Input
		want []rollout.Problem
	}{
		{
			name: "invalid YAML names the source and document",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{doc("app.yaml", deployment+"---\nkind: Service\nmetadata:\n  name: [web\n")}
			}),
			want: []rollout.Problem{{Source: "app.yaml", Message: "document 2 is not valid YAML: yaml: line 18: did not find expected ',' or ']'"}},
		},
		{
			name: "documents count from 1, a leading separator and comment-only documents as the user sees them",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{doc("app.yaml", "---\n# just a comment\n---\r\n"+deployment+"--- # the service\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {a: b, a: c}\n")}
			}),
			want: []rollout.Problem{{Source: "app.yaml", Message: `document 3 is not valid YAML: yaml: unmarshal errors: line 24: key "a" already set in map`}},
		},
		{
			name: "a separator followed by content",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{doc("app.yaml", deployment+"--- {kind: Service}\n")}
			}),
			want: []rollout.Problem{{Source: "app.yaml", Message: `line 15: a document separator "---" must stand alone on its line`}},
		},
		{
			name: "a list, a scalar and missing fields, all at once",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{doc("a.yaml", "- a\n- b\n---\n42\n---\nkind: ConfigMap\nmetadata: {}\n---\napiVersion: v1\nmetadata:\n  name: x\n")}
			}),
			want: []rollout.Problem{
				{Source: "a.yaml", Message: "document 1 is not an object: found a list, want a mapping with apiVersion, kind and metadata"},
				{Source: "a.yaml", Message: "document 2 is not an object: found a number, want a mapping with apiVersion, kind and metadata"},
				{Source: "a.yaml", Message: "document 3 (ConfigMap) lacks apiVersion, metadata.name: every object needs a string apiVersion, kind and metadata.name"},
				{Source: "a.yaml", Message: "document 4 lacks kind: every object needs a string apiVersion, kind and metadata.name"},
			},
		},
		{
			name: "ReplicaSet, bare Pod and an old Deployment are refused",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{
					doc("rs.yaml", "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-7d9f\n"),
					doc("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\n"),
					doc("old.yaml", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: legacy\n"),
				}
			}),
			want: []rollout.Problem{
				{Source: "rs.yaml", Message: "document 1 (ReplicaSet web-7d9f): a ReplicaSet is not deployed by Sortie: write an apps/v1 Deployment, which becomes a Rollout"},
				{Source: "pod.yaml", Message: "document 1 (Pod debug): a bare Pod cannot be rolled out: put its spec in an apps/v1 Deployment's pod template"},
				{Source: "old.yaml", Message: "document 1 (Deployment legacy): apiVersion extensions/v1beta1 is not supported: only apps/v1 Deployments become Rollouts"},
			},
		},
		{
			name: "an unknown pod template field would be lost, so it is refused",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{doc("web.yaml", strings.Replace(deployment, "image: nginx", "image: nginx\n        imagePullPolicyy: Always\n        Ports: []", 1))}
			}),
			want: []rollout.Problem{{Source: "web.yaml", Message: `document 1 (Deployment web): unknown field "spec.template.spec.containers[0].Ports", unknown field "spec.template.spec.containers[0].imagePullPolicyy": the Kubernetes API does not know these fields (a typo?)`}},
		},
		{
			name: "selector problems and a paused Deployment",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{
					doc("a.yaml", strings.Replace(deployment, "matchLabels: {app: web}", "matchLabels: {app: api}", 1)+"  paused: true\n"),
					doc("b.yaml", strings.Replace(deployment, "    matchLabels: {app: web}\n", "", 1)),
					doc("c.yaml", strings.Replace(deployment, "matchLabels: {app: web}", "matchLabels: {}", 1)),
					doc("d.yaml", strings.Replace(deployment, "matchLabels: {app: web}", "matchExpressions: [{key: app, operator: Is, values: [web]}]", 1)),
				}
			}),
			want: []rollout.Problem{
				{Source: "a.yaml", Message: "document 1 (Deployment web): spec.paused is true: a paused Deployment would never progress; remove it; spec.selector (app=api) does not match spec.template.metadata.labels: the Rollout would never find its pods"},
				{Source: "b.yaml", Message: "document 1 (Deployment web): spec.selector is required"},
				{Source: "c.yaml", Message: "document 1 (Deployment web): spec.selector is empty: it would select every pod in the namespace"},
				{Source: "d.yaml", Message: `document 1 (Deployment web): spec.selector: "Is" is not a valid label selector operator`},
			},
		},
		{
			name: "the same object twice, also a Deployment beside a Rollout of its name",
			in: with(func(in *rollout.Input) {
				in.Documents = []rollout.Document{
					doc("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n---\n"+deployment),
					doc("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: web\n"),
				}
			}),
			want: []rollout.Problem{
				{Source: "b.yaml", Message: "document 1 (ConfigMap cfg) is the same object as a.yaml document 1 (ConfigMap cfg): each object may appear once"},
				{Source: "b.yaml", Message: "document 2 (Rollout web) is the same object as a.yaml document 2 (Deployment web), which becomes Rollout web: each object may appear once"},
			},
		},
		{
			name: "bad input fields, all at once",
			in: with(func(in *rollout.Input) {
				in.Application = "Shop Front"
				in.PipelineID = ""
				in.Namespace = "Prod_EU"
				in.Canary = &rollout.Canary{Steps: []rollout.Step{
					weight(120), pause(1500 * time.Millisecond), {}, {SetWeight: new(int32(5)), Pause: &rollout.Pause{}}, pause(-time.Second),
				}}
			}),
			want: []rollout.Problem{
				{Source: "input", Message: `application "Shop Front" is not a valid label value: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
				{Source: "input", Message: "pipeline id is required"},
				{Source: "input", Message: `namespace "Prod_EU" is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
				{Source: "input", Message: "canary.steps[0].setWeight is 120: a weight is 0 to 100"},
				{Source: "input", Message: "canary.steps[1].pause.duration 1.5s is not a whole number of seconds"},
				{Source: "input", Message: "canary.steps[2] is empty: set setWeight or pause"},
				{Source: "input", Message: "canary.steps[3] sets both setWeight and pause: a step is one of them"},
				{Source: "input", Message: "canary.steps[4].pause.duration is negative (-1s)"},
			},
		},
		{
			name: "no strategy, no manifests",
			in:   rollout.Input{Application: "shop", PipelineID: pipelineID, Target: "prod"},
			want: []rollout.Problem{
				{Source: "input", Message: "no manifests: a target needs at least one document"},
				{Source: "input", Message: "a strategy is required: canary or blueGreen"},
			},
		},
		{
			name: "both strategies",
			in:   with(func(in *rollout.Input) { in.BlueGreen = &rollout.BlueGreen{ActiveService: "web"} }),
			want: []rollout.Problem{{Source: "input", Message: "canary and blueGreen are exclusive: set one strategy"}},
		},
		{
			name: "manifests holding only comments",
			in:   with(func(in *rollout.Input) { in.Documents = []rollout.Document{doc("empty.yaml", "# nothing\n---\n")} }),
			want: []rollout.Problem{{Source: "input", Message: "the manifests hold no objects"}},
		},
		{
			name: "blue/green services must be among the manifests, and one Deployment only",
			in: with(func(in *rollout.Input) {
				in.Canary = nil
				in.BlueGreen = &rollout.BlueGreen{ActiveService: "web", PreviewService: "web-preview"}
				in.Documents = append(in.Documents, doc("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: other\n"))
			}),
			want: []rollout.Problem{
				{Source: "input", Message: `blueGreen.activeService "web" is not among the manifests: add a v1 Service of that name (no namespace, next to Rollout web)`},
				{Source: "input", Message: `blueGreen.previewService "web-preview" is not among the manifests: add a v1 Service of that name (no namespace, next to Rollout web)`},
			},
		},
		{
			name: "blue/green with two Deployments",
			in: with(func(in *rollout.Input) {
				in.Canary = nil
				in.BlueGreen = &rollout.BlueGreen{ActiveService: "web", PreviewService: "web"}
				in.Documents = append(in.Documents, doc("api.yaml", strings.ReplaceAll(deployment, "web", "api")))
			}),
			want: []rollout.Problem{
				{Source: "input", Message: `blueGreen.previewService must differ from activeService "web"`},
				{Source: "input", Message: "blueGreen needs one Deployment, found 2 (web.yaml document 1 (Deployment web), api.yaml document 1 (Deployment api)): two Rollouts cannot share one active Service"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := rollout.Generate(tc.in)
			var gerr *rollout.Error
			if !errors.As(err, &gerr) {
				t.Fatalf("Generate = %v, want an *Error", err)
			}
			if diff := cmp.Diff(tc.want, gerr.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if len(out.Objects) != 0 || len(out.Rollouts) != 0 {
				t.Errorf("Generate returned objects with an error: %+v", out)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := rollout.Generate(rollout.Input{Application: "shop", PipelineID: pipelineID, Target: "prod"})
	want := "generate rollout: 2 problems: input: no manifests: a target needs at least one document; input: a strategy is required: canary or blueGreen"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// TestGenerateKeepsEveryTemplateLeaf checks the pod templates once more without the typed
// structs: every value the user wrote under spec.template appears, at the same path, in the
// Rollout's spec.template (quantities compared by value, "0.5" being "500m").
func TestGenerateKeepsEveryTemplateLeaf(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(filepath.Join("testdata", "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	leaves := 0
	for _, e := range entries {
		docs := readDocs(t, []string{e.Name()})
		out, err := rollout.Generate(rollout.Input{
			Application: "shop", PipelineID: pipelineID, Target: "prod-eu", Documents: docs, Canary: defaultCanary,
		})
		if err != nil {
			t.Fatal(err)
		}
		templates := map[string]any{}
		for _, o := range out.Objects {
			if o.Ref.Kind == "Rollout" {
				var m map[string]any
				if err := json.Unmarshal(o.JSON, &m); err != nil {
					t.Fatal(err)
				}
				templates[o.Ref.Name] = m["spec"].(map[string]any)["template"]
			}
		}
		for _, chunk := range bytes.Split(docs[0].YAML, []byte("\n---\n")) {
			var m map[string]any
			if err := yaml.Unmarshal(chunk, &m); err != nil {
				t.Fatal(err)
			}
			if m["kind"] != "Deployment" {
				continue
			}
			name := m["metadata"].(map[string]any)["name"].(string)
			want := m["spec"].(map[string]any)["template"]
			walkLeaves(want, nil, func(path []any, v any) {
				leaves++
				got, ok := lookup(templates[name], path)
				if !ok {
					t.Errorf("%s: Rollout %s lost spec.template%v (%v)", e.Name(), name, path, v)
					return
				}
				if !sameLeaf(v, got) {
					t.Errorf("%s: Rollout %s has spec.template%v = %v, the Deployment %v", e.Name(), name, path, got, v)
				}
			})
		}
	}
	if leaves < 200 {
		t.Fatalf("checked %d template values; the corpus is not being read", leaves)
	}
}

// walkLeaves calls f with the path (map keys and list indexes) of every scalar under v.
func walkLeaves(v any, path []any, f func(path []any, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			walkLeaves(c, append(slices.Clip(path), k), f)
		}
	case []any:
		for i, c := range v {
			walkLeaves(c, append(slices.Clip(path), i), f)
		}
	case nil: // creationTimestamp: null and the like say nothing
	default:
		f(path, v)
	}
}

// lookup follows a path written by walkLeaves.
func lookup(v any, path []any) (any, bool) {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[p]; !ok {
				return nil, false
			}
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil, false
			}
			v = l[p]
		}
	}
	return v, true
}

func sameLeaf(want, got any) bool {
	if cmp.Equal(want, got) {
		return true
	}
	ws, gs := fmt.Sprint(want), fmt.Sprint(got)
	if ws == gs {
		return true // 3 and 3.0, as the two decoders write numbers
	}
	wq, err1 := resource.ParseQuantity(ws)
	gq, err2 := resource.ParseQuantity(gs)
	return err1 == nil && err2 == nil && wq.Cmp(gq) == 0
}
