package identity_test

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
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

func TestToken(t *testing.T) {
	t.Parallel()
	authFailed := invalidClient("client authentication failed", false)
	tests := []struct {
		name     string
		client   string // "admin", "agent" (Remote Network Agent) or any other client id
		secret   string // empty means the client's own secret
		scope    string
		audience string
		// On success:
		wantScopes   []string
		wantAudience string
		wantErr      *identity.OAuthError
	}{
		{
			name:         "admin gets every scope by default",
			client:       "admin",
			wantScopes:   allScopes,
			wantAudience: testAudience,
		},
		{
			name:         "blank scope means every granted scope",
			client:       "admin",
			scope:        "   ",
			wantScopes:   allScopes,
			wantAudience: testAudience,
		},
		{
			name:         "requested scope subset narrows the token",
			client:       "admin",
			scope:        "read:deploy manage:deploy",
			wantScopes:   []string{identity.ScopeManageDeploy, identity.ScopeReadDeploy},
			wantAudience: testAudience,
		},
		{
			name:         "repeated and padded scopes count once",
			client:       "admin",
			scope:        "  read:deploy   read:deploy ",
			wantScopes:   []string{identity.ScopeReadDeploy},
			wantAudience: testAudience,
		},
		{
			name:         "agent role grants only its scope",
			client:       "agent",
			wantScopes:   []string{identity.ScopeConnectAgentHub},
			wantAudience: testAudience,
		},
		{
			name:         "second configured audience",
			client:       "admin",
			audience:     otherAudience,
			wantScopes:   allScopes,
			wantAudience: otherAudience,
		},
		{
			name:         "explicit default audience",
			client:       "admin",
			audience:     testAudience,
			wantScopes:   allScopes,
			wantAudience: testAudience,
		},
		{
			name:   "scope not granted",
			client: "agent",
			scope:  "connect:agentHub manage:tenant",
			wantErr: &identity.OAuthError{Status: 400, Code: identity.OAuthInvalidScope,
				Description: `scope "manage:tenant" is not granted to this client`},
		},
		{
			name:   "unknown scope",
			client: "admin",
			scope:  "admin:everything",
			wantErr: &identity.OAuthError{Status: 400, Code: identity.OAuthInvalidScope,
				Description: `scope "admin:everything" is not granted to this client`},
		},
		{
			name:     "unknown audience",
			client:   "admin",
			audience: "https://evil.example.test",
			wantErr:  invalidRequest(`unknown audience "https://evil.example.test"; accepted: ` + testAudience + ", " + otherAudience),
		},
		{
			name:    "wrong secret",
			client:  "admin",
			secret:  "not-the-secret",
			wantErr: authFailed,
		},
		{
			name:    "unknown client id",
			client:  "nosuchclientidxxxxxxxxxxxx",
			secret:  "not-the-secret",
			wantErr: authFailed,
		},
		{
			name:    "unknown client id with a real secret",
			client:  "nosuchclientidxxxxxxxxxxxx",
			wantErr: authFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			agent, agentSecret, err := fx.svc.CreateCredential(t.Context(), fx.adminPrincipal(), "agent", []string{identity.RoleRemoteNetworkAgent})
			if err != nil {
				t.Fatalf("CreateCredential: %v", err)
			}
			req := identity.TokenRequest{GrantType: identity.GrantClientCredentials, Scope: tt.scope, Audience: tt.audience}
			var want identity.Principal
			switch tt.client {
			case "admin":
				req.ClientID, req.ClientSecret = fx.org.Admin.ClientID, fx.org.Secret
				want = fx.adminPrincipal()
			case "agent":
				req.ClientID, req.ClientSecret = agent.ClientID, agentSecret
				want = fx.adminPrincipal()
				want.Subject, want.Name, want.Roles = agent.ClientID, "agent", []string{identity.RoleRemoteNetworkAgent}
			default:
				req.ClientID, req.ClientSecret = tt.client, fx.org.Secret
			}
			if tt.secret != "" {
				req.ClientSecret = tt.secret
			}
			want.Scopes = tt.wantScopes

			resp, oerr := fx.svc.Token(t.Context(), req, testAddr)
			if diff := cmp.Diff(tt.wantErr, oerr); diff != "" {
				t.Fatalf("Token error mismatch (-want +got):\n%s", diff)
			}
			if tt.wantErr != nil {
				if diff := cmp.Diff(identity.TokenResponse{}, resp); diff != "" {
					t.Errorf("Token returned a response with its error (-want +got):\n%s", diff)
				}
				return
			}
			wantResp := identity.TokenResponse{AccessToken: resp.AccessToken, TokenType: "Bearer",
				ExpiresIn: int64(testTTL.Seconds()), Scope: strings.Join(tt.wantScopes, " ")}
			if diff := cmp.Diff(wantResp, resp); diff != "" {
				t.Errorf("Token response mismatch (-want +got):\n%s", diff)
			}
			got, err := fx.svc.Verifier().Verify(t.Context(), resp.AccessToken)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
			var claims jwt.Claims
			tok, err := jwt.ParseSigned(resp.AccessToken, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(jwt.Audience{tt.wantAudience}, claims.Audience); diff != "" {
				t.Errorf("aud mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTokenClaims pins the token's wire shape, which Armory clients read.
func TestTokenClaims(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	raw := fx.adminToken(t)

	var header map[string]any
	decodeSegment(t, strings.Split(raw, ".")[0], &header)
	wantHeader := map[string]any{"alg": "ES256", "typ": "JWT", "kid": fx.svc.Keys().JWKS().Keys[0].KeyID}
	if diff := cmp.Diff(wantHeader, header); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}

	claims := payloadOf(t, raw)
	jti, _ := claims["jti"].(string)
	if jti == "" {
		t.Errorf("jti = %v, want a non-empty string", claims["jti"])
	}
	want := map[string]any{
		"iss":   testIssuer,
		"sub":   fx.org.Admin.ClientID,
		"aud":   testAudience, // one audience is sent as a string
		"exp":   float64(t0.Add(testTTL).Unix()),
		"iat":   float64(t0.Unix()),
		"nbf":   float64(t0.Unix()),
		"jti":   jti,
		"scope": strings.Join(allScopes, " "),
		identity.PrincipalClaim: map[string]any{
			"type":    "machine",
			"name":    "admin",
			"orgId":   fx.org.Organization.ID,
			"orgName": testOrg,
			"envId":   fx.org.Environment.ID,
			"roles":   []any{identity.RoleOrganizationAdmin},
		},
	}
	if diff := cmp.Diff(want, claims); diff != "" {
		t.Errorf("claims mismatch (-want +got):\n%s", diff)
	}
	if other := payloadOf(t, fx.adminToken(t)); other["jti"] == jti {
		t.Errorf("two tokens share jti %v", jti)
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token func(t *testing.T, fx *fixture) string
		at    time.Time // when to verify; zero means when the token was issued
	}{
		{
			name:  "fresh token",
			token: adminToken,
		},
		{
			name:  "expired less than the clock skew ago",
			token: adminToken,
			at:    t0.Add(testTTL + clockSkew),
		},
		{
			name:  "issued less than the clock skew in the future",
			token: adminToken,
			at:    t0.Add(-clockSkew),
		},
		{
			name: "signed for the second audience",
			token: func(t *testing.T, fx *fixture) string {
				return sign(t, fx.svc, fx.adminPrincipal(), otherAudience)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			raw := tt.token(t, fx)
			if !tt.at.IsZero() {
				fx.clock.Set(tt.at)
			}
			got, err := fx.svc.Verifier().Verify(t.Context(), raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(fx.adminPrincipal(), got, equateEmpty); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	const (
		malformed = "malformed or unsupported signature algorithm"
		badSig    = "bad signature"
	)
	tests := []struct {
		name string
		// token returns the token to verify; valid is a fresh admin token.
		token      func(t *testing.T, fx *fixture, valid string) string
		at         time.Time // when to verify; zero means t0
		wantReason string
	}{
		{
			name:       "valid token with a trailing newline",
			token:      func(_ *testing.T, _ *fixture, valid string) string { return valid + "\n" },
			wantReason: malformed,
		},
		{
			name:       "valid token with whitespace inside",
			token:      func(_ *testing.T, _ *fixture, valid string) string { return valid[:20] + "\r\n" + valid[20:] },
			wantReason: malformed,
		},
		{
			name:       "expired past the clock skew",
			token:      keep,
			at:         t0.Add(testTTL + clockSkew + time.Second),
			wantReason: "token is expired",
		},
		{
			name:       "not valid yet by more than the clock skew",
			token:      keep,
			at:         t0.Add(-clockSkew - time.Second),
			wantReason: "token is not valid yet",
		},
		{
			name: "wrong issuer with a shared signing key",
			token: func(t *testing.T, fx *fixture, _ string) string {
				cfg := fx.config()
				cfg.Issuer = "https://other.example.test"
				return sign(t, newService(t, fx.st, cfg), fx.adminPrincipal(), testAudience)
			},
			wantReason: "wrong issuer",
		},
		{
			name: "wrong audience",
			token: func(t *testing.T, fx *fixture, _ string) string {
				return sign(t, fx.svc, fx.adminPrincipal(), "https://other-api.example.test")
			},
			wantReason: "wrong audience",
		},
		{
			name: "tampered tenant",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return withClaims(t, valid, func(c map[string]any) {
					c[identity.PrincipalClaim].(map[string]any)["orgId"] = "another-org"
				})
			},
			wantReason: badSig,
		},
		{
			name: "tampered scope",
			token: func(t *testing.T, fx *fixture, _ string) string {
				resp, oerr := fx.svc.Token(t.Context(), identity.TokenRequest{GrantType: identity.GrantClientCredentials,
					ClientID: fx.org.Admin.ClientID, ClientSecret: fx.org.Secret, Scope: identity.ScopeReadDeploy}, testAddr)
				if oerr != nil {
					t.Fatal(oerr)
				}
				return withClaims(t, resp.AccessToken, func(c map[string]any) { c["scope"] = strings.Join(allScopes, " ") })
			},
			wantReason: badSig,
		},
		{
			name: "tampered signature",
			token: func(t *testing.T, fx *fixture, valid string) string {
				h, p, s := split(t, valid)
				sig := decode(t, s)
				sig[10] ^= 0x01
				return h + "." + p + "." + b64(sig)
			},
			wantReason: badSig,
		},
		{
			name: "alg none",
			token: func(t *testing.T, fx *fixture, valid string) string {
				_, p, _ := split(t, valid)
				return b64(mustJSON(t, map[string]any{"alg": "none", "typ": "JWT", "kid": kidOf(t, valid)})) + "." + p + "."
			},
			wantReason: malformed,
		},
		{
			name: "HS256 keyed with the public key DER",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return hs256(t, valid, publicKeyDER(t, fx))
			},
			wantReason: malformed,
		},
		{
			name: "HS256 keyed with the public key PEM",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return hs256(t, valid, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicKeyDER(t, fx)}))
			},
			wantReason: malformed,
		},
		{
			name: "ES384 signature",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return forge(t, valid, jose.ES384, elliptic.P384(), kidOf(t, valid), false)
			},
			wantReason: malformed,
		},
		{
			name: "unknown kid",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return forge(t, valid, jose.ES256, elliptic.P256(), "not-a-stored-kid", false)
			},
			wantReason: "unknown signing key",
		},
		{
			name: "missing kid",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return forge(t, valid, jose.ES256, elliptic.P256(), "", false)
			},
			wantReason: "missing kid header",
		},
		{
			name: "stored kid signed by another key",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return forge(t, valid, jose.ES256, elliptic.P256(), kidOf(t, valid), false)
			},
			wantReason: badSig,
		},
		{
			name: "stored kid with the signing key embedded as jwk",
			token: func(t *testing.T, fx *fixture, valid string) string {
				return forge(t, valid, jose.ES256, elliptic.P256(), kidOf(t, valid), true)
			},
			wantReason: badSig,
		},
		{
			name: "JWS JSON serialization",
			token: func(t *testing.T, fx *fixture, valid string) string {
				h, p, s := split(t, valid)
				return string(mustJSON(t, map[string]string{"protected": h, "payload": p, "signature": s}))
			},
			wantReason: malformed,
		},
		{
			name: "missing subject",
			token: func(t *testing.T, fx *fixture, _ string) string {
				p := fx.adminPrincipal()
				p.Subject = ""
				return sign(t, fx.svc, p, testAudience)
			},
			wantReason: "required claims are missing",
		},
		{
			name: "principal without an environment",
			token: func(t *testing.T, fx *fixture, _ string) string {
				p := fx.adminPrincipal()
				p.EnvID = ""
				return sign(t, fx.svc, p, testAudience)
			},
			wantReason: "principal has no tenant",
		},
		{
			name:       "Bearer prefix left on",
			token:      func(t *testing.T, fx *fixture, valid string) string { return "Bearer " + valid },
			wantReason: malformed,
		},
		{
			name:       "fourth segment",
			token:      func(t *testing.T, fx *fixture, valid string) string { return valid + ".e30" },
			wantReason: malformed,
		},
		{
			name:       "empty string",
			token:      func(*testing.T, *fixture, string) string { return "" },
			wantReason: malformed,
		},
		{
			name:       "garbage",
			token:      func(*testing.T, *fixture, string) string { return "not a token" },
			wantReason: malformed,
		},
		{
			name:       "three empty segments",
			token:      func(*testing.T, *fixture, string) string { return ".." },
			wantReason: malformed,
		},
		{
			name:       "three junk segments",
			token:      func(*testing.T, *fixture, string) string { return "a.b.c" },
			wantReason: malformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			raw := tt.token(t, fx, fx.adminToken(t))
			if !tt.at.IsZero() {
				fx.clock.Set(tt.at)
			}
			got, err := fx.svc.Verifier().Verify(t.Context(), raw)
			if !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want one wrapping ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("Verify error = %q, want the reason %q", err, tt.wantReason)
			}
			if diff := cmp.Diff(identity.Principal{}, got, equateEmpty); diff != "" {
				t.Errorf("Verify returned a principal with its error (-want +got):\n%s", diff)
			}
		})
	}
}

