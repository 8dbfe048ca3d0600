package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// ErrStoreLost means the store no longer holds the record the first start wrote: it came back
// empty (a Redis restarted without persistence, or flushed) or was bootstrapped again by
// another replica. What this replica serves, and every token it issued, belongs to an
// organization the store no longer has.
var ErrStoreLost = errors.New("the store has lost its data: the bootstrap record written at first start is gone " +
	"(was Redis restarted without persistence, or flushed?); restore the store from a backup and restart, " +
	"or restart every replica on the empty store to bootstrap a new organization and admin credential")

// rememberBootstrap records the store's bootstrap record once Bootstrap has succeeded, so
// that Ping can tell a store that lost its data from one that never had any.
func (s *Service) rememberBootstrap(ctx context.Context) error {
	raw, err := s.st.GetSetting(ctx, bootstrapDoneSetting)
	if err != nil {
		return fmt.Errorf("bootstrap: read the bootstrap record back: %w", err)
	}
	s.bootRecord.Store(&raw)
	return nil
}

// checkBootstrap returns ErrStoreLost when the store no longer holds the bootstrap record
// this replica saw at start-up; before Bootstrap it checks nothing.
func (s *Service) checkBootstrap(ctx context.Context) error {
	want := s.bootRecord.Load()
	if want == nil {
		return nil
	}
	raw, err := s.st.GetSetting(ctx, bootstrapDoneSetting)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrStoreLost
	case err != nil:
		return err
	case !bytes.Equal(raw, *want):
		return ErrStoreLost
	}
	return nil
}

// WatchStore checks every interval, until ctx ends, that the store still holds its bootstrap
// record, and logs an error once when it vanishes (and again once it is back), so a store that
// lost its data shows in the log even when nobody polls /readyz.
func (s *Service) WatchStore(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lost := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.checkBootstrap(ctx)
		switch {
		case errors.Is(err, ErrStoreLost) && !lost:
			lost = true
			s.log.Error("store lost its data; this replica reports not ready", "err", err)
		case err == nil && lost:
			lost = false
			s.log.Info("store holds its bootstrap record again; this replica reports ready")
		}
	}
}
