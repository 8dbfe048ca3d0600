package boltstore

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sortie-dev/sortie/store"
)

// rawTicketIDs lists every id stored under kind, expired and damaged ones included.
func rawTicketIDs(t *testing.T, s *Store, kind string) []string {
	t.Helper()
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return ticketsBucket(tx, kind).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestTicketSweep: PutTicket removes a kind's expired (and unreadable) tickets once a
// ticketSweepInterval, not on every put, and never a live one.
func TestTicketSweep(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "sortie.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	kind := store.TicketSession
	put := func(id string, ttl time.Duration) {
		t.Helper()
		if err := s.PutTicket(ctx, store.Ticket{Kind: kind, ID: id, Value: []byte(id), ExpiresAt: time.Now().Add(ttl)}); err != nil {
			t.Fatalf("PutTicket %s: %v", id, err)
		}
	}
	put("short", 50*time.Millisecond) // the kind's first put sweeps (nothing yet)
	put("long", time.Hour)
	err = s.db.Update(func(tx *bolt.Tx) error { return ticketsBucket(tx, kind).Put([]byte("damaged"), []byte("{")) })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)

	put("next", time.Hour)
	if got, want := rawTicketIDs(t, s, kind), []string{"damaged", "long", "next", "short"}; !slices.Equal(got, want) {
		t.Errorf("within the sweep interval the bucket holds %v, want %v", got, want)
	}
	if _, err := s.GetTicket(ctx, kind, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTicket of an expired, unswept ticket = %v, want ErrNotFound", err)
	}

	s.sweptAt[kind] = time.Now().Add(-ticketSweepInterval)
	put("last", time.Hour)
	if got, want := rawTicketIDs(t, s, kind), []string{"last", "long", "next"}; !slices.Equal(got, want) {
		t.Errorf("after a due sweep the bucket holds %v, want %v", got, want)
	}
	if err := s.PutTicket(ctx, store.Ticket{Kind: kind, ID: "long", ExpiresAt: time.Now().Add(time.Hour)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutTicket over a live ticket = %v, want ErrConflict", err)
	}
	put("short", time.Hour) // an expired id is free again
}
