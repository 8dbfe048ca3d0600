package charts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	sortieagent "github.com/sortie-dev/sortie/charts/sortie-agent"
	"github.com/sortie-dev/sortie/hub"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// helm runs the pinned Helm from the repository root and returns its stdout; a failure
// returns stderr in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "-modfile=tools/helm/go.mod", "helm"}, args...)...)
	cmd.Dir = ".."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// agentValues are the values every agent case needs.
var agentValues = []string{"--set", "agentIdentifier=prod-west", "--set", "hubUrl=https://sortie.example.com",
	"--set", "credentials.clientId=client-id", "--set", "credentials.clientSecret=client-secret"}

func TestLint(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		chart string
		args  []string
	}{
		{"charts/sortie", nil},
		{"charts/sortie", []string{"-f", "charts/sortie/testdata/ha.values.yaml"}},
		{"charts/sortie-agent", agentValues},
	} {
		out, err := helm(t, append([]string{"lint", "--strict", tt.chart}, tt.args...)...)
		if err != nil || !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm lint %s %v: %v\n%s", tt.chart, tt.args, err, out)
		}
	}
}

// randomKey is the master key the chart generates on a first install: different on every
// render, so the golden files hold a placeholder.
var randomKey = regexp.MustCompile(`(?m)^(  master\.key: )[A-Za-z0-9+/=]{60}$`)

func TestTemplateGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, chart string
		args        []string
	}{
		{"sortie-defaults", "charts/sortie", nil},
		{"sortie-ha", "charts/sortie", []string{"-f", "charts/sortie/testdata/ha.values.yaml"}},
		{"sortie-agent", "charts/sortie-agent", agentValues},
		{"sortie-agent-existing-secret", "charts/sortie-agent", []string{"--set", "agentIdentifier=edge_1", "--set", "hubUrl=http://sortie.sortie.svc:8080",
			"--set", "credentials.existingSecret=edge-credentials", "--set", "hubCASecret=hub-ca", "--set", "image.digest=sha256:" + strings.Repeat("ab", 32)}},
	}
	for _, tt := range tests {
		out, err := helm(t, append([]string{"template", "sortie", tt.chart, "--namespace", "sortie"}, tt.args...)...)
		if err != nil {
			t.Errorf("%s: helm template: %v", tt.name, err)
			continue
		}
		out = randomKey.ReplaceAllString(out, "${1}<generated>")
		golden := filepath.Join("testdata", tt.name+".yaml")
		if *update {
			if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./charts -update)", err)
		}
		if diff := cmp.Diff(string(want), out); diff != "" {
			t.Errorf("%s: helm template differs from %s (-want +got; go test ./charts -update if intended):\n%s", tt.name, golden, diff)
		}
	}
}

func TestMasterKeyIsGenerated(t *testing.T) {
	t.Parallel()
	first, err := helm(t, "template", "sortie", "charts/sortie")
	if err != nil {
		t.Fatal(err)
	}
	keys := randomKey.FindAllStringSubmatch(first, -1)
	if len(keys) != 1 {
		t.Fatalf("want one generated master key in the output, found %d:\n%s", len(keys), first)
	}
	existing, err := helm(t, "template", "sortie", "charts/sortie", "--set", "masterKey.existingSecret=my-key")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(existing, "kind: Secret") || !strings.Contains(existing, "secretName: my-key") {
		t.Errorf("with masterKey.existingSecret the chart must create no Secret and mount my-key:\n%s", existing)
	}
}

