package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// RunFailureCounter runs the conformance suite of store.FailureCounter: every implementation
// (a shared store's, or a process's own in memory) counts the same way.
//
// open returns a counter on the real clock, closed when t ends (t.Cleanup). Counters it
// returns may share one store: each test uses keys of its own.
func RunFailureCounter(t *testing.T, open func(t *testing.T) store.FailureCounter) {
	tests := []struct {
		name string
		test func(t *testing.T, c store.FailureCounter)
	}{
		{"Counts", testFailureCounts},
		{"ManyKeys", testFailuresOfManyKeys},
		{"ConcurrentAdds", testConcurrentFailures},
		{"WindowEnds", testFailureWindowEnds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, open(t))
		})
	}
}

// failures reads keys and fails t on an error or a reply of another length.
func failures(t *testing.T, c store.FailureCounter, keys ...string) []store.FailureCount {
	t.Helper()
	got, err := c.Failures(t.Context(), keys...)
	if err != nil {
		t.Fatalf("Failures(%q): %v", keys, err)
	}
	if len(got) != len(keys) {
		t.Fatalf("Failures(%q) = %d counts, want one per key", keys, len(got))
	}
	return got
}

// inWindow reports whether c is count events in a window window long, opened in the last
// ten seconds.
func inWindow(c store.FailureCount, count int64, window time.Duration) bool {
	return c.Count == count && c.Left > window-10*time.Second && c.Left <= window
}

func testFailureCounts(t *testing.T, c store.FailureCounter) {
	ctx := t.Context()
	if got := failures(t, c); len(got) != 0 {
		t.Errorf("no keys: %v", got)
	}
	if got := failures(t, c, "c:x"); got[0] != (store.FailureCount{}) {
		t.Errorf("no window yet: %+v, want zero", got[0])
	}
	for i := range 3 {
		n, left, err := c.AddFailure(ctx, "c:x", time.Minute)
		if !inWindow(store.FailureCount{Count: n, Left: left}, int64(i+1), time.Minute) || err != nil {
			t.Fatalf("failure %d: %d, %v left, %v; want %d in a one-minute window", i+1, n, left, err, i+1)
		}
	}
	if _, _, err := c.AddFailure(ctx, "a:y", time.Hour); err != nil {
		t.Fatal(err)
	}
	// Keys in the order asked, a key asked twice answered twice, an unknown key zero; a
	// key's window keeps the length its first event gave it.
	got := failures(t, c, "a:y", "c:x", "c:unknown", "c:x")
	want := []struct {
		count  int64
		window time.Duration
	}{{1, time.Hour}, {3, time.Minute}, {0, 0}, {3, time.Minute}}
	for i, w := range want {
		if w.count == 0 && got[i] != (store.FailureCount{}) || w.count != 0 && !inWindow(got[i], w.count, w.window) {
			t.Errorf("count %d: %+v, want %d in a window of %v", i, got[i], w.count, w.window)
		}
	}
}

// testFailuresOfManyKeys reads more keys than a shared store has shards (a Redis Cluster's
// nodes), in one call.
func testFailuresOfManyKeys(t *testing.T, c store.FailureCounter) {
	const n = 24
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("token:a:192.0.2.%d", i)
		for range i % 4 {
			if _, _, err := c.AddFailure(t.Context(), keys[i], time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, got := range failures(t, c, keys...) {
		if want := int64(i % 4); want == 0 && got != (store.FailureCount{}) || want != 0 && !inWindow(got, want, time.Minute) {
			t.Errorf("%s: %+v, want %d in a one-minute window", keys[i], got, want)
		}
	}
}

func testConcurrentFailures(t *testing.T, c store.FailureCounter) {
	var wg sync.WaitGroup
	for i := range 40 {
		key := []string{"c:p", "c:q"}[i%2]
		wg.Go(func() {
			if _, _, err := c.AddFailure(t.Context(), key, time.Minute); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, got := range failures(t, c, "c:p", "c:q") {
		if !inWindow(got, 20, time.Minute) {
			t.Errorf("key %d after 20 concurrent failures: %+v", i, got)
		}
	}
}

func testFailureWindowEnds(t *testing.T, c store.FailureCounter) {
	ctx := t.Context()
	if n, left, err := c.AddFailure(ctx, "short", 200*time.Millisecond); n != 1 || left <= 0 || left > 200*time.Millisecond || err != nil {
		t.Fatalf("first failure: %d, %v left, %v", n, left, err)
	}
	if _, _, err := c.AddFailure(ctx, "long", time.Minute); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := failures(t, c, "short", "long")
		if !inWindow(got[1], 1, time.Minute) {
			t.Fatalf("the long window: %+v", got[1])
		}
		if got[0] == (store.FailureCount{}) {
			break
		}
		if got[0].Count != 1 || got[0].Left <= 0 {
			t.Fatalf("the short window before its end: %+v", got[0])
		}
		if time.Now().After(deadline) {
			t.Fatal("the window never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, left, err := c.AddFailure(ctx, "short", time.Minute); n != 1 || !inWindow(store.FailureCount{Count: n, Left: left}, 1, time.Minute) || err != nil {
		t.Errorf("a new window: %d, %v left, %v; want 1 in a one-minute window", n, left, err)
	}
}
