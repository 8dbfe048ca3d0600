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
	"github.com/sortie-dev/sortie/store/redistest"
)

var cluster *kube.Cluster

func TestMain(m *testing.M) {
	dir, err := buildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := kube.Main(m, &cluster)
	os.RemoveAll(dir)
	os.Exit(code)
}

// commandWorks asserts that a command reaches the account's agent and its answer comes back.
func commandWorks(t *testing.T, baseURL, tok, account string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, names, body := namespaces(t, baseURL, tok, account)
		if status == 200 && slices.Contains(names, "kube-system") && slices.Contains(names, "default") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no command reached agent %s within 30 s; last answer: %d %s", account, status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitConnected(t *testing.T, baseURL, tok, identifier string, n int) []agentStream {
	t.Helper()
	var streams []agentStream
	waitFor(t, 30*time.Second, fmt.Sprintf("%d stream(s) of agent %s", n, identifier), func() bool {
		streams = connectedAgents(t, baseURL, tok, identifier)
		return len(streams) == n
	})
	return streams
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := startServer(t, serverConfig{dataDir: dataDir})
	adminID, adminSecret := adminCredential(t, dataDir)
	admin := token(t, srv.url, adminID, adminSecret)
	id, secret := agentCredential(t, srv.url, admin, "agent-restart")
	startAgent(t, "agent restart", srv.url, id, secret, "restart")
	before := waitConnected(t, srv.url, admin, "restart", 1)
	commandWorks(t, srv.url, admin, "restart")

	srv.stop(t)
	srv = startServer(t, serverConfig{dataDir: dataDir, addr: srv.addr})
	admin = token(t, srv.url, adminID, adminSecret)
	after := waitConnected(t, srv.url, admin, "restart", 1)
	if after[0].StreamID == before[0].StreamID || after[0].AgentInstanceUUID != before[0].AgentInstanceUUID {
		t.Errorf("after the restart: %+v, before: %+v; want a new stream of the same agent process", after[0], before[0])
	}
	commandWorks(t, srv.url, admin, "restart")
}

func TestReconnectAfterNetworkCut(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := startServer(t, serverConfig{dataDir: dataDir})
	adminID, adminSecret := adminCredential(t, dataDir)
	admin := token(t, srv.url, adminID, adminSecret)
	id, secret := agentCredential(t, srv.url, admin, "agent-cut")
	px := startProxy(t, srv.addr)
	startAgent(t, "agent cut", px.URL(), id, secret, "cut")
	before := waitConnected(t, srv.url, admin, "cut", 1)

	px.cut()
	waitFor(t, 30*time.Second, "the agent to come back on a new stream", func() bool {
		s := connectedAgents(t, srv.url, admin, "cut")
		return len(s) == 1 && s[0].StreamID != before[0].StreamID
	})
	commandWorks(t, srv.url, admin, "cut")
}

