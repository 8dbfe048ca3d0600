package console_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
)

// credential is the part of GET /credentials the tests read.
type credential struct {
	ClientID string   `json:"clientId"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
}

func (h *harness) credentials(t *testing.T, tok string) []credential {
	t.Helper()
	status, body := sortie.Call(t, "GET", h.url+"/credentials", tok, nil)
	if status != 200 {
		t.Fatalf("GET /credentials: %d %s", status, body)
	}
	return decode[[]credential](t, body)
}

func findCredential(creds []credential, name string) (credential, bool) {
	i := slices.IndexFunc(creds, func(c credential) bool { return c.Name == name })
	if i < 0 {
		return credential{}, false
	}
	return creds[i], true
}

// testCredentials: the admin creates a credential with a role in the console, copies its
// secret (the script gets a token with it), and revokes it (the secret stops working).
func (h *harness) testCredentials(t *testing.T) {
	const name, role = "ci-deployer", "Deployments Full Access"
	h.script(t, "credentials.mjs", map[string]string{"CREDENTIAL_NAME": name, "CREDENTIAL_ROLE": role}, map[string]func() error{
		"created": func() error {
			c, ok := findCredential(h.credentials(t, h.admin), name)
			if !ok {
				return fmt.Errorf("no credential %q after creating it in the console", name)
			}
			if !slices.Equal(c.Roles, []string{role}) {
				return fmt.Errorf("credential %q has roles %v, want [%s]", name, c.Roles, role)
			}
			return nil
		},
	})
	if _, ok := findCredential(h.credentials(t, h.admin), name); ok {
		t.Errorf("credential %q is still listed after it was revoked in the console", name)
	}
}

// testAgentsLive: the Agents page shows a second agent connecting and then disconnecting,
// without a reload.
func (h *harness) testAgentsLive(t *testing.T) {
	const edge = "edge-cluster"
	var p *sortie.Process
	h.script(t, "agents.mjs", map[string]string{"SORTIE_EDGE_ACCOUNT": edge}, map[string]func() error{
		"start-agent": func() error {
			p = h.agent(t, edge)
			return nil
		},
		"stop-agent": func() error {
			if p == nil {
				return fmt.Errorf("no agent was started")
			}
			p.Stop(t)
			sortie.WaitFor(t, 30*time.Second, "agent "+edge+" to disconnect", func() bool {
				return len(sortie.ConnectedAgents(t, h.url, h.admin, edge)) == 0
			})
			return nil
		},
	})
}

// pipelineView is the part of GET /pipelines/{id} the tests read.
type pipelineView struct {
	Status    string `json:"status"`
	Decisions []struct {
		Action string `json:"action"`
		Actor  struct {
			Type, Name string
		} `json:"actor"`
	} `json:"decisions"`
}

func (h *harness) pipeline(t *testing.T, id string) pipelineView {
	t.Helper()
	status, body := sortie.Call(t, "GET", h.url+"/pipelines/"+id, h.admin, nil)
	if status != 200 {
		t.Fatalf("GET /pipelines/%s: %d %s", id, status, body)
	}
	return decode[pipelineView](t, body)
}

// startPipeline posts a deploy.yml (as JSON) as the Armory CLI does.
func (h *harness) startPipeline(t *testing.T, body any) string {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", h.url+"/pipelines/kubernetes", strings.NewReader(string(data)))
	req.Header.Set("Content-Type", "application/vnd.start.kubernetes.pipeline.v2+json")
	req.Header.Set("Accept", "application/vnd.start.kubernetes.pipeline.v2+json")
	req.Header.Set("Authorization", "Bearer "+h.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		PipelineID string `json:"pipelineId"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusAccepted || r.PipelineID == "" {
		t.Fatalf("start pipeline: %d %v", resp.StatusCode, err)
	}
	return r.PipelineID
}

func (h *harness) awaitStatus(t *testing.T, id, want string) pipelineView {
	t.Helper()
	var v pipelineView
	sortie.WaitFor(t, 90*time.Second, "pipeline "+id+" to be "+want, func() bool {
		v = h.pipeline(t, id)
		return v.Status == want
	})
	return v
}

