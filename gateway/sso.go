package gateway

import (
	"errors"
	"net/http"

	"github.com/sortie-dev/sortie/identity"
)

// Single sign-on through the external OIDC provider: the sign-in page's button leads to
// GET /oauth/sso/start, which sends the browser to the provider; the provider sends it back
// to GET /oauth/sso/callback, which signs the person in (identity.SSO) and completes the
// console's authorization request like a password would (completeSignIn).
const (
	ssoStartPath    = "/oauth/sso/start"
	ssoCallbackPath = "/oauth/sso/callback"
	// ssoStateCookie binds a sign-in at the provider to the browser that started it. It is
	// SameSite=Lax: the provider's redirect back is a cross-site top-level GET.
	ssoStateCookie = "sortie_sso"
)

// SSOCallbackPath is the path of the redirect URI to register at the provider, after the
// public URL.
const SSOCallbackPath = ssoCallbackPath

// WithSSO enables single sign-on through o: the sign-in page shows its button and the
// /oauth/sso routes are served.
func WithSSO(o *identity.SSO) Option {
	return func(g *Gateway) {
		g.ssoName = o.Name()
		h := ssoHandlers{g: g, sso: o}
		g.mux.declare("GET "+ssoStartPath, Public)
		g.mux.declare("GET "+ssoCallbackPath, Public)
		g.mux.HandleFunc("GET "+ssoStartPath, h.start)
		g.mux.HandleFunc("GET "+ssoCallbackPath, h.callback)
	}
}

type ssoHandlers struct {
	g   *Gateway
	sso *identity.SSO
}

// start is GET /oauth/sso/start?authreq=ID, the sign-in page's button.
func (h ssoHandlers) start(w http.ResponseWriter, r *http.Request) {
	authreq := r.URL.Query().Get("authreq")
	if c, err := r.Cookie(authReqCookie); authreq == "" || err != nil || c.Value != authreq {
		h.g.renderSignIn(w, r, "", identity.ErrSignInExpired.Error(), http.StatusBadRequest)
		return
	}
	redirect, state, err := h.sso.Start(r.Context(), authreq)
	if err != nil {
		h.failed(w, r, authreq, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ssoStateCookie, Value: state, Path: "/oauth/sso", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: h.g.secureCookies(), MaxAge: 600})
	setPageSecurityHeaders(w.Header())
	http.Redirect(w, r, redirect, http.StatusSeeOther)
}

// callback is GET /oauth/sso/callback, where the provider sends the browser back.
func (h ssoHandlers) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cb := identity.Callback{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), ErrorDescription: q.Get("error_description")}
	if c, err := r.Cookie(ssoStateCookie); err == nil {
		cb.BrowserState = c.Value
	}
	// The state works once, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: ssoStateCookie, Value: "", Path: "/oauth/sso", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: h.g.secureCookies(), MaxAge: -1})
	authreq, u, err := h.sso.Finish(r.Context(), cb)
	if err != nil {
		if authreq == "" {
			// A bad or replayed state: show the form of the page this browser has open, if any.
			if c, cerr := r.Cookie(authReqCookie); cerr == nil && h.g.id.CheckAuthRequest(r.Context(), c.Value) == nil {
				authreq = c.Value
			}
		}
		h.failed(w, r, authreq, err)
		return
	}
	h.g.completeSignIn(w, r, authreq, u)
}

// failed shows the sign-in page with the reason single sign-on did not work.
func (h ssoHandlers) failed(w http.ResponseWriter, r *http.Request, authreq string, err error) {
	var serr *identity.SSOError
	if errors.As(err, &serr) {
		if serr.Status == http.StatusBadRequest && authreq != "" && h.g.id.CheckAuthRequest(r.Context(), authreq) != nil {
			authreq = "" // the page itself is gone: no form
		}
		h.g.renderSignIn(w, r, authreq, serr.Message, serr.Status)
		return
	}
	h.g.log.ErrorContext(r.Context(), "single sign-on", "err", err)
	h.g.renderSignIn(w, r, authreq, "Sign-in is unavailable right now; try again in a moment.", http.StatusServiceUnavailable)
}
