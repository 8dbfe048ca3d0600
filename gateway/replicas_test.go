package gateway_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// startReplica starts a second server on ts's Redis, master key and clock: another replica
// behind the same load balancer, with its own caches.
func startReplica(t *testing.T, ts *testServer, redisURL string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := redisstore.Open(ctx, redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	svc, err := identity.New(ctx, log, st, identity.Config{
		Issuer: ts.URL, Audiences: []string{ts.URL}, TokenTTL: testTTL, KeyRotation: 24 * time.Hour,
		MasterKey: ts.masterKey, Now: ts.clock.Now, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	agents := hub.New(log, hub.Config{Registerer: reg})
	gw := gateway.New(log, svc, agents, reg)
	done := make(chan error, 2)
	go func() { done <- gateway.Serve(ctx, log, ln, gw.Handler(), nil) }()
	go func() { done <- agents.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("replica: %v", err)
			}
		}
		st.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestTwoReplicas: two replicas on one Redis agree: a name created on both at once gives one
// 201 and one 409, and a credential deleted on one stops working on the other within the
// credential check TTL.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	url := redistest.New(t).URL()
	a := startServer(t, serverOptions{redisURL: url})
	b := &testServer{URL: startReplica(t, a, url), clock: a.clock}
	admin := a.adminToken(t)

	t.Run("same name at once", func(t *testing.T) {
		for round := range 5 {
			name := "bot-" + string(rune('a'+round))
			statuses := make([]int, 2)
			var wg sync.WaitGroup
			for i, replica := range []*testServer{a, b} {
				wg.Go(func() {
					statuses[i] = replica.do(t, "POST", "/credentials", admin, map[string]any{"name": name}).Status
				})
			}
			wg.Wait()
			if !(statuses[0] == http.StatusCreated && statuses[1] == http.StatusConflict) &&
				!(statuses[0] == http.StatusConflict && statuses[1] == http.StatusCreated) {
				t.Errorf("%s on both replicas at once: %v, want one 201 and one 409", name, statuses)
			}
		}
	})

	t.Run("revocation reaches the other replica", func(t *testing.T) {
		id, tok := a.credentialToken(t, "short-lived", identity.RoleOrganizationAdmin)
		if r := b.do(t, "GET", "/credentials", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("on the other replica before the delete: %d %s", r.Status, r.Body)
		}
		if r := a.do(t, "DELETE", "/credentials/"+id, admin, nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d", r.Status)
		}
		a.clock.Advance(identity.DefaultCredentialCheckTTL)
		wantError(t, "the other replica, one TTL later", b.do(t, "GET", "/credentials", tok, nil), http.StatusUnauthorized)
	})
}