// canary is a deploy.yml of app in namespace ns of the shared cluster: a canary to 25%, then
// a manual approval.
func canary(app, ns, image string) map[string]any {
	return map[string]any{
		"version": "v1", "kind": "kubernetes", "application": app,
		"targets": map[string]any{"prod": map[string]any{"account": account, "namespace": ns, "strategy": "canary"}},
		"strategies": map[string]any{"canary": map[string]any{"canary": map[string]any{"steps": []any{
			map[string]any{"setWeight": map[string]any{"weight": 25}},
			map[string]any{"pause": map[string]any{"untilApproved": true}},
		}}}},
		"manifests": []any{map[string]any{"inline": fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[2]s
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  labels: {app: %[1]s}
spec:
  replicas: 4
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: %[1]s
        image: %[3]s
`, app, ns, image)}},
		"context": map[string]string{"commit": "abc123"},
	}
}

// testDeployments: two deployments started through the API; the console's detail view sees
// each reach AWAITING_APPROVAL; one is approved there (SUCCEEDED), the other aborted
// (CANCELLED). The server records the admin user as the actor of both.
func (h *harness) testDeployments(t *testing.T) {
	// The first version of an application goes straight to 100%: deploy one of each first.
	first := []string{h.startPipeline(t, canary("web", "console-web", "web:1.0")), h.startPipeline(t, canary("api", "console-api", "api:1.0"))}
	for _, id := range first {
		h.awaitStatus(t, id, "SUCCEEDED")
	}
	approve := h.startPipeline(t, canary("web", "console-web", "web:2.0"))
	abort := h.startPipeline(t, canary("api", "console-api", "api:2.0"))
	// The stale page: an approval before the deployment starts (no first version needed),
	// approved through the API while the console's Abort dialog is open.
	staleApp := canary("cfg", "console-cfg", "cfg:1.0")
	staleApp["targets"].(map[string]any)["prod"].(map[string]any)["constraints"] = map[string]any{
		"beforeDeployment": []any{map[string]any{"pause": map[string]any{"untilApproved": true}}},
	}
	stale := h.startPipeline(t, staleApp)
	h.script(t, "deployments.mjs", map[string]string{"APPROVE_PIPELINE": approve, "ABORT_PIPELINE": abort, "STALE_PIPELINE": stale},
		map[string]func() error{
			"approve-behind-the-page": func() error {
				if status, body := sortie.Call(t, "POST", h.url+"/pipelines/"+stale+"/approve", h.admin, nil); status != 200 {
					return fmt.Errorf("approve %s through the API: %d %s", stale, status, body)
				}
				h.awaitStatus(t, stale, "SUCCEEDED")
				return nil
			},
		})
	if v := h.pipeline(t, stale); v.Status != "SUCCEEDED" || len(v.Decisions) != 1 || v.Decisions[0].Action != "approve" || v.Decisions[0].Actor.Type == "user" {
		t.Errorf("the stale page's abort changed pipeline %s: %+v, want SUCCEEDED with the API's approval alone", stale, v)
	}

	for id, want := range map[string][2]string{approve: {"SUCCEEDED", "approve"}, abort: {"CANCELLED", "abort"}} {
		v := h.awaitStatus(t, id, want[0])
		if len(v.Decisions) != 1 || v.Decisions[0].Action != want[1] || v.Decisions[0].Actor.Type != "user" || v.Decisions[0].Actor.Name != "admin" {
			t.Errorf("pipeline %s: decisions %+v, want one %s by user admin", id, v.Decisions, want[1])
		}
	}
}

// testSSO: a person of the identity provider signs in through it; their group gives them a
// role in Sortie, which the console shows, and the server has the user with that role.
func (h *harness) testSSO(t *testing.T) {
	h.script(t, "sso.mjs", map[string]string{
		"SSO_EMAIL": h.sso.email, "SSO_PASSWORD": h.sso.password, "SSO_NAME": h.sso.name, "SSO_ROLE": h.sso.role,
	}, nil)
	status, body := connect(t, h.url, h.admin, "sortie.identity.v1.IdentityService/ListUsers", map[string]any{})
	if status != 200 {
		t.Fatalf("ListUsers: %d %s", status, body)
	}
	users := decode[struct {
		Users []struct {
			Login    string   `json:"login"`
			Roles    []string `json:"roles"`
			External bool     `json:"external"`
		} `json:"users"`
	}](t, body).Users
	i := slices.IndexFunc(users, func(u struct {
		Login    string   `json:"login"`
		Roles    []string `json:"roles"`
		External bool     `json:"external"`
	}) bool {
		return u.Login == strings.ToLower(h.sso.email)
	})
	if i < 0 {
		t.Fatalf("no user %s after the SSO sign-in; users: %s", h.sso.email, body)
	}
	if u := users[i]; !u.External || !slices.Equal(u.Roles, []string{h.sso.role}) {
		t.Errorf("SSO user %+v, want external with roles [%s]", u, h.sso.role)
	}
}

// testDeviceLogin: `sortie login` without a secret prints a code; the admin approves it at
// /console/device; the CLI saves a user token and lists the agents with it.
func (h *harness) testDeviceLogin(t *testing.T) {
	cli := filepath.Join(sortie.BinDir, "sortie")
	configDir := t.TempDir()
	login := exec.Command(cli, "login", "--addr", h.url, "--config-dir", configDir)
	// The CLI prints the URL and the code on stderr (stdout stays for -o json|yaml).
	pr, pw := io.Pipe()
	login.Stdout, login.Stderr = pw, pw
	var out sortie.SyncBuffer
	if err := login.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := login.Wait()
		pw.Close()
		done <- err
	}()
	codes := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			if c := codeRE.FindString(sc.Text()); c != "" {
				select {
				case codes <- c:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { _ = login.Process.Kill() })
	var code string
	select {
	case code = <-codes:
	case err := <-done:
		t.Fatalf("sortie login ended before printing a code (%v):\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("sortie login printed no code within 30 s:\n%s", out.String())
	}
	if !strings.Contains(out.String(), h.url+"/console/device") {
		t.Errorf("sortie login does not print the verification URL %s/console/device:\n%s", h.url, out.String())
	}

	h.script(t, "device.mjs", map[string]string{"USER_CODE": code}, nil)

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sortie login failed after the approval (%v):\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("sortie login did not finish within 60 s of the approval:\n%s", out.String())
	}
	agents := exec.Command(cli, "agents", "list", "--addr", h.url, "--config-dir", configDir)
	list, err := agents.CombinedOutput()
	if err != nil || !strings.Contains(string(list), account) {
		t.Fatalf("sortie agents list with the device login: %v\n%s", err, list)
	}
}

// testIsolation: the admin creates environment B in the console and invites a user to B
// only; the user accepts the invitation in the browser, signs in, and sees nothing of the
// default environment A: no agents, deployments or credentials of A.
func (h *harness) testIsolation(t *testing.T) {
	var ids []string
	for _, c := range h.credentials(t, h.admin) {
		ids = append(ids, c.ClientID)
	}
	status, body := sortie.Call(t, "GET", h.url+"/environments", h.admin, nil)
	envs := decode[[]struct{ ID, Name string }](t, body)
	if status != 200 || len(envs) != 1 {
		t.Fatalf("GET /environments before creating B: %d %s, want the default environment alone", status, body)
	}
	const envB = "team-b"
	h.script(t, "isolation.mjs", map[string]string{
		"ENV_B":           envB,
		"INVITEE_EMAIL":   "bea@team-b.example",
		"INVITEE_PASS":    "correct horse battery staple",
		"A_ENV_ID":        envs[0].ID,
		"A_CLIENT_IDS":    strings.Join(ids, "\n"),
		"A_AGENT_ACCOUNT": account,
	}, nil)
	status, body = sortie.Call(t, "GET", h.url+"/environments", h.admin, nil)
	if status != 200 || !strings.Contains(string(body), `"`+envB+`"`) {
		t.Errorf("GET /environments after creating %s in the console: %d %s", envB, status, body)
	}
}

// testUserRemoval: a local user (invited and accepted through the API) is signed in; the
// admin removes them on the Users page; their open console loses its session at once and
// their password no longer signs in.
func (h *harness) testUserRemoval(t *testing.T) {
	const email, password = "rex@example.com", "rex's long enough password"
	status, body := connect(t, h.url, h.admin, "sortie.identity.v1.IdentityService/CreateInvitation",
		map[string]any{"email": email, "roles": []string{"Deployments Full Access"}})
	if status != 200 {
		t.Fatalf("CreateInvitation: %d %s", status, body)
	}
	link := decode[struct{ URL string }](t, body).URL
	_, token, ok := strings.Cut(link, "#token=")
	if !ok {
		t.Fatalf("invitation link %q has no #token=", strings.Split(link, "#")[0])
	}
	status, body = connect(t, h.url, "", "sortie.identity.v1.IdentityService/AcceptInvitation",
		map[string]any{"token": token, "name": "Rex", "password": password})
	if status != 200 {
		t.Fatalf("AcceptInvitation: %d %s", status, body)
	}
	login := decode[struct{ Login string }](t, body).Login
	h.script(t, "users.mjs", map[string]string{"REMOVED_LOGIN": login, "REMOVED_PASSWORD": password}, nil)
}
