package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/internal/record"
)

// usersBucket returns the bucket of orgID's users, or nil if it has none.
func usersBucket(tx *bolt.Tx, orgID string) *bolt.Bucket {
	return tx.Bucket([]byte(bucketUsers)).Bucket([]byte(orgID))
}

// getUser reads one user of orgID.
func getUser(tx *bolt.Tx, orgID, id string) (store.User, error) {
	b := usersBucket(tx, orgID)
	if b == nil {
		return store.User{}, store.ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return store.User{}, store.ErrNotFound
	}
	return record.DecodeUser(v)
}

// CreateUser implements store.Users. The id and login checks and the insert are one
// read-write transaction.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	u.Revision = 1
	v, err := record.EncodeUser(u)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			ids := tx.Bucket([]byte(bucketUserIDs))
			logins := tx.Bucket([]byte(bucketUserLogins))
			if ids.Get([]byte(u.ID)) != nil {
				return store.ErrConflict
			}
			if logins.Get([]byte(u.Login)) != nil {
				return fmt.Errorf("login: %w", store.ErrConflict)
			}
			b, err := tx.Bucket([]byte(bucketUsers)).CreateBucketIfNotExists([]byte(u.OrgID))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(u.ID), v); err != nil {
				return err
			}
			if err := ids.Put([]byte(u.ID), []byte(u.OrgID)); err != nil {
				return err
			}
			return logins.Put([]byte(u.Login), []byte(u.ID))
		})
	}
	if err != nil {
		return store.User{}, fmt.Errorf("create user %s: %w", u.ID, err)
	}
	return record.DecodeUser(v)
}

// GetUser implements store.Users.
func (s *Store) GetUser(ctx context.Context, orgID, id string) (store.User, error) {
	var u store.User
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		u, err = getUser(tx, orgID, id)
		return err
	})
	if err != nil {
		return store.User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// LookupUser implements store.Users.
func (s *Store) LookupUser(ctx context.Context, login string) (store.User, error) {
	var u store.User
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket([]byte(bucketUserLogins)).Get([]byte(login))
		if id == nil {
			return store.ErrNotFound
		}
		org := tx.Bucket([]byte(bucketUserIDs)).Get(id)
		if org == nil {
			return store.ErrNotFound
		}
		var err error
		u, err = getUser(tx, string(org), string(id))
		return err
	})
	if err != nil {
		return store.User{}, fmt.Errorf("look up user by login: %w", err)
	}
	return u, nil
}

// ListUsers implements store.Users.
func (s *Store) ListUsers(ctx context.Context, orgID string) ([]store.User, error) {
	var users []store.User
	err := s.view(func(tx *bolt.Tx) error {
		b := usersBucket(tx, orgID)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			u, err := record.DecodeUser(v)
			users = append(users, u)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list users of %s: %w", orgID, err)
	}
	record.SortUsers(users)
	return users, nil
}

// UpdateUser implements store.Users.
func (s *Store) UpdateUser(ctx context.Context, u store.User) (store.User, error) {
	var v []byte
	err := record.CheckUserUpdate(u)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			old, err := getUser(tx, u.OrgID, u.ID)
			if err != nil {
				return err
			}
			if old.Revision != u.Revision {
				return fmt.Errorf("revision %d is not the stored %d: %w", u.Revision, old.Revision, store.ErrStale)
			}
			v, err = record.EncodeUser(record.UpdatedUser(old, u))
			if err != nil {
				return err
			}
			return usersBucket(tx, u.OrgID).Put([]byte(u.ID), v)
		})
	}
	if err != nil {
		return store.User{}, fmt.Errorf("update user %s: %w", u.ID, err)
	}
	return record.DecodeUser(v)
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(ctx context.Context, orgID, id string, revision int64) error {
	err := s.update(func(tx *bolt.Tx) error {
		u, err := getUser(tx, orgID, id)
		if err != nil {
			return err
		}
		if u.Revision != revision {
			return fmt.Errorf("revision %d is not the stored %d: %w", revision, u.Revision, store.ErrStale)
		}
		if err := usersBucket(tx, orgID).Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketUserIDs)).Delete([]byte(id)); err != nil {
			return err
		}
		logins := tx.Bucket([]byte(bucketUserLogins))
		if bytes.Equal(logins.Get([]byte(u.Login)), []byte(id)) {
			return logins.Delete([]byte(u.Login))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}

// ticketsBucket returns the bucket of kind's tickets, or nil if it has none.
func ticketsBucket(tx *bolt.Tx, kind string) *bolt.Bucket {
	return tx.Bucket([]byte(bucketTickets)).Bucket([]byte(kind))
}

// liveTicket reads the ticket of kind and id if it has not expired at now.
func liveTicket(tx *bolt.Tx, kind, id string, now time.Time) (store.Ticket, error) {
	b := ticketsBucket(tx, kind)
	if b == nil {
		return store.Ticket{}, store.ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return store.Ticket{}, store.ErrNotFound
	}
	t, err := record.DecodeTicket(v, kind, id)
	if err != nil {
		return store.Ticket{}, err
	}
	if !t.ExpiresAt.After(now) {
		return store.Ticket{}, store.ErrNotFound
	}
	return t, nil
}

// ticketSweepInterval is how often PutTicket removes a kind's expired tickets.
const ticketSweepInterval = time.Minute

// PutTicket implements store.Tickets. Once a ticketSweepInterval per kind it also removes the
// kind's expired tickets (reads ignore them meanwhile), so a put costs one lookup, not a scan
// of every session of the server.
func (s *Store) PutTicket(ctx context.Context, t store.Ticket) error {
	now := time.Now()
	err := record.CheckTicket(t, now)
	var v []byte
	if err == nil {
		v, err = record.EncodeTicket(t)
	}
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			b, err := tx.Bucket([]byte(bucketTickets)).CreateBucketIfNotExists([]byte(t.Kind))
			if err != nil {
				return err
			}
			if _, err := liveTicket(tx, t.Kind, t.ID, now); err == nil {
				return store.ErrConflict
			}
			if s.sweepDue(t.Kind, now) {
				if err := sweepTickets(b, t.Kind, now); err != nil {
					return err
				}
			}
			return b.Put([]byte(t.ID), v)
		})
	}
	if err != nil {
		return fmt.Errorf("put %s ticket: %w", t.Kind, err)
	}
	return nil
}

