package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/identity"
)

// discovery is the OIDC discovery document.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
}

type discoveryOutput struct {
	CacheControl string `header:"Cache-Control"`
	Body         discovery
}

// jwk is one public key of the JWKS, as RFC 7517 spells it.
type jwk struct {
	KeyType   string `json:"kty"`
	Curve     string `json:"crv"`
	X         string `json:"x"`
	Y         string `json:"y"`
	KeyID     string `json:"kid"`
	Algorithm string `json:"alg"`
	Use       string `json:"use"`
}

type jwksOutput struct {
	CacheControl string `header:"Cache-Control"`
	Body         struct {
		Keys []jwk `json:"keys"`
	}
}

type tokenInput struct {
	ContentType   string `header:"Content-Type" doc:"application/x-www-form-urlencoded (RFC 6749) or application/json"`
	Authorization string `header:"Authorization" doc:"HTTP Basic client authentication, instead of client_id and client_secret in the body"`
	RawBody       []byte `contentType:"application/x-www-form-urlencoded" doc:"grant_type=client_credentials, client_id, client_secret, and optional audience and scope"`
	remoteAddr    string
}

// Resolve captures the client's address for rate limiting.
func (in *tokenInput) Resolve(ctx huma.Context) []error {
	host, _, err := net.SplitHostPort(ctx.RemoteAddr())
	if err != nil {
		host = ctx.RemoteAddr()
	}
	in.remoteAddr = host
	return nil
}

type tokenOutput struct {
	Status          int
	CacheControl    string `header:"Cache-Control"`
	Pragma          string `header:"Pragma"`
	WWWAuthenticate string `header:"WWW-Authenticate"`
	RetryAfter      string `header:"Retry-After"`
	Body            any
}

func (g *Gateway) registerOIDC() {
	issuer := g.id.Issuer()
	register(g, Public, huma.Operation{
		OperationID: "oidc-discovery", Method: http.MethodGet, Path: "/.well-known/openid-configuration",
		Summary: "OIDC discovery document", Tags: []string{"Identity"},
	}, func(context.Context, *struct{}) (*discoveryOutput, error) {
		return &discoveryOutput{CacheControl: "public, max-age=300", Body: discovery{
			Issuer: issuer, JWKSURI: issuer + "/.well-known/jwks.json", TokenEndpoint: issuer + "/oauth/token",
			GrantTypesSupported:               []string{identity.GrantClientCredentials},
			ResponseTypesSupported:            []string{"token"},
			SubjectTypesSupported:             []string{"public"},
			IDTokenSigningAlgValuesSupported:  []string{"ES256"},
			TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post"},
			ScopesSupported:                   identity.Scopes,
			ClaimsSupported:                   []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", identity.PrincipalClaim},
		}}, nil
	})

	register(g, Public, huma.Operation{
		OperationID: "oidc-jwks", Method: http.MethodGet, Path: "/.well-known/jwks.json",
		Summary: "Public token-signing keys", Tags: []string{"Identity"},
		Description: "The current signing key and every previous key whose tokens may not have expired yet.",
	}, func(ctx context.Context, _ *struct{}) (*jwksOutput, error) {
		out := &jwksOutput{CacheControl: "public, max-age=60"}
		raw, err := json.Marshal(g.id.Keys().JWKS())
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			return nil, restError(ctx, g.log, err)
		}
		if out.Body.Keys == nil {
			out.Body.Keys = []jwk{}
		}
		return out, nil
	})

	register(g, Public, huma.Operation{
		OperationID: "oauth-token", Method: http.MethodPost, Path: "/oauth/token",
		Summary: "Issue an access token (OAuth 2.0 client credentials)", Tags: []string{"Identity"},
		Description: "Replies 200 `{access_token, token_type, expires_in, scope}`. Failures use RFC 6749 " +
			"section 5.2 bodies `{error, error_description}`: 400 invalid_request, unsupported_grant_type " +
			"or invalid_scope; 401 invalid_client; 429 slow_down after too many failed attempts.",
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests},
	}, func(ctx context.Context, in *tokenInput) (*tokenOutput, error) {
		out := &tokenOutput{CacheControl: "no-store", Pragma: "no-cache"}
		req, oerr := identity.ParseTokenRequest(in.ContentType, in.Authorization, in.RawBody)
		if oerr == nil {
			var resp identity.TokenResponse
			resp, oerr = g.id.Token(ctx, req, in.remoteAddr)
			if oerr == nil {
				out.Status, out.Body = http.StatusOK, resp
				return out, nil
			}
		}
		out.Status, out.Body = oerr.Status, oerr
		if oerr.BasicChallenge {
			out.WWWAuthenticate = `Basic realm="sortie"`
		}
		if oerr.RetryAfterSeconds > 0 {
			out.RetryAfter = strconv.Itoa(oerr.RetryAfterSeconds)
		}
		return out, nil
	})
}
