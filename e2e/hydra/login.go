package hydra

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// loginPage is the provider's sign-in form; Hydra sends the browser here with a
// login_challenge.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test provider sign-in</title></head>
<body><h1>Test provider</h1>
{{if .Message}}<p role="alert">{{.Message}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="login_challenge" value="{{.Challenge}}">
<label for="email">Email</label> <input id="email" name="email" type="email" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit">Sign in</button>
</form></body></html>
`))

// serveLoginConsent is the login and consent application Hydra delegates to.
func (h *Hydra) serveLoginConsent(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodGet:
		h.renderLogin(w, r.URL.Query().Get("login_challenge"), "", http.StatusOK)
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		h.postLogin(w, r)
	case r.URL.Path == "/consent" && r.Method == http.MethodGet:
		h.consent(w, r)
	case r.URL.Path == "/error":
		http.Error(w, "provider error: "+r.URL.Query().Get("error")+": "+r.URL.Query().Get("error_description"), http.StatusBadRequest)
	default:
		http.NotFound(w, r)
	}
}

func (h *Hydra) renderLogin(w http.ResponseWriter, challenge, message string, status int) {
	if challenge == "" {
		http.Error(w, "missing login_challenge", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, struct{ Challenge, Message string }{challenge, message})
}

func (h *Hydra) postLogin(w http.ResponseWriter, r *http.Request) {
	challenge := r.PostFormValue("login_challenge")
	email := strings.ToLower(strings.TrimSpace(r.PostFormValue("email")))
	h.mu.Lock()
	u, ok := h.users[email]
	h.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(r.PostFormValue("password"))) != 1 {
		h.renderLogin(w, challenge, "Wrong email or password.", http.StatusUnauthorized)
		return
	}
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := h.adminCall(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": u.Subject, "remember": false}, &out); err != nil {
		http.Error(w, "accept login: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, out.RedirectTo, http.StatusFound)
}

// consent grants the requested scopes and audiences at once and puts the user's email,
// email_verified and groups into the ID token.
func (h *Hydra) consent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	var req struct {
		Subject                      string   `json:"subject"`
		RequestedScope               []string `json:"requested_scope"`
		RequestedAccessTokenAudience []string `json:"requested_access_token_audience"`
	}
	if err := h.adminCall(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(challenge), nil, &req); err != nil {
		http.Error(w, "get consent request: "+err.Error(), http.StatusBadGateway)
		return
	}
	var user User
	h.mu.Lock()
	for _, u := range h.users {
		if u.Subject == req.Subject {
			user = u
		}
	}
	h.mu.Unlock()
	if user.Subject == "" {
		http.Error(w, "consent for an unknown subject", http.StatusBadRequest)
		return
	}
	groups := user.Groups
	if groups == nil {
		groups = []string{}
	}
	idToken := map[string]any{"email": user.Email, "email_verified": true, "groups": groups}
	for k, v := range user.Claims {
		idToken[k] = v
	}
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := h.adminCall(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(challenge), map[string]any{
		"grant_scope":                 req.RequestedScope,
		"grant_access_token_audience": req.RequestedAccessTokenAudience,
		"remember":                    false,
		"session":                     map[string]any{"id_token": idToken},
	}, &out); err != nil {
		http.Error(w, "accept consent: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, out.RedirectTo, http.StatusFound)
}
