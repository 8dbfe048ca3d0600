package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// Console sessions: a session is a TicketSession record (its id is the token's sid claim)
// that lives SessionMaxAge from sign-in unless sign-out deletes it first. The browser holds a
// short-lived user token (SessionTTL) naming the session, renewed while it is used; every
// check of the token requires the live session, so sign-out ends it at once.
const (
	DefaultSessionTTL    = 15 * time.Minute
	DefaultSessionMaxAge = 12 * time.Hour
)

// Session names a console session in the tokens issued for it.
type Session struct {
	ID   string // the sid claim and the TicketSession id
	CSRF string // the csrf claim: the value the console echoes in X-CSRF-Token
	// ExpiresAt is when the session ends; a token never outlives it. Zero: no bound.
	ExpiresAt time.Time
}

// UserToken is an issued user token.
type UserToken struct {
	Token     string
	ExpiresIn time.Duration
	Scope     string
}

// sessionValue is the value of a TicketSession.
type sessionValue struct {
	UserID string `json:"userId"`
	OrgID  string `json:"orgId"`
}

// ErrNotMember refuses a token for an environment the user is not a member of.
var ErrNotMember = errors.New("you are not a member of this environment")

// SessionTTL is the lifetime of console session tokens.
func (s *Service) SessionTTL() time.Duration { return s.sessionTTL }

// IssueUserToken signs a token for u in envID with the roles of u's membership there
// (ErrNotMember without one). sess is nil for a bearer token (the device grant: TokenTTL,
// no sid or csrf) and names the console session otherwise (SessionTTL, never beyond the
// session's end).
func (s *Service) IssueUserToken(ctx context.Context, u store.User, envID string, sess *Session) (UserToken, error) {
	m, ok := u.Member(envID)
	if !ok {
		return UserToken{}, ErrNotMember
	}
	orgName, err := s.orgName(ctx, u.OrgID)
	if err != nil {
		return UserToken{}, err
	}
	p := Principal{
		Type: PrincipalUser, Subject: u.ID, Name: u.Login, OrgID: u.OrgID, OrgName: orgName, EnvID: envID,
		Roles: m.Roles, Scopes: ScopesOf(m.Roles),
	}
	ttl := s.ttl
	if sess != nil {
		p.SessionID, p.CSRF = sess.ID, sess.CSRF
		ttl = s.sessionTTL
		if !sess.ExpiresAt.IsZero() {
			// Whole seconds, as the token's times are.
			left := sess.ExpiresAt.Sub(s.now()).Truncate(time.Second)
			if left <= 0 {
				return UserToken{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUserGone)
			}
			ttl = min(ttl, left)
		}
	}
	raw, err := s.signFor(ctx, p, ttl)
	if err != nil {
		return UserToken{}, err
	}
	s.issued.Inc()
	return UserToken{Token: raw, ExpiresIn: ttl, Scope: strings.Join(p.Scopes, " ")}, nil
}

// StartSession creates a console session for u, lasting SessionMaxAge.
func (s *Service) StartSession(ctx context.Context, u store.User) (Session, error) {
	val, err := json.Marshal(sessionValue{UserID: u.ID, OrgID: u.OrgID})
	if err != nil {
		return Session{}, err
	}
	// The id starts with the user's, so a password change can find the user's other sessions.
	sess := Session{ID: u.ID + "/" + randomToken(), CSRF: randomToken(), ExpiresAt: s.now().Add(s.sessionMaxAge)}
	if err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketSession, ID: sess.ID, Value: val, ExpiresAt: sess.ExpiresAt}); err != nil {
		return Session{}, fmt.Errorf("start session: %w", err)
	}
	s.log.Info("session started", "org", u.OrgID, "user", u.ID)
	return sess, nil
}

// liveSession returns the expiry of u's live session sid, or ErrInvalidToken.
func (s *Service) liveSession(ctx context.Context, sid string, u store.User) (time.Time, error) {
	t, err := s.st.GetTicket(ctx, store.TicketSession, sid)
	if err == nil && !s.now().Before(t.ExpiresAt) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUserGone)
	}
	if err != nil {
		return time.Time{}, err
	}
	var v sessionValue
	if json.Unmarshal(t.Value, &v) != nil || v.UserID != u.ID || v.OrgID != u.OrgID {
		return time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUserGone)
	}
	return t.ExpiresAt, nil
}

// RenewSession issues a fresh token for the console session of p (a verified session
// token): the same session, environment and csrf, a new expiry. It fails with
// ErrInvalidToken when the user, the membership or the session is gone.
func (s *Service) RenewSession(ctx context.Context, p Principal) (UserToken, error) {
	return s.SwitchEnvironment(ctx, p, p.EnvID)
}

// SwitchEnvironment issues a token of p's console session for another environment of the
// user's organization: ErrNotMember when the user is not a member of envID, ErrInvalidToken
// when the user or the session is gone.
func (s *Service) SwitchEnvironment(ctx context.Context, p Principal, envID string) (UserToken, error) {
	if p.Type != PrincipalUser || p.SessionID == "" {
		return UserToken{}, errors.New("only a console session can switch environments")
	}
	u, err := s.st.GetUser(ctx, p.OrgID, p.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return UserToken{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUserGone)
	}
	if err != nil {
		return UserToken{}, err
	}
	exp, err := s.liveSession(ctx, p.SessionID, u)
	if err != nil {
		return UserToken{}, err
	}
	return s.IssueUserToken(ctx, u, envID, &Session{ID: p.SessionID, CSRF: p.CSRF, ExpiresAt: exp})
}

// EndSession deletes a console session: every token of it stops working at once. Ending a
// session that is gone is not an error.
func (s *Service) EndSession(ctx context.Context, sid string) error {
	if sid == "" {
		return nil
	}
	return s.st.DeleteTicket(ctx, store.TicketSession, sid)
}

// endOtherSessions ends every console session of u except keep (the caller's own, or "").
func (s *Service) endOtherSessions(ctx context.Context, u store.User, keep string) error {
	live, err := s.st.ListTickets(ctx, store.TicketSession, u.ID+"/")
	if err != nil {
		return err
	}
	for _, t := range live {
		if t.ID == keep {
			continue
		}
		if err := s.st.DeleteTicket(ctx, store.TicketSession, t.ID); err != nil {
			return err
		}
	}
	return nil
}

// ParseToken checks a token's signature and claims only (no store access), for the gateway
// reading a session cookie's claims; Verify is still what authorizes the request.
func (s *Service) ParseToken(ctx context.Context, raw string) (Principal, error) {
	return s.tokens.verify(ctx, s.verifier, raw)
}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NeedsRenewal reports whether p is a console session token with less than half of
// SessionTTL left: the gateway then renews it (RenewSession) while the session is used.
func (s *Service) NeedsRenewal(p Principal) bool {
	return p.SessionID != "" && p.ExpiresAt.Sub(s.now()) < s.sessionTTL/2
}
