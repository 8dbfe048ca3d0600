package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/sortie-dev/sortie/store"
)

// Single sign-on: people sign in to the console through an external OpenID Connect provider
// (Okta, Auth0, OneLogin, any standard one). Sortie is a confidential client of the provider
// using the authorization code flow with PKCE and a nonce; the ID token is verified with
// coreos/go-oidc. The provider's groups decide the person's roles at every sign-in.

// TicketSSOState is the ticket kind of a pending sign-in at the provider, by the keyed hash
// of its state parameter.
const TicketSSOState = "ssostate"

// ssoStateTTL is how long a person has to sign in at the provider.
const ssoStateTTL = 10 * time.Minute

// DefaultGroupsClaim is the ID token claim read for the person's groups.
const DefaultGroupsClaim = "groups"

// DefaultEnvironment is the name of the environment every organization starts with; a
// group mapping without an environment grants its role there.
const DefaultEnvironment = "default"

// GroupRole maps one group of the provider to one role in one environment.
type GroupRole struct {
	Group string
	// Env is the environment's name; empty means DefaultEnvironment.
	Env  string
	Role string
}

// ParseGroupRoles parses the --oidc-group-roles mapping: entries separated by ";", each
// "group=Role" or "group=environment:Role". Role names contain spaces but neither "=" nor
// ":", so an entry splits at its last "=" and the right side at its first ":"; spaces around
// the parts are dropped. A group granting several roles is written once per role. An empty
// string is no mapping.
func ParseGroupRoles(s string) ([]GroupRole, error) {
	var out []GroupRole
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		eq := strings.LastIndex(entry, "=")
		if eq < 0 {
			return nil, fmt.Errorf("entry %d %q: want group=Role or group=environment:Role", i+1, entry)
		}
		gr := GroupRole{Group: strings.TrimSpace(entry[:eq]), Role: strings.TrimSpace(entry[eq+1:])}
		if env, role, ok := strings.Cut(gr.Role, ":"); ok {
			gr.Env, gr.Role = strings.TrimSpace(env), strings.TrimSpace(role)
			if gr.Env == "" {
				return nil, fmt.Errorf("entry %d %q: the environment before ':' is empty", i+1, entry)
			}
		}
		if gr.Group == "" {
			return nil, fmt.Errorf("entry %d %q: the group is empty", i+1, entry)
		}
		for _, r := range roleNames() {
			if strings.Contains(gr.Group, "="+r) {
				return nil, fmt.Errorf("entry %d %q: the group %q holds the role %q: separate entries with ';'", i+1, entry, gr.Group, r)
			}
		}
		if _, ok := roleByName(gr.Role); !ok {
			return nil, fmt.Errorf("entry %d %q: unknown role %q (roles: %s)", i+1, entry, gr.Role, strings.Join(roleNames(), ", "))
		}
		if !slices.Contains(out, gr) {
			out = append(out, gr)
		}
	}
	return out, nil
}

func roleNames() []string {
	var names []string
	for _, r := range SystemRoles() {
		names = append(names, r.Name)
	}
	return names
}

// SSOConfig configures the external identity provider.
type SSOConfig struct {
	// Name labels the sign-in button ("Sign in with <Name>") and the messages.
	Name         string
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is Sortie's callback, <public-url>/oauth/sso/callback, registered at the
	// provider.
	RedirectURL string
	// Scopes are requested from the provider; empty means openid, email and profile.
	Scopes []string
	// AllowedDomains are the email domains that may sign in; empty allows every domain.
	AllowedDomains []string
	// GroupsClaim is the ID token claim holding the groups; empty means DefaultGroupsClaim.
	GroupsClaim string
	GroupRoles  []GroupRole
	// OrgID is the organization people signing in are created in; empty means the one
	// Bootstrap created.
	OrgID string
	// HTTPClient talks to the provider; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
}

// SSO signs people in through the external provider. The provider is discovered on first
// use and again after a failure, so a provider that is down when the server starts only
// makes its sign-in button answer with a clear message until it is back.
type SSO struct {
	log    *slog.Logger
	s      *Service
	cfg    SSOConfig
	orgID  string
	client *http.Client

	mu       sync.Mutex // guards provider
	provider *oidc.Provider
}

// SSOError is a refused single sign-on: Message is for the person, on the sign-in page.
type SSOError struct {
	Message string
	// Status is the HTTP status of the page: 503 when the provider is unreachable, 400 for a
	// bad or replayed callback, 403 for a person Sortie refuses.
	Status int
}

func (e *SSOError) Error() string { return e.Message }

