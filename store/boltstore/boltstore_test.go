package boltstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
	"github.com/sortie-dev/sortie/store/storetest"
)

// open opens the store at path and closes it when t ends.
func open(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t,
		func(t *testing.T) store.Store {
			return open(t, filepath.Join(t.TempDir(), "sortie.db"))
		},
		func(t *testing.T, old store.Store) store.Store {
			path := old.(*boltstore.Store).Path()
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, path)
		},
	)
}

func TestOpenInUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sortie.db")
	open(t, path)

	s, err := boltstore.Open(path)
	if err == nil {
		s.Close()
		t.Fatal("second Open succeeded, want an error")
	}
	if !errors.Is(err, boltstore.ErrInUse) || !strings.Contains(err.Error(), "data file is in use by another process") {
		t.Errorf("second Open error = %q, want ErrInUse saying the data file is in use", err)
	}
}

func TestFileMode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sortie.db")
	open(t, path)

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("data file mode = %v, want -rw-------", got)
	}
}

func TestPingAfterClose(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "sortie.db"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping after Close = %v, want ErrUnavailable", err)
	}
}
