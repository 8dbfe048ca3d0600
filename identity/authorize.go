package identity

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// The console signs people in with the authorization code flow and PKCE (RFC 6749 section
// 4.1, RFC 7636 with S256 only). Its client is public (no secret) and has one redirect URI.
const (
	// ConsoleClientID is the console's OAuth client id.
	ConsoleClientID = "sortie-console"
	// GrantAuthorizationCode is the grant type of the code exchange.
	GrantAuthorizationCode = "authorization_code"
	// OAuthInvalidGrant is RFC 6749's error for a bad, expired or reused code.
	OAuthInvalidGrant = "invalid_grant"

	authRequestTTL = 10 * time.Minute
	authCodeTTL    = 60 * time.Second
)

// ConsoleRedirectURI is the only redirect URI of the console client.
func (s *Service) ConsoleRedirectURI() string { return s.issuer + "/console/callback" }

// AuthorizeRequest holds the parameters of GET /oauth/authorize.
type AuthorizeRequest struct {
	ResponseType        string
	ClientID            string
	RedirectURI         string
	State               string
	CodeChallenge       string
	CodeChallengeMethod string
}

// AuthorizeError refuses an authorization request. With RedirectURI empty the client or its
// redirect URI is wrong and the error is shown to the person (never redirected, RFC 6749
// section 4.1.2.1); otherwise the browser goes back to the client with Code and Description.
type AuthorizeError struct {
	RedirectURI string
	State       string
	Code        string
	Description string
}

func (e *AuthorizeError) Error() string { return e.Description }

// Redirect is the client URL carrying the error.
func (e *AuthorizeError) Redirect() string {
	q := url.Values{"error": {e.Code}, "error_description": {e.Description}}
	if e.State != "" {
		q.Set("state", e.State)
	}
	return e.RedirectURI + "?" + q.Encode()
}

// authRequest is the value of a TicketAuthRequest.
type authRequest struct {
	ClientID    string `json:"clientId"`
	RedirectURI string `json:"redirectUri"`
	State       string `json:"state"`
	Challenge   string `json:"challenge"`
}

// authCode is the value of a TicketAuthCode, stored under the keyed hash of the code.
type authCode struct {
	UserID      string `json:"userId"`
	OrgID       string `json:"orgId"`
	EnvID       string `json:"envId"`
	Challenge   string `json:"challenge"`
	RedirectURI string `json:"redirectUri"`
	ClientID    string `json:"clientId"`
}

// s256Challenge is a base64url SHA-256 digest; pkceVerifier is RFC 7636's code_verifier.
var (
	s256Challenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	pkceVerifier  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

// maxStateLength bounds the state the client round-trips through the server.
const maxStateLength = 512

// StartAuthorization checks an authorization request and stores it for ten minutes; the
// sign-in page then carries its id. Errors are *AuthorizeError (or a store failure).
func (s *Service) StartAuthorization(ctx context.Context, req AuthorizeRequest) (string, error) {
	if req.ClientID != ConsoleClientID {
		return "", &AuthorizeError{Code: "unauthorized_client", Description: fmt.Sprintf("unknown client_id %q", req.ClientID)}
	}
	if req.RedirectURI != s.ConsoleRedirectURI() {
		return "", &AuthorizeError{Code: OAuthInvalidRequest, Description: "redirect_uri is not registered for this client"}
	}
	back := func(code, format string, args ...any) error {
		return &AuthorizeError{RedirectURI: req.RedirectURI, State: req.State, Code: code, Description: fmt.Sprintf(format, args...)}
	}
	switch {
	case req.ResponseType != "code":
		return "", back("unsupported_response_type", "response_type must be code")
	case req.CodeChallengeMethod != "S256":
		return "", back(OAuthInvalidRequest, "code_challenge_method must be S256")
	case !s256Challenge.MatchString(req.CodeChallenge):
		return "", back(OAuthInvalidRequest, "code_challenge must be a base64url SHA-256 digest (43 characters)")
	case len(req.State) > maxStateLength:
		return "", back(OAuthInvalidRequest, "state is longer than %d bytes", maxStateLength)
	}
	val, err := json.Marshal(authRequest{ClientID: req.ClientID, RedirectURI: req.RedirectURI, State: req.State, Challenge: req.CodeChallenge})
	if err != nil {
		return "", err
	}
	id := randomToken()
	if err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketAuthRequest, ID: id, Value: val, ExpiresAt: s.now().Add(authRequestTTL)}); err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	return id, nil
}

// ErrSignInExpired means the sign-in page's request is gone (expired, or already used).
var ErrSignInExpired = errors.New("This sign-in page has expired. Go back to the console and sign in again.")

// ErrNoEnvironment means the user belongs to no environment, so no token can be issued.
var ErrNoEnvironment = errors.New("Your account is not a member of any environment yet; ask an administrator to invite you.")

// CheckAuthRequest reports whether the authorization request id is live (ErrSignInExpired
// otherwise).
func (s *Service) CheckAuthRequest(ctx context.Context, id string) error {
	_, err := s.authRequest(ctx, id)
	return err
}

func (s *Service) authRequest(ctx context.Context, id string) (authRequest, error) {
	if id == "" {
		return authRequest{}, ErrSignInExpired
	}
	t, err := s.st.GetTicket(ctx, store.TicketAuthRequest, id)
	if err == nil && !s.now().Before(t.ExpiresAt) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return authRequest{}, ErrSignInExpired
	}
	if err != nil {
		return authRequest{}, err
	}
	var ar authRequest
	if err := json.Unmarshal(t.Value, &ar); err != nil {
		return authRequest{}, fmt.Errorf("authorization request %q: %w", id, err)
	}
	return ar, nil
}

