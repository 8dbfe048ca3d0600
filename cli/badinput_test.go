package cli_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestBadInput: every wrong command line, file or login gets a precise message and a
// non-zero exit, and no pipeline is created.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	dir := t.TempDir()
	good := gatedDir(t)
	write := func(name, content string) string { return writeFile(t, dir, name, content) }
	if err := os.MkdirAll(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A directory cannot be read as a file by anyone, root included (CI runs as root, which
	// reads a file of mode 0 too).
	unreadable := filepath.Join(dir, "deploy.yml")
	if err := os.MkdirAll(unreadable, 0o755); err != nil {
		t.Fatal(err)
	}
	missingManifest := write("missing.yml", "application: web\ntargets:\n  prod: {account: dev-cluster, namespace: web}\nmanifests:\n  - path: k8s/missing.yaml\n")
	emptyDirManifest := write("emptydir.yml", "application: web\ntargets:\n  prod: {account: dev-cluster}\nmanifests:\n  - path: empty\n")
	write("k8s/app.yaml", appYAML)
	stranger := s.user(t) // never logged in

	for _, tc := range []struct {
		name string
		u    *user
		args []string
		code int
		want string
	}{
		{"missing deploy file", u, []string{"deploy", "start", "-f", filepath.Join(dir, "nope.yml")}, 1,
			`the deploy file "` + filepath.Join(dir, "nope.yml") + `" does not exist`},
		{"directory as deploy file", u, []string{"deploy", "start", "-f", dir}, 1, "is a directory, not a file"},
		{"unreadable deploy file", u, []string{"deploy", "start", "-f", unreadable}, 1,
			`the deploy file "` + unreadable + `" is a directory, not a file`},
		{"empty deploy file", u, []string{"deploy", "start", "-f", write("empty.yml", "")}, 1, "empty.yml: the deploy file is empty"},
		{"YAML syntax error", u, []string{"deploy", "start", "-f", write("syntax.yml", "application: web\ntargets:\n  prod:\n    account: dev-cluster: x\n")}, 1,
			"syntax.yml:4:25: invalid YAML: mapping values are not allowed in this context"},
		{"YAML tab indentation", u, []string{"deploy", "start", "-f", write("tab.yml", "application: web\ntargets:\n\tprod: {}\n")}, 1,
			"tab.yml:3:1: invalid YAML: found character that cannot start any token"},
		{"not a mapping", u, []string{"deploy", "start", "-f", write("list.yml", "- application: web\n")}, 1,
			"list.yml:1:1: the deploy file must be a mapping of keys (application, targets, manifests, ...), not a list"},
		{"two documents", u, []string{"deploy", "start", "-f", write("two.yml", "application: a\n---\napplication: b\n")}, 1,
			"two.yml:2:1: a second YAML document: a deploy file holds one"},
		{"manifest path does not exist", u, []string{"deploy", "start", "-f", missingManifest}, 1,
			`missing.yml:5:11: manifests[0].path: "k8s/missing.yaml" does not exist (looked for ` + filepath.Join(dir, "k8s/missing.yaml") + `; paths are relative to the deploy file)`},
		{"manifest directory without manifests", u, []string{"deploy", "start", "-f", emptyDirManifest}, 1,
			`emptydir.yml:5:11: manifests[0].path: the directory "empty" holds no .yaml or .yml files`},
		{"unknown target", u, []string{"deploy", "start", "-f", good, "-t", "qa"}, 2,
			`-t "qa": ` + good + ` has no such target (its targets: prod, staging)`},
		{"context without =", u, []string{"deploy", "start", "-f", good, "--add-context", "commit"}, 2, `invalid argument "commit" for "--add-context" flag: commit must be formatted as key=value`},
		{"context with an empty key", u, []string{"deploy", "start", "-f", good, "--add-context", "=v"}, 2, "--add-context: a key is empty; use key=value"},
		{"missing -f", u, []string{"deploy", "start"}, 2, "-f is required"},
		{"server-side validation", u, []string{"deploy", "start", "-f", write("noaccount.yml", strings.Replace(gatedDeploy, "account: dev-cluster\n    namespace: gated\n", "account: nowhere\n    namespace: gated\n", 1)), "-t", "prod"}, 1,
			"422 Unprocessable Entity"},
		{"not logged in", stranger, []string{"deploy", "start", "-f", good}, 1, "not logged in to " + s.URL + ": run 'sortie login"},
		{"server down", u, []string{"deploy", "list", "--addr", "127.0.0.1:1", "--client-id", "x", "--client-secret", "y"}, 1,
			"cannot reach the Sortie server at http://127.0.0.1:1 (connection refused): is it running?"},
		{"half a credential", u, []string{"deploy", "list", "--client-id", "x"}, 2, "--client-id and --client-secret go together"},
		{"bad output format", u, []string{"deploy", "list", "-o", "xml"}, 2, `-o "xml": use text, json or yaml`},
		{"missing pipeline id", u, []string{"deploy", "status"}, 2, "accepts 1 arg(s), received 0"},
		{"unknown flag", u, []string{"deploy", "start", "--wait"}, 2, "unknown flag: --wait"},
		{"not a number", u, []string{"deploy", "list", "--limit", "ten"}, 2, `invalid argument "ten" for "--limit" flag: not a whole number`},
		{"not a duration", u, []string{"deploy", "status", "x", "--watch", "--poll-interval", "5"}, 2,
			`invalid argument "5" for "--poll-interval" flag: not a duration (for example 500ms, 5s or 1m)`},
		{"unknown command", u, []string{"deploy", "restart"}, 2, `unknown command "restart" for "sortie deploy"`},
		{"bad --addr", u, []string{"agents", "list", "--addr", "ftp://x"}, 2, `--addr "ftp://x": use an http:// or https:// URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.u.run(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant it to hold:\n%s", r.code, tc.code, r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	// Nothing was sent: no pipeline exists.
	if out := u.mustRun(t, "deploy", "list").stdout; out != "No pipelines.\n" {
		t.Errorf("bad input created pipelines:\n%s", out)
	}

	// What the CLI can check itself never reaches the server, not even for a token: the same
	// inputs, with credentials in the environment, through a proxy that counts requests.
	var requests atomic.Int32
	target, _ := url.Parse(s.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	ci := &user{s: s, configDir: t.TempDir(), env: map[string]string{"SORTIE_ADDR": proxy.URL, "SORTIE_CLIENT_ID": s.ClientID, "SORTIE_CLIENT_SECRET": s.ClientSecret}}
	for _, args := range [][]string{
		{"deploy", "start", "-f", filepath.Join(dir, "nope.yml")},
		{"deploy", "start", "-f", filepath.Join(dir, "syntax.yml")},
		{"deploy", "start", "-f", missingManifest},
		{"deploy", "start", "-f", good, "-t", "qa"},
		{"deploy", "start", "-f", good, "--add-context", "commit"},
		{"deploy", "start", "-f", good, "--poll-interval", "0s", "--watch"},
		{"deploy", "list", "--status", "DONE"},
		{"deploy", "list", "-o", "xml"},
	} {
		if r := ci.run(t, args...); r.code == 0 {
			t.Errorf("sortie %s: exit 0", strings.Join(args, " "))
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("bad input sent %d requests to the server", n)
	}
	// The proxy does count: a good command goes through it.
	ci.mustRun(t, "deploy", "list")
	if requests.Load() == 0 {
		t.Error("the proxy counted no request of a good command")
	}
}
