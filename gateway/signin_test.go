package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redistest"
)

const testPassword = "correct horse battery staple"

// console is a browser of the console: a cookie jar, no automatic redirects.
type console struct {
	t      *testing.T
	ts     *testServer
	client *http.Client
}

func newConsole(t *testing.T, ts *testServer) *console {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &console{t: t, ts: ts, client: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// addUser creates a local user of acme's environment with the Organization Admin role.
func addUser(t *testing.T, ts *testServer, login string) store.User {
	t.Helper()
	u, err := ts.svc.CreateLocalUser(t.Context(), identity.NewLocalUser{
		OrgID: ts.admin.Organization.ID, Login: login, Name: login, Password: testPassword,
		Memberships: []store.Membership{{EnvID: ts.admin.Environment.ID, Roles: []string{identity.RoleOrganizationAdmin}}},
	})
	if err != nil {
		t.Fatalf("CreateLocalUser: %v", err)
	}
	return u
}

func pkcePair() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func (c *console) redirectURI() string { return c.ts.URL + "/console/callback" }

func (c *console) send(req *http.Request) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, string(body)
}

func (c *console) get(path string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, c.ts.URL+path, nil)
	return c.send(req)
}

func (c *console) postForm(path string, form url.Values) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, c.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.send(req)
}

var authreqInput = regexp.MustCompile(`name="authreq" value="([^"]+)"`)

// openSignIn starts an authorization request and returns the sign-in page's authreq.
func (c *console) openSignIn(challenge string) string {
	c.t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {identity.ConsoleClientID}, "redirect_uri": {c.redirectURI()},
		"state": {"st4te"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	resp, body := c.get("/oauth/authorize?" + q.Encode())
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET /oauth/authorize: %d %s", resp.StatusCode, body)
	}
	m := authreqInput.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("sign-in page has no authreq:\n%s", body)
	}
	return m[1]
}

// submit posts the sign-in form.
func (c *console) submit(authreq, login, password string) (*http.Response, string) {
	return c.postForm("/oauth/authorize", url.Values{"authreq": {authreq}, "login": {login}, "password": {password}})
}

// code signs in and returns the authorization code the console gets back.
func (c *console) code(login, challenge string) string {
	c.t.Helper()
	resp, body := c.submit(c.openSignIn(challenge), login, testPassword)
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), c.redirectURI()+"?") || loc.Query().Get("state") != "st4te" || loc.Query().Get("code") == "" {
		c.t.Fatalf("sign-in redirected to %q, want %s?code=...&state=st4te", resp.Header.Get("Location"), c.redirectURI())
	}
	return loc.Query().Get("code")
}

func (c *console) exchange(code, redirectURI, verifier string) (*http.Response, string) {
	return c.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {identity.ConsoleClientID},
		"code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}})
}

// signIn runs the whole flow; the jar then holds the session.
func (c *console) signIn(login string) {
	c.t.Helper()
	verifier, challenge := pkcePair()
	resp, body := c.exchange(c.code(login, challenge), c.redirectURI(), verifier)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("code exchange: %d %s", resp.StatusCode, body)
	}
}

func (c *console) cookie(name string) string {
	u, _ := url.Parse(c.ts.URL)
	for _, ck := range c.client.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// whoAmI calls IdentityService.WhoAmI over Connect JSON as the console does.
func (c *console) whoAmI(csrf string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, c.ts.URL+"/sortie.identity.v1.IdentityService/WhoAmI", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return c.send(req)
}

type whoAmIReply struct {
	Principal struct {
		Type, Name, Subject, OrgID, EnvID string
		Roles, Scopes                     []string
	}
}

func (c *console) mustWhoAmI() whoAmIReply {
	c.t.Helper()
	resp, body := c.whoAmI(c.cookie("sortie_csrf"))
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("WhoAmI: %d %s", resp.StatusCode, body)
	}
	var r whoAmIReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		c.t.Fatal(err)
	}
	return r
}

func setCookies(resp *http.Response) map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, ck := range resp.Cookies() {
		out[ck.Name] = ck
	}
	return out
}

