package agenthub_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds sortie-server and sortie-agent, built once by TestMain from this checkout.
var binDir string

func buildBinaries() (string, error) {
	dir, err := os.MkdirTemp("", "sortie-e2e-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir, "github.com/sortie-dev/sortie/cmd/sortie-server", "github.com/sortie-dev/sortie/cmd/sortie-agent")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build: %w", err)
	}
	return dir, nil
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a sortie binary running for a test; its output is kept for failure reports.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

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

func startProcess(t *testing.T, name, binary string, args ...string) *process {
	t.Helper()
	p := &process{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, binary), args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, tail(p.out.String(), 60))
		}
	})
	return p
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SORTIE_") {
			env = append(env, kv)
		}
	}
	return env
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15 s of SIGTERM", p.name)
	}
}

// kill ends the process at once, as a crash would.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// server is a running sortie-server.
type server struct {
	*process
	addr, url string
}

type serverConfig struct {
	dataDir   string
	addr      string
	redisURL  string
	publicURL string
	masterKey string
	tokenTTL  string
}

func startServer(t *testing.T, cfg serverConfig) *server {
	t.Helper()
	if cfg.addr == "" {
		cfg.addr = freeAddr(t)
	}
	args := []string{"--addr", cfg.addr, "--data-dir", cfg.dataDir, "--hub-heartbeat", "500ms", "--log-level", "debug"}
	if cfg.redisURL != "" {
		args = append(args, "--redis-url", cfg.redisURL)
	}
	if cfg.publicURL != "" {
		args = append(args, "--public-url", cfg.publicURL)
	}
	if cfg.masterKey != "" {
		args = append(args, "--master-key-file", cfg.masterKey)
	}
	if cfg.tokenTTL != "" {
		args = append(args, "--token-ttl", cfg.tokenTTL)
	}
	s := &server{process: startProcess(t, "sortie-server "+cfg.addr, "sortie-server", args...), addr: cfg.addr, url: "http://" + cfg.addr}
	waitFor(t, 30*time.Second, "sortie-server "+cfg.addr+" to answer /readyz", func() bool {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

// adminCredential reads the bootstrap credential of a data dir.
func adminCredential(t *testing.T, dataDir string) (id, secret string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "admin-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ ClientID, ClientSecret string }
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c.ClientID, c.ClientSecret
}

func token(t *testing.T, baseURL, id, secret string) string {
	t.Helper()
	resp, err := http.PostForm(baseURL+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		t.Fatalf("token from %s: status %d, %v", baseURL, resp.StatusCode, err)
	}
	return out.AccessToken
}

// call sends a JSON request and returns the status and body.
func call(t *testing.T, method, u, tok string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, u, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// agentCredential creates a credential with the Remote Network Agent role.
func agentCredential(t *testing.T, baseURL, adminToken, name string) (id, secret string) {
	t.Helper()
	status, body := call(t, "POST", baseURL+"/credentials", adminToken, map[string]any{"name": name, "roles": []string{"Remote Network Agent"}})
	if status != http.StatusCreated {
		t.Fatalf("create credential: %d %s", status, body)
	}
	var c struct{ ClientID, ClientSecret string }
	_ = json.Unmarshal(body, &c)
	return c.ClientID, c.ClientSecret
}

func startAgent(t *testing.T, name, hubURL, id, secret, identifier string) *process {
	t.Helper()
	return startProcess(t, name, "sortie-agent",
		"--hub-url", hubURL, "--client-id", id, "--client-secret", secret, "--agent-identifier", identifier,
		"--kubeconfig", cluster.Kubeconfig(), "--health-addr", "127.0.0.1:0", "--heartbeat", "500ms")
}

// agentStream is one entry of GET /identity/connected-agents.
type agentStream struct {
	AgentIdentifier   string `json:"agentIdentifier"`
	AgentInstanceUUID string `json:"agentInstanceUuid"`
	StreamID          string `json:"streamId"`
	HubInstanceUUID   string `json:"hubInstanceUuid"`
}

func connectedAgents(t *testing.T, baseURL, tok, identifier string) []agentStream {
	t.Helper()
	status, body := call(t, "GET", baseURL+"/identity/connected-agents?agent-identifier="+identifier, tok, nil)
	if status != 200 {
		t.Fatalf("connected-agents: %d %s", status, body)
	}
	var out []agentStream
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// namespaces asks an account's agent for its namespaces through REST.
func namespaces(t *testing.T, baseURL, tok, account string) (int, []string, string) {
	t.Helper()
	status, body := call(t, "GET", baseURL+"/accounts/"+account+"/namespaces", tok, nil)
	var names []string
	if status == 200 {
		_ = json.Unmarshal(body, &names)
	}
	return status, names, string(body)
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// proxy is a TCP proxy that can cut every connection, and that sends new connections to the
// first backend that accepts, as a load balancer in front of server replicas would.
type proxy struct {
	ln       net.Listener
	mu       sync.Mutex // guards backends and conns
	backends []string
	conns    map[net.Conn]bool
}

func startProxy(t *testing.T, backends ...string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, backends: backends, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(c net.Conn) {
	p.mu.Lock()
	backends := append([]string(nil), p.backends...)
	p.mu.Unlock()
	var up net.Conn
	for _, b := range backends {
		var err error
		if up, err = net.DialTimeout("tcp", b, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// cut drops every open connection at once.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
