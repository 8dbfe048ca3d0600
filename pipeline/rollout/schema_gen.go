//go:build ignore

// schema_gen writes podtemplate-schema.json: the structural schema of spec.template in the
// Rollout CRD of the argo-rollouts module in go.mod, stripped to what pruning looks at.
// Run it with go generate after changing the argo-rollouts version.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "schema_gen:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "podtemplate-schema.json", "file to write")
	flag.Parse()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-rollouts").Output()
	if err != nil {
		return fmt.Errorf("locate the argo-rollouts module: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "manifests", "crds", "rollout-crd.yaml"))
	if err != nil {
		return err
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				}
			}
		}
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		return err
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != "v1alpha1" {
			continue
		}
		tmpl, ok := dig(v.Schema.OpenAPIV3Schema, "properties", "spec", "properties", "template")
		if !ok {
			return fmt.Errorf("the Rollout CRD has no schema for spec.template")
		}
		b, err := json.MarshalIndent(strip(tmpl), "", " ")
		if err != nil {
			return err
		}
		return os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	return fmt.Errorf("the Rollout CRD has no v1alpha1")
}

func dig(m map[string]any, path ...string) (map[string]any, bool) {
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	return m, true
}

// strip keeps what decides whether a field survives pruning.
func strip(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, c := range m {
		switch k {
		case "properties":
			props := map[string]any{}
			for name, s := range c.(map[string]any) {
				props[name] = strip(s)
			}
			out[k] = props
		case "items", "additionalProperties":
			out[k] = strip(c)
		case "x-kubernetes-preserve-unknown-fields":
			out[k] = c
		}
	}
	return out
}