func TestConsoleCodeFlow(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	u := addUser(t, ts, "Ada@Example.com")
	c := newConsole(t, ts)
	verifier, challenge := pkcePair()

	q := url.Values{"response_type": {"code"}, "client_id": {identity.ConsoleClientID}, "redirect_uri": {c.redirectURI()},
		"state": {"st4te"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	resp, page := c.get("/oauth/authorize?" + q.Encode())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /oauth/authorize: %d %s", resp.StatusCode, page)
	}
	wantHeaders := map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
			"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
		"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
	}
	for h, want := range wantHeaders {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("sign-in page %s = %q, want %q", h, got, want)
		}
	}
	for _, want := range []string{`<label for="login">Login</label>`, `<label for="password">Password</label>`,
		`<button type="submit">Sign in</button>`, `href="/oauth/pages/signin.css"`} {
		if !strings.Contains(page, want) {
			t.Errorf("sign-in page lacks %s:\n%s", want, page)
		}
	}
	for _, banned := range []string{"<script", "<style", "style="} {
		if strings.Contains(page, banned) {
			t.Errorf("sign-in page has inline %s", banned)
		}
	}
	ar := setCookies(resp)["sortie_authreq"]
	if ar == nil || !ar.HttpOnly || ar.SameSite != http.SameSiteLaxMode || ar.Path != "/oauth" || ar.Secure {
		t.Errorf("authreq cookie = %+v, want HttpOnly, SameSite=Lax, Path=/oauth, not Secure over http", ar)
	}
	if css, _ := c.get("/oauth/pages/signin.css"); css.StatusCode != http.StatusOK || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style sheet: %d %s", css.StatusCode, css.Header.Get("Content-Type"))
	}

	authreq := authreqInput.FindStringSubmatch(page)[1]
	resp, body := c.submit(authreq, " ada@example.COM ", testPassword)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" || loc.Query().Get("state") != "st4te" {
		t.Fatalf("redirected to %s", loc)
	}
	// The request is used up: the same form again is refused.
	if again, body := c.submit(authreq, "ada@example.com", testPassword); again.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Errorf("second use of the sign-in request: %d %s", again.StatusCode, body)
	}

	resp, body = c.exchange(code, c.redirectURI(), verifier)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("code exchange: %d %s", resp.StatusCode, body)
	}
	var tok map[string]any
	if err := json.Unmarshal([]byte(body), &tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := tok["access_token"]; ok || tok["token_type"] != "cookie" || tok["expires_in"] != float64(15*60) {
		t.Errorf("token reply = %s, want token_type cookie, expires_in 900 and no access_token", body)
	}
	cookies := setCookies(resp)
	sess, csrf := cookies["sortie_session"], cookies["sortie_csrf"]
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.MaxAge != 900 || sess.Secure {
		t.Errorf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path=/, Max-Age=900, not Secure over http", sess)
	}
	if csrf == nil || csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode || csrf.Value == "" || csrf.Secure {
		t.Errorf("csrf cookie = %+v, want readable, SameSite=Strict", csrf)
	}
	if strings.Contains(body, sess.Value) {
		t.Error("the token is in the reply's body")
	}

	got := c.mustWhoAmI()
	if p := got.Principal; p.Type != "PRINCIPAL_TYPE_USER" || p.Subject != u.ID || p.Name != "ada@example.com" ||
		p.EnvID != ts.admin.Environment.ID || len(p.Roles) != 1 || p.Roles[0] != identity.RoleOrganizationAdmin || len(p.Scopes) != len(identity.Scopes) {
		t.Errorf("WhoAmI = %+v, want user ada@example.com, Organization Admin in acme's environment", p)
	}
	// Discovery names the authorization endpoint and PKCE's method.
	_, disc := c.get("/.well-known/openid-configuration")
	var d struct {
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		GrantTypes            []string `json:"grant_types_supported"`
		Methods               []string `json:"code_challenge_methods_supported"`
	}
	if err := json.Unmarshal([]byte(disc), &d); err != nil || d.AuthorizationEndpoint != ts.URL+"/oauth/authorize" ||
		!slices.Contains(d.GrantTypes, "authorization_code") || !slices.Equal(d.Methods, []string{"S256"}) {
		t.Errorf("discovery = %s", disc)
	}
	// The user's token authorizes REST like a machine's: scopes from roles.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/environments", nil)
	req.Header.Set("X-CSRF-Token", c.cookie("sortie_csrf"))
	if resp, body := c.send(req); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /environments as the user: %d %s", resp.StatusCode, body)
	}
}

