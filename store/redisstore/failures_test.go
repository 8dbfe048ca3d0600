package redisstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
	"github.com/sortie-dev/sortie/store/storetest"
)

func TestFailureCounterConformance(t *testing.T) {
	t.Parallel()
	url := redistest.New(t).URL()
	storetest.RunFailureCounter(t, func(t *testing.T) store.FailureCounter { return open(t, url) })
}

// TestClusterFailureCounterConformance: the keys of one read lie in different slots, on
// different nodes.
func TestClusterFailureCounterConformance(t *testing.T) {
	t.Parallel()
	url := redistest.NewCluster(t, 3).URL()
	storetest.RunFailureCounter(t, func(t *testing.T) store.FailureCounter { return openCluster(t, url) })
}

// openCluster opens the store on the cluster at url and closes it when t ends.
func openCluster(t *testing.T, url string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.OpenCluster(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestFailureCounterShared: counts are shared by every client of one Redis (two stores are
// two replicas), and increments from both are not lost.
func TestFailureCounterShared(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var a, b store.FailureCounter
			if mode == "cluster" {
				url := redistest.NewCluster(t, 3).URL()
				a, b = openCluster(t, url), openCluster(t, url)
			} else {
				url := redistest.New(t).URL()
				a, b = open(t, url), open(t, url)
			}
			ctx := t.Context()
			var wg sync.WaitGroup
			for i := range 20 {
				s := []store.FailureCounter{a, b}[i%2]
				key := []string{"c:x", "a:y"}[i%4/2]
				wg.Go(func() {
					if _, _, err := s.AddFailure(ctx, key, time.Minute); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for name, s := range map[string]store.FailureCounter{"a": a, "b": b} {
				got, err := s.Failures(ctx, "c:x", "a:y")
				if err != nil {
					t.Fatalf("replica %s: %v", name, err)
				}
				for i, c := range got {
					if c.Count != 10 || c.Left <= 50*time.Second || c.Left > time.Minute {
						t.Errorf("replica %s, key %d: %+v; want 10 in a one-minute window", name, i, c)
					}
				}
			}
		})
	}
}
