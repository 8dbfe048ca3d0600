package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/store"
)

// ErrUserGone is returned (wrapped, with ErrInvalidToken) when a user token's user, its
// membership of the token's environment or its console session no longer exists.
var ErrUserGone = errors.New("the user or session no longer exists")

// ErrTokenEnded is returned (wrapped, with ErrInvalidToken) for a bearer user token issued
// before the user's password changed.
var ErrTokenEnded = errors.New("the token was issued before the password changed; sign in again")

// recheckUser is Recheck for a user token: the user is read from the store every time (no
// cache, so removing a user or a membership takes effect at once), the token's environment
// must still be one of the user's, the roles and scopes are the membership's current ones,
// a console session token needs its live session, and a bearer one must be newer than the
// user's last password change.
func (s *Service) recheckUser(ctx context.Context, p Principal) (Principal, error) {
	u, err := s.st.GetUser(ctx, p.OrgID, p.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUserGone)
	}
	if err != nil {
		return Principal{}, err
	}
	m, ok := u.Member(p.EnvID)
	if !ok {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUserGone)
	}
	if p.SessionID != "" {
		if _, err := s.liveSession(ctx, p.SessionID, u); err != nil {
			return Principal{}, err
		}
	} else if p.IssuedAt.Before(u.TokensNotBefore) {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenEnded)
	}
	p.Name = u.Login
	p.Roles = slices.Clone(m.Roles)
	p.Scopes = ScopesOf(m.Roles)
	return p, nil
}

// NewLocalUser is what CreateLocalUser needs.
type NewLocalUser struct {
	OrgID       string
	Login       string
	Name        string
	Password    string
	Memberships []store.Membership
}

// CreateLocalUser creates a user who signs in with a password (at least MinPasswordLength
// characters), hashed with argon2id. The login is stored lower-cased and must be free on the
// whole server (409 otherwise).
func (s *Service) CreateLocalUser(ctx context.Context, nu NewLocalUser) (store.User, error) {
	var verr ValidationError
	login := NormalizeLogin(nu.Login)
	checkLogin(&verr, "login", login)
	checkPassword(&verr, "password", nu.Password)
	for i, m := range nu.Memberships {
		if m.EnvID == "" {
			verr.add(fmt.Sprintf("memberships[%d].envId", i), "is required")
		}
		validateRoles(&verr, fmt.Sprintf("memberships[%d].roles", i), m.Roles)
	}
	if err := verr.errOrNil(); err != nil {
		return store.User{}, err
	}
	hash, err := s.hashPassword(ctx, nu.Password)
	if err != nil {
		return store.User{}, err
	}
	memberships := slices.Clone(nu.Memberships)
	slices.SortFunc(memberships, func(a, b store.Membership) int { return strings.Compare(a.EnvID, b.EnvID) })
	now := s.now().UTC()
	u := store.User{
		ID: uuid.NewString(), OrgID: nu.OrgID, Login: login, Name: nu.Name, PasswordHash: hash,
		Memberships: memberships, CreatedAt: now, UpdatedAt: now,
	}
	created, err := s.st.CreateUser(ctx, u)
	if err != nil {
		return store.User{}, callerError(err, "a user with login %q exists already", login)
	}
	s.log.Info("user created", "org", nu.OrgID, "user", created.ID, "login", login)
	return created, nil
}

// checkLogin validates a (normalized) login: an email address or a user name.
func checkLogin(verr *ValidationError, field, login string) {
	switch {
	case login == "":
		verr.add(field, "is required")
	case len(login) > 254:
		verr.add(field, "must be at most 254 characters long")
	case strings.ContainsFunc(login, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		verr.add(field, "must not contain spaces or control characters")
	}
}

// ChangePassword sets a new password for the calling user after checking the current one. A
// wrong current password is a ValidationError on currentPassword (and counts as a failed
// sign-in, so guessing through it is rate-limited too); a new password that is too short is
// one on newPassword. Machines, and users who sign in only through the external provider,
// have no password to change. The user's other console sessions and bearer tokens (the
// device grant's, which the CLI holds) end with the change.
func (s *Service) ChangePassword(ctx context.Context, p Principal, current, newPassword string) error {
	if p.Type != PrincipalUser {
		return &CallerError{Message: "only a user has a password; machine credentials have secrets", Kind: store.ErrNotFound}
	}
	var verr ValidationError
	checkPassword(&verr, "newPassword", newPassword)
	if err := verr.errOrNil(); err != nil {
		return err
	}
	u, err := s.st.GetUser(ctx, p.OrgID, p.Subject)
	if err != nil {
		return callerError(err, "your user no longer exists")
	}
	if u.PasswordHash == "" {
		return &ValidationError{Problems: []Problem{{Field: "currentPassword",
			Message: "you sign in through the external identity provider; change your password there"}}}
	}
	if _, err := s.CheckPassword(ctx, u.Login, current, "change-password:"+u.ID); err != nil {
		switch {
		case errors.Is(err, ErrWrongPassword):
			return &ValidationError{Problems: []Problem{{Field: "currentPassword", Message: "is wrong"}}}
		case errors.Is(err, ErrTooManySignIns):
			return &ValidationError{Problems: []Problem{{Field: "currentPassword", Message: "was wrong too many times; wait a minute and try again"}}}
		}
		return err
	}
	if current == newPassword {
		return &ValidationError{Problems: []Problem{{Field: "newPassword", Message: "must differ from the current password"}}}
	}
	hash, err := s.hashPassword(ctx, newPassword)
	if err != nil {
		return err
	}
	u.PasswordHash = hash
	u.UpdatedAt = s.now().UTC()
	// Tokens carry their issue time in whole seconds: starting at the next one ends every
	// token issued so far, at the price of refusing one issued in the rest of this second.
	u.TokensNotBefore = u.UpdatedAt.Truncate(time.Second).Add(time.Second)
	if _, err := s.st.UpdateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrStale) {
			return &CallerError{Message: "your account changed meanwhile; try again", Kind: store.ErrConflict}
		}
		return callerError(err, "your user no longer exists")
	}
	// Whoever else knew the old password is signed out of the console at once (and of the
	// CLI, by TokensNotBefore); the caller's own session goes on.
	if err := s.endOtherSessions(ctx, u, p.SessionID); err != nil {
		return fmt.Errorf("the password is changed, but other sessions could not be ended: %w", err)
	}
	s.log.Info("password changed", "org", u.OrgID, "user", u.ID)
	return nil
}
