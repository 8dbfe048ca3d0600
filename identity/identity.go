// Package identity is Sortie's OIDC provider and its tenant model: organizations and
// environments, machine credentials with roles and scopes, the signing keys (rotated,
// encrypted at rest) and the client-credentials token endpoint, plus the one token verifier
// every API surface uses.
package identity

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/store"
)

// Config is what the identity service needs to know about its deployment.
type Config struct {
	// Issuer is the token issuer: the server's public URL.
	Issuer string
	// Audiences are the accepted token audiences; the first is the default.
	Audiences []string
	// TokenTTL is the lifetime of issued tokens.
	TokenTTL time.Duration
	// SessionTTL is the lifetime of a console session's token (renewed while the session is
	// used); zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// SessionMaxAge is how long a console session lasts from sign-in, however active; zero
	// means DefaultSessionMaxAge.
	SessionMaxAge time.Duration
	// KeyRotation is how long one key signs before a new one takes over.
	KeyRotation time.Duration
	// MasterKey (32 bytes) encrypts signing keys and keys the client-secret hash.
	MasterKey []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registerer receives the service's metrics; nil means none.
	Registerer prometheus.Registerer
	// BootstrapWait is how long Bootstrap waits for another replica's bootstrap to finish;
	// zero means 15 s.
	BootstrapWait time.Duration
	// Host names this replica's machine (the host name); Bootstrap records it with where it
	// saved the admin credential, so other replicas can say where that file is.
	Host string
	// CredentialCheckTTL is how long a replica trusts what it last read of a credential when
	// checking a token or issuing one; zero means DefaultCredentialCheckTTL. A credential
	// deleted, or whose roles changed, on another replica stops working here within it.
	CredentialCheckTTL time.Duration
}

// Service is the identity service: token issuance and the tenant's admin operations.
// REST and Connect handlers both call it; it applies the caller's tenant to every store
// access.
type Service struct {
	log       *slog.Logger
	st        store.Store
	keys      *Keyring
	verifier  *Verifier
	issuer    string
	audiences []string
	ttl       time.Duration
	// sessionTTL and sessionMaxAge bound console sessions (sessions.go).
	sessionTTL    time.Duration
	sessionMaxAge time.Duration
	// passwords bounds the argon2id hashes running at once (password.go).
	passwords chan struct{}
	hashKey   []byte
	now       func() time.Time
	// failures counts failed token requests: in the store when it is shared by replicas.
	attempts store.FailureCounter
	issued   prometheus.Counter
	failures *prometheus.CounterVec
	tokens   *tokenCache
	creds    *credentialCache
	// hashers are HMAC-SHA256 hashes keyed with hashKey (hashSecret).
	hashers sync.Pool

	bootstrapWait time.Duration
	host          string
	// bootRecord is the store's bootstrap record as Bootstrap saw it; nil before Bootstrap.
	bootRecord atomic.Pointer[[]byte]

	orgMu    sync.RWMutex // guards orgNames
	orgNames map[string]string
}

// Failed token attempts allowed per window before further attempts are refused: per client
// id from one address, and per address (see ratelimit.go).
const (
	maxFailuresPerClient  = 10
	maxFailuresPerAddress = 30
	failureWindowLength   = time.Minute
)

// New loads (or creates) the signing keys and returns the service. It fails with
// ErrMasterKeyMismatch when cfg.MasterKey cannot decrypt the stored keys.
func New(ctx context.Context, log *slog.Logger, st store.Store, cfg Config) (*Service, error) {
	if cfg.Issuer == "" || len(cfg.Audiences) == 0 {
		return nil, errors.New("identity: issuer and at least one audience are required")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	sessionTTL := cmp.Or(cfg.SessionTTL, DefaultSessionTTL)
	// Keys are kept as long as the longest-lived token they signed may be presented.
	keys, err := NewKeyring(ctx, log, st, cfg.MasterKey, cfg.KeyRotation, max(cfg.TokenTTL, sessionTTL), now)
	if err != nil {
		return nil, err
	}
	s := &Service{
		log: log, st: st, keys: keys,
		verifier:      NewVerifier(keys, cfg.Issuer, cfg.Audiences, now),
		issuer:        cfg.Issuer,
		audiences:     slices.Clone(cfg.Audiences),
		ttl:           cfg.TokenTTL,
		sessionTTL:    sessionTTL,
		sessionMaxAge: cmp.Or(cfg.SessionMaxAge, DefaultSessionMaxAge),
		passwords:     make(chan struct{}, maxConcurrentHashes),
		hashKey:       deriveKey(cfg.MasterKey, "sortie client secret hash"),
		now:           now,
		tokens:        newTokenCache(now),
		creds:         newCredentialCache(cmp.Or(cfg.CredentialCheckTTL, DefaultCredentialCheckTTL), now),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_tokens_issued_total", Help: "Access tokens issued by the token endpoint.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_token_failures_total", Help: "Refused token requests by OAuth error code.",
		}, []string{"error"}),
	}
	s.hashers.New = func() any { return hmac.New(sha256.New, s.hashKey) }
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.issued, s.failures)
	}
	s.bootstrapWait = cmp.Or(cfg.BootstrapWait, defaultBootstrapWait)
	s.host = cfg.Host
	s.attempts = newMemoryCounter(now)
	if fc, ok := st.(store.FailureCounter); ok {
		s.attempts = fc
	}
	return s, nil
}

