package gateway_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

// jwksKey is one key of the JWKS as the test reads it, independently of the server's code.
type jwksKey struct {
	Kty, Crv, X, Y, Kid, Alg, Use string
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

// verifyES256 checks a compact JWS against a JWKS with nothing but the standard library and
// returns its header and claims.
func verifyES256(t *testing.T, raw string, keys []jwksKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	if err := json.Unmarshal(b64(t, parts[0]), &header); err != nil {
		t.Fatal(err)
	}
	if header["alg"] != "ES256" {
		t.Fatalf("alg %v, want ES256", header["alg"])
	}
	i := slices.IndexFunc(keys, func(k jwksKey) bool { return k.Kid == header["kid"] })
	if i < 0 {
		t.Fatalf("kid %v is not in the JWKS", header["kid"])
	}
	k := keys[i]
	if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" || k.Use != "sig" {
		t.Fatalf("JWKS key %+v is not an ES256 signing key", k)
	}
	point := append([]byte{4}, append(b64(t, k.X), b64(t, k.Y)...)...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatalf("JWKS key: %v", err)
	}
	sig := b64(t, parts[2])
	if len(sig) != 64 {
		t.Fatalf("ES256 signature is %d bytes, want 64", len(sig))
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("signature does not verify against the JWKS key")
	}
	if err := json.Unmarshal(b64(t, parts[1]), &claims); err != nil {
		t.Fatal(err)
	}
	return header, claims
}

func fetchJWKS(t *testing.T, ts *testServer) []jwksKey {
	t.Helper()
	disc := decode[map[string]any](t, ts.do(t, "GET", "/.well-known/openid-configuration", "", nil).Body)
	if disc["issuer"] != ts.URL || disc["token_endpoint"] != ts.URL+"/oauth/token" {
		t.Fatalf("discovery: %v", disc)
	}
	jwksURL, _ := disc["jwks_uri"].(string)
	resp, err := http.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []jwksKey }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set.Keys
}

func TestTokenFlowEndToEnd(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	id, secret := ts.admin.Admin.ClientID, ts.admin.Secret
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))

	tests := []struct {
		name, contentType, auth, body string
		wantAud, wantScope            string
	}{
		{name: "form body", contentType: "application/x-www-form-urlencoded",
			body:    url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}.Encode(),
			wantAud: ts.URL, wantScope: strings.Join(identity.ScopesOf([]string{identity.RoleOrganizationAdmin}), " ")},
		{name: "JSON body with audience and scope", contentType: "application/json",
			body:    `{"grant_type":"client_credentials","client_id":"` + id + `","client_secret":"` + secret + `","audience":"https://api.cloud.armory.io","scope":"read:deploy manage:deploy"}`,
			wantAud: "https://api.cloud.armory.io", wantScope: "manage:deploy read:deploy"},
		{name: "HTTP Basic", contentType: "application/x-www-form-urlencoded", auth: "Basic " + basic,
			body: "grant_type=client_credentials&scope=connect:agentHub", wantAud: ts.URL, wantScope: "connect:agentHub"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.URL+"/oauth/token", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("status %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
			var tok identity.TokenResponse
			if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "Bearer" || tok.ExpiresIn != int64(testTTL.Seconds()) || tok.Scope != tc.wantScope {
				t.Fatalf("token response %+v", tok)
			}

			_, claims := verifyES256(t, tok.AccessToken, fetchJWKS(t, ts))
			iat, exp, nbf := claims["iat"].(float64), claims["exp"].(float64), claims["nbf"].(float64)
			if exp-iat != testTTL.Seconds() || nbf != iat || claims["jti"] == "" {
				t.Errorf("times: iat %v nbf %v exp %v", iat, nbf, exp)
			}
			got := map[string]any{"iss": claims["iss"], "sub": claims["sub"], "aud": claims["aud"], "scope": claims["scope"], "principal": claims[identity.PrincipalClaim]}
			want := map[string]any{
				"iss": ts.URL, "sub": id, "aud": tc.wantAud, "scope": tc.wantScope,
				"principal": map[string]any{
					"type": "machine", "name": "admin", "orgId": ts.admin.Organization.ID, "orgName": "acme",
					"envId": ts.admin.Environment.ID, "roles": []any{identity.RoleOrganizationAdmin},
				},
			}
			if aud, ok := got["aud"].([]any); ok && len(aud) == 1 {
				got["aud"] = aud[0]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}

			// The token is accepted by the API it was issued for.
			who := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/WhoAmI", tok.AccessToken, "{}")
			if who.Status != 200 || !strings.Contains(string(who.Body), `"orgName":"acme"`) {
				t.Fatalf("WhoAmI: %d %s", who.Status, who.Body)
			}
		})
	}
}

