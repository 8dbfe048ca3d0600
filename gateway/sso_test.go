package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/e2e/hydra"
	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
)

// ssoServer is a real gateway with single sign-on through a real provider.
type ssoServer struct {
	URL   string
	st    store.Store
	svc   *identity.Service
	orgID string
	envID string // the default environment
}

// startSSOServer starts a gateway whose SSO provider is issuer, with the client of the
// provider that newClient registers for the callback URL.
func startSSOServer(t *testing.T, issuer string, newClient func(redirect string) (id, secret string), groupRoles, domains string) *ssoServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := boltstore.Open(t.TempDir() + "/sortie.db")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ssoServer{URL: "http://" + ln.Addr().String(), st: st}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	s.svc, err = identity.New(ctx, log, st, identity.Config{Issuer: s.URL, Audiences: []string{s.URL}, TokenTTL: time.Hour,
		KeyRotation: 24 * time.Hour, MasterKey: make([]byte, identity.MasterKeySize), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	org, err := s.svc.CreateOrganization(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	s.orgID, s.envID = org.Organization.ID, org.Environment.ID
	if err := st.CreateEnvironment(ctx, store.Environment{ID: "env-staging", OrgID: s.orgID, Name: "staging", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	roles, err := identity.ParseGroupRoles(groupRoles)
	if err != nil {
		t.Fatal(err)
	}
	var allowed []string
	if domains != "" {
		allowed = strings.Split(domains, ",")
	}
	id, secret := newClient(s.URL + gateway.SSOCallbackPath)
	o, err := s.svc.NewSSO(ctx, identity.SSOConfig{Name: "Test IdP", Issuer: issuer, ClientID: id, ClientSecret: secret,
		RedirectURL: s.URL + gateway.SSOCallbackPath, Scopes: []string{"openid", "email", "groups"}, AllowedDomains: allowed,
		GroupRoles: roles, OrgID: s.orgID})
	if err != nil {
		t.Fatal(err)
	}
	agents := hub.New(log, hub.Config{Registerer: reg})
	gw := gateway.New(log, s.svc, agents, reg, gateway.WithSSO(o))
	for _, want := range []gateway.Route{{Pattern: "GET /oauth/sso/start", Need: gateway.Public}, {Pattern: "GET " + gateway.SSOCallbackPath, Need: gateway.Public}} {
		if !slices.Contains(gw.Routes(), want) {
			t.Errorf("the gateway does not declare %+v", want)
		}
	}
	done := make(chan error, 1)
	go func() { done <- gateway.Serve(ctx, log, ln, gw.Handler(), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		st.Close()
	})
	return s
}

// browser is an HTTP client with a cookie jar that follows redirects, records every URL it
// went through, and stops at the console's callback (where the SPA would take over).
type browser struct {
	t       *testing.T
	c       *http.Client
	visited []*url.URL
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t}
	b.c = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		b.visited = append(b.visited, req.URL)
		if req.URL.Path == "/console/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

type page struct {
	Status int
	URL    *url.URL // where the browser ended
	Body   string
	Header http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{Status: resp.StatusCode, URL: resp.Request.URL, Body: string(body), Header: resp.Header}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) cookie(u, name string) string {
	pu, _ := url.Parse(u)
	for _, c := range b.c.Jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// consoleSignIn is one run of the console's authorization request.
type consoleSignIn struct {
	verifier string
	state    string
}

var ssoLink = regexp.MustCompile(`href="(/oauth/sso/start\?authreq=[^"]+)"`)

// openSignIn opens the console's sign-in page and returns the SSO button's URL.
func (s *ssoServer) openSignIn(b *browser) (consoleSignIn, string) {
	b.t.Helper()
	v := make([]byte, 32)
	_, _ = rand.Read(v)
	cs := consoleSignIn{verifier: base64.RawURLEncoding.EncodeToString(v), state: "console-state-1"}
	sum := sha256.Sum256([]byte(cs.verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"sortie-console"}, "redirect_uri": {s.URL + "/console/callback"},
		"state": {cs.state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	p := b.get(s.URL + "/oauth/authorize?" + q.Encode())
	m := ssoLink.FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil || !strings.Contains(p.Body, "Sign in with Test IdP") {
		b.t.Fatalf("sign-in page: %d, no button \"Sign in with Test IdP\" linking to /oauth/sso/start:\n%s", p.Status, p.Body)
	}
	return cs, s.URL + html.UnescapeString(m[1])
}

// atProvider follows the SSO button to the provider's sign-in form and signs in there.
func atProvider(b *browser, start, email, password string) page {
	b.t.Helper()
	p := b.get(start)
	if p.Status != http.StatusOK || p.URL.Path != "/login" || !strings.Contains(p.Body, `<button type="submit">Sign in</button>`) {
		b.t.Fatalf("SSO button: %d at %s, want the provider's sign-in form:\n%s", p.Status, p.URL, p.Body)
	}
	return b.post(p.URL.Scheme+"://"+p.URL.Host+"/login", url.Values{
		"login_challenge": {p.URL.Query().Get("login_challenge")}, "email": {email}, "password": {password}})
}

// finishConsole does what the console does at /console/callback: it exchanges the code for
// the session cookies, then asks who it is.
func (s *ssoServer) finishConsole(b *browser, cs consoleSignIn, landed page) whoAmI {
	b.t.Helper()
	to, err := landed.URL.Parse(landed.Header.Get("Location"))
	if err != nil || landed.Status != http.StatusSeeOther || to.Path != "/console/callback" {
		b.t.Fatalf("after the provider: %d at %s to %q, want 303 to /console/callback:\n%s", landed.Status, landed.URL, landed.Header.Get("Location"), landed.Body)
	}
	q := to.Query()
	if q.Get("state") != cs.state || q.Get("code") == "" {
		b.t.Fatalf("console callback %s: want the console's state and a code", to)
	}
	tok := b.post(s.URL+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"sortie-console"},
		"code": {q.Get("code")}, "redirect_uri": {s.URL + "/console/callback"}, "code_verifier": {cs.verifier}})
	if tok.Status != http.StatusOK {
		b.t.Fatalf("code exchange: %d %s", tok.Status, tok.Body)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/sortie.identity.v1.IdentityService/WhoAmI", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", b.cookie(s.URL, "sortie_csrf"))
	p := b.do(req)
	if p.Status != http.StatusOK {
		b.t.Fatalf("WhoAmI with the session cookie: %d %s", p.Status, p.Body)
	}
	var out whoAmI
	if err := json.Unmarshal([]byte(p.Body), &out); err != nil {
		b.t.Fatalf("WhoAmI: %v: %s", err, p.Body)
	}
	return out
}

type whoAmI struct {
	Principal struct {
		Type   string   `json:"type"`
		Name   string   `json:"name"`
		EnvID  string   `json:"envId"`
		Roles  []string `json:"roles"`
		Scopes []string `json:"scopes"`
	} `json:"principal"`
}

// wantRefused asserts the sign-in page shows message with status, and that no user login
// exists.
func (s *ssoServer) wantRefused(t *testing.T, p page, status int, message, login string) {
	t.Helper()
	if p.Status != status || !strings.Contains(p.Body, html.EscapeString(message)) {
		t.Fatalf("got %d at %s, want %d with %q:\n%s", p.Status, p.URL, status, message, p.Body)
	}
	if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("the page's Content-Security-Policy is %q", csp)
	}
	if login == "" {
		return
	}
	if u, err := s.st.LookupUser(context.Background(), login); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused sign-in stored user %s (%+v, %v)", login, u, err)
	}
}

func TestSSO(t *testing.T) {
	idp := hydra.Start(t)
	s := startSSOServer(t, idp.Issuer(), idp.CreateClient,
		"deployers=Deployments Full Access;admins=Organization Admin;qa=staging:Deployments Full Access", "example.com")
	ctx := context.Background()

	t.Run("sign in with a mapped group, then lose it", func(t *testing.T) {
		ann := idp.AddUser("Ann@Example.com", "ann password", "deployers", "qa", "unmapped")
		idp.SetClaims("ann@example.com", map[string]any{"name": "Ann Example"})
		b := newBrowser(t)
		cs, start := s.openSignIn(b)
		who := s.finishConsole(b, cs, atProvider(b, start, "ann@example.com", "ann password"))
		if who.Principal.Type != "PRINCIPAL_TYPE_USER" || who.Principal.EnvID != s.envID ||
			!slices.Equal(who.Principal.Roles, []string{identity.RoleDeploymentsFullAccess}) {
			t.Fatalf("WhoAmI = %+v, want a user with Deployments Full Access in the default environment", who.Principal)
		}
		u, err := s.st.LookupUser(ctx, "ann@example.com")
		if err != nil {
			t.Fatal(err)
		}
		want := []store.Membership{{EnvID: "env-staging", Roles: []string{identity.RoleDeploymentsFullAccess}},
			{EnvID: s.envID, Roles: []string{identity.RoleDeploymentsFullAccess}}}
		slices.SortFunc(want, func(a, b store.Membership) int { return strings.Compare(a.EnvID, b.EnvID) })
		if u.External != idp.Issuer()+" "+ann.Subject || u.Name != "Ann Example" || u.PasswordHash != "" || u.OrgID != s.orgID ||
			!slices.EqualFunc(u.Memberships, want, func(a, b store.Membership) bool { return a.EnvID == b.EnvID && slices.Equal(a.Roles, b.Roles) }) {
			t.Fatalf("stored user %+v, want External %q and memberships %+v", u, idp.Issuer()+" "+ann.Subject, want)
		}

		// The provider moves Ann from deployers to admins and drops qa: the next sign-in
		// follows.
		idp.AddUser("ann@example.com", "ann password", "admins")
		b = newBrowser(t)
		cs, start = s.openSignIn(b)
		who = s.finishConsole(b, cs, atProvider(b, start, "ann@example.com", "ann password"))
		if !slices.Equal(who.Principal.Roles, []string{identity.RoleOrganizationAdmin}) {
			t.Fatalf("after the group change WhoAmI roles = %v, want Organization Admin only", who.Principal.Roles)
		}
		u2, err := s.st.LookupUser(ctx, "ann@example.com")
		if err != nil || u2.ID != u.ID || len(u2.Memberships) != 1 || u2.Memberships[0].EnvID != s.envID {
			t.Fatalf("after the group change the user is %+v (%v), want the same user with one membership", u2, err)
		}
	})

	t.Run("the start binds the browser and uses PKCE", func(t *testing.T) {
		b := newBrowser(t)
		_, start := s.openSignIn(b)
		b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		p := b.get(start)
		to, err := url.Parse(p.Header.Get("Location"))
		if err != nil || p.Status != http.StatusSeeOther || !strings.HasPrefix(to.String(), idp.Issuer()+"/oauth2/auth?") {
			t.Fatalf("start: %d to %q, want 303 to the provider", p.Status, p.Header.Get("Location"))
		}
		q := to.Query()
		cookie := p.Header.Get("Set-Cookie")
		if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("nonce") == "" ||
			len(q.Get("state")) < 32 || !strings.Contains(q.Get("scope"), "openid") || q.Get("redirect_uri") != s.URL+gateway.SSOCallbackPath {
			t.Errorf("provider request %s lacks PKCE, nonce, state, scope or the redirect URI", to)
		}
		if want := "sortie_sso=" + q.Get("state") + "; Path=/oauth/sso; Max-Age=600; HttpOnly; SameSite=Lax"; cookie != want {
			t.Errorf("start set cookie %q, want %q", cookie, want)
		}
	})

	t.Run("a sign-in page that is gone", func(t *testing.T) {
		before, err := s.st.ListTickets(ctx, identity.TicketSSOState, "")
		if err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t)
		s.wantRefused(t, b.get(s.URL+"/oauth/sso/start?authreq=no-such-request"), http.StatusBadRequest, identity.ErrSignInExpired.Error(), "")
		if after, err := s.st.ListTickets(ctx, identity.TicketSSOState, ""); err != nil || len(after) != len(before) {
			t.Errorf("state tickets after a refused start: %d (%v), want %d as before", len(after), err, len(before))
		}
	})

	t.Run("domain not allowed", func(t *testing.T) {
		idp.AddUser("eve@other.org", "eve password", "admins")
		b := newBrowser(t)
		_, start := s.openSignIn(b)
		s.wantRefused(t, atProvider(b, start, "eve@other.org", "eve password"), http.StatusForbidden,
			"Accounts of the domain other.org may not sign in to Sortie.", "eve@other.org")
	})

	t.Run("email not verified", func(t *testing.T) {
		idp.AddUser("gil@example.com", "gil password", "admins")
		idp.SetClaims("gil@example.com", map[string]any{"email_verified": false})
		b := newBrowser(t)
		_, start := s.openSignIn(b)
		s.wantRefused(t, atProvider(b, start, "gil@example.com", "gil password"), http.StatusForbidden,
			"Your email address at Test IdP is not verified; verify it there and sign in again.", "gil@example.com")
	})

	t.Run("no mapped group", func(t *testing.T) {
		idp.AddUser("bob@example.com", "bob password", "staff")
		b := newBrowser(t)
		_, start := s.openSignIn(b)
		s.wantRefused(t, atProvider(b, start, "bob@example.com", "bob password"), http.StatusForbidden,
			"Your account at Test IdP is in no group that grants a role in Sortie.", "bob@example.com")
	})

	t.Run("a local account is not taken over", func(t *testing.T) {
		now := time.Now()
		local, err := s.st.CreateUser(ctx, store.User{ID: "local-carol", OrgID: s.orgID, Login: "carol@example.com", Name: "Carol",
			PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", CreatedAt: now, UpdatedAt: now,
			Memberships: []store.Membership{{EnvID: s.envID, Roles: []string{identity.RoleDeploymentsFullAccess}}}})
		if err != nil {
			t.Fatal(err)
		}
		idp.AddUser("carol@example.com", "carol password", "admins")
		b := newBrowser(t)
		_, start := s.openSignIn(b)
		s.wantRefused(t, atProvider(b, start, "carol@example.com", "carol password"), http.StatusForbidden,
			"Sortie already has an account carol@example.com that is not linked to Test IdP.", "")
		after, err := s.st.LookupUser(ctx, "carol@example.com")
		if err != nil || after.Revision != local.Revision || after.External != "" {
			t.Fatalf("the local account changed: %+v (%v)", after, err)
		}
	})

	t.Run("replayed callback and foreign browser", func(t *testing.T) {
		idp.AddUser("dan@example.com", "dan password", "deployers")
		b := newBrowser(t)
		cs, start := s.openSignIn(b)
		landed := atProvider(b, start, "dan@example.com", "dan password")
		i := slices.IndexFunc(b.visited, func(u *url.URL) bool { return u.Path == gateway.SSOCallbackPath })
		if i < 0 {
			t.Fatalf("the browser never went through %s: %v", gateway.SSOCallbackPath, b.visited)
		}
		callback := b.visited[i].String()
		s.finishConsole(b, cs, landed)
		const msg = "This sign-in link is not valid any more"
		s.wantRefused(t, b.get(callback), http.StatusBadRequest, msg, "")

		// The callback of a sign-in started in another browser (no state cookie here) is
		// refused, and does not use up the sign-in of the browser that started it.
		other := newBrowser(t)
		cs, start = s.openSignIn(other)
		held := holdAtCallback(other, start, "dan@example.com", "dan password")
		s.wantRefused(t, newBrowser(t).get(held.String()), http.StatusBadRequest, msg, "")
		other.c.CheckRedirect = newBrowser(t).c.CheckRedirect
		s.finishConsole(other, cs, other.get(held.String()))
	})

	t.Run("provider down during the sign-in", func(t *testing.T) {
		idp.AddUser("fay@example.com", "fay password", "deployers")
		b := newBrowser(t)
		_, start := s.openSignIn(b)
		callback := holdAtCallback(b, start, "fay@example.com", "fay password")
		idp.Stop()
		s.wantRefused(t, b.get(callback.String()), http.StatusServiceUnavailable,
			"Signing in with Test IdP is not possible right now: Test IdP did not answer.", "fay@example.com")
	})
}

// holdAtCallback signs in at the provider and returns the URL the provider sends the browser
// back to Sortie with, without going there.
func holdAtCallback(b *browser, start, email, password string) *url.URL {
	b.t.Helper()
	p := b.get(start)
	var callback *url.URL
	b.c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == gateway.SSOCallbackPath {
			callback = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	b.post(p.URL.Scheme+"://"+p.URL.Host+"/login", url.Values{"login_challenge": {p.URL.Query().Get("login_challenge")},
		"email": {email}, "password": {password}})
	if callback == nil {
		b.t.Fatalf("the provider did not send the browser back to Sortie")
	}
	return callback
}

// TestSSOProviderDownAtStart: a provider that does not answer (a closed port) does not stop
// the server, and its button says so when used.
func TestSSOProviderDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	ln.Close()
	s := startSSOServer(t, issuer, func(string) (string, string) { return "client", "secret" }, "deployers=Deployments Full Access", "")
	b := newBrowser(t)
	_, start := s.openSignIn(b)
	p := b.get(start)
	s.wantRefused(t, p, http.StatusServiceUnavailable, "Signing in with Test IdP is not possible right now: Test IdP did not answer.", "")
	if !strings.Contains(p.Body, `name="password"`) {
		t.Errorf("the page lost its password form:\n%s", p.Body)
	}
	if n, err := s.st.ListTickets(context.Background(), identity.TicketSSOState, ""); err != nil || len(n) != 0 {
		t.Errorf("a failed start stored state: %v, %v", n, err)
	}
}
