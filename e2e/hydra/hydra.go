// Package hydra runs a real OpenID Connect provider, Ory Hydra v2.3.0, for tests of
// Sortie's single sign-on: it builds Hydra once per machine from the Go tools module in
// tools/hydra into a cache, starts `hydra serve all --dev` with an in-memory store on free
// loopback ports, and answers Hydra's login and consent requests with a small handler of its
// own (a sign-in form over the test users registered with AddUser).
//
//	idp := hydra.Start(t)                  // stopped by t.Cleanup
//	idp.AddUser("ann@example.com", "pw", "deployers")
//	id, secret := idp.CreateClient(sortieURL + "/oauth/sso/callback")
//	// configure Sortie with idp.Issuer(), id, secret
//
// The login form at Hydra's login URL has the fields "Email" and "Password" and a button
// "Sign in"; consent is granted at once with the requested scopes, and the ID token carries
// the user's email, email_verified (true) and groups.
//
// The binary is cached in $SORTIE_E2E_CACHE (default <user cache dir>/sortie-e2e) under
// hydra-<hash of tools/hydra/go.mod and go.sum>; the first build takes one to two minutes.
// SORTIE_HYDRA_BIN names a prebuilt binary instead.
package hydra

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBin names a prebuilt Hydra binary to use instead of building one.
const EnvBin = "SORTIE_HYDRA_BIN"

// buildTags are the tags Hydra's own release builds use for SQLite, which DSN=memory needs.
const buildTags = "sqlite,sqlite_omit_load_extension"

// recipe is hashed with the module files: bump it when the build command changes.
const recipe = "1 " + buildTags

// Hydra is a running Hydra with its login and consent handler.
type Hydra struct {
	t      testing.TB
	public string // public base URL, also the issuer
	admin  string // admin base URL
	login  *httptest.Server
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    string        // Hydra's log file

	mu      sync.Mutex // guards users and stopped
	users   map[string]User
	stopped bool
}

// User is a test user of the provider.
type User struct {
	Email    string
	Password string
	Groups   []string
	// Subject is the OIDC sub: "user-" and the hex SHA-256 of the lower-cased email, so it
	// never equals the email.
	Subject string
	// Claims are more ID token claims, set with SetClaims; they override the defaults
	// (email, email_verified true, groups).
	Claims map[string]any
}

// Build returns the path of the Hydra binary, building it into the cache when missing.
// Concurrent builds (several test binaries) wait for one another.
func Build() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		return p, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("hydra: cannot locate the package source")
	}
	modDir := filepath.Join(filepath.Dir(file), "..", "..", "tools", "hydra")
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\n", recipe)
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(modDir, name))
		if err != nil {
			return "", fmt.Errorf("hydra: read the tools module (set %s to a prebuilt binary instead): %w", EnvBin, err)
		}
		fmt.Fprintf(h, "== %s\n", name)
		h.Write(data)
	}
	root := os.Getenv("SORTIE_E2E_CACHE")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("hydra: no cache directory: %w", err)
		}
		root = filepath.Join(cache, "sortie-e2e")
	}
	dir := filepath.Join(root, "hydra-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(dir, "hydra")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("hydra: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("hydra: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("hydra: lock the build: %w", err)
	}
	// Closing the file (deferred above) releases the lock.
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp := bin + ".tmp"
	cmd := exec.Command(goBin, "build", "-buildvcs=false", "-tags", buildTags, "-o", tmp, "github.com/ory/hydra/v2")
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=readonly"), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("hydra: build (in %s): %v\n%s", modDir, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("hydra: %w", err)
	}
	return bin, nil
}

// Start builds (or takes from the cache) and starts Hydra and its login and consent
// handler; t.Cleanup stops both. It fails t when Hydra does not become ready; Hydra's log is
// printed when the test fails.
func Start(t testing.TB) *Hydra {
	t.Helper()
	bin, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	h := &Hydra{t: t, users: map[string]User{}, log: filepath.Join(t.TempDir(), "hydra.log")}
	h.login = httptest.NewServer(http.HandlerFunc(h.serveLoginConsent))
	t.Cleanup(func() {
		h.Stop()
		h.login.Close()
		if t.Failed() {
			t.Logf("hydra log (%s), last lines:\n%s", h.log, logTail(h.log, 40))
		}
	})
	for attempt := 1; ; attempt++ {
		err := h.start(bin)
		if err == nil {
			return h
		}
		data, _ := os.ReadFile(h.log)
		if attempt < 3 && bytes.Contains(data, []byte("address already in use")) {
			continue // a port picked was taken in the meantime
		}
		t.Fatalf("hydra: %v (log: %s)\n%s", err, h.log, logTail(h.log, 40))
	}
}