// sweepDue reports whether kind's expired tickets were last removed a ticketSweepInterval
// ago or more, and if so counts them as removed now.
func (s *Store) sweepDue(kind string, now time.Time) bool {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if last, ok := s.sweptAt[kind]; ok && now.Sub(last) < ticketSweepInterval {
		return false
	}
	s.sweptAt[kind] = now
	return true
}

// sweepTickets deletes b's tickets that expired by now. A ticket that cannot be read is
// expired too: no read could ever return it.
func sweepTickets(b *bolt.Bucket, kind string, now time.Time) error {
	var expired [][]byte
	err := b.ForEach(func(k, raw []byte) error {
		if old, err := record.DecodeTicket(raw, kind, string(k)); err != nil || !old.ExpiresAt.After(now) {
			expired = append(expired, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// GetTicket implements store.Tickets.
func (s *Store) GetTicket(ctx context.Context, kind, id string) (store.Ticket, error) {
	var t store.Ticket
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		t, err = liveTicket(tx, kind, id, time.Now())
		return err
	})
	if err != nil {
		return store.Ticket{}, fmt.Errorf("get %s ticket: %w", kind, err)
	}
	return t, nil
}

// SwapTicket implements store.Tickets.
func (s *Store) SwapTicket(ctx context.Context, kind, id string, old, value []byte) error {
	err := s.update(func(tx *bolt.Tx) error {
		t, err := liveTicket(tx, kind, id, time.Now())
		if err != nil {
			return err
		}
		if !bytes.Equal(t.Value, old) {
			return store.ErrStale
		}
		t.Value = value
		v, err := record.EncodeTicket(t)
		if err != nil {
			return err
		}
		return ticketsBucket(tx, kind).Put([]byte(id), v)
	})
	if err != nil {
		return fmt.Errorf("swap %s ticket: %w", kind, err)
	}
	return nil
}

// TakeTicket implements store.Tickets: bbolt runs read-write transactions one at a time, so
// of concurrent takers only the first finds the ticket.
func (s *Store) TakeTicket(ctx context.Context, kind, id string) (store.Ticket, error) {
	var t store.Ticket
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		t, err = liveTicket(tx, kind, id, time.Now())
		if err != nil {
			return err
		}
		return ticketsBucket(tx, kind).Delete([]byte(id))
	})
	if err != nil {
		return store.Ticket{}, fmt.Errorf("take %s ticket: %w", kind, err)
	}
	return t, nil
}

// DeleteTicket implements store.Tickets.
func (s *Store) DeleteTicket(ctx context.Context, kind, id string) error {
	err := s.update(func(tx *bolt.Tx) error {
		b := ticketsBucket(tx, kind)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete %s ticket: %w", kind, err)
	}
	return nil
}

// ListTickets implements store.Tickets; bbolt's keys are ordered, so a cursor seek yields
// the prefix's tickets by id.
func (s *Store) ListTickets(ctx context.Context, kind, prefix string) ([]store.Ticket, error) {
	now := time.Now()
	var tickets []store.Ticket
	err := s.view(func(tx *bolt.Tx) error {
		b := ticketsBucket(tx, kind)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			t, err := record.DecodeTicket(v, kind, string(k))
			if err != nil {
				return err
			}
			if t.ExpiresAt.After(now) {
				tickets = append(tickets, t)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s tickets: %w", kind, err)
	}
	return tickets, nil
}