func TestTokenExpiryMidStream(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := startServer(t, serverConfig{dataDir: dataDir, tokenTTL: "6s"})
	adminID, adminSecret := adminCredential(t, dataDir)
	admin := token(t, srv.url, adminID, adminSecret)
	id, secret := agentCredential(t, srv.url, admin, "agent-expiry")
	startAgent(t, "agent expiry", srv.url, id, secret, "expiry")
	first := waitConnected(t, srv.url, admin, "expiry", 1)

	// Keep commands flowing across the expiry. A command caught on the closing stream may
	// fail fast as "stream lost" (503), never silently; sent again it must succeed.
	deadline := time.Now().Add(14 * time.Second)
	streams := map[string]bool{first[0].StreamID: true}
	for time.Now().Before(deadline) {
		admin = token(t, srv.url, adminID, adminSecret) // the admin's token expires too
		status, _, body := namespaces(t, srv.url, admin, "expiry")
		if status == http.StatusServiceUnavailable {
			status, _, body = namespaces(t, srv.url, admin, "expiry")
		}
		if status != 200 {
			t.Fatalf("a command across the token expiry failed: %d %s", status, body)
		}
		for _, s := range connectedAgents(t, srv.url, admin, "expiry") {
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
	srv := startServer(t, serverConfig{dataDir: dataDir})
	adminID, adminSecret := adminCredential(t, dataDir)
	admin := token(t, srv.url, adminID, adminSecret)
	id, secret := agentCredential(t, srv.url, admin, "agent-replicas")
	a := startAgent(t, "agent replica a", srv.url, id, secret, "replicas")
	startAgent(t, "agent replica b", srv.url, id, secret, "replicas")
	streams := waitConnected(t, srv.url, admin, "replicas", 2)
	if streams[0].AgentInstanceUUID == streams[1].AgentInstanceUUID {
		t.Fatalf("two agent processes report one instance uuid: %+v", streams)
	}
	for range 6 {
		commandWorks(t, srv.url, admin, "replicas")
	}
	a.stop(t)
	waitConnected(t, srv.url, admin, "replicas", 1)
	commandWorks(t, srv.url, admin, "replicas")
}

func TestNotConnectedAccountAndTenants(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	srv := startServer(t, serverConfig{dataDir: dataDir})
	adminID, adminSecret := adminCredential(t, dataDir)
	admin := token(t, srv.url, adminID, adminSecret)

	status, _, body := namespaces(t, srv.url, admin, "nowhere")
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "account 'nowhere' does not exist") || !strings.Contains(body, "error_id") {
		t.Fatalf("command for an agent that is not connected: %d %s", status, body)
	}

	id, secret := agentCredential(t, srv.url, admin, "agent-tenant")
	startAgent(t, "agent tenant", srv.url, id, secret, "tenant-a")
	waitConnected(t, srv.url, admin, "tenant-a", 1)
	commandWorks(t, srv.url, admin, "tenant-a")

	// Environment B of the same organization sees nothing of A's agent.
	st, created := call(t, "POST", srv.url+"/environments", admin, map[string]string{"name": "other"})
	if st != http.StatusCreated {
		t.Fatalf("create environment: %d %s", st, created)
	}
	var env struct {
		AdminCredential struct{ ClientID, ClientSecret string }
	}
	_ = json.Unmarshal(created, &env)
	other := token(t, srv.url, env.AdminCredential.ClientID, env.AdminCredential.ClientSecret)

	if got := connectedAgents(t, srv.url, other, ""); len(got) != 0 {
		t.Errorf("environment B lists A's agents: %+v", got)
	}
	for _, path := range []string{"/accounts?provider=kubernetes", "/v1/accounts"} {
		if st, b := call(t, "GET", srv.url+path, other, nil); st != 200 || strings.Contains(string(b), "tenant-a") {
			t.Errorf("GET %s from environment B: %d %s", path, st, b)
		}
	}
	if st, _, b := namespaces(t, srv.url, other, "tenant-a"); st != http.StatusUnprocessableEntity {
		t.Errorf("environment B commands A's agent: %d %s", st, b)
	}
	for _, proc := range []string{"ListAgents", "ListAccounts"} {
		if st, b := call(t, "POST", srv.url+"/sortie.infra.v1.InfrastructureService/"+proc, other, map[string]any{}); st != 200 || strings.Contains(string(b), "tenant-a") {
			t.Errorf("Connect %s from environment B: %d %s", proc, st, b)
		}
	}
	for _, proc := range []string{"ListNamespaces", "ListResources"} {
		if st, b := call(t, "POST", srv.url+"/sortie.infra.v1.InfrastructureService/"+proc, other, map[string]any{"account": "tenant-a"}); st == 200 {
			t.Errorf("Connect %s from environment B reaches A's agent: %d %s", proc, st, b)
		}
	}
	// A still sees its agent and its inventory.
	if st, b := call(t, "POST", srv.url+"/sortie.infra.v1.InfrastructureService/ListResources", admin, map[string]any{"account": "tenant-a", "kind": "Namespace"}); st != 200 || !strings.Contains(string(b), "kube-system") {
		t.Errorf("ListResources for A's own agent: %d %.300s", st, b)
	}
}

func TestTwoServerReplicasShareRedis(t *testing.T) {
	t.Parallel()
	rds := redistest.New(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	public := "http://sortie.replicas.test"
	a := startServer(t, serverConfig{dataDir: dirA, redisURL: rds.URL(), publicURL: public})
	// Replica B shares the master key (and Redis, and the public URL) with A.
	keyB := filepath.Join(dirB, "master.key")
	if out, err := exec.Command("cp", filepath.Join(dirA, "master.key"), keyB).CombinedOutput(); err != nil {
		t.Fatalf("copy master key: %v %s", err, out)
	}
	b := startServer(t, serverConfig{dataDir: dirB, redisURL: rds.URL(), publicURL: public, masterKey: keyB})
	adminID, adminSecret := adminCredential(t, dirA)
	admin := token(t, a.url, adminID, adminSecret)
	id, secret := agentCredential(t, a.url, admin, "agent-replicated")

	// The "load balancer" sends the agent to B while B lives, then to A.
	lb := startProxy(t, b.addr, a.addr)
	startAgent(t, "agent behind lb", lb.URL(), id, secret, "replicated")
	onB := waitConnected(t, a.url, admin, "replicated", 1) // listed on A through Redis
	commandWorks(t, a.url, admin, "replicated")            // sent on A, held by B: crosses replicas

	b.kill() // a crash: B cleans nothing up
	waitFor(t, 30*time.Second, "the agent to move to replica A and B's presence to expire", func() bool {
		s := connectedAgents(t, a.url, admin, "replicated")
		return len(s) == 1 && s[0].HubInstanceUUID != onB[0].HubInstanceUUID
	})
	commandWorks(t, a.url, admin, "replicated")
}
