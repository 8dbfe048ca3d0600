package store

import (
	"context"
	"time"
)

// User is a person who signs in to the console or the CLI. A user belongs to one organization
// and is a member of some of its environments, with roles in each.
type User struct {
	ID    string // the subject of the user's tokens
	OrgID string
	// Login is what the person signs in with: a lower-cased email address or user name,
	// unique across the server (the sign-in page does not ask for an organization).
	Login string
	Name  string // display name
	// PasswordHash is an argon2id PHC string; empty for a user who signs in only through the
	// external identity provider.
	PasswordHash string
	// External is "<issuer> <subject>" for a user the external identity provider vouches for;
	// empty for a local user.
	External    string
	Memberships []Membership // ordered by EnvID, at most one per environment
	// TokensNotBefore ends the user's bearer tokens (the device grant's, which have no
	// session) issued before it; a password change sets it. Zero: none ended.
	TokensNotBefore time.Time
	// Revision increases by one on every write; UpdateUser is conditioned on it.
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Membership is a user's roles in one environment of the user's organization.
type Membership struct {
	EnvID string
	Roles []string
}

// Member returns the user's membership of envID, if any.
func (u User) Member(envID string) (Membership, bool) {
	for _, m := range u.Memberships {
		if m.EnvID == envID {
			return m, true
		}
	}
	return Membership{}, false
}

// Users stores people.
type Users interface {
	// CreateUser stores u with Revision 1; ErrConflict if u.ID exists or u.Login is taken by
	// any user. The login check and the insert are one atomic step.
	CreateUser(ctx context.Context, u User) (User, error)
	// GetUser returns the user of that organization or ErrNotFound.
	GetUser(ctx context.Context, orgID, id string) (User, error)
	// LookupUser finds a user by login in any organization (sign-in only), or ErrNotFound.
	LookupUser(ctx context.Context, login string) (User, error)
	// ListUsers returns the organization's users ordered by Login.
	ListUsers(ctx context.Context, orgID string) ([]User, error)
	// UpdateUser replaces Name, PasswordHash, External, Memberships, TokensNotBefore and
	// UpdatedAt if the stored Revision is u.Revision, and returns the user with its new
	// Revision. ErrStale when the revision moved on, ErrNotFound when the user does not exist.
	// ID, OrgID, Login and CreatedAt never change.
	UpdateUser(ctx context.Context, u User) (User, error)
	// DeleteUser removes the user (freeing the login) if the stored Revision is revision:
	// ErrStale when the revision moved on (someone changed the user since the caller read
	// it), ErrNotFound when the user does not exist.
	DeleteUser(ctx context.Context, orgID, id string, revision int64) error
}

// Ticket kinds: short-lived records of the sign-in flows. A kind is a namespace of ids.
const (
	TicketAuthRequest  = "authreq"    // a pending /oauth/authorize request
	TicketAuthCode     = "authcode"   // an issued authorization code
	TicketSession      = "session"    // a live console session (sign-out deletes it)
	TicketDeviceCode   = "devicecode" // a device authorization, by device code
	TicketDeviceUser   = "deviceuser" // the same, by user code
	TicketInvitation   = "invitation" // a pending invitation, by "<orgID>/<envID>/<id>"
	TicketInviteSecret = "invitekey"  // an invitation link's secret hash -> its id
)

// Ticket is one live short-lived record.
type Ticket struct {
	Kind      string
	ID        string
	Value     []byte
	ExpiresAt time.Time
}

// Tickets stores short-lived records (authorization codes, device codes, sessions,
// invitations). A ticket is gone once its ExpiresAt has passed: every read treats it as
// missing, and the store removes it eventually. Values may hold secrets' hashes, never the
// secrets themselves.
type Tickets interface {
	// PutTicket stores t; ErrConflict if a live ticket of that kind and id exists. Bad input
	// (empty kind or id, an ExpiresAt not in the future) is refused with an error that is none
	// of the sentinels.
	PutTicket(ctx context.Context, t Ticket) error
	// GetTicket returns the live ticket or ErrNotFound.
	GetTicket(ctx context.Context, kind, id string) (Ticket, error)
	// SwapTicket replaces the live ticket's value with value if it is still old, keeping its
	// expiry: ErrStale when the value differs, ErrNotFound when it is gone.
	SwapTicket(ctx context.Context, kind, id string, old, value []byte) error
	// TakeTicket returns the live ticket and deletes it in one atomic step: of several
	// concurrent takers exactly one gets it, the others ErrNotFound.
	TakeTicket(ctx context.Context, kind, id string) (Ticket, error)
	// DeleteTicket removes the ticket; a missing one is not an error.
	DeleteTicket(ctx context.Context, kind, id string) error
	// ListTickets returns the live tickets of kind whose id starts with prefix, ordered by id.
	ListTickets(ctx context.Context, kind, prefix string) ([]Ticket, error)
}