// NewSSO checks cfg against the store (every mapped environment must exist in the bootstrap
// organization, where people signing in through the provider are created) and returns the
// single sign-on service. It does not contact the provider.
func (s *Service) NewSSO(ctx context.Context, cfg SSOConfig) (*SSO, error) {
	switch {
	case cfg.Issuer == "" || cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("single sign-on needs the issuer, the client id and the client secret")
	case cfg.RedirectURL == "":
		return nil, errors.New("single sign-on needs its redirect URL")
	case len(cfg.GroupRoles) == 0:
		return nil, errors.New("single sign-on needs at least one group mapped to a role (--oidc-group-roles), or nobody could sign in")
	}
	cfg.GroupsClaim = cmp.Or(cfg.GroupsClaim, DefaultGroupsClaim)
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Issuer
		if u, err := url.Parse(cfg.Issuer); err == nil && u.Host != "" {
			cfg.Name = u.Hostname()
		}
	}
	domains := make([]string, 0, len(cfg.AllowedDomains))
	for _, d := range cfg.AllowedDomains {
		domains = append(domains, strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")))
	}
	cfg.AllowedDomains = domains
	cfg.GroupRoles = slices.Clone(cfg.GroupRoles)
	orgID := cfg.OrgID
	if orgID == "" {
		var err error
		if orgID, err = s.bootstrapOrganization(ctx); err != nil {
			return nil, fmt.Errorf("single sign-on: %w", err)
		}
	}
	envs, err := s.envIDsByName(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("single sign-on: %w", err)
	}
	for _, gr := range cfg.GroupRoles {
		if _, ok := roleByName(gr.Role); !ok || gr.Group == "" {
			return nil, fmt.Errorf("--oidc-group-roles: group %q maps to role %q: want a group and one of %s", gr.Group, gr.Role, strings.Join(roleNames(), ", "))
		}
		if _, ok := envs[cmp.Or(gr.Env, DefaultEnvironment)]; !ok {
			return nil, fmt.Errorf("--oidc-group-roles: group %q maps to environment %q, which does not exist", gr.Group, cmp.Or(gr.Env, DefaultEnvironment))
		}
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &SSO{log: s.log, s: s, cfg: cfg, orgID: orgID, client: client}, nil
}

// Name is the provider's label.
func (o *SSO) Name() string { return o.cfg.Name }

// bootstrapOrganization returns the id of the organization Bootstrap created.
func (s *Service) bootstrapOrganization(ctx context.Context) (string, error) {
	raw, err := s.st.GetSetting(ctx, bootstrapDoneSetting)
	if err != nil {
		return "", fmt.Errorf("read the bootstrap record: %w", err)
	}
	var done bootstrapDone
	if json.Unmarshal(raw, &done) != nil || done.ClientID == "" {
		done = bootstrapDone{ClientID: string(raw)} // older versions stored the bare client id
	}
	if done.OrgID != "" {
		return done.OrgID, nil
	}
	c, err := s.st.LookupCredential(ctx, done.ClientID)
	if err != nil {
		return "", fmt.Errorf("find the bootstrap organization through the admin credential %s: %w", done.ClientID, err)
	}
	return c.Tenant.OrgID, nil
}

func (s *Service) envIDsByName(ctx context.Context, orgID string) (map[string]string, error) {
	envs, err := s.st.ListEnvironments(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("list environments: %w", err)
	}
	ids := make(map[string]string, len(envs))
	for _, e := range envs {
		ids[e.Name] = e.ID
	}
	return ids, nil
}

// discover returns the provider, discovering it when not yet known.
func (o *SSO) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.cfg.Issuer)
	if err != nil {
		o.log.Warn("single sign-on: provider discovery failed", "issuer", o.cfg.Issuer, "err", err)
		return nil, o.unavailable()
	}
	o.provider = p
	return p, nil
}

// Discover looks the provider up now, so the first sign-in does not wait for it; a failure
// is logged and retried on use.
func (o *SSO) Discover(ctx context.Context) error {
	_, err := o.discover(ctx)
	return err
}

func (o *SSO) unavailable() *SSOError {
	return &SSOError{Status: http.StatusServiceUnavailable, Message: fmt.Sprintf(
		"Signing in with %s is not possible right now: %s did not answer. Try again in a moment, or sign in with a password.", o.cfg.Name, o.cfg.Name)}
}

func (o *SSO) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: o.cfg.RedirectURL, Scopes: o.cfg.Scopes}
}

// ssoState is the value of a TicketSSOState: which sign-in page the person came from. The
// PKCE verifier and the nonce are derived from the state with the server's keyed hash, so
// the ticket holds no secret.
type ssoState struct {
	AuthRequest string `json:"authreq"`
}

