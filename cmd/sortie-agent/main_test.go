package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/agent/agenttest"
	"github.com/sortie-dev/sortie/cmd/internal/version"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

func TestMain(m *testing.M) {
	// The tests configure the agent through arguments and t.Setenv only: the variables of
	// the machine running them must not leak in.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, envPrefix) || name == "NODE_IP" {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--hub-url", "https://sortie.example.com", "--client-id", "id", "--client-secret", "s", "--agent-identifier", "prod-1"}
	defaults := config{
		HubURL: "https://sortie.example.com", ClientID: "id", ClientSecret: "s", AgentIdentifier: "prod-1",
		Heartbeat: 20 * time.Second, HealthAddr: "127.0.0.1:8081",
	}
	with := func(f func(*config)) config { c := defaults; f(&c); return c }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string
	}{
		{name: "flags", args: base, want: defaults},
		{
			name: "every flag",
			args: append(append([]string(nil), base...), "--token-url", "https://id.example.com/oauth/token", "--kubeconfig", "/k",
				"--context", "prod", "--ca-file", "/ca.pem", "--heartbeat", "5s", "--health-addr", ":9090", "--node-ip", "10.0.0.1",
				"--log-level", "debug"),
			want: with(func(c *config) {
				c.TokenURL, c.Kubeconfig, c.Context, c.CAFile = "https://id.example.com/oauth/token", "/k", "prod", "/ca.pem"
				c.Heartbeat, c.HealthAddr, c.NodeIP, c.LogLevel = 5*time.Second, ":9090", "10.0.0.1", -4
			}),
		},
		{
			name: "environment fallback",
			env: map[string]string{
				"SORTIE_AGENT_HUB_URL": "http://sortie:8080", "SORTIE_AGENT_CLIENT_ID": "env-id",
				"SORTIE_AGENT_CLIENT_SECRET_FILE": secretFile, "SORTIE_AGENT_AGENT_IDENTIFIER": "from_env",
				"SORTIE_AGENT_HEARTBEAT": "30s", "SORTIE_AGENT_KUBECONFIG": "/kc", "NODE_IP": "10.9.9.9",
			},
			want: config{HubURL: "http://sortie:8080", ClientID: "env-id", ClientSecret: "from-file", AgentIdentifier: "from_env",
				Heartbeat: 30 * time.Second, HealthAddr: "127.0.0.1:8081", Kubeconfig: "/kc", NodeIP: "10.9.9.9"},
		},
		{
			name: "flags win over the environment",
			args: base,
			env:  map[string]string{"SORTIE_AGENT_CLIENT_ID": "env-id", "SORTIE_AGENT_HEALTH_ADDR": ":1"},
			want: with(func(c *config) { c.HealthAddr = ":1" }),
		},
		{name: "secret file", args: []string{"--hub-url", "http://h", "--client-id", "i", "--client-secret-file", secretFile, "--agent-identifier", "a"},
			want: config{HubURL: "http://h", ClientID: "i", ClientSecret: "from-file", AgentIdentifier: "a", Heartbeat: 20 * time.Second, HealthAddr: "127.0.0.1:8081"}},
		{name: "both secrets", args: append(append([]string(nil), base...), "--client-secret-file", secretFile), wantErr: "give one of --client-secret and --client-secret-file, not both"},
		{name: "secret in env and file in flags", args: []string{"--hub-url", "http://h", "--client-id", "i", "--client-secret-file", secretFile, "--agent-identifier", "a"},
			env: map[string]string{"SORTIE_AGENT_CLIENT_SECRET": "x"}, wantErr: "not both"},
		{name: "no secret", args: []string{"--hub-url", "http://h", "--client-id", "i", "--agent-identifier", "a"}, wantErr: "a client secret is required"},
		{name: "empty secret file", args: []string{"--hub-url", "http://h", "--client-id", "i", "--client-secret-file", emptyFile, "--agent-identifier", "a"}, wantErr: "is empty"},
		{name: "missing secret file", args: []string{"--hub-url", "http://h", "--client-id", "i", "--client-secret-file", filepath.Join(dir, "nope"), "--agent-identifier", "a"}, wantErr: "--client-secret-file: open"},
		{name: "no hub", args: base[2:], wantErr: "--hub-url is required"},
		{name: "bad hub URL", args: append([]string{"--hub-url", "sortie.example.com"}, base[2:]...), wantErr: "--hub-url must be an absolute http:// or https:// URL"},
		{name: "no client id", args: []string{"--hub-url", "http://h", "--client-secret", "s", "--agent-identifier", "a"}, wantErr: "--client-id is required"},
		{name: "no identifier", args: base[:6], wantErr: "--agent-identifier is required"},
		{name: "bad identifier", args: append(append([]string(nil), base[:6]...), "--agent-identifier", "prod/eu"), wantErr: `--agent-identifier: invalid agent identifier "prod/eu": hello.agent_identifier: does not match regex pattern`},
		{name: "bad identifier from env", args: base[:6], env: map[string]string{"SORTIE_AGENT_AGENT_IDENTIFIER": "a b"}, wantErr: `invalid agent identifier "a b"`},
		{name: "context without kubeconfig", args: append(append([]string(nil), base...), "--context", "x"), wantErr: "--context needs --kubeconfig"},
		{name: "tiny heartbeat", args: append(append([]string(nil), base...), "--heartbeat", "1ms"), wantErr: "--heartbeat must be at least 100ms"},
		{name: "bad heartbeat in env", args: base, env: map[string]string{"SORTIE_AGENT_HEARTBEAT": "soon"}, wantErr: "SORTIE_AGENT_HEARTBEAT: invalid value"},
		{name: "bad log level", args: append(append([]string(nil), base...), "--log-level", "loud"), wantErr: "--log-level"},
		{name: "unknown flag", args: append(append([]string(nil), base...), "--hub", "x"), wantErr: "flag provided but not defined: -hub"},
		{name: "extra arguments", args: append(append([]string(nil), base...), "now"), wantErr: "unexpected arguments: now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := parseConfig(tt.args, io.Discard, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseConfig error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHelpNamesEveryFlagAndVariable(t *testing.T) {
	var out bytes.Buffer
	_, err := parseConfig([]string{"-h"}, io.Discard, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(-h) = %v, want flag.ErrHelp", err)
	}
	for _, name := range []string{"hub-url", "token-url", "client-id", "client-secret", "client-secret-file", "agent-identifier",
		"kubeconfig", "context", "ca-file", "heartbeat", "health-addr"} {
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if !strings.Contains(out.String(), "-"+name+" ") || !strings.Contains(out.String(), env) {
			t.Errorf("--help does not document --%s and %s:\n%s", name, env, out.String())
		}
	}
}

func TestRunWithoutKubernetesConfiguration(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod
	err := run(context.Background(), []string{"--hub-url", "http://127.0.0.1:1", "--client-id", "i", "--client-secret", "s",
		"--agent-identifier", "a", "--health-addr", ""}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no Kubernetes configuration") || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("run without any Kubernetes configuration = %v, want a clear error naming --kubeconfig", err)
	}
	err = run(context.Background(), []string{"--hub-url", "http://127.0.0.1:1", "--client-id", "i", "--client-secret", "s",
		"--agent-identifier", "a", "--kubeconfig", filepath.Join(t.TempDir(), "missing")}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("run with a missing kubeconfig = %v, want an error naming --kubeconfig", err)
	}
}

// TestRun runs the command against a test hub, with a kubeconfig whose apiserver is down:
// the agent still connects (the stream matters more), serves /healthz and /metrics, logs
// JSON, and says goodbye when its context ends (SIGTERM in main).
func TestRun(t *testing.T) {
	tokens := agenttest.NewTokenServer(t, "agent-id", "agent-secret-value")
	hub := agenttest.NewHub(t, agenttest.WithTokens(tokens))
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://%s"}}]
users: [{name: u, user: {token: kube-token}}]
contexts: [{name: down, context: {cluster: c, user: u}}]
current-context: down
`, freeAddr(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("agent-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	healthAddr := freeAddr(t)
	t.Setenv("SORTIE_AGENT_CLIENT_SECRET_FILE", secretFile)
	t.Setenv("NODE_IP", "192.0.2.10")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--hub-url", hub.URL(), "--token-url", tokens.URL(), "--client-id", "agent-id",
			"--agent-identifier", "edge-1", "--kubeconfig", kubeconfig, "--context", "down", "--health-addr", healthAddr}, io.Discard, stderr)
	}()
	s := hub.WaitStream(1, 20*time.Second)
	if s.Hello.GetAgentIdentifier() != "edge-1" || s.Hello.GetNodeIp() != "192.0.2.10" || s.Hello.GetAgentVersion() != version.String() {
		t.Errorf("Hello = %v", s.Hello)
	}

	waitHTTP(t, "http://"+healthAddr+"/healthz", http.StatusOK, "ok")
	waitHTTP(t, "http://"+healthAddr+"/metrics", http.StatusOK, "sortie_agent_connected 1")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancellation, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
	if bye := s.WaitFor(t, agenttest.IsGoodbye, time.Second).GetGoodbye(); bye.GetReason() != hubv1.Goodbye_REASON_AGENT_SHUTTING_DOWN {
		t.Errorf("Goodbye = %v, want AGENT_SHUTTING_DOWN", bye)
	}
	logs := stderr.String()
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Errorf("a log line is not JSON: %s", sc.Text())
		}
	}
	for _, secret := range append(tokens.Issued(), "agent-secret-value", "kube-token") {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain a secret (%.8s...)", secret)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}

func waitHTTP(t *testing.T, url string, wantCode int, wantBody string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == wantCode && strings.Contains(string(b), wantBody) {
				return
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v, want %d with %q", url, err, wantCode, wantBody)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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