func (h *Hydra) start(bin string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	h.public = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	h.admin = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logFile, err := os.Create(h.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = append(os.Environ(),
		"DSN=memory",
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", ports[0]), "SERVE_PUBLIC_HOST=127.0.0.1",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", ports[1]), "SERVE_ADMIN_HOST=127.0.0.1",
		"URLS_SELF_ISSUER="+h.public,
		"URLS_LOGIN="+h.login.URL+"/login",
		"URLS_CONSENT="+h.login.URL+"/consent",
		"URLS_ERROR="+h.login.URL+"/error",
		"SECRETS_SYSTEM="+hex.EncodeToString(secret),
		"LOG_LEVEL=info",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	h.mu.Lock()
	h.cmd, h.exited, h.stopped = cmd, exited, false
	h.mu.Unlock()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for _, u := range []string{h.admin + "/health/ready", h.public + "/.well-known/openid-configuration"} {
		for {
			resp, err := client.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-exited:
				return fmt.Errorf("hydra exited before it was ready")
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				h.Stop()
				return fmt.Errorf("hydra not ready at %s after 90s", u)
			}
		}
	}
	return nil
}

// Stop stops Hydra (the login handler stays until the test ends); the issuer's port is
// closed afterwards, as for a provider that is down. Stop is idempotent.
func (h *Hydra) Stop() {
	h.mu.Lock()
	cmd, exited, stopped := h.cmd, h.exited, h.stopped
	h.stopped = true
	h.mu.Unlock()
	if cmd == nil || stopped {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Issuer returns the provider's issuer URL (its public base URL, no trailing slash).
func (h *Hydra) Issuer() string { return h.public }

// AdminURL returns the base URL of Hydra's admin API.
func (h *Hydra) AdminURL() string { return h.admin }

// LogPath returns the file Hydra logs to.
func (h *Hydra) LogPath() string { return h.log }

// AddUser registers a test user who may sign in at the provider with email and password and
// whose ID token carries groups. Registering an email again replaces that user's password
// and groups (the subject stays): the way to take a group away between two sign-ins.
func (h *Hydra) AddUser(email, password string, groups ...string) User {
	key := strings.ToLower(email)
	sum := sha256.Sum256([]byte(key))
	u := User{Email: email, Password: password, Groups: append([]string{}, groups...), Subject: "user-" + hex.EncodeToString(sum[:8])}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.users[key] = u
	return u
}

// SetClaims sets more ID token claims for the registered user email (a "name", or
// "email_verified": false), overriding the defaults; it fails the test for an unknown email.
func (h *Hydra) SetClaims(email string, claims map[string]any) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	u, ok := h.users[strings.ToLower(email)]
	if !ok {
		h.t.Fatalf("hydra: SetClaims for %s, who was never added", email)
	}
	u.Claims = claims
	h.users[strings.ToLower(email)] = u
}

// CreateClient registers a confidential OAuth client (client_secret_basic, authorization
// code grant, scopes openid email profile groups) with one redirect URI and returns its id
// and secret. It fails the test on error.
func (h *Hydra) CreateClient(redirectURI string) (id, secret string) {
	h.t.Helper()
	id, secret, err := h.createClient(redirectURI)
	if err != nil {
		h.t.Fatalf("hydra: create client: %v", err)
	}
	return id, secret
}

func (h *Hydra) createClient(redirectURI string) (string, string, error) {
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	err := h.adminCall(context.Background(), http.MethodPost, "/admin/clients", map[string]any{
		"client_name":                "sortie-test",
		"redirect_uris":              []string{redirectURI},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "openid email profile groups",
		"token_endpoint_auth_method": "client_secret_basic",
	}, &out)
	if err != nil {
		return "", "", err
	}
	if out.ClientID == "" || out.ClientSecret == "" {
		return "", "", errors.New("hydra returned no client id or secret")
	}
	return out.ClientID, out.ClientSecret, nil
}

// adminCall sends a JSON request to Hydra's admin API and decodes the JSON answer into out.
func (h *Hydra) adminCall(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.admin+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// logTail returns the last n lines of a log file, each cut to 500 bytes.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "..."
		}
	}
	return strings.Join(lines, "\n")
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
