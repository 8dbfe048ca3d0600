package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/cli"
	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim/simagent"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store/boltstore"
)

// offsetClock is the real time plus an offset a test moves forward.
type offsetClock struct {
	mu  sync.Mutex // guards off
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// agentAccount is the account the examples deploy to (the README's agent identifier).
const agentAccount = "dev-cluster"

// server is a real sortie-server built as cmd/sortie-server builds it, on a loopback
// listener, with a simulated agent (an in-memory Argo Rollouts cluster) connected as
// agentAccount.
type server struct {
	URL          string
	ClientID     string // the organization admin
	ClientSecret string
	idClock      *offsetClock // the identity service's clock: tokens expire on it
	id           *identity.Service
	simClock     *offsetClock // the simulated cluster's clock: timed pauses end on it
}

func startServer(t *testing.T) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "sortie.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{URL: "http://" + ln.Addr().String(), idClock: &offsetClock{}, simClock: &offsetClock{}}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	masterKey := bytes.Repeat([]byte{7}, identity.MasterKeySize)
	id, err := identity.New(ctx, log, st, identity.Config{
		Issuer: s.URL, Audiences: []string{s.URL}, TokenTTL: time.Hour, KeyRotation: 24 * time.Hour,
		MasterKey: masterKey, Now: s.idClock.Now, Registerer: reg,
	})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	org, err := id.CreateOrganization(ctx, "acme")
	if err != nil {
		t.Fatalf("create organization: %v", err)
	}
	s.ClientID, s.ClientSecret, s.id = org.Admin.ClientID, org.Secret, id
	agents := hub.New(log, hub.Config{Registerer: reg})
	sealer, err := seal.New(masterKey, "pipelines")
	if err != nil {
		t.Fatal(err)
	}
	engine := pipeline.New(log, st, pipeline.FromHub(agents), sealer, pipeline.Config{
		Holder: agents.InstanceID(), Resync: 100 * time.Millisecond, CommandTimeout: 5 * time.Second, Registerer: reg,
	})
	gw := gateway.New(log, id, agents, reg, gateway.WithPipelines(engine))
	runners := []func(context.Context) error{
		func(ctx context.Context) error { id.Keys().Run(ctx); return nil },
		agents.Run, engine.Run,
		func(ctx context.Context) error { return gateway.Serve(ctx, log, ln, gw.Handler(), nil) },
	}
	done := make(chan error, len(runners))
	for _, run := range runners {
		go func() { done <- run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range runners {
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		}
		st.Close()
	})

	agentToken := s.token(t, "connect:agentHub")
	ag, err := simagent.Dial(ctx, simagent.H2CClient(), s.URL, agentToken, agentAccount, rolloutsim.New(s.simClock.Now), 20*time.Millisecond)
	if err != nil {
		t.Fatalf("simulated agent: %v", err)
	}
	t.Cleanup(func() { _ = ag.Close() })
	admin := s.token(t, "")
	waitUntil(t, 10*time.Second, "the agent listed as an account", func() bool {
		return strings.Contains(s.get(t, "/v1/accounts", admin), `"account":"`+agentAccount+`"`)
	})
	return s
}

// token gets an admin token over HTTP, as any client would.
func (s *server) token(t *testing.T, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ClientID}, "client_secret": {s.ClientSecret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	resp, err := http.PostForm(s.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: status %d, %v", resp.StatusCode, err)
	}
	return out.AccessToken
}

func (s *server) get(t *testing.T, path, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// user is one person at a terminal: a config directory and an environment.
type user struct {
	s         *server
	configDir string
	env       map[string]string
	// sleep replaces the waits between device-login polls; nil waits on the real clock.
	sleep func(ctx context.Context, d time.Duration) error
}

func (s *server) user(t *testing.T) *user {
	t.Helper()
	return &user{s: s, configDir: filepath.Join(t.TempDir(), "config", "sortie"), env: map[string]string{"SORTIE_ADDR": s.URL}}
}

// result is a finished sortie invocation.
type result struct {
	code           int
	stdout, stderr string
}

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (u *user) cliEnv(stdout, stderr io.Writer) cli.Env {
	return cli.Env{
		Stdout: stdout, Stderr: stderr, ConfigDir: u.configDir,
		Getenv: func(k string) string { return u.env[k] }, Sleep: u.sleep,
	}
}

// run runs sortie in-process and fails the test on a panic or a stack trace.
func (u *user) run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := cli.Run(ctx, args, u.cliEnv(&out, &errb))
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	checkNoTrace(t, r.stderr)
	return r
}

// start runs sortie in the background; wait returns its result.
func (u *user) start(t *testing.T, args ...string) (out *syncBuffer, wait func() result) {
	t.Helper()
	out = &syncBuffer{}
	var errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, args, u.cliEnv(out, &errb)) }()
	var once sync.Once
	var res result
	wait = func() result {
		once.Do(func() {
			code := <-done
			cancel()
			res = result{code: code, stdout: out.String(), stderr: errb.String()}
		})
		return res
	}
	t.Cleanup(func() { cancel(); wait() })
	return out, wait
}

func checkNoTrace(t *testing.T, stderr string) {
	t.Helper()
	for _, bad := range []string{"goroutine ", "panic:", ".go:"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr holds %q:\n%s", bad, stderr)
		}
	}
}

// mustRun runs sortie and wants exit 0.
func (u *user) mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := u.run(t, args...)
	if r.code != 0 {
		t.Fatalf("sortie %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// login logs the user in as the organization admin.
func (u *user) login(t *testing.T) {
	t.Helper()
	u.mustRun(t, "login", "--client-id", u.s.ClientID, "--client-secret", u.s.ClientSecret)
}

// copyDir copies an example directory into a temporary one, so a test can change a copy.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// replaceIn replaces old by new in a file, which must hold old.
func replaceIn(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not hold %q", path, old)
	}
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(old), []byte(new)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes a file under dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startedID reads the pipeline id from "Started pipeline ID." in text output.
func startedID(t *testing.T, out string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "Started pipeline ")
	if !ok {
		t.Fatalf("no \"Started pipeline\" in:\n%s", out)
	}
	id, _, _ := strings.Cut(rest, ".")
	return id
}
