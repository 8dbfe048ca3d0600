package redisstore

import (
	"context"
	"errors"

	"github.com/sortie-dev/sortie/store"
)

// errNotYet marks the user and ticket operations being built (issue 10).
var errNotYet = errors.New("users and tickets are not implemented yet")

// CreateUser implements store.Users.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	return store.User{}, errNotYet
}

// GetUser implements store.Users.
func (s *Store) GetUser(ctx context.Context, orgID, id string) (store.User, error) {
	return store.User{}, errNotYet
}

// LookupUser implements store.Users.
func (s *Store) LookupUser(ctx context.Context, login string) (store.User, error) {
	return store.User{}, errNotYet
}

// ListUsers implements store.Users.
func (s *Store) ListUsers(ctx context.Context, orgID string) ([]store.User, error) {
	return nil, errNotYet
}

// UpdateUser implements store.Users.
func (s *Store) UpdateUser(ctx context.Context, u store.User) (store.User, error) {
	return store.User{}, errNotYet
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(ctx context.Context, orgID, id string) error { return errNotYet }

// PutTicket implements store.Tickets.
func (s *Store) PutTicket(ctx context.Context, t store.Ticket) error { return errNotYet }

// GetTicket implements store.Tickets.
func (s *Store) GetTicket(ctx context.Context, kind, id string) (store.Ticket, error) {
	return store.Ticket{}, errNotYet
}

// SwapTicket implements store.Tickets.
func (s *Store) SwapTicket(ctx context.Context, kind, id string, old, value []byte) error {
	return errNotYet
}

// TakeTicket implements store.Tickets.
func (s *Store) TakeTicket(ctx context.Context, kind, id string) (store.Ticket, error) {
	return store.Ticket{}, errNotYet
}

// DeleteTicket implements store.Tickets.
func (s *Store) DeleteTicket(ctx context.Context, kind, id string) error { return errNotYet }

// ListTickets implements store.Tickets.
func (s *Store) ListTickets(ctx context.Context, kind, prefix string) ([]store.Ticket, error) {
	return nil, errNotYet
}