func signHS256(t *testing.T, header, claims map[string]any, secret []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func signES256(t *testing.T, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// otherSigner returns a token for the acme admin signed with the server's own keys by a
// service that shares its store and master key but has another issuer or clock.
func otherSigner(t *testing.T, ts *testServer, issuer string, now func() time.Time, audience string) string {
	t.Helper()
	svc, err := identity.New(context.Background(), slog.New(slog.DiscardHandler), ts.st, identity.Config{
		Issuer: issuer, Audiences: []string{ts.URL}, TokenTTL: testTTL, KeyRotation: 24 * time.Hour,
		MasterKey: ts.masterKey, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Sign(context.Background(), identity.Principal{
		Type: identity.PrincipalMachine, Subject: ts.admin.Admin.ClientID, Name: "admin",
		OrgID: ts.admin.Organization.ID, OrgName: "acme", EnvID: ts.admin.Environment.ID,
		Roles: []string{identity.RoleOrganizationAdmin}, Scopes: identity.Scopes,
	}, audience)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRejectsInvalidTokens(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	valid := ts.adminToken(t)
	header, claims := verifyES256(t, valid, fetchJWKS(t, ts))
	keys := fetchJWKS(t, ts)

	// Sanity: the valid token and one signed by a same-issuer twin are accepted.
	if r := ts.do(t, "GET", "/credentials", valid, nil); r.Status != 200 {
		t.Fatalf("valid token refused: %d %s", r.Status, r.Body)
	}
	if r := ts.do(t, "GET", "/credentials", otherSigner(t, ts, ts.URL, ts.clock.Now, ts.URL), nil); r.Status != 200 {
		t.Fatalf("twin-signed token refused: %d %s", r.Status, r.Body)
	}

	parts := strings.Split(valid, ".")
	tampered := map[string]any{}
	for k, v := range claims {
		tampered[k] = v
	}
	tampered["scope"] = "manage:tenant manage:credentials connect:agentHub read:deploy manage:deploy read:infrastructure:data extra"
	tamperedPayload, _ := json.Marshal(tampered)

	pub := keys[0]
	point := append([]byte{4}, append(b64(t, pub.X), b64(t, pub.Y)...)...)
	pubKey, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pubKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsHeader := map[string]any{"alg": "HS256", "typ": "JWT", "kid": header["kid"]}
	noneHeader, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT", "kid": header["kid"]})
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	hour := time.Hour
	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"expired", otherSigner(t, ts, ts.URL, func() time.Time { return ts.clock.Now().Add(-2 * hour) }, ts.URL), "expired"},
		{"not yet valid", otherSigner(t, ts, ts.URL, func() time.Time { return ts.clock.Now().Add(10 * time.Minute) }, ts.URL), "not valid yet"},
		{"wrong issuer", otherSigner(t, ts, "https://evil.example", ts.clock.Now, ts.URL), "wrong issuer"},
		{"wrong audience", otherSigner(t, ts, ts.URL, ts.clock.Now, "https://other.example"), "wrong audience"},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2], "bad signature"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(append(b64(t, parts[2])[:63], b64(t, parts[2])[63]^1)), "bad signature"},
		{"alg none", base64.RawURLEncoding.EncodeToString(noneHeader) + "." + parts[1] + ".", "unsupported signature algorithm"},
		{"HS256 with the public key (DER) as secret", signHS256(t, hsHeader, claims, der), "unsupported signature algorithm"},
		{"HS256 with the public key (PEM) as secret", signHS256(t, hsHeader, claims, pemBytes), "unsupported signature algorithm"},
		{"unknown kid", signES256(t, stranger, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "not-a-key"}, claims), "unknown signing key"},
		{"known kid, foreign key", signES256(t, stranger, header, claims), "bad signature"},
		{"no kid", signES256(t, stranger, map[string]any{"alg": "ES256", "typ": "JWT"}, claims), "missing kid"},
		{"garbage", "not.a.token", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := wantError(t, "REST", ts.do(t, "GET", "/credentials", tc.token, nil), http.StatusUnauthorized)
			if e.Errors[0].Code != "unauthorized" || !strings.Contains(e.Errors[0].Message, tc.reason) {
				t.Errorf("got %q %q, want code unauthorized and a message saying %q", e.Errors[0].Code, e.Errors[0].Message, tc.reason)
			}
			if r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/WhoAmI", tc.token, "{}"); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), `"unauthenticated"`) {
				t.Errorf("Connect: %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	id := ts.admin.Admin.ClientID
	tests := []struct {
		name, contentType, auth, body string
		status                        int
		code                          string
	}{
		{"unsupported grant", "application/x-www-form-urlencoded", "", "grant_type=password&client_id=" + id + "&client_secret=x", 400, identity.OAuthUnsupportedGrantType},
		{"missing grant", "application/x-www-form-urlencoded", "", "client_id=" + id, 400, identity.OAuthInvalidRequest},
		{"malformed JSON", "application/json", "", `{"grant_type":`, 400, identity.OAuthInvalidRequest},
		{"wrong secret", "application/x-www-form-urlencoded", "", "grant_type=client_credentials&client_id=" + id + "&client_secret=wrong", 401, identity.OAuthInvalidClient},
		{"unknown client", "application/x-www-form-urlencoded", "", "grant_type=client_credentials&client_id=nobody&client_secret=wrong", 401, identity.OAuthInvalidClient},
		{"wrong Basic secret", "application/x-www-form-urlencoded", "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":nope")), "grant_type=client_credentials", 401, identity.OAuthInvalidClient},
		{"scope not granted", "application/x-www-form-urlencoded", "", "grant_type=client_credentials&client_id=" + id + "&client_secret=" + ts.admin.Secret + "&scope=admin:everything", 400, identity.OAuthInvalidScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.URL+"/oauth/token", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || body["error"] != tc.code || body["error_description"] == "" {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if tc.auth != "" && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 after Basic authentication lacks WWW-Authenticate")
			}
		})
	}
}

// TestTokenEndpointRepliesAsHuma: the token endpoint, served outside Huma, gives the replies
// its Huma operation gives: status, the headers a client reads and the body byte for byte
// (the access token aside, which differs on every issue), on success and on every kind of
// failure, including the rate limit.
func TestTokenEndpointRepliesAsHuma(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	huma := httptest.NewServer(ts.gw.HumaTokenHandler())
	t.Cleanup(huma.Close)
	id, secret := ts.admin.Admin.ClientID, ts.admin.Secret
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	const formType = "application/x-www-form-urlencoded"
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	type request struct{ contentType, auth, accept, body string }
	tests := []struct {
		name string
		req  request
		// before runs first, on the server under test only (to fill the rate limit).
		before int
	}{
		{name: "form", req: request{contentType: formType, body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret)}},
		{name: "form with charset", req: request{contentType: formType + "; charset=utf-8", body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret, "scope", "read:deploy")}},
		{name: "JSON", req: request{contentType: "application/json",
			body: `{"grant_type":"client_credentials","client_id":"` + id + `","client_secret":"` + secret + `","audience":"https://api.cloud.armory.io","scope":"manage:deploy"}`}},
		{name: "Basic", req: request{contentType: formType, auth: basic(id, secret), body: "grant_type=client_credentials"}},
		{name: "Accept XML", req: request{contentType: formType, accept: "application/xml", body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret)}},
		{name: "no body", req: request{}},
		{name: "unsupported grant", req: request{contentType: formType, body: form("grant_type", "password", "client_id", id, "client_secret", secret)}},
		{name: "duplicate parameter", req: request{contentType: formType, body: "grant_type=client_credentials&grant_type=client_credentials"}},
		{name: "malformed form", req: request{contentType: formType, body: "grant_type=client_credentials;client_id=x"}},
		{name: "malformed JSON", req: request{contentType: "application/json", body: `{"grant_type":`}},
		{name: "JSON duplicate key", req: request{contentType: "application/json", body: `{"client_id":"a","client_id":"b"}`}},
		{name: "text body", req: request{contentType: "text/plain", body: "grant_type=client_credentials"}},
		{name: "malformed Content-Type", req: request{contentType: "application/", body: "x"}},
		{name: "wrong secret", req: request{contentType: formType, body: form("grant_type", "client_credentials", "client_id", id, "client_secret", "wrong")}},
		{name: "unknown client", req: request{contentType: formType, body: form("grant_type", "client_credentials", "client_id", "nobody", "client_secret", "wrong")}},
		{name: "wrong Basic secret", req: request{contentType: formType, auth: basic(id, "nope"), body: "grant_type=client_credentials"}},
		{name: "Bearer instead of Basic", req: request{contentType: formType, auth: "Bearer x", body: "grant_type=client_credentials"}},
		{name: "scope not granted", req: request{contentType: formType, body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret, "scope", `<admin> & "all"`)}},
		{name: "unknown audience", req: request{contentType: formType, body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret, "audience", "https://x.example/?a=<b>&c")}},
		{name: "rate limited", before: 10, req: request{contentType: formType, body: form("grant_type", "client_credentials", "client_id", "limited", "client_secret", "wrong")}},
	}
	send := func(t *testing.T, base string, r request) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(r.body))
		if r.contentType != "" {
			req.Header.Set("Content-Type", r.contentType)
		}
		if r.auth != "" {
			req.Header.Set("Authorization", r.auth)
		}
		if r.accept != "" {
			req.Header.Set("Accept", r.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var tok identity.TokenResponse
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
			body = bytes.Replace(body, []byte(tok.AccessToken), []byte("<token>"), 1)
		}
		return resp, body
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range tt.before {
				send(t, ts.URL, tt.req)
			}
			got, gotBody := send(t, ts.URL, tt.req)
			want, wantBody := send(t, huma.URL, tt.req)
			if got.StatusCode != want.StatusCode {
				t.Errorf("status %d, Huma %d", got.StatusCode, want.StatusCode)
			}
			for _, h := range []string{"Content-Type", "Content-Length", "Cache-Control", "Pragma", "WWW-Authenticate", "Retry-After"} {
				if got.Header.Get(h) != want.Header.Get(h) {
					t.Errorf("%s %q, Huma %q", h, got.Header.Get(h), want.Header.Get(h))
				}
			}
			if !bytes.Equal(gotBody, wantBody) {
				t.Errorf("body\n%s\nHuma\n%s", gotBody, wantBody)
			}
			if tt.before > 0 && got.StatusCode != http.StatusTooManyRequests {
				t.Errorf("status %d after %d failures, want 429", got.StatusCode, tt.before)
			}
		})
	}
}

