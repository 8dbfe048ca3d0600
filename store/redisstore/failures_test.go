package redisstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// TestFailureCounter: counts are shared by every client of one Redis (two stores are two
// replicas), concurrent increments are not lost, keys are separate, and a window ends.
func TestFailureCounter(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var a, b store.FailureCounter
			if mode == "cluster" {
				url := redistest.NewCluster(t, 3).URL()
				for _, p := range []*store.FailureCounter{&a, &b} {
					s, err := redisstore.OpenCluster(t.Context(), url)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					*p = s
				}
			} else {
				url := redistest.New(t).URL()
				a, b = open(t, url), open(t, url)
			}
			ctx := t.Context()
			if n, left, err := a.Failures(ctx, "c:x"); n != 0 || left != 0 || err != nil {
				t.Fatalf("no window yet: %d %v %v", n, left, err)
			}
			var wg sync.WaitGroup
			for i := range 20 {
				s := a
				if i%2 == 1 {
					s = b
				}
				wg.Go(func() {
					if _, _, err := s.AddFailure(ctx, "c:x", time.Minute); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for name, s := range map[string]store.FailureCounter{"a": a, "b": b} {
				n, left, err := s.Failures(ctx, "c:x")
				if n != 20 || left <= 50*time.Second || left > time.Minute || err != nil {
					t.Errorf("replica %s: %d failures, %v left, %v; want 20 in a one-minute window", name, n, left, err)
				}
			}
			if n, _, _ := b.Failures(ctx, "c:y"); n != 0 {
				t.Errorf("another key: %d failures", n)
			}
			n, left, err := a.AddFailure(ctx, "short", 200*time.Millisecond)
			if n != 1 || left <= 0 || err != nil {
				t.Fatalf("first failure: %d %v %v", n, left, err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				n, _, err := b.Failures(ctx, "short")
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the window never ended")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n, _, _ := a.AddFailure(ctx, "short", time.Minute); n != 1 {
				t.Errorf("a new window starts at 1, got %d", n)
			}
		})
	}
}
