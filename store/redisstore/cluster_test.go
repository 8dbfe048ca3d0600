package redisstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// TestClusterRefusesCrossSlot proves that the cluster TestClusterConformance runs on would
// refuse an operation spanning two tenants: a script or a transaction over keys of two hash
// slots fails with CROSSSLOT, while the same over one tenant's keys runs. The suite passing
// on that cluster is what shows that every multi-key operation stays in one tenant's slot.
func TestClusterRefusesCrossSlot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.NewCluster(t, 3)
	opt, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(opt)
	t.Cleanup(func() { rdb.Close() })

	// The layout of the package documentation (TestKeyLayout pins it).
	prodCreds := "sortie:{t:acme/prod}:credentials"
	prodPipelines := "sortie:{t:acme/prod}:pipelines"
	devCreds := "sortie:{t:acme/dev}:credentials"
	if a, b := rdb.ClusterKeySlot(ctx, prodCreds).Val(), rdb.ClusterKeySlot(ctx, devCreds).Val(); a == b {
		t.Fatalf("the two tenants share hash slot %d; pick others", a)
	}

	const script = `redis.call('HSET', KEYS[1], 'x', '1'); redis.call('HSET', KEYS[2], 'x', '1'); return 1`
	if err := rdb.Eval(ctx, script, []string{prodCreds, devCreds}).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("a script over two tenants' keys = %v, want a CROSSSLOT error", err)
	}
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, prodCreds, "x", "1")
		p.HSet(ctx, devCreds, "x", "1")
		return nil
	})
	if !errors.Is(err, redis.ErrCrossSlot) {
		t.Errorf("a transaction over two tenants' keys = %v, want %v", err, redis.ErrCrossSlot)
	}
	if err := rdb.Eval(ctx, script, []string{prodCreds, prodPipelines}).Err(); err != nil {
		t.Errorf("a script over one tenant's keys = %v", err)
	}
}

// TestClusterNodeDownAndBack kills the master holding a tenant's slot: the store answers
// store.ErrUnavailable (a 503) without naming the node, then serves again once the node is
// back, without being reopened.
func TestClusterNodeDownAndBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.NewCluster(t, 3)
	s, err := redisstore.OpenCluster(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tenant := store.Tenant{OrgID: "acme", EnvID: "prod"}
	if err := s.CreateCredential(ctx, store.Credential{ClientID: "c1", Name: "one", Tenant: tenant}); err != nil {
		t.Fatal(err)
	}

	node := c.NodeOf("sortie:{t:acme/prod}:credentials")
	c.Save(node)
	c.Kill(node)
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping with a master down = %v, want ErrUnavailable", err)
	}
	_, err = s.GetCredential(ctx, tenant, "c1")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetCredential with its master down = %v, want ErrUnavailable", err)
	}
	if addr := c.Addrs()[node]; strings.Contains(err.Error(), addr) {
		t.Errorf("error %q names the node %s", err, addr)
	}

	c.Restart(node)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping once the master is back = %v", err)
	}
	if _, err := s.GetCredential(ctx, tenant, "c1"); err != nil {
		t.Fatalf("GetCredential once the master is back = %v", err)
	}
	if err := s.CreateCredential(ctx, store.Credential{ClientID: "c2", Name: "two", Tenant: tenant}); err != nil {
		t.Fatalf("CreateCredential once the master is back = %v", err)
	}
}
