package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store/redistest"
)

const (
	// startTimeout bounds how long run may take to start listening.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long run may take to return after its context is cancelled.
	stopTimeout = 15 * time.Second
)

func TestMain(m *testing.M) {
	// The tests configure run through its arguments only: variables of the machine running
	// them (a developer's SORTIE_REDIS_URL, say) must not leak in.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "SORTIE_") {
			os.Unsetenv(name)
		}
	}
	code := m.Run()
	cleanupBinary()
	os.Exit(code)
}

// syncBuffer is an io.Writer safe to read while run writes to it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one run of sortie-server in this process.
type server struct {
	// URL is the public base URL run announced on its listening channel.
	URL string
	// Base is where the listener really is (it differs from URL with --public-url).
	Base   string
	stdout *syncBuffer
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
	// stopped is set by stop; only the test goroutine touches it.
	stopped bool
}

// startServer runs run(args) in a goroutine and waits until it listens. The server is
// stopped, and its clean exit checked, when the test ends.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	listening := make(chan string, 1)
	go func() { s.done <- run(ctx, args, s.stdout, s.stderr, listening) }()
	select {
	case s.URL = <-listening:
	case err := <-s.done:
		cancel()
		t.Fatalf("run(%q) returned before listening: %v\nstderr:\n%s", args, err, s.stderr)
	case <-time.After(startTimeout):
		cancel()
		t.Fatalf("run(%q) not listening after %v\nstderr:\n%s", args, startTimeout, s.stderr)
	}
	t.Cleanup(func() { s.stop(t) })
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("run announced an unparsable URL %q: %v", s.URL, err)
	}
	s.Base = u.Scheme + "://" + listenAddr(t, s.stderr.String())
	return s
}

// stop cancels run's context, as SIGTERM does, and checks that run returns nil promptly.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("run returned %v after its context was cancelled, want nil", err)
		}
	case <-time.After(stopTimeout):
		t.Errorf("run did not return within %v of cancellation", stopTimeout)
	}
}

// logLines decodes the JSON log lines written to stderr, failing on any other line.
func logLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stderr line is not a JSON log record: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// listenAddr returns the listener address from the "listening" log record.
func listenAddr(t *testing.T, stderr string) string {
	t.Helper()
	for _, rec := range logLines(t, stderr) {
		if rec["msg"] == "listening" {
			if addr, ok := rec["addr"].(string); ok && addr != "" {
				return addr
			}
		}
	}
	t.Fatalf("no \"listening\" log record with an addr in stderr:\n%s", stderr)
	return ""
}

// runFails runs run(args), which must fail before serving, and returns its error and output.
func runFails(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &out, &errOut, listening) }()
	select {
	case err = <-done:
	case u := <-listening:
		cancel()
		<-done
		t.Fatalf("run(%q) started serving on %s, want an error", args, u)
	case <-time.After(startTimeout):
		cancel()
		t.Fatalf("run(%q) neither failed nor listened within %v", args, startTimeout)
	}
	if err == nil {
		t.Fatalf("run(%q) = nil, want an error", args)
	}
	return out.String(), errOut.String(), err
}

// newDataDir returns a data directory that does not exist yet, so run creates it.
func newDataDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "data")
}

// readAdmin reads admin-credentials.json from dataDir.
func readAdmin(t *testing.T, dataDir string) identity.AdminCredential {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "admin-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var admin identity.AdminCredential
	if err := json.Unmarshal(data, &admin); err != nil {
		t.Fatalf("admin-credentials.json: %v\n%s", err, data)
	}
	return admin
}

// checkMode fails unless path has exactly the permission bits want.
func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// call sends a request with an optional bearer token and JSON body, checks the status and
// decodes a JSON reply into out (when not nil).
func call(t *testing.T, c *http.Client, method, url, token string, body any, wantStatus int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s = %d, want %d: %s", method, url, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, data, err)
		}
	}
}

// issueToken runs the client-credentials grant with a form body and returns the access token.
func issueToken(t *testing.T, c *http.Client, base, clientID, clientSecret string) string {
	t.Helper()
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {clientID},
		"client_secret": {clientSecret},
	}
	resp, err := c.Post(base+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("POST /oauth/token: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /oauth/token = %d, want 200: %s", resp.StatusCode, data)
	}
	var tok identity.TokenResponse
	if err := json.Unmarshal(data, &tok); err != nil {
		t.Fatalf("token reply %s: %v", data, err)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") || tok.ExpiresIn <= 0 {
		t.Fatalf("token reply %s lacks a bearer token with a lifetime", data)
	}
	return tok.AccessToken
}