// TestTokenEndpointAfterRevocation: the token endpoint trusts what it read of a credential
// only as token checks do: a credential deleted on this replica gets no token at once, even
// one that just got a token, and new roles shape the next token at once.
func TestTokenEndpointAfterRevocation(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)
	r := ts.do(t, "POST", "/credentials", admin, map[string]any{"name": "ci", "roles": []string{identity.RoleOrganizationAdmin}})
	c := decode[struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}](t, r.Body)
	request := func() (int, map[string]any) {
		resp, err := http.PostForm(ts.URL+"/oauth/token", url.Values{"grant_type": {"client_credentials"},
			"client_id": {c.ClientID}, "client_secret": {c.ClientSecret}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if status, body := request(); status != http.StatusOK || !strings.Contains(body["scope"].(string), identity.ScopeManageTenant) {
		t.Fatalf("before the change: %d %v", status, body)
	}
	if r := ts.do(t, "PUT", "/credentials/"+c.ClientID+"/roles", admin, []string{identity.RoleRemoteNetworkAgent}); r.Status != http.StatusOK {
		t.Fatalf("set roles: %d %s", r.Status, r.Body)
	}
	status, body := request()
	if status != http.StatusOK || body["scope"] != identity.ScopeConnectAgentHub {
		t.Fatalf("after the roles changed: %d %v, want scope %s only", status, body, identity.ScopeConnectAgentHub)
	}
	_, claims := verifyES256(t, body["access_token"].(string), fetchJWKS(t, ts))
	if roles := claims[identity.PrincipalClaim].(map[string]any)["roles"]; !cmp.Equal(roles, []any{identity.RoleRemoteNetworkAgent}) {
		t.Errorf("token roles after the change: %v", roles)
	}
	if r := ts.do(t, "DELETE", "/credentials/"+c.ClientID, admin, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if status, body := request(); status != http.StatusUnauthorized || body["error"] != identity.OAuthInvalidClient {
		t.Fatalf("after the delete: %d %v, want 401 invalid_client", status, body)
	}
}
