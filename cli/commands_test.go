package cli_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// gatedDeploy is a deploy.yml whose target waits for an approval before it deploys, so its
// pipeline stays in progress even on a first deployment.
const gatedDeploy = `application: gated
targets:
  prod:
    account: dev-cluster
    namespace: gated
    strategy: c
    constraints:
      beforeDeployment:
        - pause:
            untilApproved: true
  staging:
    account: dev-cluster
    namespace: gated-staging
    strategy: c
manifests:
  - path: k8s/app.yaml
strategies:
  c:
    canary:
      steps:
        - setWeight: {weight: 50}
`

const appYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: gated
spec:
  replicas: 2
  selector:
    matchLabels: {app: gated}
  template:
    metadata:
      labels: {app: gated}
    spec:
      containers:
        - name: app
          image: example.com/gated:1
`

func gatedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "deploy.yml", gatedDeploy)
	writeFile(t, dir, "k8s/app.yaml", appYAML)
	return filepath.Join(dir, "deploy.yml")
}

// decodeJSON decodes a command's JSON output, failing the test when it is not JSON.
func decodeJSON[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, out)
	}
	return v
}

func decodeYAML[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := yaml.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not YAML (%v):\n%s", err, out)
	}
	return v
}

type pipelineJSON struct {
	ID           string `json:"id"`
	Application  string `json:"application"`
	Status       string `json:"status"`
	Context      map[string]string
	Environments []struct {
		Name      string `json:"name"`
		Status    string `json:"status"`
		PauseInfo *struct {
			Reason string `json:"reason"`
			Step   string `json:"step"`
		} `json:"pauseInfo"`
	} `json:"environments"`
	Decisions []struct {
		Action string `json:"action"`
		Step   string `json:"step"`
	} `json:"decisions"`
}

func TestDeployCommandsAndOutputs(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	file := gatedDir(t)

	// start, -o json: the server's reply.
	started := decodeJSON[struct {
		PipelineID string   `json:"pipelineId"`
		Warnings   []string `json:"warnings"`
	}](t, u.mustRun(t, "deploy", "start", "-f", file, "-o", "json", "--add-context", "commit=abc123", "--add-context", "by=ci,team=payments").stdout)
	id := started.PipelineID
	if id == "" || started.Warnings == nil {
		t.Fatalf("start -o json: %+v", started)
	}

	// status, in the three formats.
	var st pipelineJSON
	waitUntil(t, 10*time.Second, "prod awaiting its approval", func() bool {
		st = decodeJSON[pipelineJSON](t, u.mustRun(t, "deploy", "status", id, "-o", "json").stdout)
		return st.Status == "AWAITING_APPROVAL"
	})
	// --add-context reads a=1,b=2 as two keys, as the Armory CLI does.
	if st.Context["commit"] != "abc123" || st.Context["by"] != "ci" || st.Context["team"] != "payments" || st.Application != "gated" {
		t.Errorf("status -o json: %+v", st)
	}
	if y := decodeYAML[pipelineJSON](t, u.mustRun(t, "deploy", "status", id, "-o", "yaml").stdout); y.ID != id || y.Status != "AWAITING_APPROVAL" {
		t.Errorf("status -o yaml: %+v", y)
	}
	text := u.mustRun(t, "deploy", "status", id).stdout
	for _, want := range []string{
		"Pipeline " + id + " (application gated): AWAITING_APPROVAL",
		"TARGET", "ACCOUNT/NAMESPACE", "dev-cluster/gated",
		"awaiting approval of step prod/before/0; may approve: anyone with manage:deploy (sortie deploy approve " + id + " --step prod/before/0)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}

	// Shell completion offers the active pipeline.
	if c := u.mustRun(t, "__complete", "deploy", "status", ""); !strings.Contains(c.stdout, id+"\tgated AWAITING_APPROVAL") {
		t.Errorf("completion of deploy status:\n%s", c.stdout)
	}

	// A second start of the same application while this one runs: 409, exit 3.
	r := u.run(t, "deploy", "start", "-f", file, "--watch")
	if r.code != 3 || !strings.Contains(r.stderr, "409 Conflict") {
		t.Errorf("second start: exit %d, %q", r.code, r.stderr)
	}

	// list, filtered, in the three formats.
	list := decodeJSON[struct {
		Pipelines []pipelineJSON `json:"pipelines"`
	}](t, u.mustRun(t, "deploy", "list", "--application", "gated", "--status", "awaiting_approval,running", "-o", "json").stdout)
	if len(list.Pipelines) != 1 || list.Pipelines[0].ID != id {
		t.Errorf("list -o json: %+v", list)
	}
	if y := decodeYAML[struct {
		Pipelines []pipelineJSON `json:"pipelines"`
	}](t, u.mustRun(t, "deploy", "list", "-o", "yaml").stdout); len(y.Pipelines) != 1 {
		t.Errorf("list -o yaml: %+v", y)
	}
	lt := u.mustRun(t, "deploy", "list", "--application", "gated").stdout
	if !regexp.MustCompile(`(?m)^ID\s+APPLICATION\s+STATUS\s+TARGETS\s+STARTED\n` + id + `\s+gated\s+AWAITING_APPROVAL\s+\S*prod:AWAITING_APPROVAL`).MatchString(lt) {
		t.Errorf("list text:\n%s", lt)
	}
	if none := u.mustRun(t, "deploy", "list", "--status", "FAILED").stdout; none != "No pipelines.\n" {
		t.Errorf("list of no pipelines: %q", none)
	}
	if r := u.run(t, "deploy", "list", "--status", "DONE"); r.code != 2 || !strings.Contains(r.stderr, `--status "DONE": use one of NOT_STARTED`) {
		t.Errorf("list --status DONE: exit %d, %q", r.code, r.stderr)
	}

	// approve one step, -o json; approving again: nothing awaiting, 409, exit 3.
	ap := decodeJSON[struct {
		Message        string `json:"message"`
		NumberAffected int    `json:"numberAffected"`
	}](t, u.mustRun(t, "deploy", "approve", id, "--step", "prod/before/0", "-o", "json").stdout)
	if ap.NumberAffected != 1 {
		t.Errorf("approve -o json: %+v", ap)
	}
	if r := u.run(t, "deploy", "approve", id); r.code != 3 {
		t.Errorf("approving with nothing awaiting: exit %d, %q", r.code, r.stderr)
	}
	waitUntil(t, 10*time.Second, "the pipeline to succeed", func() bool {
		return decodeJSON[pipelineJSON](t, u.mustRun(t, "deploy", "status", id, "-o", "json").stdout).Status == "SUCCEEDED"
	})
	text = u.mustRun(t, "deploy", "status", id).stdout
	if !regexp.MustCompile(`approved prod/before/0 by admin \(machine ` + s.ClientID + `\) at \d\d:\d\d:\d\dZ`).MatchString(text) {
		t.Errorf("status after the approval:\n%s", text)
	}
	// status --watch of a finished pipeline: exit 0 for SUCCEEDED.
	if w := u.mustRun(t, "deploy", "status", id, "--watch", "-o", "json"); len(strings.Split(strings.TrimSpace(w.stdout), "\n")) != 1 {
		t.Errorf("status --watch -o json of a finished pipeline: one JSON line expected:\n%s", w.stdout)
	}
	if w := u.mustRun(t, "deploy", "status", id, "--watch", "-o", "yaml"); !strings.HasPrefix(w.stdout, "---\n") || decodeYAML[pipelineJSON](t, strings.TrimPrefix(w.stdout, "---\n")).Status != "SUCCEEDED" {
		t.Errorf("status --watch -o yaml of a finished pipeline:\n%s", w.stdout)
	}

	// abort: text; a watch of the aborted pipeline exits 1; aborting again is 409, exit 3.
	id2 := startedID(t, u.mustRun(t, "deploy", "start", "-f", file, "-t", "prod").stdout)
	out, wait := u.start(t, "deploy", "status", id2, "--watch", "--poll-interval", "50ms")
	waitUntil(t, 10*time.Second, "the second pipeline awaiting approval", func() bool {
		return strings.Contains(out.String(), "AWAITING_APPROVAL")
	})
	if strings.Contains(out.String(), "target staging") {
		t.Errorf("-t prod deployed staging too:\n%s", out.String())
	}
	ab := u.mustRun(t, "deploy", "abort", id2)
	if !strings.Contains(ab.stdout, "Aborted 1 target of pipeline "+id2) {
		t.Errorf("abort printed %q", ab.stdout)
	}
	res := wait()
	if res.code != 1 || !strings.Contains(res.stderr, "pipeline "+id2+" ended CANCELLED") || !regexp.MustCompile(`aborted the pipeline by admin \(machine `).MatchString(res.stdout) {
		t.Errorf("watch of an aborted pipeline: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if r := u.run(t, "deploy", "abort", id2); r.code != 3 {
		t.Errorf("aborting a finished pipeline: exit %d, %q", r.code, r.stderr)
	}
	if r := u.run(t, "deploy", "status", "00000000-0000-0000-0000-000000000000"); r.code != 1 || !strings.Contains(r.stderr, "404 Not Found") {
		t.Errorf("status of an unknown id: exit %d, %q", r.code, r.stderr)
	}
}

func TestAgentsList(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	if txt := u.mustRun(t, "agents", "list").stdout; !regexp.MustCompile(`(?m)^ACCOUNT\s+VERSION.*\n` + agentAccount + `\s+simagent\s`).MatchString(txt) {
		t.Errorf("agents list:\n%s", txt)
	}
	js := decodeJSON[[]map[string]any](t, u.mustRun(t, "agents", "list", "-o", "json").stdout)
	if len(js) != 1 || js[0]["agentIdentifier"] != agentAccount || js[0]["agentVersion"] != "simagent" {
		t.Errorf("agents list -o json: %v", js)
	}
	if y := decodeYAML[[]map[string]any](t, u.mustRun(t, "agents", "list", "-o", "yaml").stdout); len(y) != 1 || y[0]["agentIdentifier"] != agentAccount {
		t.Errorf("agents list -o yaml: %v", y)
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)

	txt := u.mustRun(t, "credentials", "create", "ci-pipeline", "--role", "Deployments Full Access").stdout
	m := regexp.MustCompile(`client id:\s+(\S+)\n\s+client secret:\s+(\S+)\n\s+roles:\s+Deployments Full Access\n`).FindStringSubmatch(txt)
	if m == nil || !strings.Contains(txt, "shown only now") {
		t.Fatalf("credentials create:\n%s", txt)
	}
	id, secret := m[1], m[2]
	// The new credential works, through the CLI.
	other := s.user(t)
	other.mustRun(t, "login", "--client-id", id, "--client-secret", secret)
	other.mustRun(t, "deploy", "list")

	js := decodeJSON[map[string]any](t, u.mustRun(t, "credentials", "create", "agent-dev", "--role", "Remote Network Agent", "-o", "json").stdout)
	if js["clientSecret"] == "" || js["name"] != "agent-dev" {
		t.Errorf("credentials create -o json: %v", js)
	}
	secret2, _ := js["clientSecret"].(string)

	if r := u.run(t, "credentials", "create", "ci-pipeline"); r.code != 3 || !strings.Contains(r.stderr, "409 Conflict") {
		t.Errorf("creating a name twice: exit %d, %q", r.code, r.stderr)
	}

	for _, format := range []string{"text", "json", "yaml"} {
		out := u.mustRun(t, "credentials", "list", "-o", format).stdout
		if strings.Contains(out, secret) || strings.Contains(out, secret2) || strings.Contains(out, s.ClientSecret) {
			t.Errorf("credentials list -o %s shows a secret", format)
		}
		if !strings.Contains(out, id) || !strings.Contains(out, "agent-dev") {
			t.Errorf("credentials list -o %s:\n%s", format, out)
		}
	}
	if y := decodeYAML[[]map[string]any](t, u.mustRun(t, "credentials", "list", "-o", "yaml").stdout); len(y) != 3 {
		t.Errorf("credentials list -o yaml: %d credentials, want 3", len(y))
	}

	if d := u.mustRun(t, "credentials", "delete", id); d.stdout != "Deleted credential "+id+".\n" {
		t.Errorf("delete printed %q", d.stdout)
	}
	if out := u.mustRun(t, "credentials", "list", "-o", "json").stdout; strings.Contains(out, id) {
		t.Error("the deleted credential is still listed")
	}
	// Its saved login stops working at once, with a message saying what to do.
	if r := other.run(t, "deploy", "list"); r.code != 1 || !strings.Contains(r.stderr, "the saved login to "+s.URL+" was refused and could not be renewed") ||
		!strings.Contains(r.stderr, "run 'sortie login' again") || strings.Contains(r.stderr, secret) {
		t.Errorf("the deleted credential's login: exit %d, %q", r.code, r.stderr)
	}
	if r := u.run(t, "credentials", "delete", id); r.code != 1 || !strings.Contains(r.stderr, "404 Not Found") {
		t.Errorf("deleting twice: exit %d, %q", r.code, r.stderr)
	}
}

func TestHelpAndCompletion(t *testing.T) {
	t.Parallel()
	u := &user{s: &server{URL: "http://127.0.0.1:1"}, configDir: t.TempDir(), env: map[string]string{}}
	// Every command's help has examples and the global flags; the list of commands is read
	// from the root's help, so a new command cannot skip them.
	var walk func(path []string)
	seen := 0
	walk = func(path []string) {
		r := u.mustRun(t, append(append([]string{}, path...), "--help")...)
		seen++
		if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--addr") || !strings.Contains(r.stdout, "-o, --output") {
			t.Errorf("sortie %s --help lacks examples or global flags:\n%s", strings.Join(path, " "), r.stdout)
		}
		_, cmds, ok := strings.Cut(r.stdout, "Available Commands:\n")
		if !ok {
			return
		}
		cmds, _, _ = strings.Cut(cmds, "\n\n")
		for _, line := range strings.Split(cmds, "\n") {
			if name := strings.Fields(line)[0]; name != "help" {
				walk(append(append([]string{}, path...), name))
			}
		}
	}
	walk(nil)
	if seen < 19 { // the root, 5 top-level commands, 10 subcommands, completion and 4 shells
		t.Errorf("walked %d commands' help, want at least 19", seen)
	}
	if r := u.mustRun(t, "deploy", "start", "--help"); !strings.Contains(r.stdout, "--add-context") || !strings.Contains(r.stdout, "-t, --target") {
		t.Errorf("deploy start --help:\n%s", r.stdout)
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if r := u.mustRun(t, "completion", shell); !strings.Contains(r.stdout, "sortie") || len(r.stdout) < 500 {
			t.Errorf("completion %s: %d bytes", shell, len(r.stdout))
		}
	}
	if r := u.mustRun(t, "__complete", "-o", ""); !strings.Contains(r.stdout, "json\nyaml") {
		t.Errorf("completion of -o:\n%s", r.stdout)
	}
	// A missing or unknown shell is a usage error, not the help with exit 0.
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}} {
		if r := u.run(t, args...); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "bash, fish, powershell, zsh") && !strings.Contains(r.stderr, `unknown command "tcsh" for "sortie completion"`) {
			t.Errorf("sortie %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}