// principal is the part of WhoAmIResponse the tests compare, in Connect's JSON form.
type principal struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	OrgName string   `json:"orgName"`
	Roles   []string `json:"roles"`
}

// whoAmI calls IdentityService/WhoAmI with the Connect protocol and a JSON body.
func whoAmI(t *testing.T, c *http.Client, base, token string) principal {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/sortie.identity.v1.IdentityService/WhoAmI", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("WhoAmI: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("WhoAmI = %d, want 200: %s", resp.StatusCode, data)
	}
	var out struct {
		Principal principal `json:"principal"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("WhoAmI reply %s: %v", data, err)
	}
	return out.Principal
}

var (
	clientIDLine     = regexp.MustCompile(`(?m)^\s*client id:\s+(\S+)\s*$`)
	clientSecretLine = regexp.MustCompile(`(?m)^\s*client secret:\s+(\S+)\s*$`)
)

func TestFirstStart(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	s := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "debug")
	c := &http.Client{Timeout: 10 * time.Second}

	stdout := s.stdout.String()
	idMatch, secretMatch := clientIDLine.FindStringSubmatch(stdout), clientSecretLine.FindStringSubmatch(stdout)
	if idMatch == nil || secretMatch == nil {
		t.Fatalf("stdout lacks the admin client id and secret:\n%s", stdout)
	}
	clientID, secret := idMatch[1], secretMatch[1]
	if n := strings.Count(stdout, secret); n != 1 {
		t.Errorf("stdout shows the secret %d times, want once:\n%s", n, stdout)
	}
	credsPath := filepath.Join(dataDir, "admin-credentials.json")
	for _, want := range []string{credsPath, "Sortie is listening on " + s.URL, s.URL + "/docs", "Console: " + s.URL + "/console/",
		"  console login: admin\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.URL != s.Base {
		t.Errorf("announced URL %q, want http://<listener address> (%s)", s.URL, s.Base)
	}

	checkMode(t, dataDir, 0o700)
	checkMode(t, credsPath, 0o600)
	checkMode(t, filepath.Join(dataDir, "master.key"), 0o600)
	admin := readAdmin(t, dataDir)
	want := identity.AdminCredential{
		ClientID: clientID, ClientSecret: secret,
		TokenEndpoint: s.URL + "/oauth/token", Audience: s.URL, AdminLogin: "admin",
	}
	if diff := cmp.Diff(want, admin, cmpopts.IgnoreFields(identity.AdminCredential{}, "OrgID", "EnvID", "AdminPassword")); diff != "" {
		t.Errorf("admin-credentials.json mismatch (-want +got):\n%s", diff)
	}
	// The admin user's password is shown once, the same as in the file.
	if len(admin.AdminPassword) < identity.MinPasswordLength || strings.Count(stdout, admin.AdminPassword) != 1 ||
		!strings.Contains(stdout, "  password:      "+admin.AdminPassword+"\n") {
		t.Errorf("stdout does not show the admin password of the file (%q) exactly once:\n%s", admin.AdminPassword, stdout)
	}
	if admin.OrgID == "" || admin.EnvID == "" {
		t.Errorf("admin-credentials.json lacks orgId or envId: %+v", admin)
	}

	token := issueToken(t, c, s.URL, clientID, secret)
	got := whoAmI(t, c, s.URL, token)
	wantP := principal{Type: "PRINCIPAL_TYPE_MACHINE", Name: "admin", OrgName: "default", Roles: []string{identity.RoleOrganizationAdmin}}
	if diff := cmp.Diff(wantP, got); diff != "" {
		t.Errorf("WhoAmI principal mismatch (-want +got):\n%s", diff)
	}

	s.stop(t)
	stderr := s.stderr.String()
	logLines(t, stderr) // every line is JSON
	for name, leaked := range map[string]string{"client secret": secret, "access token": token} {
		if strings.Contains(stderr, leaked) {
			t.Errorf("the logs contain the %s:\n%s", name, stderr)
		}
	}
	if !strings.Contains(stderr, `"msg":"master key created"`) {
		t.Errorf("the logs do not tell that a master key was created:\n%s", stderr)
	}
}

// jwksKeyIDs returns the key ids of the server's JWKS, sorted.
func jwksKeyIDs(t *testing.T, c *http.Client, base string) []string {
	t.Helper()
	var jwks struct {
		Keys []struct {
			KeyID string `json:"kid"`
		} `json:"keys"`
	}
	call(t, c, http.MethodGet, base+"/.well-known/jwks.json", "", nil, http.StatusOK, &jwks)
	var ids []string
	for _, k := range jwks.Keys {
		ids = append(ids, k.KeyID)
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		t.Fatal("the JWKS is empty")
	}
	return ids
}

func TestRestartPersistence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		redis bool
	}{
		{name: "embedded"},
		{name: "redis", redis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dataDir := newDataDir(t)
			// A fixed public URL keeps the token issuer stable across restarts, although
			// each start listens on a new port.
			const publicURL = "http://sortie.test:8080"
			args := []string{"--addr", "127.0.0.1:0", "--data-dir", dataDir, "--public-url", publicURL + "/"}
			if tt.redis {
				args = append(args, "--redis-url", redistest.New(t).URL())
			}
			c := &http.Client{Timeout: 10 * time.Second}

			s1 := startServer(t, args...)
			if s1.URL != publicURL {
				t.Errorf("announced URL %q, want the public URL %q without the trailing slash", s1.URL, publicURL)
			}
			credsPath := filepath.Join(dataDir, "admin-credentials.json")
			credsBefore, err := os.ReadFile(credsPath)
			if err != nil {
				t.Fatal(err)
			}
			admin := readAdmin(t, dataDir)
			oldToken := issueToken(t, c, s1.Base, admin.ClientID, admin.ClientSecret)
			var deployer struct {
				ClientID     string   `json:"clientId"`
				ClientSecret string   `json:"clientSecret"`
				Roles        []string `json:"roles"`
			}
			call(t, c, http.MethodPost, s1.Base+"/credentials", oldToken,
				map[string]any{"name": "deployer", "roles": []string{identity.RoleDeploymentsFullAccess}},
				http.StatusCreated, &deployer)
			if deployer.ClientID == "" || deployer.ClientSecret == "" {
				t.Fatalf("POST /credentials returned no client id or secret: %+v", deployer)
			}
			call(t, c, http.MethodPost, s1.Base+"/environments", oldToken,
				map[string]string{"name": "staging"}, http.StatusCreated, nil)
			keysBefore := jwksKeyIDs(t, c, s1.Base)
			s1.stop(t)

			s2 := startServer(t, args...)
			stdout := s2.stdout.String()
			if !strings.Contains(stdout, "Admin credential: see "+credsPath) {
				t.Errorf("second start does not say where the admin credential is:\n%s", stdout)
			}
			if strings.Contains(stdout, admin.ClientSecret) || strings.Contains(stdout, "client secret:") {
				t.Errorf("second start shows the admin secret again:\n%s", stdout)
			}
			credsAfter, err := os.ReadFile(credsPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(credsBefore, credsAfter) {
				t.Errorf("second start rewrote admin-credentials.json:\nbefore %s\nafter %s", credsBefore, credsAfter)
			}
			if diff := cmp.Diff(keysBefore, jwksKeyIDs(t, c, s2.Base)); diff != "" {
				t.Errorf("signing keys changed across the restart (-before +after):\n%s", diff)
			}

			// The token issued before the restart still works, on REST and Connect.
			var envs []struct {
				Name string `json:"name"`
			}
			call(t, c, http.MethodGet, s2.Base+"/environments", oldToken, nil, http.StatusOK, &envs)
			var envNames []string
			for _, e := range envs {
				envNames = append(envNames, e.Name)
			}
			if diff := cmp.Diff([]string{"default", "staging"}, envNames, cmpopts.SortSlices(strings.Compare)); diff != "" {
				t.Errorf("environments after restart (-want +got):\n%s", diff)
			}
			type cred struct {
				ClientID string   `json:"clientId"`
				Name     string   `json:"name"`
				Roles    []string `json:"roles"`
			}
			var creds []cred
			call(t, c, http.MethodGet, s2.Base+"/credentials", oldToken, nil, http.StatusOK, &creds)
			wantCreds := []cred{
				{ClientID: admin.ClientID, Name: "admin", Roles: []string{identity.RoleOrganizationAdmin}},
				{ClientID: deployer.ClientID, Name: "deployer", Roles: []string{identity.RoleDeploymentsFullAccess}},
			}
			sortCreds := cmpopts.SortSlices(func(a, b cred) bool { return a.Name < b.Name })
			if diff := cmp.Diff(wantCreds, creds, sortCreds); diff != "" {
				t.Errorf("credentials after restart (-want +got):\n%s", diff)
			}
			if got := whoAmI(t, c, s2.Base, oldToken); got.OrgName != "default" || got.Name != "admin" {
				t.Errorf("WhoAmI with the old token = %+v, want admin of org default", got)
			}

			// Both credentials still get tokens.
			for _, cr := range []struct{ name, id, secret string }{
				{"admin", admin.ClientID, admin.ClientSecret},
				{"deployer", deployer.ClientID, deployer.ClientSecret},
			} {
				tok := issueToken(t, c, s2.Base, cr.id, cr.secret)
				if got := whoAmI(t, c, s2.Base, tok); got.Name != cr.name || got.OrgName != "default" {
					t.Errorf("WhoAmI with a new token of %s = %+v", cr.name, got)
				}
			}

			_, err = os.Stat(filepath.Join(dataDir, "sortie.db"))
			switch {
			case tt.redis && err == nil:
				t.Error("with --redis-url the embedded store file sortie.db was created anyway")
			case !tt.redis && err != nil:
				t.Errorf("embedded store file: %v", err)
			}
		})
	}
}

// writeMasterKey writes a new valid master key file and returns its path.
func writeMasterKey(t *testing.T) string {
	t.Helper()
	key := make([]byte, identity.MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMasterKeyMismatch(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	args := []string{"--addr", "127.0.0.1:0", "--data-dir", dataDir}
	startServer(t, args...).stop(t)

	stdout, _, err := runFails(t, append(args, "--master-key-file", writeMasterKey(t))...)
	if !errors.Is(err, identity.ErrMasterKeyMismatch) {
		t.Errorf("run with another master key = %v, want ErrMasterKeyMismatch", err)
	}
	if !strings.Contains(err.Error(), "master key cannot decrypt the stored signing keys") {
		t.Errorf("run with another master key = %q, want it to say the master key cannot decrypt the stored signing keys", err)
	}
	if strings.Contains(stdout, "client secret") {
		t.Errorf("a failed start printed a credential:\n%s", stdout)
	}

	// The failed start changed nothing: the right key still serves the stored credential.
	s := startServer(t, args...)
	admin := readAdmin(t, dataDir)
	c := &http.Client{Timeout: 10 * time.Second}
	issueToken(t, c, s.URL, admin.ClientID, admin.ClientSecret)
}

func TestBadFlags(t *testing.T) {
	// Not parallel: one case sets an environment variable.
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantErr: "flag provided but not defined: -no-such-flag"},
		{name: "positional argument", args: []string{"serve"}, wantErr: "unexpected arguments: serve"},
		{name: "tls-cert without tls-key", args: []string{"--tls-cert", "cert.pem"}, wantErr: "--tls-cert and --tls-key go together"},
		{name: "tls-key without tls-cert", args: []string{"--tls-key", "key.pem"}, wantErr: "--tls-cert and --tls-key go together"},
		{name: "public-url with another scheme", args: []string{"--public-url", "ftp://sortie.test"}, wantErr: "--public-url"},
		{name: "public-url without host", args: []string{"--public-url", "http://"}, wantErr: "--public-url"},
		{name: "relative public-url", args: []string{"--public-url", "sortie.test/api"}, wantErr: "--public-url"},
		{name: "bad log-level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "token-ttl below a minute", args: []string{"--token-ttl", "1s"}, wantErr: "--token-ttl"},
		{name: "session-ttl below 5s", args: []string{"--session-ttl", "1s"}, wantErr: "--session-ttl"},
		{name: "session-max-age below session-ttl", args: []string{"--session-ttl", "1h", "--session-max-age", "30m"}, wantErr: "--session-max-age"},
		{name: "key-rotation below a minute", args: []string{"--key-rotation", "30s"}, wantErr: "--key-rotation"},
		{name: "malformed duration", args: []string{"--token-ttl", "soon"}, wantErr: `invalid value "soon" for flag -token-ttl`},
		{name: "bad env value", env: map[string]string{"SORTIE_TOKEN_TTL": "soon"}, wantErr: "SORTIE_TOKEN_TTL"},
		{name: "bad env log level", env: map[string]string{"SORTIE_LOG_LEVEL": "loud"}, wantErr: "--log-level"},
		{name: "negative connection cap", args: []string{"--max-conns-per-ip", "-1"}, wantErr: "--max-conns-per-ip"},
		{name: "negative stream cap", args: []string{"--hub-max-streams-per-ip", "-2"}, wantErr: "--hub-max-streams-per-ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			dataDir := newDataDir(t)
			args := append([]string{"--addr", "127.0.0.1:0", "--data-dir", dataDir}, tt.args...)
			_, _, err := runFails(t, args...)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) = %q, want an error containing %q", args, err, tt.wantErr)
			}
			if _, serr := os.Stat(dataDir); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("a bad configuration created the data directory (stat: %v)", serr)
			}
		})
	}
}

func TestBadFiles(t *testing.T) {
	t.Parallel()
	garbageKey := filepath.Join(t.TempDir(), "garbage.key")
	if err := os.WriteFile(garbageKey, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "master key file without a key", args: []string{"--master-key-file", garbageKey}, wantErr: "must hold 32 random bytes in base64"},
		{name: "missing TLS certificate", args: []string{"--tls-cert", missing, "--tls-key", missing}, wantErr: "load TLS certificate"},
		{name: "address in use", args: []string{"--addr", busy.Addr().String()}, wantErr: "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--addr", "127.0.0.1:0", "--data-dir", newDataDir(t)}, tt.args...)
			stdout, _, err := runFails(t, args...)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) = %q, want an error containing %q", args, err, tt.wantErr)
			}
			if strings.Contains(stdout, "listening") {
				t.Errorf("a failed start claimed to listen:\n%s", stdout)
			}
		})
	}
}

// flagUsage splits flag.PrintDefaults output into each flag's text, keyed by name.
func flagUsage(t *testing.T, usage string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var name string
	for line := range strings.SplitSeq(usage, "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			name, _, _ = strings.Cut(rest, " ")
			out[name] = ""
			continue
		}
		if name != "" && strings.HasPrefix(line, "    \t") {
			out[name] += strings.TrimSpace(line) + " "
		}
	}
	if len(out) == 0 {
		t.Fatalf("no flags in the usage text:\n%s", usage)
	}
	return out
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"--help"}, &stdout, &stderr, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(--help) = %v, want flag.ErrHelp", err)
	}
	usage := stdout.String() + stderr.String()
	if !strings.Contains(usage, "Usage: sortie-server") {
		t.Errorf("help lacks a usage line:\n%s", usage)
	}
	flags := flagUsage(t, usage)
	// Every flag of spec/commands.md, with its variable and the documented default.
	tests := []struct {
		flag, env, defaultText string
	}{
		{"addr", "SORTIE_ADDR", `(default "127.0.0.1:8080")`},
		{"public-url", "SORTIE_PUBLIC_URL", ""},
		{"data-dir", "SORTIE_DATA_DIR", `(default "./data")`},
		{"redis-url", "SORTIE_REDIS_URL", ""},
		{"master-key-file", "SORTIE_MASTER_KEY_FILE", "<data-dir>/master.key"},
		{"tls-cert", "SORTIE_TLS_CERT", ""},
		{"tls-key", "SORTIE_TLS_KEY", ""},
		{"token-ttl", "SORTIE_TOKEN_TTL", "(default 1h0m0s)"},
		{"key-rotation", "SORTIE_KEY_ROTATION", "(default 24h0m0s)"},
		{"session-ttl", "SORTIE_SESSION_TTL", "(default 15m0s)"},
		{"session-max-age", "SORTIE_SESSION_MAX_AGE", "(default 12h0m0s)"},
		{"log-level", "SORTIE_LOG_LEVEL", `(default "info")`},
	}
	for _, tt := range tests {
		text, ok := flags[tt.flag]
		if !ok {
			t.Errorf("help does not list --%s:\n%s", tt.flag, usage)
			continue
		}
		if !strings.Contains(text, "(env "+tt.env+")") {
			t.Errorf("help of --%s does not name %s: %q", tt.flag, tt.env, text)
		}
		if tt.defaultText != "" && !strings.Contains(text, tt.defaultText) {
			t.Errorf("help of --%s lacks %q: %q", tt.flag, tt.defaultText, text)
		}
	}
	for name, text := range flags {
		if name == "version" {
			continue // command line only: a stray SORTIE_VERSION must not stop the server
		}
		if !strings.Contains(text, "(env SORTIE_") {
			t.Errorf("help of --%s names no environment variable: %q", name, text)
		}
	}
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	s := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	c := &http.Client{Timeout: 10 * time.Second}
	admin := readAdmin(t, dataDir)
	issueToken(t, c, s.URL, admin.ClientID, admin.ClientSecret)

	get := func(t *testing.T, path string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d, want 200: %s", path, resp.StatusCode, body)
		}
		return resp, string(body)
	}
	tests := []struct {
		path        string
		contentType string   // prefix of the Content-Type
		contains    []string // substrings of the body
		check       func(t *testing.T, body string)
	}{
		{path: "/healthz", contentType: "application/json", contains: []string{`"status":"ok"`}},
		{path: "/readyz", contentType: "application/json", contains: []string{`"status":"ok"`}},
		{path: "/metrics", contentType: "text/plain", check: func(t *testing.T, body string) {
			if !regexp.MustCompile(`(?m)^sortie_tokens_issued_total 1$`).MatchString(body) {
				t.Errorf("/metrics does not count the one token issued:\n%s", grepLines(body, "sortie_"))
			}
			if !strings.Contains(body, "sortie_http_requests_total{") {
				t.Errorf("/metrics lacks sortie_http_requests_total:\n%s", grepLines(body, "sortie_"))
			}
		}},
		{path: "/openapi.json", contentType: "application/", check: func(t *testing.T, body string) {
			var doc struct {
				OpenAPI string         `json:"openapi"`
				Paths   map[string]any `json:"paths"`
			}
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatalf("/openapi.json is not JSON: %v", err)
			}
			if !strings.HasPrefix(doc.OpenAPI, "3.1") {
				t.Errorf("/openapi.json is OpenAPI %q, want 3.1", doc.OpenAPI)
			}
			for _, p := range []string{"/oauth/token", "/credentials", "/environments"} {
				if _, ok := doc.Paths[p]; !ok {
					t.Errorf("/openapi.json lacks path %s", p)
				}
			}
		}},
		{path: "/openapi.yaml", contentType: "application/", check: func(t *testing.T, body string) {
			if !regexp.MustCompile(`(?m)^openapi: ["']?3\.1`).MatchString(body) {
				t.Errorf("/openapi.yaml does not declare OpenAPI 3.1:\n%.300s", body)
			}
			if !strings.Contains(body, "/oauth/token:") {
				t.Errorf("/openapi.yaml lacks the token endpoint")
			}
		}},
		{path: "/docs", contentType: "text/html", contains: []string{"<html", "openapi"}},
		{path: "/.well-known/openid-configuration", contentType: "application/json",
			contains: []string{fmt.Sprintf(`"issuer":%q`, s.URL), fmt.Sprintf(`"token_endpoint":%q`, s.URL+"/oauth/token")}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			resp, body := get(t, tt.path)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("GET %s Content-Type = %q, want %s...", tt.path, ct, tt.contentType)
			}
			for _, want := range tt.contains {
				if !strings.Contains(body, want) {
					t.Errorf("GET %s lacks %q:\n%.500s", tt.path, want, body)
				}
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
}

// grepLines returns the lines of text containing substr, for failure messages.
func grepLines(text, substr string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// --max-conns-per-ip caps the connections one address holds on the one port: the next is
// closed before it is served, and the server keeps serving the others.
func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", newDataDir(t), "--max-conns-per-ip", "2")
	addr := strings.TrimPrefix(s.Base, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_, _ = over.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := over.Read(make([]byte, 64)); err == nil {
		t.Fatalf("the connection over the cap was served (%d bytes)", n)
	}
	// One of the held connections is served.
	_, _ = held[0].Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = held[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, err := held[0].Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("a connection within the cap: %q, %v", buf[:n], err)
	}
}