// Keys returns the keyring, for the JWKS route and key maintenance.
func (s *Service) Keys() *Keyring { return s.keys }

// Verifier returns the token verifier, which checks a token's signature and claims only;
// Verify also checks its credential.
func (s *Service) Verifier() *Verifier { return s.verifier }

// Issuer returns the token issuer.
func (s *Service) Issuer() string { return s.issuer }

// Ping reports whether the store is reachable and, once Bootstrap has run, still holds its
// data: it returns ErrStoreLost when the store came back empty.
func (s *Service) Ping(ctx context.Context) error {
	if err := s.st.Ping(ctx); err != nil {
		return err
	}
	return s.checkBootstrap(ctx)
}

// TokenResponse is the successful reply of the token endpoint.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// Token runs the client-credentials grant for a parsed request from remoteAddr (the client's
// IP). Failures are OAuth errors that never reveal whether the client id exists; failed
// attempts are rate-limited per client id from one address and per address, across every
// replica when the store is shared.
func (s *Service) Token(ctx context.Context, req TokenRequest, remoteAddr string) (TokenResponse, *OAuthError) {
	var resp TokenResponse
	var oerr *OAuthError
	switch req.GrantType {
	case GrantDeviceCode:
		resp, oerr = s.deviceToken(ctx, req)
	default:
		resp, oerr = s.token(ctx, req, remoteAddr)
	}
	if oerr != nil {
		s.failures.WithLabelValues(oerr.Code).Inc()
		return TokenResponse{}, oerr
	}
	s.issued.Inc()
	return resp, nil
}