func keep(_ *testing.T, _ *fixture, valid string) string { return valid }

func adminToken(t *testing.T, fx *fixture) string { return fx.adminToken(t) }

func sign(t *testing.T, svc *identity.Service, p identity.Principal, audience string) string {
	t.Helper()
	raw, err := svc.Sign(t.Context(), p, audience)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return raw
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decode(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode segment: %v", err)
	}
	return b
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	if err := json.Unmarshal(decode(t, seg), v); err != nil {
		t.Fatalf("unmarshal segment: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func split(t *testing.T, raw string) (header, payload, signature string) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

func payloadOf(t *testing.T, raw string) map[string]any {
	t.Helper()
	_, p, _ := split(t, raw)
	var claims map[string]any
	decodeSegment(t, p, &claims)
	return claims
}

// withClaims re-encodes the token's claims after edit, keeping its header and signature.
func withClaims(t *testing.T, raw string, edit func(map[string]any)) string {
	t.Helper()
	h, _, s := split(t, raw)
	claims := payloadOf(t, raw)
	edit(claims)
	return h + "." + b64(mustJSON(t, claims)) + "." + s
}

// publicKeyDER returns the PKIX DER of the service's signing key, as published in its JWKS.
func publicKeyDER(t *testing.T, fx *fixture) []byte {
	t.Helper()
	set := fx.svc.Keys().JWKS()
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
	}
	der, err := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// hs256 rebuilds the token with an HS256 header (same kid) and an HMAC signature keyed with key.
func hs256(t *testing.T, raw string, key []byte) string {
	t.Helper()
	_, p, _ := split(t, raw)
	input := b64(mustJSON(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kidOf(t, raw)})) + "." + p
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// forge signs the token's claims with a freshly generated key on curve, with the given kid
// (none when empty), optionally embedding the forging key as a jwk header.
func forge(t *testing.T, raw string, alg jose.SignatureAlgorithm, curve elliptic.Curve, kid string, embed bool) string {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opts := (&jose.SignerOptions{EmbedJWK: embed}).WithType("JWT")
	if kid != "" && embed {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	key := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg)}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := split(t, raw)
	jws, err := signer.Sign(decode(t, p))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if alg == jose.ES256 {
		if got := kidOf(t, out); got != kid {
			t.Fatalf("forged token has kid %q, want %q", got, kid)
		}
	}
	return out
}

// The fuzz key fixture holds a signing key sealed under fuzzMasterKey. Every fuzzing process
// (the coordinator and each worker) runs FuzzVerify's setup, so they must share one key for
// the tokens of one to verify in another. Regenerate with:
//
//	go test ./identity -run TestFuzzKeyFixture -update
const fuzzKeyFile = "testdata/fuzz_signing_key.json"

// fuzzMasterKey is a fixed test-only master key.
var fuzzMasterKey = []byte("sortie-fuzz-master-key-test-only")

// fuzzPrincipal is what FuzzVerify signs; with its token's expiry it is the only principal
// Verify may ever return.
var fuzzPrincipal = identity.Principal{
	Type:    identity.PrincipalMachine,
	Subject: "fuzzclientidaaaaaaaaaaaaaa",
	Name:    "admin",
	OrgID:   "00000000-0000-4000-8000-000000000001",
	OrgName: "fuzz",
	EnvID:   "00000000-0000-4000-8000-000000000002",
	Roles:   []string{identity.RoleOrganizationAdmin},
	Scopes:  allScopes,
}

// fuzzVerifier returns a service whose only key is the fixture's, a valid token from it and
// the principal that token verifies to.
func fuzzVerifier(tb testing.TB) (svc *identity.Service, raw string, want identity.Principal) {
	tb.Helper()
	data, err := os.ReadFile(fuzzKeyFile)
	if err != nil {
		tb.Fatalf("read fuzz key fixture (regenerate with -run TestFuzzKeyFixture -update): %v", err)
	}
	var rec store.SigningKey
	if err := json.Unmarshal(data, &rec); err != nil {
		tb.Fatalf("decode %s: %v", fuzzKeyFile, err)
	}
	st := openStore(tb, filepath.Join(tb.TempDir(), "sortie.db"))
	if err := st.PutSigningKey(context.Background(), rec); err != nil {
		tb.Fatal(err)
	}
	issued := rec.CreatedAt.Add(time.Minute)
	svc = newService(tb, st, testConfig(newFakeClock(issued), fuzzMasterKey))
	if diff := cmp.Diff([]string{rec.ID}, kids(svc.Keys().JWKS())); diff != "" {
		tb.Fatalf("the service does not use the fixture key (regenerate with -run TestFuzzKeyFixture -update) (-want +got):\n%s", diff)
	}
	raw, err = svc.Sign(context.Background(), fuzzPrincipal, testAudience)
	if err != nil {
		tb.Fatalf("Sign: %v", err)
	}
	want = fuzzPrincipal
	want.ExpiresAt, want.IssuedAt = issued.Add(testTTL), issued
	return svc, raw, want
}

func TestFuzzKeyFixture(t *testing.T) {
	if *update {
		clock := newFakeClock(t0)
		st := openStore(t, filepath.Join(t.TempDir(), "sortie.db"))
		newService(t, st, testConfig(clock, fuzzMasterKey))
		recs, err := st.ListSigningKeys(t.Context())
		if err != nil || len(recs) != 1 {
			t.Fatalf("ListSigningKeys = %d keys, %v; want 1 key", len(recs), err)
		}
		data, err := json.MarshalIndent(recs[0], "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(fuzzKeyFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fuzzKeyFile, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	svc, raw, want := fuzzVerifier(t)
	got, err := svc.Verifier().Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("principal mismatch (-want +got):\n%s", diff)
	}
}

func FuzzVerify(f *testing.F) {
	svc, valid, want := fuzzVerifier(f)
	other := fuzzPrincipal
	other.OrgID, other.Scopes = "00000000-0000-4000-8000-000000000003", []string{identity.ScopeReadDeploy}
	otherToken, err := svc.Sign(context.Background(), other, testAudience)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	h, p, s := parts[0], parts[1], parts[2]
	otherPayload := strings.Split(otherToken, ".")[1]
	flip := func(seg string, i int) string {
		b := []byte(seg)
		b[i%len(b)] ^= 0x01
		return string(b)
	}
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"x"}`))
	hsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	stdB64 := func(seg string) string {
		b, _ := base64.RawURLEncoding.DecodeString(seg)
		return base64.StdEncoding.EncodeToString(b)
	}
	seeds := []string{
		valid,
		h + "." + otherPayload + "." + s,
		flip(h, 5) + "." + p + "." + s,
		h + "." + flip(p, 17) + "." + s,
		h + "." + p + "." + flip(s, 3),
		h + "." + p + "." + flip(s, len(s)-1),
		h + "." + p + "." + s[:len(s)-1],
		h + "." + p + ".",
		h + "." + p,
		noneHeader + "." + p + ".",
		hsHeader + "." + p + "." + s,
		stdB64(h) + "." + stdB64(p) + "." + stdB64(s),
		valid + ".",
		" " + valid,
		strings.ToUpper(valid),
		s + "." + p + "." + h,
		"", ".", "..", "...", "a.b.c", "e30.e30.", "e30.e30.e30", "null", "{}",
		`{"protected":"` + h + `","payload":"` + p + `","signature":"` + s + `"}`,
		string(bytes.Repeat([]byte{0xff}, 40)),
	}
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := svc.Verifier().Verify(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
			}
			// The reasons contain no '.', so a token-shaped input must not appear in them.
			if strings.Contains(raw, ".") && strings.Contains(err.Error(), raw) {
				t.Fatalf("Verify error %q echoes the token", err)
			}
			return
		}
		if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
			t.Fatalf("Verify accepted %q for another principal (-want +got):\n%s", raw, diff)
		}
	})
}
