// Package agenthub_test runs real sortie-server and sortie-agent processes, built from this
// checkout, against a real kube-apiserver: agents reconnecting through server restarts,
// network cuts and token expiry, agent replicas, several server replicas sharing Redis, and
// tenant isolation of everything the hub knows.
package agenthub_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/e2e/kube"
	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
	"github.com/sortie-dev/sortie/store/redistest"
)

var cluster *kube.Cluster

func TestMain(m *testing.M) {
	dir, err := sortie.BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sortie.BinDir = dir
	code := kube.Main(m, &cluster)
	os.RemoveAll(dir)
	os.Exit(code)
}

// commandWorks asserts that a command reaches the account's agent and its answer comes back.
func commandWorks(t *testing.T, baseURL, tok, account string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, names, body := sortie.Namespaces(t, baseURL, tok, account)
		if status == 200 && slices.Contains(names, "kube-system") && slices.Contains(names, "default") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no command reached agent %s within 30 s; last answer: %d %s", account, status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitConnected(t *testing.T, baseURL, tok, identifier string, n int) []sortie.AgentStream {
	t.Helper()
	var streams []sortie.AgentStream
	sortie.WaitFor(t, 30*time.Second, fmt.Sprintf("%d stream(s) of agent %s", n, identifier), func() bool {
		streams = sortie.ConnectedAgents(t, baseURL, tok, identifier)
		return len(streams) == n
	})
	return streams
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir})
	adminID, adminSecret := sortie.AdminCredential(t, dataDir)
	admin := sortie.Token(t, srv.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, srv.URL, admin, "agent-restart")
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent restart", srv.URL, id, secret, "restart")
	before := waitConnected(t, srv.URL, admin, "restart", 1)
	commandWorks(t, srv.URL, admin, "restart")

	srv.Stop(t)
	srv = sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir, Addr: srv.Addr})
	admin = sortie.Token(t, srv.URL, adminID, adminSecret)
	after := waitConnected(t, srv.URL, admin, "restart", 1)
	if after[0].StreamID == before[0].StreamID || after[0].AgentInstanceUUID != before[0].AgentInstanceUUID {
		t.Errorf("after the restart: %+v, before: %+v; want a new stream of the same agent process", after[0], before[0])
	}
	commandWorks(t, srv.URL, admin, "restart")
}

func TestReconnectAfterNetworkCut(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir})
	adminID, adminSecret := sortie.AdminCredential(t, dataDir)
	admin := sortie.Token(t, srv.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, srv.URL, admin, "agent-cut")
	px := sortie.StartProxy(t, srv.Addr)
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent cut", px.URL(), id, secret, "cut")
	before := waitConnected(t, srv.URL, admin, "cut", 1)

	px.Cut()
	sortie.WaitFor(t, 30*time.Second, "the agent to come back on a new stream", func() bool {
		s := sortie.ConnectedAgents(t, srv.URL, admin, "cut")
		return len(s) == 1 && s[0].StreamID != before[0].StreamID
	})
	commandWorks(t, srv.URL, admin, "cut")
}

func TestTokenExpiryMidStream(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir, TokenTTL: "6s"})
	adminID, adminSecret := sortie.AdminCredential(t, dataDir)
	admin := sortie.Token(t, srv.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, srv.URL, admin, "agent-expiry")
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent expiry", srv.URL, id, secret, "expiry")
	first := waitConnected(t, srv.URL, admin, "expiry", 1)

	// Keep commands flowing across the expiry. A command caught on the closing stream may
	// fail fast as "stream lost" (503), never silently; sent again it must succeed.
	deadline := time.Now().Add(14 * time.Second)
	streams := map[string]bool{first[0].StreamID: true}
	for time.Now().Before(deadline) {
		admin = sortie.Token(t, srv.URL, adminID, adminSecret) // the admin's token expires too
		status, _, body := sortie.Namespaces(t, srv.URL, admin, "expiry")
		if status == http.StatusServiceUnavailable {
			status, _, body = sortie.Namespaces(t, srv.URL, admin, "expiry")
		}
		if status != 200 {
			t.Fatalf("a command across the token expiry failed: %d %s", status, body)
		}
		for _, s := range sortie.ConnectedAgents(t, srv.URL, admin, "expiry") {
			streams[s.StreamID] = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(streams) < 2 {
		t.Fatalf("saw streams %v over 14 s with 6 s tokens; the hub should have closed the expired stream", streams)
	}
}

func TestAgentReplicasShareAnIdentifier(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir})
	adminID, adminSecret := sortie.AdminCredential(t, dataDir)
	admin := sortie.Token(t, srv.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, srv.URL, admin, "agent-replicas")
	a := sortie.StartAgent(t, cluster.Kubeconfig(), "agent replica a", srv.URL, id, secret, "replicas")
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent replica b", srv.URL, id, secret, "replicas")
	streams := waitConnected(t, srv.URL, admin, "replicas", 2)
	if streams[0].AgentInstanceUUID == streams[1].AgentInstanceUUID {
		t.Fatalf("two agent processes report one instance uuid: %+v", streams)
	}
	for range 6 {
		commandWorks(t, srv.URL, admin, "replicas")
	}
	a.Stop(t)
	waitConnected(t, srv.URL, admin, "replicas", 1)
	commandWorks(t, srv.URL, admin, "replicas")
}