func (o *SSO) derive(purpose, state string) string {
	sum := o.s.hashSecret("sortie sso " + purpose + "\x00" + state)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (o *SSO) stateID(state string) string {
	sum := o.s.hashSecret("sortie sso state\x00" + state)
	return hex.EncodeToString(sum[:])
}

// Start begins a sign-in at the provider for the pending authorization request authreqID.
// It returns the provider URL to send the browser to and the state, which the browser must
// present again at the callback (the gateway keeps it in a cookie).
func (o *SSO) Start(ctx context.Context, authreqID string) (redirect, state string, err error) {
	if err := o.checkAuthRequest(ctx, authreqID); err != nil {
		return "", "", err
	}
	p, err := o.discover(ctx)
	if err != nil {
		return "", "", err
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	state = base64.RawURLEncoding.EncodeToString(b)
	val, err := json.Marshal(ssoState{AuthRequest: authreqID})
	if err != nil {
		return "", "", err
	}
	if err := o.s.st.PutTicket(ctx, store.Ticket{Kind: TicketSSOState, ID: o.stateID(state), Value: val, ExpiresAt: o.s.now().Add(ssoStateTTL)}); err != nil {
		return "", "", fmt.Errorf("single sign-on: %w", err)
	}
	redirect = o.oauth(p).AuthCodeURL(state, oidc.Nonce(o.derive("nonce", state)), oauth2.S256ChallengeOption(o.derive("pkce", state)))
	return redirect, state, nil
}

func (o *SSO) checkAuthRequest(ctx context.Context, id string) error {
	if id == "" {
		return &SSOError{Status: http.StatusBadRequest, Message: ErrSignInExpired.Error()}
	}
	_, err := o.s.st.GetTicket(ctx, store.TicketAuthRequest, id)
	if errors.Is(err, store.ErrNotFound) {
		return &SSOError{Status: http.StatusBadRequest, Message: ErrSignInExpired.Error()}
	}
	if err != nil {
		return fmt.Errorf("single sign-on: %w", err)
	}
	return nil
}

// Callback is what the provider sends the browser back with.
type Callback struct {
	State            string // the state query parameter
	BrowserState     string // the state the browser kept (cookie)
	Code             string
	Error            string // the provider's error code, if it refused
	ErrorDescription string
}

// Finish completes a sign-in at the provider: the state is taken once, the code exchanged
// with the PKCE verifier, the ID token verified (signature, issuer, audience, expiry,
// nonce), the email domain and the groups checked, and the user created or updated with
// the memberships the groups map to. It returns the authorization request to complete and
// the user. Refusals are *SSOError and store nothing.
func (o *SSO) Finish(ctx context.Context, cb Callback) (authreqID string, u store.User, err error) {
	badState := &SSOError{Status: http.StatusBadRequest, Message: "This sign-in link is not valid any more: it was used already, it expired, or it was started in another browser. Sign in again."}
	if cb.State == "" || subtle.ConstantTimeCompare([]byte(cb.State), []byte(cb.BrowserState)) != 1 {
		return "", store.User{}, badState
	}
	t, err := o.s.st.TakeTicket(ctx, TicketSSOState, o.stateID(cb.State))
	if errors.Is(err, store.ErrNotFound) {
		return "", store.User{}, badState
	}
	if err != nil {
		return "", store.User{}, fmt.Errorf("single sign-on: %w", err)
	}
	var st ssoState
	if err := json.Unmarshal(t.Value, &st); err != nil {
		return "", store.User{}, fmt.Errorf("single sign-on: stored state: %w", err)
	}
	authreqID = st.AuthRequest
	if cb.Error != "" {
		o.log.Info("single sign-on: the provider refused", "error", cb.Error, "description", cb.ErrorDescription)
		return authreqID, store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("%s did not sign you in (%s).", o.cfg.Name, safeCode(cb.Error))}
	}
	if err := o.checkAuthRequest(ctx, authreqID); err != nil {
		return authreqID, store.User{}, err
	}
	p, err := o.discover(ctx)
	if err != nil {
		return authreqID, store.User{}, err
	}
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, o.client), 15*time.Second)
	defer cancel()
	tok, err := o.oauth(p).Exchange(xctx, cb.Code, oauth2.VerifierOption(o.derive("pkce", cb.State)))
	if err != nil {
		var rerr *oauth2.RetrieveError
		if errors.As(err, &rerr) {
			o.log.Warn("single sign-on: the provider refused the code", "status", rerr.Response.StatusCode, "error", rerr.ErrorCode)
			return authreqID, store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("%s did not accept this sign-in; sign in again.", o.cfg.Name)}
		}
		o.log.Warn("single sign-on: code exchange failed", "err", err)
		return authreqID, store.User{}, o.unavailable()
	}
	raw, _ := tok.Extra("id_token").(string)
	idTok, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID}).Verify(oidc.ClientContext(xctx, o.client), raw)
	if err == nil && subtle.ConstantTimeCompare([]byte(idTok.Nonce), []byte(o.derive("nonce", cb.State))) != 1 {
		err = errors.New("nonce does not match")
	}
	if err != nil {
		o.log.Warn("single sign-on: ID token refused", "err", err)
		return authreqID, store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("The answer from %s could not be verified; sign in again.", o.cfg.Name)}
	}
	var claims map[string]any
	if err := idTok.Claims(&claims); err != nil {
		return authreqID, store.User{}, fmt.Errorf("single sign-on: ID token claims: %w", err)
	}
	u, err = o.signIn(ctx, idTok.Issuer, idTok.Subject, claims)
	return authreqID, u, err
}

