package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/store"
)

type membership struct {
	EnvID string   `json:"env_id"`
	Roles []string `json:"roles"`
}

type user struct {
	ID           string       `json:"id"`
	OrgID        string       `json:"org_id"`
	Login        string       `json:"login"`
	Name         string       `json:"name"`
	PasswordHash string       `json:"password_hash,omitempty"`
	External     string       `json:"external,omitempty"`
	Memberships  []membership `json:"memberships"`
	// TokensNotBefore is absent in records written before it existed.
	TokensNotBefore time.Time `json:"tokens_not_before,omitzero"`
	Revision        int64     `json:"revision"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

type ticket struct {
	Value     []byte    `json:"value"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CheckUser refuses a user without its identity (ID, OrgID, Login) or with a membership that
// names no environment or repeats one. The error is none of the store's sentinels.
func CheckUser(u store.User) error {
	switch {
	case u.ID == "":
		return errors.New("empty user id")
	case u.OrgID == "":
		return errors.New("empty organization id")
	case u.Login == "":
		return errors.New("empty login")
	}
	return checkMemberships(u.Memberships)
}

func checkMemberships(ms []store.Membership) error {
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if m.EnvID == "" {
			return errors.New("membership without an environment")
		}
		if seen[m.EnvID] {
			return fmt.Errorf("two memberships of environment %q", m.EnvID)
		}
		seen[m.EnvID] = true
	}
	return nil
}

// CheckUserUpdate refuses an update that addresses no user or carries bad memberships.
func CheckUserUpdate(u store.User) error {
	switch {
	case u.ID == "":
		return errors.New("empty user id")
	case u.OrgID == "":
		return errors.New("empty organization id")
	}
	return checkMemberships(u.Memberships)
}

// EncodeUser returns the stored form of u, its memberships ordered by EnvID. It checks u as
// CheckUser does.
func EncodeUser(u store.User) ([]byte, error) {
	if err := CheckUser(u); err != nil {
		return nil, err
	}
	ms := make([]membership, 0, len(u.Memberships))
	for _, m := range u.Memberships {
		ms = append(ms, membership{EnvID: m.EnvID, Roles: m.Roles})
	}
	slices.SortFunc(ms, func(a, b membership) int { return strings.Compare(a.EnvID, b.EnvID) })
	return json.Marshal(user{
		ID:              u.ID,
		OrgID:           u.OrgID,
		Login:           u.Login,
		Name:            u.Name,
		PasswordHash:    u.PasswordHash,
		External:        u.External,
		Memberships:     ms,
		TokensNotBefore: u.TokensNotBefore.UTC(),
		Revision:        u.Revision,
		CreatedAt:       u.CreatedAt.UTC(),
		UpdatedAt:       u.UpdatedAt.UTC(),
	})
}

// DecodeUser parses the stored form of a user.
func DecodeUser(b []byte) (store.User, error) {
	var r user
	if err := json.Unmarshal(b, &r); err != nil {
		return store.User{}, err
	}
	var ms []store.Membership
	for _, m := range r.Memberships {
		ms = append(ms, store.Membership{EnvID: m.EnvID, Roles: m.Roles})
	}
	return store.User{
		ID:              r.ID,
		OrgID:           r.OrgID,
		Login:           r.Login,
		Name:            r.Name,
		PasswordHash:    r.PasswordHash,
		External:        r.External,
		Memberships:     ms,
		TokensNotBefore: r.TokensNotBefore,
		Revision:        r.Revision,
		CreatedAt:       r.CreatedAt,
		UpdatedAt:       r.UpdatedAt,
	}, nil
}

// UpdatedUser returns stored with the fields UpdateUser replaces taken from u and its
// Revision increased by one.
func UpdatedUser(stored, u store.User) store.User {
	stored.Name = u.Name
	stored.PasswordHash = u.PasswordHash
	stored.External = u.External
	stored.Memberships = u.Memberships
	stored.TokensNotBefore = u.TokensNotBefore
	stored.UpdatedAt = u.UpdatedAt
	stored.Revision++
	return stored
}

// SortUsers orders users by Login, the order ListUsers promises.
func SortUsers(users []store.User) {
	slices.SortFunc(users, func(a, b store.User) int { return strings.Compare(a.Login, b.Login) })
}

// CheckTicket refuses a ticket without kind or id, or one that has already expired at now.
// The error is none of the store's sentinels.
func CheckTicket(t store.Ticket, now time.Time) error {
	switch {
	case t.Kind == "":
		return errors.New("empty ticket kind")
	case t.ID == "":
		return errors.New("empty ticket id")
	case !t.ExpiresAt.After(now):
		return errors.New("ticket expiry is not in the future")
	}
	return nil
}

// EncodeTicket returns the stored form of t's value and expiry.
func EncodeTicket(t store.Ticket) ([]byte, error) {
	return json.Marshal(ticket{Value: t.Value, ExpiresAt: t.ExpiresAt.UTC()})
}

// DecodeTicket parses the stored form of the ticket of that kind and id.
func DecodeTicket(b []byte, kind, id string) (store.Ticket, error) {
	var r ticket
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Ticket{}, err
	}
	return store.Ticket{Kind: kind, ID: id, Value: r.Value, ExpiresAt: r.ExpiresAt}, nil
}
