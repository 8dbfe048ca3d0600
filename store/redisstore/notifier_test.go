package redisstore_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

type heard struct {
	ref    store.PipelineRef
	origin string
}

// listen runs n's Listen until the test ends, reporting hints and resubscriptions.
func listen(t *testing.T, n *redisstore.Notifier) (<-chan heard, <-chan struct{}) {
	t.Helper()
	hints, missed := make(chan heard, 256), make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never block the listener (a full channel only loses hints, as Redis may).
		n.Listen(ctx, func(ref store.PipelineRef, origin string) {
			select {
			case hints <- heard{ref, origin}:
			default:
			}
		}, func() {
			select {
			case missed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return hints, missed
}

// publishUntilHeard publishes ref until the listener hears it: a subscription that is being
// set up misses what is published before it is confirmed, which is what hints allow.
func publishUntilHeard(t *testing.T, n *redisstore.Notifier, hints <-chan heard, ref store.PipelineRef, origin string) heard {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		_ = n.Publish(context.Background(), ref, origin)
		select {
		case h := <-hints:
			if h.ref == ref {
				return h
			}
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("pipeline %v: no wake-up heard", ref)
		}
	}
}

func TestNotifierCarriesHintsBetweenReplicas(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := redistest.New(t)
	a, b := open(t, srv.URL()).Notifier(log), open(t, srv.URL()).Notifier(log)
	hints, missed := listen(t, b)
	ref := store.PipelineRef{Tenant: store.Tenant{OrgID: "acme", EnvID: "prod"}, ID: "p/1 é"}
	if h := publishUntilHeard(t, a, hints, ref, "replica-a"); h.ref != ref || h.origin != "replica-a" {
		t.Errorf("heard %+v, want %v from replica-a", h, ref)
	}

	// Unreadable messages are ignored; the next hint still arrives.
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.URL()[len("unix://"):]})
	t.Cleanup(func() { rdb.Close() })
	for _, junk := range []string{"not json", `{"o":"acme"}`} {
		if err := rdb.Publish(t.Context(), redisstore.PipelineChannel, junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	other := store.PipelineRef{Tenant: ref.Tenant, ID: "p2"}
	if err := a.Publish(t.Context(), other, "replica-a"); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case h := <-hints:
			got = h.ref == other // earlier hints of ref may still be queued
		case <-timeout:
			t.Fatal("no wake-up after unreadable messages")
		}
	}

	// Redis restarts: hints published meanwhile are lost, so the listener reports the
	// resubscription, and hints flow again.
	srv.Stop()
	if err := a.Publish(t.Context(), ref, "replica-a"); err == nil {
		t.Error("publishing while Redis is down succeeded")
	}
	srv.Start()
	select {
	case <-missed:
	case <-time.After(10 * time.Second):
		t.Fatal("the resubscription after a Redis restart was not reported")
	}
	publishUntilHeard(t, a, hints, other, "replica-a")
	if len(missed) != 0 {
		t.Errorf("%d more resubscriptions reported", len(missed))
	}
}

// On a Redis Cluster a hint published through any node reaches a subscriber on another.
func TestNotifierOnCluster(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := redistest.NewCluster(t, 3)
	openCluster := func() *redisstore.Notifier {
		s, err := redisstore.OpenCluster(t.Context(), c.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s.Notifier(log)
	}
	a, b := openCluster(), openCluster()
	hints, _ := listen(t, b)
	for i, addr := range c.Addrs() {
		// PUBLISH on each node in turn, not only where go-redis would route it.
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rdb.Close() })
		ref := store.PipelineRef{Tenant: store.Tenant{OrgID: "acme", EnvID: "prod"}, ID: string(rune('a' + i))}
		deadline := time.After(10 * time.Second)
	heard:
		for {
			if err := rdb.Publish(t.Context(), redisstore.PipelineChannel, `{"o":"acme","e":"prod","p":"`+ref.ID+`","r":"x"}`).Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case h := <-hints:
				if h.ref == ref {
					break heard
				}
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("a hint published on node %d never arrived", i)
			}
		}
	}
	ref := store.PipelineRef{Tenant: store.Tenant{OrgID: "acme", EnvID: "dev"}, ID: "p"}
	if h := publishUntilHeard(t, a, hints, ref, "replica-a"); h.ref != ref {
		t.Errorf("heard %+v, want %v", h, ref)
	}
}