// safeCode keeps an OAuth error code printable and short for the page.
func safeCode(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// signIn applies Sortie's rules to the verified claims and stores the user.
func (o *SSO) signIn(ctx context.Context, issuer, subject string, claims map[string]any) (store.User, error) {
	email, _ := claims["email"].(string)
	email = strings.ToLower(strings.TrimSpace(email))
	at := strings.LastIndex(email, "@")
	if at <= 0 || at == len(email)-1 {
		return store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("%s did not send an email address for your account; Sortie needs one to sign you in.", o.cfg.Name)}
	}
	if verified, ok := claims["email_verified"].(bool); ok && !verified {
		return store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("Your email address at %s is not verified; verify it there and sign in again.", o.cfg.Name)}
	}
	if domain := email[at+1:]; len(o.cfg.AllowedDomains) > 0 && !slices.Contains(o.cfg.AllowedDomains, domain) {
		return store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("Accounts of the domain %s may not sign in to Sortie.", domain)}
	}
	memberships, err := o.memberships(ctx, claimStrings(claims[o.cfg.GroupsClaim]))
	if err != nil {
		return store.User{}, err
	}
	if len(memberships) == 0 {
		return store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf("Your account at %s is in no group that grants a role in Sortie.", o.cfg.Name)}
	}
	name, _ := claims["name"].(string)
	name = cmp.Or(strings.TrimSpace(name), email)
	external := issuer + " " + subject
	for range 3 {
		now := o.s.now().UTC()
		u, err := o.s.st.LookupUser(ctx, email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			u, err = o.s.st.CreateUser(ctx, store.User{ID: uuid.NewString(), OrgID: o.orgID, Login: email, Name: name,
				External: external, Memberships: memberships, CreatedAt: now, UpdatedAt: now})
			if errors.Is(err, store.ErrConflict) {
				continue // created meanwhile: look again
			}
			if err != nil {
				return store.User{}, fmt.Errorf("single sign-on: create user: %w", err)
			}
			o.log.Info("single sign-on: user created", "user", u.ID, "tenant", u.OrgID)
			return u, nil
		case err != nil:
			return store.User{}, fmt.Errorf("single sign-on: look up user: %w", err)
		case u.External != external || u.OrgID != o.orgID:
			return store.User{}, &SSOError{Status: http.StatusForbidden, Message: fmt.Sprintf(
				"Sortie already has an account %s that is not linked to %s. Sign in with its password, or ask an administrator.", email, o.cfg.Name)}
		}
		u.Name, u.Memberships, u.UpdatedAt = name, memberships, now
		u, err = o.s.st.UpdateUser(ctx, u)
		if errors.Is(err, store.ErrStale) {
			continue
		}
		if err != nil {
			return store.User{}, fmt.Errorf("single sign-on: update user: %w", err)
		}
		return u, nil
	}
	return store.User{}, errors.New("single sign-on: the user changed three times while signing in; try again")
}

// memberships maps the person's groups to memberships, ordered by environment id, with
// sorted roles. A mapped environment deleted since start-up is skipped.
func (o *SSO) memberships(ctx context.Context, groups []string) ([]store.Membership, error) {
	envs, err := o.s.envIDsByName(ctx, o.orgID)
	if err != nil {
		return nil, fmt.Errorf("single sign-on: %w", err)
	}
	roles := map[string][]string{}
	for _, gr := range o.cfg.GroupRoles {
		if !slices.Contains(groups, gr.Group) {
			continue
		}
		envID, ok := envs[cmp.Or(gr.Env, DefaultEnvironment)]
		if !ok {
			o.log.Warn("single sign-on: a mapped environment no longer exists", "environment", cmp.Or(gr.Env, DefaultEnvironment))
			continue
		}
		roles[envID] = append(roles[envID], gr.Role)
	}
	var out []store.Membership
	for envID, rs := range roles {
		slices.Sort(rs)
		out = append(out, store.Membership{EnvID: envID, Roles: slices.Compact(rs)})
	}
	slices.SortFunc(out, func(a, b store.Membership) int { return strings.Compare(a.EnvID, b.EnvID) })
	return out, nil
}

// claimStrings reads a groups claim: a list of strings or one string.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
