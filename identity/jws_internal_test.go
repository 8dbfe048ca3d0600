package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/store"
)

// TestAppendClaimsIsJSONMarshal: the issuer's own claims encoding writes exactly what
// encoding/json writes for the same claims, for plain values and for every kind of string
// encoding/json escapes.
func TestAppendClaimsIsJSONMarshal(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	plain := Principal{Type: PrincipalMachine, Subject: "abc123", Name: "ci-bot", OrgID: "org-1", OrgName: "acme",
		EnvID: "env-1", Roles: []string{RoleOrganizationAdmin, RoleRemoteNetworkAgent}, Scopes: Scopes}
	odd := plain
	odd.Name, odd.OrgName = `quote " back \ <tag> & amp`, "tab\tnewline\n é ☃ \u2028 \x01 \xff"
	odd.Roles = nil
	session := plain
	session.Type, session.SessionID, session.CSRF = PrincipalUser, "sid-1", "csrf-1"
	tests := []struct {
		name   string
		claims tokenClaims
	}{
		{"plain", newClaims(plain, strings.Join(plain.Scopes, " "), "https://sortie.example", "https://sortie.example", now, time.Hour)},
		{"console session", newClaims(session, "read:deploy", "https://sortie.example", "https://sortie.example", now, time.Hour)},
		{"strings encoding/json escapes, no roles", newClaims(odd, "", "https://sortie.example/<x>", "aud&1", now, time.Minute)},
		{"no subject, no principal, two audiences", func() tokenClaims {
			c := newClaims(plain, "read:deploy", "", "a", now, time.Hour)
			c.Subject, c.Principal, c.Audience, c.ID = "", nil, jwt.Audience{"a", "b"}, ""
			return c
		}()},
		{"no times", func() tokenClaims {
			c := newClaims(plain, "x", "i", "a", now, time.Hour)
			c.Expiry, c.NotBefore, c.IssuedAt, c.Audience = nil, nil, nil, nil
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.claims)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendClaims(nil, &tt.claims); !bytes.Equal(got, want) {
				t.Errorf("appendClaims:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestSignTokenIsGoJOSE: a token the issuer writes has go-jose's protected header byte for
// byte and verifies with go-jose against the key's public half.
func TestSignTokenIsGoJOSE(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := newLoadedKey(store.SigningKey{ID: "kid-1"}, priv)
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{Type: PrincipalMachine, Subject: "abc", Name: "n", OrgID: "o", OrgName: "acme", EnvID: "e",
		Roles: []string{RoleDeploymentsFullAccess}, Scopes: []string{ScopeReadDeploy}}
	c := newClaims(p, ScopeReadDeploy, "https://iss", "https://aud", time.Now(), time.Hour)
	raw, err := signToken(&lk, &c)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := lk.signer.Sign([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	refRaw, _ := ref.CompactSerialize()
	if got, want := strings.Split(raw, ".")[0], strings.Split(refRaw, ".")[0]; got != want {
		t.Errorf("protected header %s, go-jose writes %s", got, want)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var got tokenClaims
	if err := tok.Claims(&priv.PublicKey, &got); err != nil {
		t.Fatalf("go-jose does not verify the token: %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("claims (-signed +verified):\n%s", diff)
	}
	if h := tok.Headers[0]; h.KeyID != "kid-1" || h.Algorithm != "ES256" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header %+v", h)
	}
}

// TestParseTokenFormIsParseQuery: the token endpoint's form parser takes the same values as
// url.ParseQuery and refuses what it refuses.
func TestParseTokenFormIsParseQuery(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		"", "&&", "grant_type=client_credentials&client_id=a&client_secret=b",
		"client_id=a%2Bb&client_secret=c+d&scope=read%3Adeploy%20manage%3Adeploy&audience=x&other=1&other=2",
		"grant_type", "=x&grant_type=", "client_id=a&client_id=b", "scope=a&scope=a",
		"client_id=%zz", "x=%zz&client_id=a&client_id=b", "a=1;b=2", "client_id=a;b",
		"grant_type=client_credentials&client_secret=%", "%67rant_type=x",
	} {
		got, oerr := parseTokenForm(body)
		values, err := url.ParseQuery(body)
		var want tokenValues
		wantErr := ""
		switch {
		case err != nil:
			wantErr = "malformed form body"
		default:
			for i, name := range tokenParams {
				if v := values[name]; len(v) > 1 && wantErr == "" {
					wantErr = "parameter " + name + " is included more than once"
				} else if len(v) == 1 {
					want[i] = v[0]
				}
			}
		}
		if wantErr != "" {
			if oerr == nil || oerr.Description != wantErr || oerr.Code != OAuthInvalidRequest {
				t.Errorf("%q: got %v, want invalid_request %q", body, oerr, wantErr)
			}
			continue
		}
		if oerr != nil || got != want {
			t.Errorf("%q: got %q %v, want %q", body, got, oerr, want)
		}
	}
}
