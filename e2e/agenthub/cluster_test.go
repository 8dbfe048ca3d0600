package agenthub_test

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
	"github.com/sortie-dev/sortie/store/redistest"
)

// TestTwoServerReplicasShareARedisCluster is TestTwoServerReplicasShareRedis on a Redis
// Cluster of three masters: the store, the presence, the inventory and the bus between the
// replicas all run on go-redis's cluster client. Replica A names the cluster by one seed
// node, replica B by all three.
func TestTwoServerReplicasShareARedisCluster(t *testing.T) {
	t.Parallel()
	rc := redistest.NewCluster(t, 3)
	dirA, dirB := t.TempDir(), t.TempDir()
	public := "http://sortie.cluster-replicas.test"
	a := sortie.StartServer(t, sortie.ServerConfig{DataDir: dirA, RedisURL: "redis+cluster://" + rc.Addrs()[0], PublicURL: public})
	keyB := filepath.Join(dirB, "master.key")
	if out, err := exec.Command("cp", filepath.Join(dirA, "master.key"), keyB).CombinedOutput(); err != nil {
		t.Fatalf("copy master key: %v %s", err, out)
	}
	b := sortie.StartServer(t, sortie.ServerConfig{DataDir: dirB, RedisURL: rc.URL(), PublicURL: public, MasterKey: keyB})
	adminID, adminSecret := sortie.AdminCredential(t, dirA)
	admin := sortie.Token(t, a.URL, adminID, adminSecret)
	id, secret := sortie.AgentCredential(t, a.URL, admin, "agent-clustered")

	// The "load balancer" sends the agent to B while B lives, then to A.
	lb := sortie.StartProxy(t, b.Addr, a.Addr)
	sortie.StartAgent(t, cluster.Kubeconfig(), "agent behind lb", lb.URL(), id, secret, "clustered")
	onB := waitConnected(t, a.URL, admin, "clustered", 1) // listed on A through the cluster
	commandWorks(t, a.URL, admin, "clustered")            // sent on A, held by B: crosses replicas
	commandWorks(t, b.URL, admin, "clustered")            // and on B, where the stream is

	b.Kill() // a crash: B cleans nothing up
	sortie.WaitFor(t, 30*time.Second, "the agent to move to replica A and B's presence to expire", func() bool {
		s := sortie.ConnectedAgents(t, a.URL, admin, "clustered")
		return len(s) == 1 && s[0].HubInstanceUUID != onB[0].HubInstanceUUID
	})
	commandWorks(t, a.URL, admin, "clustered")
}
