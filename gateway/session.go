package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/sortie-dev/sortie/identity"
)

// The console's session lives in two cookies set by the token endpoint's authorization_code
// grant: sortie_session (the user token, HttpOnly) and sortie_csrf (its csrf claim, readable
// by the console's script, which echoes it in X-CSRF-Token). A request carrying the session
// cookie and no Authorization header is turned into a bearer request, so the one
// authorization path checks it, after its CSRF header has been checked: a page of another
// site can make the browser send the cookie (SameSite=Strict aside) but cannot read the CSRF
// value.
const (
	sessionCookie = "sortie_session"
	csrfCookie    = "sortie_csrf"
	csrfHeader    = "X-CSRF-Token"

	signOutPath     = "/auth/signout"
	environmentPath = "/auth/environment"
)

var errCSRF = errors.New("missing or wrong CSRF token: send the sortie_csrf cookie's value in the X-CSRF-Token header")

// sessionCookies are the Set-Cookie values of a console session token.
func (g *Gateway) sessionCookies(tok identity.UserToken, csrf string) []string {
	maxAge := int(tok.ExpiresIn.Seconds())
	secure := g.secureCookies()
	return []string{
		(&http.Cookie{Name: sessionCookie, Value: tok.Token, Path: "/", HttpOnly: true, Secure: secure,
			SameSite: http.SameSiteStrictMode, MaxAge: maxAge}).String(),
		(&http.Cookie{Name: csrfCookie, Value: csrf, Path: "/", Secure: secure,
			SameSite: http.SameSiteStrictMode, MaxAge: maxAge}).String(),
	}
}

// clearSessionCookies are the Set-Cookie values ending the console session in the browser.
func (g *Gateway) clearSessionCookies() []string {
	secure := g.secureCookies()
	return []string{
		(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: secure,
			SameSite: http.SameSiteStrictMode, MaxAge: -1}).String(),
		(&http.Cookie{Name: csrfCookie, Value: "", Path: "/", Secure: secure,
			SameSite: http.SameSiteStrictMode, MaxAge: -1}).String(),
	}
}

// withSession is the cookie-to-bearer step in front of the mux. Public routes (the console's
// files, the sign-in page, the token endpoint) ignore the cookie, so loading a page needs no
// CSRF header. A cookie that does not verify is passed on as it is, and the route answers
// the usual 401. A valid session token with less than half its lifetime left is renewed,
// the new cookie set on the response.
func (g *Gateway) withSession(w http.ResponseWriter, r *http.Request, next http.Handler) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || r.Header.Get("Authorization") != "" || g.publicRoute(r) {
		next.ServeHTTP(w, r)
		return
	}
	p, perr := g.id.ParseToken(r.Context(), c.Value)
	if perr == nil {
		if p.CSRF == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(p.CSRF)) != 1 {
			writeContractError(w, http.StatusForbidden, errCSRF.Error())
			return
		}
	}
	r.Header = r.Header.Clone()
	r.Header.Set("Authorization", "Bearer "+c.Value)
	if perr == nil && g.id.NeedsRenewal(p) {
		// A session that is gone or a store outage is left to the authorization that follows.
		if tok, err := g.id.RenewSession(r.Context(), p); err == nil {
			for _, sc := range g.sessionCookies(tok, p.CSRF) {
				w.Header().Add("Set-Cookie", sc)
			}
		}
	}
	next.ServeHTTP(w, r)
}

// publicRoute reports whether the route serving r is declared Public.
func (g *Gateway) publicRoute(r *http.Request) bool {
	_, pattern := g.mux.Handler(r)
	return g.mux.declared[pattern] == Public
}

// writeContractError writes the REST error contract.
func writeContractError(w http.ResponseWriter, status int, msg string) {
	data, _ := json.Marshal(newErrorBody(status, msg))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

func (g *Gateway) registerSessionRoutes() {
	// Sign-out needs no valid token (signing out of an expired session only clears the
	// cookies); it checks the CSRF header itself when the session cookie is valid.
	g.mux.declare("POST "+signOutPath, Public)
	g.mux.declare("POST "+environmentPath, Authenticated)
	g.mux.HandleFunc("POST "+signOutPath, g.serveSignOut)
	g.mux.HandleFunc("POST "+environmentPath, g.serveEnvironment)
}

// serveSignOut is POST /auth/signout: it deletes the session (its tokens stop working at
// once) and clears the cookies. Idempotent.
func (g *Gateway) serveSignOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if p, err := g.id.ParseToken(r.Context(), c.Value); err == nil {
			if p.CSRF == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(p.CSRF)) != 1 {
				writeContractError(w, http.StatusForbidden, errCSRF.Error())
				return
			}
			if err := g.id.EndSession(r.Context(), p.SessionID); err != nil {
				g.log.ErrorContext(r.Context(), "sign out", "err", err)
				writeContractError(w, http.StatusServiceUnavailable, "cannot sign out right now; retry shortly")
				return
			}
		}
	}
	for _, sc := range g.clearSessionCookies() {
		w.Header().Add("Set-Cookie", sc)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// serveEnvironment is POST /auth/environment {"envId"}: the console session switches to
// another environment of the user's (403 when not a member).
func (g *Gateway) serveEnvironment(w http.ResponseWriter, r *http.Request) {
	p, status, err := authorize(r.Context(), g.verifier, r.Header.Get("Authorization"), Authenticated)
	if err != nil {
		g.logCannotCheck(r.Context(), err)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sortie"`)
		}
		writeContractError(w, status, err.Error())
		return
	}
	if p.Type != identity.PrincipalUser || p.SessionID == "" {
		writeContractError(w, http.StatusBadRequest, "only a console session switches environments; other tokens are issued for one environment")
		return
	}
	var body struct {
		EnvID string `json:"envId"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || strings.TrimSpace(body.EnvID) == "" || dec.More() {
		writeContractError(w, http.StatusBadRequest, `the body must be a JSON object {"envId": "<environment id>"}`)
		return
	}
	tok, err := g.id.SwitchEnvironment(r.Context(), p, body.EnvID)
	switch {
	case errors.Is(err, identity.ErrNotMember):
		writeContractError(w, http.StatusForbidden, err.Error())
		return
	case errors.Is(err, identity.ErrInvalidToken):
		writeContractError(w, http.StatusUnauthorized, "the user or session no longer exists")
		return
	case err != nil:
		g.log.ErrorContext(r.Context(), "switch environment", "err", err)
		writeContractError(w, http.StatusServiceUnavailable, "cannot switch environments right now; retry shortly")
		return
	}
	for _, sc := range g.sessionCookies(tok, p.CSRF) {
		w.Header().Add("Set-Cookie", sc)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
