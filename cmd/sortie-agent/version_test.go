package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/agent/agenttest"
	"github.com/sortie-dev/sortie/cmd/internal/version"
)

func TestVersionFlag(t *testing.T) {
	t.Setenv(envPrefix+"VERSION", "true") // command line only: ignored
	var stdout strings.Builder
	if _, err := parseConfig([]string{"--version"}, &stdout, io.Discard); !errors.Is(err, version.ErrShown) {
		t.Fatalf("parseConfig(--version) = %v, want version.ErrShown", err)
	}
	if got, want := strings.TrimSpace(stdout.String()), "sortie-agent "+version.String(); got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
	_, err := parseConfig([]string{"--client-id", "i"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--hub-url is required") {
		t.Errorf("parseConfig without --version but %sVERSION set = %v, want the usual validation", envPrefix, err)
	}
}

// TestStampedVersionInHello builds the agent as the images and releases do, with the version
// stamped at link time, and checks that both --version and the Hello the hub receives carry it.
func TestStampedVersionInHello(t *testing.T) {
	const stamp = "v0.0.0-test.1"
	bin := filepath.Join(t.TempDir(), "sortie-agent")
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/sortie-dev/sortie/cmd/internal/version.stamped="+stamp, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "sortie-agent "+stamp {
		t.Fatalf("sortie-agent --version = %q, %v; want %q", out, err, "sortie-agent "+stamp)
	}

	tokens := agenttest.NewTokenServer(t, "agent-id", "agent-secret-value")
	hub := agenttest.NewHub(t, agenttest.WithTokens(tokens))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://"+freeAddr(t)+"\"}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(bin, "--hub-url", hub.URL(), "--token-url", tokens.URL(), "--client-id", "agent-id",
		"--client-secret", "agent-secret-value", "--agent-identifier", "stamped", "--kubeconfig", kubeconfig, "--health-addr", "")
	agent.Env = []string{} // nothing of this machine's SORTIE_AGENT_* leaks in
	var logs strings.Builder
	agent.Stderr = &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Kill()
		agent.Wait()
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	s := hub.WaitStream(1, 20*time.Second)
	if got := s.Hello.GetAgentVersion(); got != stamp {
		t.Errorf("Hello.agent_version = %q, want the stamped %q", got, stamp)
	}
}