var errorMessage = regexp.MustCompile(`<p class="error" role="alert" data-testid="error-message">([^<]*)</p>`)

func TestSignInWrongPasswordOrUnknownUser(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	_, challenge := pkcePair()
	authreq := c.openSignIn(challenge)
	var messages []string
	for _, try := range []struct{ login, password string }{{"ada", "wrong password!"}, {"nobody", testPassword}, {"", ""}} {
		resp, body := c.submit(authreq, try.login, try.password)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" || setCookies(resp)["sortie_session"] != nil {
			t.Errorf("%q/%q: %d, Location %q", try.login, try.password, resp.StatusCode, resp.Header.Get("Location"))
		}
		all := errorMessage.FindAllStringSubmatch(body, -1)
		if len(all) != 1 {
			t.Fatalf("%q: %d error messages in:\n%s", try.login, len(all), body)
		}
		messages = append(messages, all[0][1])
		if !authreqInput.MatchString(body) {
			t.Errorf("%q: the page lost its form", try.login)
		}
	}
	for _, m := range messages {
		if m != "Wrong login or password." {
			t.Errorf("messages = %q, want each to be the one generic message", messages)
			break
		}
	}
	// The request still works with the right password.
	if resp, body := c.submit(authreq, "ada", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("right password after wrong ones: %d %s", resp.StatusCode, body)
	}
}

func TestSignInRateLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	_, challenge := pkcePair()
	authreq := c.openSignIn(challenge)
	for i := range 5 {
		if resp, _ := c.submit(authreq, "ada", "wrong password!"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, resp.StatusCode)
		}
	}
	// Now even the right password is refused, with no hint about it.
	resp, body := c.submit(authreq, "ada", testPassword)
	m := errorMessage.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusTooManyRequests || m == nil || m[1] != "Too many sign-in attempts; wait a minute and try again." ||
		resp.Header.Get("Location") != "" {
		t.Errorf("after 5 failures: %d %q", resp.StatusCode, m)
	}
	// A minute later the window has passed.
	ts.clock.Advance(61 * time.Second)
	if resp, body := c.submit(authreq, "ada", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a minute later: %d %s", resp.StatusCode, body)
	}
}

func TestAuthorizeBadRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	c := newConsole(t, ts)
	_, challenge := pkcePair()
	base := url.Values{"response_type": {"code"}, "client_id": {identity.ConsoleClientID}, "redirect_uri": {c.redirectURI()},
		"state": {"s"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	with := func(k, v string) string {
		q := url.Values{}
		for kk, vv := range base {
			q[kk] = vv
		}
		q.Set(k, v)
		return "/oauth/authorize?" + q.Encode()
	}
	// A bad client or redirect URI: an error page, never a redirect, no request stored.
	for _, path := range []string{with("client_id", "evil"), with("redirect_uri", "https://evil.test/console/callback")} {
		resp, body := c.get(path)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || setCookies(resp)["sortie_authreq"] != nil ||
			authreqInput.MatchString(body) || !errorMessage.MatchString(body) {
			t.Errorf("%s: %d Location %q\n%s", path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	// Other bad parameters go back to the console as OAuth errors.
	for _, tt := range []struct{ path, code string }{
		{with("response_type", "token"), "unsupported_response_type"},
		{with("code_challenge_method", "plain"), "invalid_request"},
		{with("code_challenge", "short"), "invalid_request"},
	} {
		resp, _ := c.get(tt.path)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != tt.code || loc.Query().Get("state") != "s" {
			t.Errorf("%s: %d Location %q, want a redirect with error=%s", tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.code)
		}
	}
	// A form without the request's cookie is refused.
	authreq := c.openSignIn(challenge)
	other := newConsole(t, ts)
	if resp, body := other.submit(authreq, "ada", testPassword); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Errorf("form without the cookie: %d %s", resp.StatusCode, body)
	}
}

func TestCodeExchangeErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	wantOAuth := func(what string, resp *http.Response, body string, status int, code string) {
		t.Helper()
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		if resp.StatusCode != status || e.Error != code || setCookies(resp)["sortie_session"] != nil {
			t.Errorf("%s: %d %s, want %d %s and no session", what, resp.StatusCode, body, status, code)
		}
	}

	verifier, challenge := pkcePair()
	code := c.code("ada", challenge)
	other, _ := pkcePair()
	resp, body := c.exchange(code, c.redirectURI(), other)
	wantOAuth("PKCE mismatch", resp, body, 400, "invalid_grant")
	// The code was spent by the failed attempt: the right verifier gets nothing either.
	resp, body = c.exchange(code, c.redirectURI(), verifier)
	wantOAuth("code after a PKCE mismatch", resp, body, 400, "invalid_grant")

	verifier, challenge = pkcePair()
	code = c.code("ada", challenge)
	resp, body = c.exchange(code, ts.URL+"/elsewhere", verifier)
	wantOAuth("wrong redirect_uri", resp, body, 400, "invalid_grant")

	verifier, challenge = pkcePair()
	code = c.code("ada", challenge)
	resp, body = c.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"evil"},
		"code": {code}, "redirect_uri": {c.redirectURI()}, "code_verifier": {verifier}})
	wantOAuth("unknown client", resp, body, 401, "invalid_client")
	if resp, body := c.exchange(code, c.redirectURI(), verifier); resp.StatusCode != http.StatusOK {
		t.Errorf("the code after an unknown client's attempt: %d %s", resp.StatusCode, body)
	}
	resp, body = c.exchange(code, c.redirectURI(), verifier)
	wantOAuth("reused code", resp, body, 400, "invalid_grant")

	resp, body = c.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {identity.ConsoleClientID},
		"code": {"x"}, "redirect_uri": {c.redirectURI()}})
	wantOAuth("no verifier", resp, body, 400, "invalid_request")

	// An expired code.
	verifier, challenge = pkcePair()
	code = c.code("ada", challenge)
	ts.clock.Advance(61 * time.Second)
	resp, body = c.exchange(code, c.redirectURI(), verifier)
	wantOAuth("expired code", resp, body, 400, "invalid_grant")
}

func TestSessionCSRF(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	c.signIn("ada")
	for _, csrf := range []string{"", "wrong"} {
		resp, body := c.whoAmI(csrf)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("CSRF header %q: %d %s, want 403", csrf, resp.StatusCode, body)
		}
	}
	// The cookie alone never reaches a REST route either.
	if resp, body := c.get("/environments"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /environments without the CSRF header: %d %s", resp.StatusCode, body)
	}
	// Public pages load with the cookie and no header.
	if resp, _ := c.get("/.well-known/openid-configuration"); resp.StatusCode != http.StatusOK {
		t.Errorf("discovery with a session cookie: %d", resp.StatusCode)
	}
	c.mustWhoAmI()
}

func TestSignOut(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	c.signIn("ada")
	c.mustWhoAmI()
	token, csrf := c.cookie("sortie_session"), c.cookie("sortie_csrf")

	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/auth/signout", nil)
	if resp, body := c.send(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without the CSRF header: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodPost, ts.URL+"/auth/signout", nil)
	req.Header.Set("X-CSRF-Token", csrf)
	resp, body := c.send(req)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, body)
	}
	if ck := setCookies(resp); ck["sortie_session"] == nil || ck["sortie_session"].MaxAge >= 0 || ck["sortie_csrf"] == nil || ck["sortie_csrf"].MaxAge >= 0 {
		t.Errorf("sign-out did not clear both cookies: %v", resp.Header.Values("Set-Cookie"))
	}
	if c.cookie("sortie_session") != "" {
		t.Error("the jar still holds the session")
	}
	// The same cookie, kept by someone, is refused at once.
	req, _ = http.NewRequest(http.MethodPost, ts.URL+"/sortie.identity.v1.IdentityService/WhoAmI", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", csrf)
	req.AddCookie(&http.Cookie{Name: "sortie_session", Value: token})
	if resp, body := c.send(req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WhoAmI with the signed-out cookie: %d %s, want 401", resp.StatusCode, body)
	}
	// Signing out again is fine.
	req, _ = http.NewRequest(http.MethodPost, ts.URL+"/auth/signout", nil)
	if resp, body := c.send(req); resp.StatusCode != http.StatusNoContent {
		t.Errorf("second sign-out: %d %s", resp.StatusCode, body)
	}
}