func TestNotConnectedAccountAndTenants(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := sortie.StartServer(t, sortie.ServerConfig{DataDir: dataDir})
	adminID, adminSecret := sortie.AdminCredential(t, dataDir)
	admin := sortie.Token(t, srv.URL, adminID, adminSecret)

	status, _, body := sortie.Namespaces(t, srv.URL, admin, "nowhere")
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "account 'nowhere' does not exist") || !strings.Contains(body, "error_id") {
		t.Fatalf("command for an agent that is not connected: %d %s", status, body)
	}

	id, secret := sortie.AgentCredential(t, srv.URL, admin, "agent-tenant")
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent tenant", srv.URL, id, secret, "tenant-a")
	waitConnected(t, srv.URL, admin, "tenant-a", 1)
	commandWorks(t, srv.URL, admin, "tenant-a")

	// Environment B of the same organization sees nothing of A's agent.
	st, created := sortie.Call(t, "POST", srv.URL+"/environments", admin, map[string]string{"name": "other"})
	if st != http.StatusCreated {
		t.Fatalf("create environment: %d %s", st, created)
	}
	var env struct {
		AdminCredential struct{ ClientID, ClientSecret string }
	}
	_ = json.Unmarshal(created, &env)
	other := sortie.Token(t, srv.URL, env.AdminCredential.ClientID, env.AdminCredential.ClientSecret)

	if got := sortie.ConnectedAgents(t, srv.URL, other, ""); len(got) != 0 {
		t.Errorf("environment B lists A's agents: %+v", got)
	}
	for _, path := range []string{"/accounts?provider=kubernetes", "/v1/accounts"} {
		if st, b := sortie.Call(t, "GET", srv.URL+path, other, nil); st != 200 || strings.Contains(string(b), "tenant-a") {
			t.Errorf("GET %s from environment B: %d %s", path, st, b)
		}
	}
	if st, _, b := sortie.Namespaces(t, srv.URL, other, "tenant-a"); st != http.StatusUnprocessableEntity {
		t.Errorf("environment B commands A's agent: %d %s", st, b)
	}
	for _, proc := range []string{"ListAgents", "ListAccounts"} {
		if st, b := sortie.Call(t, "POST", srv.URL+"/sortie.infra.v1.InfrastructureService/"+proc, other, map[string]any{}); st != 200 || strings.Contains(string(b), "tenant-a") {
			t.Errorf("Connect %s from environment B: %d %s", proc, st, b)
		}
	}
	for _, proc := range []string{"ListNamespaces", "ListResources"} {
		if st, b := sortie.Call(t, "POST", srv.URL+"/sortie.infra.v1.InfrastructureService/"+proc, other, map[string]any{"account": "tenant-a"}); st == 200 {
			t.Errorf("Connect %s from environment B reaches A's agent: %d %s", proc, st, b)
		}
	}
	// A still sees its agent and its inventory (once the agent's first snapshot is in: it
	// follows the agent's Hello, so it may trail the connection).
	sortie.WaitFor(t, 30*time.Second, "A's inventory through ListResources", func() bool {
		status, body := sortie.Call(t, "POST", srv.URL+"/sortie.infra.v1.InfrastructureService/ListResources", admin, map[string]any{"account": "tenant-a", "kind": "Namespace"})
		return status == 200 && strings.Contains(string(body), "kube-system")
	})
}

func TestTwoServerReplicasShareRedis(t *testing.T) {
	t.Parallel()
	rds := redistest.New(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	public := "http://sortie.replicas.test"
	a := sortie.StartServer(t, sortie.ServerConfig{DataDir: dirA, RedisURL: rds.URL(), PublicURL: public})
	// Replica B shares the master key (and Redis, and the public URL) with A.
	keyB := filepath.Join(dirB, "master.key")
	if out, err := exec.Command("cp", filepath.Join(dirA, "master.key"), keyB).CombinedOutput(); err != nil {
		t.Fatalf("copy master key: %v %s", err, out)
	}
	b := sortie.StartServer(t, sortie.ServerConfig{DataDir: dirB, RedisURL: rds.URL(), PublicURL: public, MasterKey: keyB})
	adminID, adminSecret := sortie.AdminCredential(t, dirA)
	admin := sortie.Token(t, a.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, a.URL, admin, "agent-replicated")

	// The "load balancer" sends the agent to B while B lives, then to A.
	lb := sortie.StartProxy(t, b.Addr, a.Addr)
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent behind lb", lb.URL(), id, secret, "replicated")
	onB := waitConnected(t, a.URL, admin, "replicated", 1) // listed on A through Redis
	commandWorks(t, a.URL, admin, "replicated")            // sent on A, held by B: crosses replicas

	b.Kill() // a crash: B cleans nothing up
	sortie.WaitFor(t, 30*time.Second, "the agent to move to replica A and B's presence to expire", func() bool {
		s := sortie.ConnectedAgents(t, a.URL, admin, "replicated")
		return len(s) == 1 && s[0].HubInstanceUUID != onB[0].HubInstanceUUID
	})
	commandWorks(t, a.URL, admin, "replicated")
}
