package gateway

import (
	"embed"
	"errors"
	"html/template"
	"net"
	"net/http"
	"strings"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// The console's sign-in page (authorization code flow with PKCE): GET /oauth/authorize checks
// the request and shows the page, POST /oauth/authorize checks the password and sends the
// browser back to the console with a code. The page is server-rendered, with no script and
// an external style sheet, under a strict Content-Security-Policy.

//go:embed pages
var pageFiles embed.FS

var signInPage = template.Must(template.ParseFS(pageFiles, "pages/signin.html"))

// signInCSS is the page's style sheet, served at signInCSSPath.
var signInCSS = func() []byte {
	b, err := pageFiles.ReadFile("pages/signin.css")
	if err != nil {
		panic(err)
	}
	return b
}()

const (
	authorizePath = "/oauth/authorize"
	signInCSSPath = "/oauth/pages/signin.css"
	// authReqCookie holds the pending authorization request's id on the sign-in page.
	authReqCookie = "sortie_authreq"
	// maxSignInForm bounds the sign-in form's body.
	maxSignInForm = 16 << 10
)

// pageCSP is the Content-Security-Policy of server-rendered pages (the sign-in page).
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// setPageSecurityHeaders sets the security headers of server-rendered pages.
func setPageSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (g *Gateway) registerSignIn() {
	for _, p := range []string{"GET " + authorizePath, "POST " + authorizePath, "GET " + signInCSSPath} {
		g.mux.declare(p, Public)
	}
	g.mux.HandleFunc("GET "+authorizePath, g.serveAuthorize)
	g.mux.HandleFunc("POST "+authorizePath, g.serveSignIn)
	g.mux.HandleFunc("GET "+signInCSSPath, func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/css; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(signInCSS)
	})
}

// secureCookies reports whether cookies get the Secure attribute: when the public URL is
// https.
func (g *Gateway) secureCookies() bool { return strings.HasPrefix(g.id.Issuer(), "https://") }

// serveAuthorize is GET /oauth/authorize: a bad client or redirect URI gets an error page
// (never a redirect), other bad parameters go back to the client as RFC 6749 errors, and a
// good request is stored and gets the sign-in page.
func (g *Gateway) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, err := g.id.StartAuthorization(r.Context(), identity.AuthorizeRequest{
		ResponseType: q.Get("response_type"), ClientID: q.Get("client_id"), RedirectURI: q.Get("redirect_uri"),
		State: q.Get("state"), CodeChallenge: q.Get("code_challenge"), CodeChallengeMethod: q.Get("code_challenge_method"),
	})
	var aerr *identity.AuthorizeError
	switch {
	case errors.As(err, &aerr) && aerr.RedirectURI == "":
		g.renderSignIn(w, r, "", "This sign-in link is not valid: "+aerr.Description+".", http.StatusBadRequest)
		return
	case errors.As(err, &aerr):
		setPageSecurityHeaders(w.Header())
		http.Redirect(w, r, aerr.Redirect(), http.StatusSeeOther)
		return
	case err != nil:
		g.log.ErrorContext(r.Context(), "authorize", "err", err)
		g.renderSignIn(w, r, "", "Sign-in is unavailable right now; try again in a moment.", http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: authReqCookie, Value: id, Path: "/oauth", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: g.secureCookies(), MaxAge: 600})
	g.renderSignIn(w, r, id, "", http.StatusOK)
}

// serveSignIn is POST /oauth/authorize: the sign-in form.
func (g *Gateway) serveSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInForm)
	if err := r.ParseForm(); err != nil {
		g.renderSignIn(w, r, "", "The sign-in form could not be read; go back to the console and sign in again.", http.StatusBadRequest)
		return
	}
	authreq := r.PostForm.Get("authreq")
	c, err := r.Cookie(authReqCookie)
	if authreq == "" || err != nil || c.Value != authreq {
		g.renderSignIn(w, r, "", identity.ErrSignInExpired.Error(), http.StatusBadRequest)
		return
	}
	if err := g.id.CheckAuthRequest(r.Context(), authreq); err != nil {
		g.signInFailed(w, r, "", err)
		return
	}
	u, err := g.id.CheckPassword(r.Context(), r.PostForm.Get("login"), r.PostForm.Get("password"), clientHost(r))
	if err != nil {
		g.signInFailed(w, r, authreq, err)
		return
	}
	g.completeSignIn(w, r, authreq, u)
}

// signInFailed shows the page again with the error's message for the person.
func (g *Gateway) signInFailed(w http.ResponseWriter, r *http.Request, authreq string, err error) {
	switch {
	case errors.Is(err, identity.ErrWrongPassword):
		g.renderSignIn(w, r, authreq, err.Error(), http.StatusUnauthorized)
	case errors.Is(err, identity.ErrTooManySignIns):
		w.Header().Set("Retry-After", "60")
		g.renderSignIn(w, r, authreq, err.Error(), http.StatusTooManyRequests)
	case errors.Is(err, identity.ErrSignInExpired):
		g.renderSignIn(w, r, "", err.Error(), http.StatusBadRequest)
	case errors.Is(err, identity.ErrNoEnvironment):
		g.renderSignIn(w, r, "", err.Error(), http.StatusForbidden)
	default:
		g.log.ErrorContext(r.Context(), "sign-in", "err", err)
		g.renderSignIn(w, r, authreq, "Sign-in is unavailable right now; try again in a moment.", http.StatusServiceUnavailable)
	}
}

// signInData is the sign-in page's template data.
type signInData struct {
	AuthReq string // empty: no form (the request is bad or gone)
	Login   string
	Message string
	SSOName string
}

// renderSignIn writes the sign-in page for the authorization request authreqID (empty: an
// error page without the form) with one message for the person (empty: none). The SSO
// handlers call it to show their failures.
func (g *Gateway) renderSignIn(w http.ResponseWriter, r *http.Request, authreqID, message string, status int) {
	data := signInData{AuthReq: authreqID, Message: message, SSOName: g.ssoName}
	if authreqID != "" && r.Method == http.MethodPost && r.PostForm != nil {
		data.Login = r.PostForm.Get("login")
	}
	h := w.Header()
	setPageSecurityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := signInPage.Execute(w, data); err != nil {
		g.log.ErrorContext(r.Context(), "render the sign-in page", "err", err)
	}
}

// completeSignIn ends a sign-in for u, whom a password or the external provider vouched for:
// it issues the authorization code and sends the browser back to the console (303), or shows
// the page with what went wrong.
func (g *Gateway) completeSignIn(w http.ResponseWriter, r *http.Request, authreqID string, u store.User) {
	redirect, err := g.id.CompleteAuthorization(r.Context(), authreqID, u)
	if err != nil {
		g.signInFailed(w, r, authreqID, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: authReqCookie, Value: "", Path: "/oauth", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: g.secureCookies(), MaxAge: -1})
	setPageSecurityHeaders(w.Header())
	http.Redirect(w, r, redirect, http.StatusSeeOther)
}

// clientHost is the request's client IP, the key of rate limits.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
