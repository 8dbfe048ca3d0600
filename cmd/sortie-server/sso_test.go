package main

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

func TestOIDCFlags(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--oidc-issuer", "https://idp.example.com", "--oidc-client-id", "sortie"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    identity.SSOConfig
		wantErr string
	}{
		{name: "none", args: nil, want: identity.SSOConfig{}},
		{name: "full", args: append(base, "--oidc-client-secret-file", secretFile, "--oidc-allowed-domains", " Example.com, @corp.example.org ,",
			"--oidc-groups-claim", "roles", "--oidc-name", "Okta", "--oidc-scopes", "openid, email,groups",
			"--oidc-group-roles", "deployers=Deployments Full Access; admins=Organization Admin;qa=staging:Deployments Full Access"),
			want: identity.SSOConfig{Issuer: "https://idp.example.com", ClientID: "sortie", ClientSecret: "s3cret",
				AllowedDomains: []string{"example.com", "corp.example.org"}, GroupsClaim: "roles", Name: "Okta",
				Scopes: []string{"openid", "email", "groups"},
				GroupRoles: []identity.GroupRole{{Group: "deployers", Role: "Deployments Full Access"},
					{Group: "admins", Role: "Organization Admin"}, {Group: "qa", Env: "staging", Role: "Deployments Full Access"}}}},
		{name: "from the environment", env: map[string]string{"SORTIE_OIDC_ISSUER": "http://127.0.0.1:4444", "SORTIE_OIDC_CLIENT_ID": "c",
			"SORTIE_OIDC_CLIENT_SECRET": "s", "SORTIE_OIDC_GROUP_ROLES": "ops=Organization Admin"},
			want: identity.SSOConfig{Issuer: "http://127.0.0.1:4444", ClientID: "c", ClientSecret: "s", GroupsClaim: "groups",
				Scopes: []string{"openid", "email", "profile"}, GroupRoles: []identity.GroupRole{{Group: "ops", Role: "Organization Admin"}}}},
		{name: "client id without issuer", args: []string{"--oidc-client-id", "x"}, wantErr: "the --oidc-* flags need --oidc-issuer"},
		{name: "relative issuer", args: []string{"--oidc-issuer", "idp.example.com", "--oidc-client-id", "x"}, wantErr: "--oidc-issuer must be an absolute http(s) URL"},
		{name: "no client id", args: []string{"--oidc-issuer", "https://idp.example.com"}, wantErr: "--oidc-issuer needs --oidc-client-id"},
		{name: "no secret", args: append(base, "--oidc-group-roles", "a=Organization Admin"), wantErr: "needs --oidc-client-secret or --oidc-client-secret-file"},
		{name: "both secrets", args: append(base, "--oidc-client-secret", "s", "--oidc-client-secret-file", secretFile), wantErr: "not both"},
		{name: "missing secret file", args: append(base, "--oidc-client-secret-file", filepath.Join(t.TempDir(), "nope")), wantErr: "--oidc-client-secret-file: open"},
		{name: "empty secret file", args: append(base, "--oidc-client-secret-file", emptyFile), wantErr: "is empty"},
		{name: "no mapping", args: append(base, "--oidc-client-secret", "s"), wantErr: "--oidc-issuer needs --oidc-group-roles"},
		{name: "unknown role", args: append(base, "--oidc-client-secret", "s", "--oidc-group-roles", "ops=Admin"), wantErr: `--oidc-group-roles: entry 1 "ops=Admin": unknown role "Admin"`},
		{name: "empty group", args: append(base, "--oidc-client-secret", "s", "--oidc-group-roles", "=Organization Admin"), wantErr: "the group is empty"},
		{name: "bad domain", args: append(base, "--oidc-client-secret", "s", "--oidc-group-roles", "a=Organization Admin", "--oidc-allowed-domains", "ann@example.com"), wantErr: `--oidc-allowed-domains: "ann@example.com" is not an email domain`},
		{name: "empty groups claim", args: append(base, "--oidc-client-secret", "s", "--oidc-group-roles", "a=Organization Admin", "--oidc-groups-claim", " "), wantErr: "--oidc-groups-claim must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := parseConfig(tt.args, io.Discard, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseConfig(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.want, c.OIDC); diff != "" {
				t.Errorf("OIDC config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOIDCUnknownEnvironment: a mapping to an environment that does not exist stops the
// start with a clear error.
func TestOIDCUnknownEnvironment(t *testing.T) {
	t.Parallel()
	_, _, err := runFails(t, "--addr", "127.0.0.1:0", "--data-dir", newDataDir(t), "--oidc-issuer", "http://127.0.0.1:1",
		"--oidc-client-id", "c", "--oidc-client-secret", "s", "--oidc-group-roles", "qa=staging:Deployments Full Access")
	if want := `--oidc-group-roles: group "qa" maps to environment "staging", which does not exist`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("run = %v, want an error containing %q", err, want)
	}
}

// TestOIDCProviderDown: a provider that does not answer (a closed port) does not stop the
// server; the sign-in page offers its button, which says the provider did not answer.
func TestOIDCProviderDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	ln.Close()
	s := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", newDataDir(t), "--oidc-issuer", issuer, "--oidc-name", "Corp IdP",
		"--oidc-client-id", "c", "--oidc-client-secret", "s", "--oidc-group-roles", "deployers=Deployments Full Access")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	sum := sha256.Sum256([]byte("verifier-verifier-verifier-verifier-verifier"))
	q := url.Values{"response_type": {"code"}, "client_id": {"sortie-console"}, "redirect_uri": {s.URL + "/console/callback"},
		"state": {"st"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	status, body := get(s.URL + "/oauth/authorize?" + q.Encode())
	m := regexp.MustCompile(`href="(/oauth/sso/start\?authreq=[^"]+)"`).FindStringSubmatch(body)
	if status != http.StatusOK || m == nil || !strings.Contains(body, "Sign in with Corp IdP") {
		t.Fatalf("sign-in page: %d without the button:\n%s", status, body)
	}
	status, body = get(s.URL + html.UnescapeString(m[1]))
	if want := "Signing in with Corp IdP is not possible right now: Corp IdP did not answer."; status != http.StatusServiceUnavailable || !strings.Contains(body, want) {
		t.Fatalf("SSO button: %d, want 503 with %q:\n%s", status, want, body)
	}
}