func TestBadValuesFail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, chart string
		args        []string
		want        string
	}{
		{"several replicas without Redis", "charts/sortie", []string{"--set", "replicas=3"},
			"replicas=3 needs redis.url or redis.existingSecret"},
		{"TLS without a certificate", "charts/sortie", []string{"--set", "tls.enabled=true"},
			"tls.enabled=true needs tls.secretName"},
		{"Ingress without host", "charts/sortie", []string{"--set", "ingress.enabled=true"}, "ingress.enabled=true needs ingress.host"},
		{"relative public URL", "charts/sortie", []string{"--set", "publicUrl=sortie.example.com"}, `publicUrl "sortie.example.com" must be an absolute`},
		{"Redis URL of another scheme", "charts/sortie", []string{"--set", "redis.url=http://user:hunter2@redis:6379"}, "redis.url must start with redis://"},
		{"agent identifier with a space", "charts/sortie-agent", append(slices.Clone(agentValues), "--set", "agentIdentifier=prod west"),
			`agentIdentifier "prod west" is invalid: it must be 1 to 63 letters, digits, '_' or '-'`},
		{"agent identifier missing", "charts/sortie-agent", []string{"--set", "hubUrl=https://s.example.com", "--set", "credentials.existingSecret=c"},
			`agentIdentifier "" is invalid`},
		{"agent without credentials", "charts/sortie-agent", []string{"--set", "agentIdentifier=a", "--set", "hubUrl=https://s.example.com"},
			"credentials.clientId and credentials.clientSecret are required unless credentials.existingSecret"},
		{"agent without hub URL", "charts/sortie-agent", []string{"--set", "agentIdentifier=a", "--set", "credentials.existingSecret=c"},
			`hubUrl "" is invalid`},
	}
	for _, tt := range tests {
		out, err := helm(t, append([]string{"template", "sortie", tt.chart}, tt.args...)...)
		if err == nil {
			t.Errorf("%s: helm template succeeded, want it to fail with %q:\n%s", tt.name, tt.want, out)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: helm template failed with %q, want %q", tt.name, err, tt.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error repeats the Redis password: %s", tt.name, err)
		}
	}
}

// TestAgentChartMatchesManifestRoute renders the agent chart with Helm and with the Go
// renderer the manifest route uses, on the values the route passes, and compares the objects.
func TestAgentChartMatchesManifestRoute(t *testing.T) {
	t.Parallel()
	image := map[string]any{"repository": "registry.example/sortie-agent", "tag": "v0.1.0", "digest": ""}
	values := map[string]any{"agentIdentifier": "prod-west", "hubUrl": "https://sortie.example.com",
		"credentials": map[string]any{"clientId": "client-id", "clientSecret": "s3cr\"et\\"},
		"image":       image, "createNamespace": true}
	var goOut bytes.Buffer
	if err := sortieagent.Render(&goOut, sortieagent.Release{Name: "sortie-agent", Namespace: "sortie"}, values); err != nil {
		t.Fatal(err)
	}
	valuesFile, err := filepath.Abs(filepath.Join(t.TempDir(), "values.json")) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	helmOut, err := helm(t, "template", "sortie-agent", "charts/sortie-agent", "--namespace", "sortie", "-f", valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	fromGo, fromHelm := objects(t, goOut.String()), objects(t, helmOut)
	if len(fromGo) != 6 {
		t.Errorf("the route renders %d objects, want 6 (Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding, Secret, Deployment)", len(fromGo))
	}
	if diff := cmp.Diff(fromHelm, fromGo); diff != "" {
		t.Errorf("the manifest route and helm template render different objects (-helm +route):\n%s", diff)
	}
}

// objects decodes a multi-document YAML stream into its objects, keyed kind/name.
func objects(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(stream, -1) {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("a document does not parse: %v\n%s", err, doc)
		}
		if obj == nil {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		out[obj["kind"].(string)+"/"+meta["name"].(string)] = obj
	}
	return out
}

// TestAgentIdentifierRuleIsTheHubs checks the chart's copy of the identifier rule against
// hub.CheckIdentifier, the rule of Hello.agent_identifier in hub.proto.
func TestAgentIdentifierRuleIsTheHubs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "prod-west", "edge_1", "A9", strings.Repeat("x", 63), strings.Repeat("x", 64), "",
		"prod west", "prod.west", "prod/west", "ünï", "a\nb", "-", "_"} {
		err := sortieagent.Render(new(bytes.Buffer), sortieagent.Release{Name: "sortie-agent", Namespace: "sortie"}, map[string]any{
			"agentIdentifier": id, "hubUrl": "https://s.example.com", "credentials": map[string]any{"existingSecret": "c"}})
		var fail *sortieagent.FailError
		chartRefuses := errors.As(err, &fail)
		if err != nil && !chartRefuses {
			t.Fatalf("render %q: %v", id, err)
		}
		if hubRefuses := hub.CheckIdentifier(id) != nil; chartRefuses != hubRefuses {
			t.Errorf("identifier %q: chart refuses %v (%v), hub refuses %v", id, chartRefuses, err, hubRefuses)
		}
	}
}