func (s *Service) token(ctx context.Context, req TokenRequest, remoteAddr string) (TokenResponse, *OAuthError) {
	limits := []struct {
		key string
		max int64
	}{
		{"token:c:" + req.ClientID + "|a:" + remoteAddr, maxFailuresPerClient},
		{"token:a:" + remoteAddr, maxFailuresPerAddress},
	}
	keys := make([]string, len(limits))
	for i, lim := range limits {
		keys[i] = lim.key
	}
	// One read for both limits: one round trip to a shared store on every request.
	counts, err := s.attempts.Failures(ctx, keys...)
	if err == nil && len(counts) != len(limits) {
		err = fmt.Errorf("%d failure counts for %d keys", len(counts), len(limits))
	}
	if err != nil {
		s.log.Error("token: read failed attempts", "err", err)
		return TokenResponse{}, &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
			Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
	}
	for i, lim := range limits {
		if c := counts[i]; c.Count >= lim.max {
			return TokenResponse{}, &OAuthError{Status: 429, Code: OAuthSlowDown,
				Description: "too many failed attempts; retry later", RetryAfterSeconds: int(c.Left.Seconds()) + 1}
		}
	}
	// The secret is hashed on every path, so that a known and an unknown client id take the
	// same time. A credential read less than CredentialCheckTTL ago (by a token check or an
	// earlier request) is trusted as token checks trust it, and a change made on this replica
	// forgets it at once; a miss and every failed check read the store, so that a failure
	// costs the same whether or not the client id exists or is cached.
	presented := s.hashSecret(req.ClientSecret)
	cred, hit := s.creds.fresh(req.ClientID)
	ok := hit && !cred.gone && hmac.Equal(presented[:], cred.secretHash)
	if !ok {
		var err error
		if cred, err = s.creds.read(ctx, s.st, req.ClientID, false); err != nil {
			s.log.Error("token: look up credential", "err", err)
			return TokenResponse{}, &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
				Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
		}
		ok = !cred.gone && hmac.Equal(presented[:], cred.secretHash)
	}
	if !ok {
		for _, lim := range limits {
			if _, _, err := s.attempts.AddFailure(ctx, lim.key, failureWindowLength); err != nil {
				s.log.Error("token: count failed attempt", "err", err)
			}
		}
		return TokenResponse{}, &OAuthError{Status: 401, Code: OAuthInvalidClient,
			Description: "client authentication failed", BasicChallenge: req.UsedBasic}
	}
	scopes, scope := cred.scopes, cred.scope
	if strings.TrimSpace(req.Scope) != "" {
		scopes = parseScopeParam(req.Scope)
		for _, sc := range scopes {
			if !slices.Contains(cred.scopes, sc) {
				return TokenResponse{}, &OAuthError{Status: 400, Code: OAuthInvalidScope,
					Description: fmt.Sprintf("scope %q is not granted to this client", sc)}
			}
		}
		scope = strings.Join(scopes, " ")
	}
	audience := s.audiences[0]
	if req.Audience != "" {
		if !slices.Contains(s.audiences, req.Audience) {
			return TokenResponse{}, badRequest("unknown audience %q; accepted: %s", req.Audience, strings.Join(s.audiences, ", "))
		}
		audience = req.Audience
	}
	orgName, err := s.orgName(ctx, cred.tenant.OrgID)
	if err != nil {
		s.log.Error("token: load organization", "err", err, "tenant", cred.tenant.String())
		return TokenResponse{}, &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
			Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
	}
	p := Principal{
		Type: PrincipalMachine, Subject: req.ClientID, Name: cred.name,
		OrgID: cred.tenant.OrgID, OrgName: orgName, EnvID: cred.tenant.EnvID,
		Roles: cred.roles, Scopes: scopes,
	}
	raw, err := s.sign(ctx, p, scope, audience)
	if err != nil {
		s.log.Error("token: sign", "err", err)
		return TokenResponse{}, &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
			Description: "cannot issue tokens right now; retry later", RetryAfterSeconds: 5}
	}
	return TokenResponse{AccessToken: raw, TokenType: "Bearer", ExpiresIn: int64(s.ttl.Seconds()), Scope: scope}, nil
}

// orgName returns an organization's name; names never change, so each is read once.
func (s *Service) orgName(ctx context.Context, orgID string) (string, error) {
	s.orgMu.RLock()
	name, ok := s.orgNames[orgID]
	s.orgMu.RUnlock()
	if ok {
		return name, nil
	}
	org, err := s.st.GetOrganization(ctx, orgID)
	if err != nil {
		return "", err
	}
	s.orgMu.Lock()
	if s.orgNames == nil {
		s.orgNames = map[string]string{}
	}
	s.orgNames[orgID] = org.Name
	s.orgMu.Unlock()
	return org.Name, nil
}

// Sign issues a token for p with the given audience, signed with the current key.
func (s *Service) Sign(ctx context.Context, p Principal, audience string) (string, error) {
	return s.sign(ctx, p, strings.Join(p.Scopes, " "), audience)
}

// sign is Sign with p's scope claim (its scopes, space-separated) already joined.
func (s *Service) sign(ctx context.Context, p Principal, scope, audience string) (string, error) {
	key, err := s.keys.signingKey(ctx)
	if err != nil {
		return "", err
	}
	c := newClaims(p, scope, s.issuer, audience, s.now(), s.ttl)
	return signToken(key, &c)
}

// signFor is sign with the default audience and a lifetime of ttl.
func (s *Service) signFor(ctx context.Context, p Principal, ttl time.Duration) (string, error) {
	key, err := s.keys.signingKey(ctx)
	if err != nil {
		return "", err
	}
	c := newClaims(p, strings.Join(p.Scopes, " "), s.issuer, s.audiences[0], s.now(), ttl)
	return signToken(key, &c)
}

// hashSecret returns the keyed hash under which a client secret is stored. The keyed
// hashes are pooled: keying one costs more than hashing a secret.
func (s *Service) hashSecret(secret string) [sha256.Size]byte {
	m := s.hashers.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(secret))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	s.hashers.Put(m)
	return out
}

