// Package console_test drives the web console in a real browser: Debian's chromium, headless,
// through Playwright (playwright-core from console/node_modules), against the real
// sortie-server binary with a real sortie-agent on the shared real-cluster harness (Argo
// Rollouts on a private kube-apiserver), a real external OIDC provider (Ory Hydra, from
// e2e/hydra) and the real `sortie` CLI for the device flow.
//
// One server serves every scenario; each scenario is one subtest running one script of
// browser/ with `node`, which launches its own browser with a fresh profile. A script talks
// back to the test through lines on its standard output ("@@step NAME"): the test then acts
// (starts or stops an agent) and answers on the script's standard input. Every page the
// scripts visit is saved as a PNG in $SORTIE_SCREENSHOT_DIR (default e2e/console/screenshots,
// which git ignores); -update-screenshots also copies the key ones into docs/console for the
// README.
package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/e2e/kube"
	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
)

var (
	cluster           *kube.Cluster
	updateScreenshots = flag.Bool("update-screenshots", false, "copy the key screenshots of the run into docs/console (shown by the README)")
)

// chromiumPath is Debian's chromium; test.sh installs it.
const chromiumPath = "/usr/bin/chromium"

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := sortie.BuildBinaries()
	if err == nil {
		err = buildCLI(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sortie.BinDir = dir
	code := kube.Main(m, &cluster, kube.WithArgoRollouts())
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildCLI adds the sortie CLI to the binaries, for the device-flow login.
func buildCLI(dir string) error {
	cmd := exec.Command("go", "build", "-o", dir, "github.com/sortie-dev/sortie/cmd/sortie")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build sortie: %w", err)
	}
	return nil
}

// screenshotDir is where the scripts save their PNGs: kept after the run for inspection.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SORTIE_SCREENSHOT_DIR")
	if dir == "" {
		dir = "screenshots"
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// prerequisites fails the test with what to install when the browser tooling is missing.
func prerequisites(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the browser tests run Playwright scripts with node (test.sh installs it with the console's toolchain)")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: apt-get install chromium (test.sh does)", chromiumPath)
	}
	if _, err := os.Stat(filepath.Join("..", "..", "console", "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatal("console/node_modules/playwright-core is missing: run 'npm ci' in console/ (test.sh does)")
	}
}

// TestConsole starts one server, agent and identity provider and runs every scenario
// against them, in order (later scenarios find what earlier ones left, and never rely on it).
func TestConsole(t *testing.T) {
	prerequisites(t)
	h := start(t)
	t.Logf("screenshots: %s", h.shots)

	t.Run("SignIn", func(t *testing.T) { h.script(t, "signin.mjs", nil, nil) })
	t.Run("Credentials", h.testCredentials)
	t.Run("AgentsLive", h.testAgentsLive)
	t.Run("DeploymentApproveAbort", h.testDeployments)
	t.Run("SSO", h.testSSO)
	t.Run("DeviceLogin", h.testDeviceLogin)
	t.Run("UserRemoval", h.testUserRemoval)
	t.Run("EnvironmentIsolation", h.testIsolation)

	if *updateScreenshots && !t.Failed() {
		h.copyKeyScreenshots(t)
	}
}

// keyScreenshots are copied into docs/console by -update-screenshots: the README's name of
// each, and the screenshot of the run it is.
var keyScreenshots = map[string]string{
	"signin":                       "signin",
	"agents":                       "agents-second-connected",
	"deployment-awaiting-approval": "deployment-awaiting-approval",
	"credentials-secret":           "credentials-secret",
	"users":                        "users",
}

func (h *harness) copyKeyScreenshots(t *testing.T) {
	docs := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(docs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, shot := range keyScreenshots {
		data, err := os.ReadFile(filepath.Join(h.shots, shot+".png"))
		if err != nil {
			t.Fatalf("key screenshot %s: %v", shot, err)
		}
		if err := os.WriteFile(filepath.Join(docs, name+".png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("copied %d screenshots into %s", len(keyScreenshots), docs)
}

// script runs browser/<name> with node and the harness's environment plus env. Each line
// "@@step NAME" it prints runs steps[NAME]; the script reads "ok" (or "error: ...") on its
// standard input. The test fails with the script's output when it exits non-zero.
func (h *harness) script(t *testing.T, name string, env map[string]string, steps map[string]func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("browser", name))
	cmd.Env = append(os.Environ(), h.env()...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out sortie.SyncBuffer
	cmd.Stderr = &out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	var stepErr error
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(&out, line)
		step, ok := strings.CutPrefix(line, "@@step ")
		if !ok {
			continue
		}
		reply := "ok"
		if f := steps[step]; f == nil {
			stepErr = fmt.Errorf("the script asked for step %q, which the test does not have", step)
		} else {
			stepErr = f()
		}
		if stepErr != nil {
			reply = "error: " + stepErr.Error()
		}
		_, _ = io.WriteString(stdin, reply+"\n")
	}
	err = cmd.Wait()
	if err != nil || stepErr != nil {
		t.Fatalf("%s failed after %s (%v; step: %v); its output:\n%s", name, time.Since(start).Round(time.Second), err, stepErr, out.String())
	}
	t.Logf("%s passed in %s; its output:\n%s", name, time.Since(start).Round(time.Second), out.String())
}

// connect calls a Connect procedure with the JSON codec (with no token when tok is empty)
// and returns the status and body.
func connect(t testing.TB, base, tok, procedure string, req any) (int, []byte) {
	t.Helper()
	if tok != "" {
		return sortie.Call(t, "POST", base+"/"+procedure, tok, req)
	}
	data, _ := json.Marshal(req)
	resp, err := http.Post(base+"/"+procedure, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", procedure, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// decode unmarshals a JSON body or fails the test.
func decode[T any](t testing.TB, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

var codeRE = regexp.MustCompile(`\b[A-Z0-9]{4}-[A-Z0-9]{4}\b`)

func waitHTTP(t testing.TB, u string) {
	t.Helper()
	sortie.WaitFor(t, 30*time.Second, u+" to answer", func() bool {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode < 500
	})
}
