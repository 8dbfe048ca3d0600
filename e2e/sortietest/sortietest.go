// Package sortietest runs real sortie-server and sortie-agent processes, built from this
// checkout, for the end-to-end tests: start them, kill them, read their credentials, call
// their REST API, and cut their connections with a TCP proxy.
package sortietest

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

// BinDir holds sortie-server and sortie-agent; TestMain sets it from BuildBinaries.
var BinDir string

// BuildBinaries builds sortie-server and sortie-agent from this checkout into a new
// temporary directory and returns it.
func BuildBinaries() (string, error) {
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

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a sortie binary running for a test; its output is kept for failure reports.
// Process is a sortie binary running for a test; its output is kept for failure reports.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
}

// SyncBuffer is a bytes.Buffer that a process writes while a test reads it.
type SyncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartProcess starts binary from BinDir with args and kills it when the test ends, printing
// the tail of its output if the test failed.
func StartProcess(t testing.TB, name, binary string, args ...string) *Process {
	t.Helper()
	p := &Process{name: name, out: &SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(BinDir, binary), args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
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

// Output returns what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15 s of SIGTERM", p.name)
	}
}

// Kill ends the process at once, as a crash would.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// server is a running sortie-server.
// Server is a running sortie-server.
type Server struct {
	*Process
	Addr, URL string
}

// ServerConfig holds the flags StartServer passes; empty fields take the defaults.
type ServerConfig struct {
	DataDir   string
	Addr      string
	RedisURL  string
	PublicURL string
	MasterKey string
	TokenTTL  string
	// Args are more flags.
	Args []string
}

// StartServer starts sortie-server and waits until /readyz answers 200.
func StartServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = FreeAddr(t)
	}
	args := []string{"--addr", cfg.Addr, "--data-dir", cfg.DataDir, "--hub-heartbeat", "500ms", "--log-level", "debug"}
	if cfg.RedisURL != "" {
		args = append(args, "--redis-url", cfg.RedisURL)
	}
	if cfg.PublicURL != "" {
		args = append(args, "--public-url", cfg.PublicURL)
	}
	if cfg.MasterKey != "" {
		args = append(args, "--master-key-file", cfg.MasterKey)
	}
	if cfg.TokenTTL != "" {
		args = append(args, "--token-ttl", cfg.TokenTTL)
	}
	args = append(args, cfg.Args...)
	s := &Server{Process: StartProcess(t, "sortie-server "+cfg.Addr, "sortie-server", args...), Addr: cfg.Addr, URL: "http://" + cfg.Addr}
	WaitFor(t, 30*time.Second, "sortie-server "+cfg.Addr+" to answer /readyz", func() bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

// AdminCredential reads the bootstrap credential of a data dir.
func AdminCredential(t testing.TB, dataDir string) (id, secret string) {
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

// Token gets an access token with client credentials.
func Token(t testing.TB, baseURL, id, secret string) string {
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

// Call sends a JSON request and returns the status and body.
func Call(t testing.TB, method, u, tok string, body any) (int, []byte) {
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

// AgentCredential creates a credential with the Remote Network Agent role.
func AgentCredential(t testing.TB, baseURL, adminToken, name string) (id, secret string) {
	t.Helper()
	status, body := Call(t, "POST", baseURL+"/credentials", adminToken, map[string]any{"name": name, "roles": []string{"Remote Network Agent"}})
	if status != http.StatusCreated {
		t.Fatalf("create credential: %d %s", status, body)
	}
	var c struct{ ClientID, ClientSecret string }
	_ = json.Unmarshal(body, &c)
	return c.ClientID, c.ClientSecret
}

// StartAgent starts sortie-agent against the cluster of kubeconfig.
func StartAgent(t testing.TB, kubeconfig, name, hubURL, id, secret, identifier string) *Process {
	t.Helper()
	return StartProcess(t, name, "sortie-agent",
		"--hub-url", hubURL, "--client-id", id, "--client-secret", secret, "--agent-identifier", identifier,
		"--kubeconfig", kubeconfig, "--health-addr", "127.0.0.1:0", "--heartbeat", "500ms")
}

// AgentStream is one entry of GET /identity/connected-agents.
type AgentStream struct {
	AgentIdentifier   string `json:"agentIdentifier"`
	AgentInstanceUUID string `json:"agentInstanceUuid"`
	StreamID          string `json:"streamId"`
	HubInstanceUUID   string `json:"hubInstanceUuid"`
}

// ConnectedAgents lists the streams of an agent identifier.
func ConnectedAgents(t testing.TB, baseURL, tok, identifier string) []AgentStream {
	t.Helper()
	status, body := Call(t, "GET", baseURL+"/identity/connected-agents?agent-identifier="+identifier, tok, nil)
	if status != 200 {
		t.Fatalf("connected-agents: %d %s", status, body)
	}
	var out []AgentStream
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Namespaces asks an account's agent for its namespaces through REST.
func Namespaces(t testing.TB, baseURL, tok, account string) (int, []string, string) {
	t.Helper()
	status, body := Call(t, "GET", baseURL+"/accounts/"+account+"/namespaces", tok, nil)
	var names []string
	if status == 200 {
		_ = json.Unmarshal(body, &names)
	}
	return status, names, string(body)
}

// WaitFor polls cond until it holds, failing the test after limit.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Proxy is a TCP proxy that can cut every connection, and that sends new connections to the
// first backend that accepts, as a load balancer in front of server replicas would.
type Proxy struct {
	ln       net.Listener
	mu       sync.Mutex // guards backends and conns
	backends []string
	conns    map[net.Conn]bool
}

// StartProxy starts a proxy to backends, closed when the test ends.
func StartProxy(t testing.TB, backends ...string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, backends: backends, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// URL is the proxy's base URL.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
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

// Cut drops every open connection at once.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
