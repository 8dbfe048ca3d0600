package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// Revocation: a token is only as good as its credential is now. Every request's token is
// checked against the credential's current state (it exists, in the token's tenant, and
// which roles it holds), read from the store through a short cache. The store is shared by
// every replica, so deleting a credential or changing its roles on one replica takes effect
// on all of them within CredentialCheckTTL.
const (
	// DefaultCredentialCheckTTL is how long a replica trusts what it last read of a
	// credential; a deletion or role change on another replica takes effect within it.
	DefaultCredentialCheckTTL = 2 * time.Second
	// verifiedTokenTTL bounds how long a verified signature is remembered.
	verifiedTokenTTL = time.Minute
	// maxCachedTokens and maxCachedCredentials bound the caches' memory.
	maxCachedTokens      = 10_000
	maxCachedCredentials = 10_000
)

// ErrRevoked is returned (wrapped, with ErrInvalidToken) when a token's credential has been
// deleted since the token was issued.
var ErrRevoked = errors.New("the credential of this token has been deleted")

// Verify checks raw as Verifier.Verify does and then against its credential's current state:
// a deleted credential's tokens are refused (ErrInvalidToken and ErrRevoked), and a token
// keeps only the scopes and roles its credential still holds. An error wrapping
// store.ErrUnavailable means the state could not be read; the caller answers 503. The
// gateway authenticates every request with it.
func (s *Service) Verify(ctx context.Context, raw string) (Principal, error) {
	p, err := s.tokens.verify(ctx, s.verifier, raw)
	if err != nil {
		return Principal{}, err
	}
	return s.Recheck(ctx, p)
}

// Recheck returns p as its credential allows it now: refused when its token has expired or
// its credential was deleted, with the scopes and roles it lost removed. Long-lived streams
// call it periodically so that they end when their token does.
func (s *Service) Recheck(ctx context.Context, p Principal) (Principal, error) {
	if !p.ExpiresAt.IsZero() && !s.now().Before(p.ExpiresAt) {
		return Principal{}, invalid("token is expired")
	}
	if p.Type == PrincipalUser {
		return s.recheckUser(ctx, p)
	}
	cur, err := s.creds.get(ctx, s.st, p.Subject)
	if err != nil {
		return Principal{}, err
	}
	if cur.gone || cur.tenant != p.Tenant() {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrRevoked)
	}
	granted := cur.scopes
	p.Scopes = slices.DeleteFunc(slices.Clone(p.Scopes), func(sc string) bool { return !slices.Contains(granted, sc) })
	p.Roles = slices.DeleteFunc(slices.Clone(p.Roles), func(r string) bool { return !slices.Contains(cur.roles, r) })
	return p, nil
}

// tokenCache remembers verified tokens by the SHA-256 of their text, so that a client
// sending the same token again skips the signature check. An entry lasts until the token
// expires or verifiedTokenTTL passes, whichever comes first; the credential check still runs
// on every request.
type tokenCache struct {
	now func() time.Time

	mu      sync.Mutex // guards entries
	entries map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	p     Principal
	until time.Time
}

func newTokenCache(now func() time.Time) *tokenCache {
	return &tokenCache{now: now, entries: map[[sha256.Size]byte]verifiedToken{}}
}

func (c *tokenCache) verify(ctx context.Context, v *Verifier, raw string) (Principal, error) {
	key := sha256.Sum256([]byte(raw))
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) && now.Before(e.p.ExpiresAt) {
		return e.p, nil
	}
	p, err := v.Verify(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	until := now.Add(verifiedTokenTTL)
	if p.ExpiresAt.Before(until) {
		until = p.ExpiresAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedTokens {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCachedTokens {
			clear(c.entries)
		}
	}
	c.entries[key] = verifiedToken{p: p, until: until}
	return p, nil
}

// credentialCache remembers the current state of credentials for ttl. Token verification
// reads it on every request, and so does the token endpoint (see Service.token).
type credentialCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex // guards entries and forgets
	entries map[string]credentialState
	// forgets counts forget calls: a read that overlapped one may have read the state
	// before the change, and is not cached.
	forgets uint64
}

// credentialState is what a token check and a token request need of a credential.
type credentialState struct {
	gone   bool
	tenant store.Tenant
	name   string
	roles  []string
	// scopes are the scopes its roles grant (ScopesOf), scope the same space-separated.
	scopes []string
	scope  string
	// secretHash is the keyed hash of its secret (Service.hashSecret).
	secretHash []byte
	read       time.Time
}

func newCredentialCache(ttl time.Duration, now func() time.Time) *credentialCache {
	return &credentialCache{ttl: ttl, now: now, entries: map[string]credentialState{}}
}

// get returns what is known of a credential, from the cache while it is fresh.
func (c *credentialCache) get(ctx context.Context, st store.Credentials, clientID string) (credentialState, error) {
	if e, ok := c.fresh(clientID); ok {
		return e, nil
	}
	return c.read(ctx, st, clientID, true)
}

// fresh returns the cached state of a credential if it was read less than ttl ago.
func (c *credentialCache) fresh(clientID string) (credentialState, bool) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[clientID]
	c.mu.Unlock()
	if ok && now.Sub(e.read) < c.ttl && !now.Before(e.read) {
		return e, true
	}
	return credentialState{}, false
}

// read reads a credential from the store and caches what it found; a credential that does
// not exist is cached only with keepGone (token requests name arbitrary client ids, and must
// not fill the cache with them).
func (c *credentialCache) read(ctx context.Context, st store.Credentials, clientID string, keepGone bool) (credentialState, error) {
	now := c.now()
	c.mu.Lock()
	forgets := c.forgets
	c.mu.Unlock()
	var e credentialState
	cred, err := st.LookupCredential(ctx, clientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e = credentialState{gone: true, read: now}
		if !keepGone {
			return e, nil
		}
	case err != nil:
		return credentialState{}, fmt.Errorf("check the token's credential: %w", err)
	default:
		scopes := ScopesOf(cred.Roles)
		e = credentialState{tenant: cred.Tenant, name: cred.Name, roles: slices.Clone(cred.Roles),
			scopes: scopes, scope: strings.Join(scopes, " "), secretHash: slices.Clone(cred.SecretHash), read: now}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgets != forgets {
		return e, nil
	}
	if len(c.entries) >= maxCachedCredentials {
		clear(c.entries)
	}
	c.entries[clientID] = e
	return e, nil
}

// forget drops what is cached of a credential, so a change made on this replica takes
// effect on its next request.
func (c *credentialCache) forget(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, clientID)
	c.forgets++
}
