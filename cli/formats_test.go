package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// decodeAs decodes a command's output in format (json or yaml), failing the test when it is
// not that format: YAML output must not be JSON, since a script asking for YAML reads YAML.
func decodeAs(t *testing.T, format, out string) any {
	t.Helper()
	var v any
	var err error
	switch format {
	case "json":
		err = json.Unmarshal([]byte(out), &v)
	case "yaml":
		if json.Valid([]byte(out)) {
			t.Fatalf("-o yaml printed JSON:\n%s", out)
		}
		err = yaml.Unmarshal([]byte(out), &v)
	}
	if err != nil {
		t.Fatalf("-o %s: not %s (%v):\n%s", format, format, err, out)
	}
	return v
}

// field walks keys (map keys, or list indexes as "0") down a decoded document.
func field(t *testing.T, v any, keys ...string) any {
	t.Helper()
	cur := v
	for _, k := range keys {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[k]
		case []any:
			if k != "0" || len(c) == 0 {
				t.Fatalf("no %s in %v", strings.Join(keys, "."), v)
			}
			cur = c[0]
		default:
			t.Fatalf("no %s in %v", strings.Join(keys, "."), v)
		}
	}
	return cur
}

// appDir writes the gated deploy.yml for application app (its namespaces and Deployment
// named after it) and returns the deploy file.
func appDir(t *testing.T, app string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "k8s/app.yaml", strings.ReplaceAll(appYAML, "gated", app))
	return writeFile(t, dir, "deploy.yml", strings.ReplaceAll(gatedDeploy, "gated", app))
}

// TestEveryCommandInJSONAndYAML runs every command against the real server with -o json and
// -o yaml and reads from the output what a script would.
func TestEveryCommandInJSONAndYAML(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			u := s.user(t)
			run := func(args ...string) any {
				t.Helper()
				return decodeAs(t, format, u.mustRun(t, append(args, "-o", format)...).stdout)
			}

			login := run("login", "--client-id", s.ClientID, "--client-secret", s.ClientSecret)
			if field(t, login, "clientId") != s.ClientID || field(t, login, "addr") != s.URL ||
				field(t, login, "savedIn") != filepath.Join(u.configDir, "login.json") {
				t.Errorf("login: %v", login)
			}

			cred := run("credentials", "create", "ci-"+format, "--role", "Deployments Full Access")
			clientID, _ := field(t, cred, "clientId").(string)
			if clientID == "" || field(t, cred, "clientSecret") == "" || field(t, cred, "name") != "ci-"+format {
				t.Fatalf("credentials create: %v", cred)
			}
			listed := false
			for _, c := range run("credentials", "list").([]any) {
				if field(t, c, "clientId") == clientID {
					listed = true
					if _, has := c.(map[string]any)["clientSecret"]; has {
						t.Errorf("credentials list shows a secret: %v", c)
					}
				}
			}
			if !listed {
				t.Errorf("credentials list lacks %s", clientID)
			}
			if del := run("credentials", "delete", clientID); field(t, del, "clientId") != clientID || field(t, del, "deleted") != true {
				t.Errorf("credentials delete: %v", del)
			}

			if ag := run("agents", "list"); field(t, ag, "0", "agentIdentifier") != agentAccount {
				t.Errorf("agents list: %v", ag)
			}

			// Two pipelines, one to approve and one to abort.
			approveApp, abortApp := "approve"+format, "abort"+format
			toApprove, _ := field(t, run("deploy", "start", "-f", appDir(t, approveApp), "-t", "prod", "--add-context", "by=script"), "pipelineId").(string)
			toAbort, _ := field(t, run("deploy", "start", "-f", appDir(t, abortApp), "-t", "prod"), "pipelineId").(string)
			if toApprove == "" || toAbort == "" {
				t.Fatalf("deploy start printed no pipelineId: %q %q", toApprove, toAbort)
			}
			for _, id := range []string{toApprove, toAbort} {
				waitUntil(t, 10*time.Second, id+" awaiting approval", func() bool {
					return field(t, run("deploy", "status", id), "status") == "AWAITING_APPROVAL"
				})
			}
			st := run("deploy", "status", toApprove)
			if field(t, st, "id") != toApprove || field(t, st, "context", "by") != "script" ||
				field(t, st, "environments", "0", "pauseInfo", "step") != "prod/before/0" {
				t.Errorf("deploy status: %v", st)
			}
			list := run("deploy", "list", "--application", approveApp)
			if field(t, list, "pipelines", "0", "id") != toApprove || len(field(t, list, "pipelines").([]any)) != 1 {
				t.Errorf("deploy list: %v", list)
			}

			if ap := run("deploy", "approve", toApprove, "--step", "prod/before/0"); field(t, ap, "numberAffected") != 1.0 {
				t.Errorf("deploy approve: %v", ap)
			}
			if ab := run("deploy", "abort", toAbort); field(t, ab, "numberAffected") != 1.0 || !strings.Contains(field(t, ab, "message").(string), toAbort) {
				t.Errorf("deploy abort: %v", ab)
			}
			waitUntil(t, 10*time.Second, "the approved pipeline to succeed and the aborted one to end", func() bool {
				return field(t, run("deploy", "status", toApprove), "status") == "SUCCEEDED" &&
					field(t, run("deploy", "status", toAbort), "status") == "CANCELLED"
			})

			if out := run("logout"); field(t, out, "addr") != s.URL || field(t, out, "loggedOut") != true {
				t.Errorf("logout: %v", out)
			}
			if out := run("logout"); field(t, out, "loggedOut") != false {
				t.Errorf("a second logout: %v", out)
			}
		})
	}
}
