package rollout_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/pipeline/rollout"
)

// TestPodTemplateSchemaIsCurrent regenerates podtemplate-schema.json from the Rollout CRD of
// the argo-rollouts module in go.mod: after a version bump, go generate must be run.
func TestPodTemplateSchemaIsCurrent(t *testing.T) {
	t.Parallel()
	fresh := filepath.Join(t.TempDir(), "schema.json")
	if out, err := exec.Command("go", "run", "schema_gen.go", "-o", fresh).CombinedOutput(); err != nil {
		t.Fatalf("go run schema_gen.go: %v\n%s", err, out)
	}
	want, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("podtemplate-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Error("podtemplate-schema.json is not the schema of the argo-rollouts module in go.mod: run go generate ./pipeline/rollout")
	}
}

// TestGenerateRefusesFieldsTheCRDWouldPrune uses pod fields of the Kubernetes API this build
// knows but the Rollout CRD's older schema does not: the API server would drop them silently.
func TestGenerateRefusesFieldsTheCRDWouldPrune(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "manifests", "sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, insert, want string
	}{
		{
			name:   "one field",
			insert: "      schedulingGroup:\n        podGroupName: web\n",
			want:   "document 1 (Deployment web): the Argo Rollouts CRD (v1.10) does not know spec.template.spec.schedulingGroup: the API server would drop it from the Rollout; remove it or wait for a Sortie built with a newer Argo Rollouts",
		},
		{
			name:   "two fields",
			insert: "      schedulingGroup:\n        podGroupName: web\n      evictionResponders:\n      - name: drain.example.com/web\n",
			want:   "document 1 (Deployment web): the Argo Rollouts CRD (v1.10) does not know spec.template.spec.evictionResponders, spec.template.spec.schedulingGroup: the API server would drop them from the Rollout; remove them or wait for a Sortie built with a newer Argo Rollouts",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := strings.Replace(string(b), "      shareProcessNamespace: true\n", "      shareProcessNamespace: true\n"+tc.insert, 1)
			_, err := rollout.Generate(rollout.Input{
				Application: "shop", PipelineID: pipelineID, Target: "prod",
				Documents: []rollout.Document{{Source: "sidecar.yaml", YAML: []byte(doc)}},
				Canary:    &rollout.Canary{},
			})
			var gerr *rollout.Error
			if !errors.As(err, &gerr) {
				t.Fatalf("Generate = %v, want an *Error", err)
			}
			if diff := cmp.Diff([]rollout.Problem{{Source: "sidecar.yaml", Message: tc.want}}, gerr.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
