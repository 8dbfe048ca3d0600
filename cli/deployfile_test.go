package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDeployFileBody pins the request as the Armory CLI sends it: the deploy file as JSON,
// files keyed by each path as written (a directory: its .yaml and .yml files, nested ones
// too, in name order, hidden ones and other extensions skipped), context and targetFilters.
func TestDeployFileBody(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("deploy/deploy.yml", `version: v1
application: web
targets:
  prod: {account: prod-west, namespace: web, strategy: c}
  staging: {account: staging, strategy: c}
manifests:
  - path: ../k8s
  - path: ../extra/cm.yml
    targets: [prod]
  - inline: "kind: ConfigMap"
strategies:
  c: {canary: {steps: [{setWeight: {weight: 25}}, {pause: {duration: 1, unit: SECONDS}}]}}
context: {team: payments, commit: from-the-file}
`)
	write("k8s/b.yaml", "kind: B\n")
	write("k8s/a.yml", "kind: A\n")
	write("k8s/nested/c.yaml", "kind: C\n")
	write("k8s/README.md", "not a manifest")
	write("k8s/.hidden.yaml", "kind: Hidden\n")
	write("extra/cm.yml", "kind: CM\n")

	df, err := readDeployFile(filepath.Join(dir, "deploy", "deploy.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		only    []string
		context map[string]string
		filters any
		ctx     any
	}{
		{"every target, the file's context", nil, nil, nil, map[string]any{"team": "payments", "commit": "from-the-file"}},
		{"filtered, --add-context over the file's", []string{"prod", "staging"}, map[string]string{"commit": "abc", "by": "ci"},
			[]any{map[string]any{"includeTarget": "prod"}, map[string]any{"includeTarget": "staging"}}, map[string]any{"team": "payments", "commit": "abc", "by": "ci"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := df.body(tc.only, tc.context)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"version": "v1", "application": "web",
				"targets": map[string]any{
					"prod":    map[string]any{"account": "prod-west", "namespace": "web", "strategy": "c"},
					"staging": map[string]any{"account": "staging", "strategy": "c"},
				},
				"manifests": []any{
					map[string]any{"path": "../k8s"},
					map[string]any{"path": "../extra/cm.yml", "targets": []any{"prod"}},
					map[string]any{"inline": "kind: ConfigMap"},
				},
				"strategies": map[string]any{"c": map[string]any{"canary": map[string]any{"steps": []any{
					map[string]any{"setWeight": map[string]any{"weight": float64(25)}},
					map[string]any{"pause": map[string]any{"duration": float64(1), "unit": "SECONDS"}},
				}}}},
				"files": map[string]any{
					"../k8s":          []any{"kind: A\n", "kind: B\n", "kind: C\n"},
					"../extra/cm.yml": []any{"kind: CM\n"},
				},
				"context":       tc.ctx,
				"targetFilters": tc.filters,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeftOf(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	for _, tc := range []struct {
		now  time.Time
		want time.Duration
	}{
		{end.Add(-10 * time.Second), 10 * time.Second},
		{end.Add(-9500 * time.Millisecond), 10 * time.Second},
		{end.Add(-time.Millisecond), time.Second},
		{end, 0},
		{end.Add(time.Second), 0},
	} {
		if got := leftOf(end, tc.now); got != tc.want {
			t.Errorf("leftOf(end, end%v) = %v, want %v", tc.now.Sub(end), got, tc.want)
		}
	}
}