// newClientID returns a random client id: 26 lowercase base32 characters (128 bits).
func newClientID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// newSecret returns a random 256-bit client secret, base64url without padding.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidationError lists every problem of a request, each with its field path.
type ValidationError struct {
	Problems []Problem
}

// Problem is one invalid field.
type Problem struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Field + ": " + p.Message
	}
	return "invalid request: " + strings.Join(msgs, "; ")
}

func (e *ValidationError) add(field, format string, args ...any) {
	e.Problems = append(e.Problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (e *ValidationError) errOrNil() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// CallerError is an expected failure whose message is written for the API's caller. It
// unwraps to the sentinel it stands for (store.ErrNotFound, store.ErrConflict) and never to
// the store's own error, so no internal detail can reach a reply through it.
type CallerError struct {
	Message string
	Kind    error
}

func (e *CallerError) Error() string { return e.Message }

// Unwrap returns the sentinel.
func (e *CallerError) Unwrap() error { return e.Kind }

// callerError returns err as a CallerError when it is one of the expected store conditions
// (not found, conflict), and err itself otherwise (an outage stays an outage).
func callerError(err error, format string, args ...any) error {
	for _, kind := range []error{store.ErrNotFound, store.ErrConflict} {
		if errors.Is(err, kind) {
			return &CallerError{Message: fmt.Sprintf(format, args...), Kind: kind}
		}
	}
	return err
}

// ListEnvironments lists the environments of the caller's organization.
func (s *Service) ListEnvironments(ctx context.Context, p Principal) ([]store.Environment, error) {
	return s.st.ListEnvironments(ctx, p.OrgID)
}

// NewEnvironment is a created environment with the admin credential made for it.
type NewEnvironment struct {
	Environment store.Environment
	// Admin holds the Organization Admin role in the new environment; its secret is shown once.
	Admin  store.Credential
	Secret string
}

// CreateEnvironment creates an environment in the caller's organization together with an
// Organization Admin credential for it, since a credential only ever acts inside its own
// environment.
func (s *Service) CreateEnvironment(ctx context.Context, p Principal, name string) (NewEnvironment, error) {
	var verr ValidationError
	if err := checkEnvironmentName(&verr, name); err != nil {
		return NewEnvironment{}, err
	}
	if err := verr.errOrNil(); err != nil {
		return NewEnvironment{}, err
	}
	// The new environment comes with an Organization Admin: only a caller holding every scope
	// may create one.
	if err := mayGrant(p, []string{RoleOrganizationAdmin}); err != nil {
		return NewEnvironment{}, err
	}
	env := store.Environment{ID: uuid.NewString(), OrgID: p.OrgID, Name: name, CreatedAt: s.now().UTC()}
	if err := s.st.CreateEnvironment(ctx, env); err != nil {
		return NewEnvironment{}, callerError(fmt.Errorf("environment %q: %w", name, err),
			"an environment named %q exists already in this organization", name)
	}
	admin, secret, err := s.createCredential(ctx, env.Tenant(), name+"-admin", []string{RoleOrganizationAdmin})
	if err != nil {
		return NewEnvironment{}, err
	}
	// A person who creates an environment administers it (invitations.go).
	if err := s.addCreatorMembership(ctx, p, env.ID); err != nil {
		return NewEnvironment{}, fmt.Errorf("make the creator a member of environment %q: %w", name, err)
	}
	return NewEnvironment{Environment: env, Admin: admin, Secret: secret}, nil
}

// ListCredentials lists the credentials of the caller's environment.
func (s *Service) ListCredentials(ctx context.Context, p Principal) ([]store.Credential, error) {
	return s.st.ListCredentials(ctx, p.Tenant())
}

func validateRoles(verr *ValidationError, field string, roles []string) {
	for i, r := range roles {
		if _, ok := roleByName(r); !ok {
			verr.add(fmt.Sprintf("%s[%d]", field, i), "unknown role %q; GET /roles lists the roles", r)
		} else if slices.Index(roles, r) != i {
			verr.add(fmt.Sprintf("%s[%d]", field, i), "role %q is listed twice", r)
		}
	}
}

// ErrEscalation is returned (wrapped, naming the role and scope) when a caller tries to grant
// a role with a scope its own token does not carry: nobody can grant more than they hold.
var ErrEscalation = errors.New("cannot grant a role with a scope the caller does not hold")

// mayGrant refuses roles granting a scope p does not hold.
func mayGrant(p Principal, roles []string) error {
	for _, name := range roles {
		r, _ := roleByName(name)
		for _, sc := range r.Scopes {
			if !p.HasScope(sc) {
				return fmt.Errorf("%w: role %q grants scope %s, which your token does not carry; you can grant only roles whose scopes you hold",
					ErrEscalation, name, sc)
			}
		}
	}
	return nil
}

// CreateCredential creates a machine credential in the caller's environment and returns it
// with its secret, which is shown only this once. Names are unique per environment, so
// running the same creation twice creates nothing the second time (409). A role granting a
// scope p does not hold is refused with ErrEscalation.
func (s *Service) CreateCredential(ctx context.Context, p Principal, name string, roles []string) (store.Credential, string, error) {
	var verr ValidationError
	if err := checkCredentialName(&verr, name); err != nil {
		return store.Credential{}, "", err
	}
	validateRoles(&verr, "roles", roles)
	if err := verr.errOrNil(); err != nil {
		return store.Credential{}, "", err
	}
	if err := mayGrant(p, roles); err != nil {
		return store.Credential{}, "", err
	}
	return s.createCredential(ctx, p.Tenant(), name, roles)
}

func (s *Service) createCredential(ctx context.Context, t store.Tenant, name string, roles []string) (store.Credential, string, error) {
	secret := newSecret()
	secretHash := s.hashSecret(secret)
	cred := store.Credential{
		ClientID: newClientID(), Tenant: t, Name: name,
		SecretHash: secretHash[:], Roles: slices.Clone(roles), CreatedAt: s.now().UTC(),
	}
	if cred.Roles == nil {
		cred.Roles = []string{}
	}
	// The store checks the name and inserts in one step: of two replicas creating one name
	// at once, one gets the conflict.
	if err := s.st.CreateCredential(ctx, cred); err != nil {
		return store.Credential{}, "", callerError(err, "a credential named %q exists already in this environment", name)
	}
	s.log.Info("credential created", "tenant", t.String(), "client_id", cred.ClientID, "roles", roles)
	return cred, secret, nil
}

// DeleteCredential deletes a credential of the caller's environment. Its tokens stop
// working, and it stops getting new ones, at once on this replica and within
// CredentialCheckTTL on the others.
func (s *Service) DeleteCredential(ctx context.Context, p Principal, id string) error {
	if err := s.st.DeleteCredential(ctx, p.Tenant(), id); err != nil {
		return callerError(fmt.Errorf("credential %q: %w", id, err), "credential %q does not exist in this environment", id)
	}
	s.creds.forget(id)
	s.log.Info("credential deleted", "tenant", p.Tenant().String(), "client_id", id)
	return nil
}

// CredentialRoles returns the roles of a credential of the caller's environment.
func (s *Service) CredentialRoles(ctx context.Context, p Principal, id string) ([]string, error) {
	c, err := s.st.GetCredential(ctx, p.Tenant(), id)
	if err != nil {
		return nil, callerError(fmt.Errorf("credential %q: %w", id, err), "credential %q does not exist in this environment", id)
	}
	return c.Roles, nil
}

// SetCredentialRoles replaces the roles of a credential of the caller's environment. Tokens
// already issued lose the scopes of removed roles (at once on this replica, within
// CredentialCheckTTL on the others) and gain none.
func (s *Service) SetCredentialRoles(ctx context.Context, p Principal, id string, roles []string) ([]string, error) {
	var verr ValidationError
	validateRoles(&verr, "roles", roles)
	if err := verr.errOrNil(); err != nil {
		return nil, err
	}
	if err := mayGrant(p, roles); err != nil {
		return nil, err
	}
	if roles == nil {
		roles = []string{}
	}
	c, err := s.st.SetCredentialRoles(ctx, p.Tenant(), id, roles)
	if err != nil {
		return nil, callerError(fmt.Errorf("credential %q: %w", id, err), "credential %q does not exist in this environment", id)
	}
	s.creds.forget(id)
	s.log.Info("credential roles set", "tenant", p.Tenant().String(), "client_id", id, "roles", roles)
	return c.Roles, nil
}

// Roles lists the roles that can be granted.
func (s *Service) Roles() []Role { return SystemRoles() }