func TestRemovedMembershipEndsSession(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	u := addUser(t, ts, "ada")
	c := newConsole(t, ts)
	c.signIn("ada")
	c.mustWhoAmI()
	u.Memberships = nil
	if _, err := ts.st.UpdateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if resp, body := c.whoAmI(c.cookie("sortie_csrf")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WhoAmI after the membership was removed: %d %s, want 401", resp.StatusCode, body)
	}
}

func TestRemovedUserEndsSession(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	u := addUser(t, ts, "ada")
	c := newConsole(t, ts)
	c.signIn("ada")
	c.mustWhoAmI()
	if err := ts.st.DeleteUser(t.Context(), u.OrgID, u.ID, u.Revision); err != nil {
		t.Fatal(err)
	}
	if resp, body := c.whoAmI(c.cookie("sortie_csrf")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WhoAmI after the user was deleted: %d %s, want 401", resp.StatusCode, body)
	}
}

func TestSessionRenewal(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	c.signIn("ada")
	first := c.cookie("sortie_session")
	// Early in its life the token is not renewed.
	resp, _ := c.whoAmI(c.cookie("sortie_csrf"))
	if setCookies(resp)["sortie_session"] != nil {
		t.Error("a fresh token was renewed")
	}
	ts.clock.Advance(8 * time.Minute)
	resp, body := c.whoAmI(c.cookie("sortie_csrf"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("WhoAmI: %d %s", resp.StatusCode, body)
	}
	renewed := setCookies(resp)["sortie_session"]
	if renewed == nil || renewed.Value == first || renewed.MaxAge != 900 || !renewed.HttpOnly {
		t.Fatalf("after 8 of 15 minutes the session cookie was not renewed: %v", resp.Header.Values("Set-Cookie"))
	}
	// The old token would be expired 10 minutes later; the renewed one still works.
	ts.clock.Advance(10 * time.Minute)
	c.mustWhoAmI()
	// Without use, the token expires: 401.
	ts.clock.Advance(16 * time.Minute)
	if resp, body := c.whoAmI(c.cookie("sortie_csrf")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after the token expired: %d %s", resp.StatusCode, body)
	}
}

func TestEnvironmentSwitch(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	u := addUser(t, ts, "ada")
	ctx := t.Context()
	staging := store.Environment{ID: "env-staging", OrgID: u.OrgID, Name: "staging", CreatedAt: time.Now()}
	secret := store.Environment{ID: "env-secret", OrgID: u.OrgID, Name: "secret", CreatedAt: time.Now()}
	for _, e := range []store.Environment{staging, secret} {
		if err := ts.st.CreateEnvironment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	u.Memberships = append(u.Memberships, store.Membership{EnvID: staging.ID, Roles: []string{identity.RoleDeploymentsFullAccess}})
	if _, err := ts.st.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	c := newConsole(t, ts)
	c.signIn("ada")
	switchTo := func(body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/auth/environment", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", c.cookie("sortie_csrf"))
		return c.send(req)
	}
	resp, body := switchTo(`{"envId":"env-staging"}`)
	if resp.StatusCode != http.StatusNoContent || setCookies(resp)["sortie_session"] == nil {
		t.Fatalf("switch to staging: %d %s", resp.StatusCode, body)
	}
	if p := c.mustWhoAmI().Principal; p.EnvID != staging.ID || len(p.Roles) != 1 || p.Roles[0] != identity.RoleDeploymentsFullAccess {
		t.Errorf("after the switch WhoAmI = %+v, want staging with Deployments Full Access", p)
	}
	if resp, body := switchTo(`{"envId":"env-secret"}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("switch to a non-member environment: %d %s, want 403", resp.StatusCode, body)
	}
	for _, bad := range []string{`{}`, `nope`, `{"envId":"env-staging","x":1}`} {
		if resp, body := switchTo(bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}
	if p := c.mustWhoAmI().Principal; p.EnvID != staging.ID {
		t.Errorf("refused switches changed the environment to %s", p.EnvID)
	}
	// Without the CSRF header the switch is refused.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/auth/environment", strings.NewReader(`{"envId":"`+ts.admin.Environment.ID+`"}`))
	if resp, _ := c.send(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("switch without CSRF: %d", resp.StatusCode)
	}
}

// TestSecureCookiesUnderHTTPS: with an https public URL every sign-in cookie is Secure.
func TestSecureCookiesUnderHTTPS(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	addUser(t, ts, "ada")
	const public = "https://sortie.test"
	svc, err := identity.New(t.Context(), slog.New(slog.DiscardHandler), ts.st, identity.Config{
		Issuer: public, Audiences: []string{public}, TokenTTL: time.Hour, KeyRotation: 24 * time.Hour, MasterKey: ts.masterKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := gateway.New(slog.New(slog.DiscardHandler), svc, hub.New(slog.New(slog.DiscardHandler), hub.Config{}), prometheus.NewRegistry()).Handler()
	serve := func(req *http.Request) *http.Response {
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(context.Background()))
		return rec.Result()
	}
	verifier, challenge := pkcePair()
	q := url.Values{"response_type": {"code"}, "client_id": {identity.ConsoleClientID}, "redirect_uri": {public + "/console/callback"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	resp := serve(httptest.NewRequest(http.MethodGet, public+"/oauth/authorize?"+q.Encode(), nil))
	page, _ := io.ReadAll(resp.Body)
	ar := setCookies(resp)["sortie_authreq"]
	if resp.StatusCode != http.StatusOK || ar == nil || !ar.Secure {
		t.Fatalf("authorize: %d, authreq cookie %+v, want Secure", resp.StatusCode, ar)
	}
	form := url.Values{"authreq": {authreqInput.FindStringSubmatch(string(page))[1]}, "login": {"ada"}, "password": {testPassword}}
	req := httptest.NewRequest(http.MethodPost, public+"/oauth/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(ar)
	resp = serve(req)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("code") == "" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	form = url.Values{"grant_type": {"authorization_code"}, "client_id": {identity.ConsoleClientID}, "code": {loc.Query().Get("code")},
		"redirect_uri": {public + "/console/callback"}, "code_verifier": {verifier}}
	req = httptest.NewRequest(http.MethodPost, public+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp = serve(req)
	cookies := setCookies(resp)
	if resp.StatusCode != http.StatusOK || cookies["sortie_session"] == nil || !cookies["sortie_session"].Secure ||
		cookies["sortie_csrf"] == nil || !cookies["sortie_csrf"].Secure {
		t.Errorf("code exchange: %d, cookies %v, want both Secure", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
}

// TestConsoleSessionOnRedis: the session flow on the store shared by replicas: sign-in,
// a call, the rate limit counted in Redis, sign-out ending the session.
func TestConsoleSessionOnRedis(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{redisURL: redistest.New(t).URL()})
	addUser(t, ts, "ada")
	c := newConsole(t, ts)
	c.signIn("ada")
	if p := c.mustWhoAmI().Principal; p.Type != "PRINCIPAL_TYPE_USER" || p.Name != "ada" {
		t.Errorf("WhoAmI = %+v", p)
	}
	_, challenge := pkcePair()
	authreq := c.openSignIn(challenge)
	for range 5 {
		c.submit(authreq, "ada", "wrong password!")
	}
	if resp, _ := c.submit(authreq, "ada", testPassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after 5 failures: %d, want 429", resp.StatusCode)
	}
	token, csrf := c.cookie("sortie_session"), c.cookie("sortie_csrf")
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/auth/signout", nil)
	req.Header.Set("X-CSRF-Token", csrf)
	if resp, body := c.send(req); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodPost, ts.URL+"/sortie.identity.v1.IdentityService/WhoAmI", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", csrf)
	req.AddCookie(&http.Cookie{Name: "sortie_session", Value: token})
	if resp, body := c.send(req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the signed-out cookie: %d %s, want 401", resp.StatusCode, body)
	}
}
