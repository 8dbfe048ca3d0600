package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/store"
)

// PrincipalClaim is the name of the claim Armory clients read the principal from.
const PrincipalClaim = "https://cloud.armory.io/principal"

// clockSkew is how far token times may be off between issuer and verifier.
const clockSkew = 30 * time.Second

// Principal types.
const (
	PrincipalMachine = "machine"
	PrincipalUser    = "user"
)

// ErrInvalidToken is returned (wrapped, with the reason) for every token that must be refused.
var ErrInvalidToken = errors.New("invalid token")

// Principal is who a verified token speaks for. Its tenant is the only tenant the caller may
// touch.
type Principal struct {
	Type    string
	Subject string // the client id of a machine credential
	Name    string
	OrgID   string
	OrgName string
	EnvID   string
	Roles   []string
	Scopes  []string
	// ExpiresAt is when the token that proved this principal expires; long-lived streams end
	// then. IssuedAt is when it was issued (whole seconds).
	ExpiresAt time.Time
	IssuedAt  time.Time
	// SessionID and CSRF are the console session of a user token (claims sid and csrf);
	// empty for machines and bearer user tokens.
	SessionID string
	CSRF      string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the verified principal of the caller. Only the auth
// layer calls it, after verifying the token.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller's principal put into ctx by WithPrincipal.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Tenant returns the tenant of the principal.
func (p Principal) Tenant() store.Tenant { return store.Tenant{OrgID: p.OrgID, EnvID: p.EnvID} }

// HasScope reports whether the principal's scopes allow an action that requires need.
func (p Principal) HasScope(need string) bool { return Grants(p.Scopes, need) }

// principalClaim is the JSON shape of PrincipalClaim.
type principalClaim struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	OrgID   string   `json:"orgId"`
	OrgName string   `json:"orgName"`
	EnvID   string   `json:"envId"`
	Roles   []string `json:"roles"`
}

// tokenClaims are the claims of a Sortie access token.
type tokenClaims struct {
	jwt.Claims
	Scope     string          `json:"scope"`
	Principal *principalClaim `json:"https://cloud.armory.io/principal,omitempty"`
	// SessionID and CSRF are set on console session tokens only.
	SessionID string `json:"sid,omitempty"`
	CSRF      string `json:"csrf,omitempty"`
}

func newClaims(p Principal, scope, issuer, audience string, now time.Time, ttl time.Duration) tokenClaims {
	now = now.UTC().Truncate(time.Second)
	return tokenClaims{
		Claims: jwt.Claims{
			Issuer:    issuer,
			Subject:   p.Subject,
			Audience:  jwt.Audience{audience},
			Expiry:    jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		Scope: scope,
		Principal: &principalClaim{
			Type: p.Type, Name: p.Name, OrgID: p.OrgID, OrgName: p.OrgName, EnvID: p.EnvID,
			Roles: append([]string{}, p.Roles...),
		},
		SessionID: p.SessionID,
		CSRF:      p.CSRF,
	}
}

// Verifier checks access tokens: ES256 only, a known kid, the signature, issuer, one of the
// accepted audiences, exp and nbf within clockSkew, and the presence of every claim Sortie
// relies on. It is the one verifier both REST and Connect use.
type Verifier struct {
	keys      *Keyring
	issuer    string
	audiences []string
	now       func() time.Time
}

// NewVerifier returns a verifier of tokens issued by issuer for any of audiences.
func NewVerifier(keys *Keyring, issuer string, audiences []string, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys, issuer: issuer, audiences: audiences, now: now}
}

var compactJWS = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$`)

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }

// Verify returns the principal of a valid raw compact JWS, or an error wrapping
// ErrInvalidToken whose text says why (never echoing the token).
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	// go-jose tolerates whitespace inside the segments; a token is exactly three base64url
	// segments, nothing else.
	if !compactJWS.MatchString(raw) {
		return Principal{}, invalid("malformed or unsupported signature algorithm")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{signingAlgorithm})
	if err != nil {
		return Principal{}, invalid("malformed or unsupported signature algorithm")
	}
	if len(tok.Headers) != 1 {
		return Principal{}, invalid("exactly one signature is required")
	}
	kid := tok.Headers[0].KeyID
	if kid == "" {
		return Principal{}, invalid("missing kid header")
	}
	pub, ok := v.keys.PublicKey(ctx, kid)
	if !ok {
		return Principal{}, invalid("unknown signing key")
	}
	var c tokenClaims
	if err := tok.Claims(pub, &c); err != nil {
		return Principal{}, invalid("bad signature")
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.Subject == "" || c.Principal == nil {
		return Principal{}, invalid("required claims are missing")
	}
	err = c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: v.audiences, Time: v.now()}, clockSkew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Principal{}, invalid("token is expired")
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Principal{}, invalid("token is not valid yet")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Principal{}, invalid("wrong issuer")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Principal{}, invalid("wrong audience")
	case err != nil:
		return Principal{}, invalid("claims are not valid")
	}
	pc := c.Principal
	if pc.OrgID == "" || pc.EnvID == "" {
		return Principal{}, invalid("principal has no tenant")
	}
	return Principal{
		Type: pc.Type, Subject: c.Subject, Name: pc.Name,
		OrgID: pc.OrgID, OrgName: pc.OrgName, EnvID: pc.EnvID,
		Roles: pc.Roles, Scopes: parseScopeParam(c.Scope), ExpiresAt: c.Expiry.Time(), IssuedAt: c.IssuedAt.Time(),
		SessionID: c.SessionID, CSRF: c.CSRF,
	}, nil
}
