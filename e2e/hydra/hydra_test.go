package hydra_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sortie-dev/sortie/e2e/hydra"
)

// TestSignIn runs the authorization code flow against the real Hydra through the package's
// login and consent handler and checks the ID token's claims.
func TestSignIn(t *testing.T) {
	idp := hydra.Start(t)
	idp.AddUser("Ann@Example.com", "correct horse", "deployers", "staff")
	const redirect = "http://127.0.0.1:1/callback"
	id, secret := idp.CreateClient(redirect)

	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: provider.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email", "groups"}}
	jar, _ := cookiejar.New(nil)
	var landed *url.URL
	client := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			landed = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := client.Get(conf.AuthCodeURL("state-0001", oidc.Nonce("nonce-0001")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	login := resp.Request.URL // the login form
	if resp.StatusCode != http.StatusOK || login.Path != "/login" {
		t.Fatalf("GET authorize ended at %s with %s, want the login form", login, resp.Status)
	}
	form := url.Values{"login_challenge": {login.Query().Get("login_challenge")}, "email": {"ann@example.com"}, "password": {"wrong"}}
	resp, err = client.PostForm(login.Scheme+"://"+login.Host+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || landed != nil {
		t.Fatalf("wrong password: %s, landed %v; want 401 and no redirect", resp.Status, landed)
	}
	form.Set("password", "correct horse")
	resp, err = client.PostForm(login.Scheme+"://"+login.Host+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if landed == nil || landed.Query().Get("state") != "state-0001" || landed.Query().Get("code") == "" {
		t.Fatalf("after sign-in: %s at %s, landed %v; want the redirect URI with code and state", resp.Status, resp.Request.URL, landed)
	}
	tok, err := conf.Exchange(ctx, landed.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idTok, err := provider.Verifier(&oidc.Config{ClientID: id}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Email         string   `json:"email"`
		EmailVerified bool     `json:"email_verified"`
		Groups        []string `json:"groups"`
	}
	if err := idTok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Email != "Ann@Example.com" || !claims.EmailVerified || !slices.Equal(claims.Groups, []string{"deployers", "staff"}) ||
		idTok.Nonce != "nonce-0001" || !strings.HasPrefix(idTok.Subject, "user-") {
		t.Fatalf("ID token claims %+v, sub %q, nonce %q", claims, idTok.Subject, idTok.Nonce)
	}

	idp.Stop()
	if _, err := http.Get(idp.Issuer() + "/.well-known/openid-configuration"); err == nil {
		t.Fatal("the issuer still answers after Stop")
	}
}
