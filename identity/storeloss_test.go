package identity_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// syncBuffer is a log destination read while WatchStore writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStoreLost restarts the Redis under a bootstrapped replica, as a Redis without
// persistence comes back from a crash: empty. Ping must say so, not report ready.
func TestStoreLost(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	st, err := redisstore.Open(t.Context(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &syncBuffer{}
	cfg := testConfig(newFakeClock(t0), newMasterKey(t))
	svc, err := identity.New(t.Context(), slog.New(slog.NewJSONHandler(logs, nil)), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A second replica that never bootstrapped has nothing to compare and stays ready.
	unbooted := newService(t, st, cfg)
	if _, err := svc.Bootstrap(t.Context(), filepath.Join(t.TempDir(), "admin-credentials.json")); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if err := svc.Ping(t.Context()); err != nil {
		t.Fatalf("Ping of a bootstrapped store = %v, want nil", err)
	}
	go svc.WatchStore(t.Context(), 20*time.Millisecond)

	srv.Stop()
	srv.Start()

	deadline := time.Now().Add(10 * time.Second)
	var pingErr error
	for {
		pingErr = svc.Ping(t.Context())
		if errors.Is(pingErr, identity.ErrStoreLost) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(pingErr, identity.ErrStoreLost) {
		t.Fatalf("Ping after Redis came back empty = %v, want ErrStoreLost", pingErr)
	}
	if msg := pingErr.Error(); !strings.Contains(msg, "lost its data") || !strings.Contains(msg, "restore") {
		t.Errorf("Ping error %q does not say the data is lost and what to do", msg)
	}
	if err := unbooted.Ping(t.Context()); err != nil {
		t.Errorf("Ping of a replica that never bootstrapped = %v, want nil", err)
	}
	for !strings.Contains(logs.String(), "store lost its data") {
		if time.Now().After(deadline) {
			t.Fatalf("WatchStore logged no error about the lost data; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "store lost its data"); n != 1 {
		t.Errorf("WatchStore logged the loss %d times, want once", n)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("the loss is not logged as an error; log:\n%s", logs.String())
	}

	// Another replica bootstrapping the empty store anew does not make this one ready: its
	// organization, and the tokens it issued, are still gone.
	other := newService(t, st, cfg)
	if _, err := other.Bootstrap(t.Context(), filepath.Join(t.TempDir(), "admin-credentials.json")); err != nil {
		t.Fatalf("Bootstrap of the empty store: %v", err)
	}
	if err := svc.Ping(t.Context()); !errors.Is(err, identity.ErrStoreLost) {
		t.Errorf("Ping after another bootstrap = %v, want ErrStoreLost", err)
	}
	if err := other.Ping(t.Context()); err != nil {
		t.Errorf("Ping of the replica that bootstrapped the new store = %v, want nil", err)
	}
}