// CompleteAuthorization ends a sign-in: u (whose password, or external provider, has vouched
// for them) gets an authorization code for the request authreqID, valid once for 60
// seconds, in the environment chosen for them (the first of theirs by name). It returns the
// client URL to send the browser to. The request is used up: ErrSignInExpired when it is
// gone, ErrNoEnvironment when u belongs to no environment.
func (s *Service) CompleteAuthorization(ctx context.Context, authreqID string, u store.User) (string, error) {
	ar, err := s.authRequest(ctx, authreqID)
	if err != nil {
		return "", err
	}
	envID, err := s.firstEnvironment(ctx, u)
	if err != nil {
		return "", err
	}
	if _, err := s.st.TakeTicket(ctx, store.TicketAuthRequest, authreqID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", ErrSignInExpired
		}
		return "", err
	}
	val, err := json.Marshal(authCode{UserID: u.ID, OrgID: u.OrgID, EnvID: envID, Challenge: ar.Challenge,
		RedirectURI: ar.RedirectURI, ClientID: ar.ClientID})
	if err != nil {
		return "", err
	}
	code := randomToken()
	if err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketAuthCode, ID: s.codeID(code), Value: val, ExpiresAt: s.now().Add(authCodeTTL)}); err != nil {
		return "", fmt.Errorf("authorize: store the code: %w", err)
	}
	s.log.Info("user signed in", "org", u.OrgID, "user", u.ID)
	q := url.Values{"code": {code}}
	if ar.State != "" {
		q.Set("state", ar.State)
	}
	return ar.RedirectURI + "?" + q.Encode(), nil
}

// firstEnvironment picks the environment a sign-in starts in: the user's first by name.
func (s *Service) firstEnvironment(ctx context.Context, u store.User) (string, error) {
	if len(u.Memberships) == 0 {
		return "", ErrNoEnvironment
	}
	envs, err := s.st.ListEnvironments(ctx, u.OrgID)
	if err != nil {
		return "", err
	}
	envs = slices.DeleteFunc(envs, func(e store.Environment) bool { _, ok := u.Member(e.ID); return !ok })
	if len(envs) == 0 {
		return "", ErrNoEnvironment
	}
	slices.SortFunc(envs, func(a, b store.Environment) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return envs[0].ID, nil
}

// codeID is the ticket id of an authorization code: its keyed hash, so the store never holds
// a usable code.
func (s *Service) codeID(code string) string {
	h := s.hashSecret("authcode:" + code)
	return hex.EncodeToString(h[:])
}

// SessionGrant is the result of a successful code exchange: a new console session and its
// first token.
type SessionGrant struct {
	Session Session
	Token   UserToken
}

// ExchangeCode runs the authorization_code grant: the code is taken once (a second use
// fails), and the client, the redirect URI and the PKCE verifier must match the ones of the
// authorization request. Success starts a console session.
func (s *Service) ExchangeCode(ctx context.Context, req TokenRequest) (SessionGrant, *OAuthError) {
	g, oerr := s.exchangeCode(ctx, req)
	if oerr != nil {
		s.failures.WithLabelValues(oerr.Code).Inc()
	}
	return g, oerr
}

func (s *Service) exchangeCode(ctx context.Context, req TokenRequest) (SessionGrant, *OAuthError) {
	unavailable := func(what string, err error) *OAuthError {
		s.log.Error("code exchange: "+what, "err", err)
		return &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
			Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
	}
	invalidGrant := func(desc string) *OAuthError {
		return &OAuthError{Status: 400, Code: OAuthInvalidGrant, Description: desc}
	}
	if req.ClientID != ConsoleClientID {
		return SessionGrant{}, &OAuthError{Status: 401, Code: OAuthInvalidClient, Description: "client authentication failed"}
	}
	t, err := s.st.TakeTicket(ctx, store.TicketAuthCode, s.codeID(req.Code))
	if err == nil && !s.now().Before(t.ExpiresAt) {
		// The store judges expiry by its own clock; the service's decides too.
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return SessionGrant{}, invalidGrant("the authorization code is invalid, expired or already used")
	}
	if err != nil {
		return SessionGrant{}, unavailable("take the code", err)
	}
	var c authCode
	if err := json.Unmarshal(t.Value, &c); err != nil {
		return SessionGrant{}, unavailable("read the code", err)
	}
	switch {
	case c.ClientID != req.ClientID:
		return SessionGrant{}, invalidGrant("the authorization code was issued to another client")
	case c.RedirectURI != req.RedirectURI:
		return SessionGrant{}, invalidGrant("redirect_uri differs from the authorization request's")
	case !pkceVerifier.MatchString(req.CodeVerifier):
		return SessionGrant{}, invalidGrant("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
	case !pkceMatches(req.CodeVerifier, c.Challenge):
		return SessionGrant{}, invalidGrant("code_verifier does not match the code challenge")
	}
	u, err := s.st.GetUser(ctx, c.OrgID, c.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return SessionGrant{}, invalidGrant("the user no longer exists")
	}
	if err != nil {
		return SessionGrant{}, unavailable("read the user", err)
	}
	if _, ok := u.Member(c.EnvID); !ok {
		return SessionGrant{}, invalidGrant("the user is no longer a member of the environment")
	}
	sess, err := s.StartSession(ctx, u)
	if err != nil {
		return SessionGrant{}, unavailable("start the session", err)
	}
	tok, err := s.IssueUserToken(ctx, u, c.EnvID, &sess)
	if err != nil {
		return SessionGrant{}, unavailable("sign the token", err)
	}
	return SessionGrant{Session: sess, Token: tok}, nil
}

// pkceMatches is RFC 7636's S256 check: BASE64URL(SHA256(verifier)) == challenge.
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}
