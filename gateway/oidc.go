package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/identity"
)

// discovery is the OIDC discovery document.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
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
	// SetCookie carries the console session's cookies (authorization_code grant).
	SetCookie []string `header:"Set-Cookie"`
	Body      any
}

// cookieTokenResponse is the reply of the authorization_code grant: the token is in the
// HttpOnly session cookie, never in the body.
type cookieTokenResponse struct {
	TokenType string `json:"token_type"`
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope"`
}

func (g *Gateway) registerOIDC() {
	issuer := g.id.Issuer()
	register(g, Public, huma.Operation{
		OperationID: "oidc-discovery", Method: http.MethodGet, Path: "/.well-known/openid-configuration",
		Summary: "OIDC discovery document", Tags: []string{"Identity"},
	}, func(context.Context, *struct{}) (*discoveryOutput, error) {
		return &discoveryOutput{CacheControl: "public, max-age=300", Body: discovery{
			Issuer: issuer, JWKSURI: issuer + "/.well-known/jwks.json", TokenEndpoint: issuer + "/oauth/token",
			AuthorizationEndpoint:             issuer + authorizePath,
			DeviceAuthorizationEndpoint:       issuer + devicePath,
			GrantTypesSupported:               []string{identity.GrantClientCredentials, identity.GrantAuthorizationCode, identity.GrantDeviceCode},
			ResponseTypesSupported:            []string{"code", "token"},
			CodeChallengeMethodsSupported:     []string{"S256"},
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

	// The token endpoint is documented as a Huma operation but served by serveToken, which
	// gives the same replies without Huma's per-request reflection (see the notes of
	// BenchmarkTokenIssuance). Both call issueToken.
	g.mux.serveDirect(restPattern(http.MethodPost, tokenPath), http.HandlerFunc(g.serveToken))
	register(g, Public, tokenOperation(), g.humaToken)
	g.registerDeviceAuthorization()
}

// tokenOperation is the token endpoint's Huma operation.
func tokenOperation() huma.Operation {
	return huma.Operation{
		OperationID: "oauth-token", Method: http.MethodPost, Path: tokenPath,
		Summary: "Issue an access token (OAuth 2.0 client credentials, authorization code, device code)", Tags: []string{"Identity"},
		Description: "grant_type=client_credentials replies 200 `{access_token, token_type, expires_in, scope}`. " +
			"grant_type=authorization_code (the console: client_id=sortie-console, code, redirect_uri, " +
			"code_verifier; PKCE S256) starts a console session and replies 200 " +
			"`{token_type: \"cookie\", expires_in, scope}` with the token in the HttpOnly `sortie_session` " +
			"cookie and the CSRF value in the `sortie_csrf` cookie, never in the body. " +
			"grant_type=" + identity.GrantDeviceCode + " (client_id=sortie-cli, device_code from " +
			"POST " + devicePath + ") answers 400 authorization_pending, slow_down, access_denied or " +
			"expired_token until approved, then a bearer user token once. Failures use RFC 6749 " +
			"section 5.2 bodies `{error, error_description}`: 400 invalid_request, invalid_grant, " +
			"unsupported_grant_type or invalid_scope; 401 invalid_client; 429 slow_down after too many failed attempts.",
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests},
	}
}

// humaToken is the token endpoint as a Huma handler; serveToken answers the route instead,
// and a test holds the two to the same replies.
func (g *Gateway) humaToken(ctx context.Context, in *tokenInput) (*tokenOutput, error) {
	out := g.issueToken(ctx, in.ContentType, in.Authorization, in.RawBody, in.remoteAddr)
	return &out, nil
}

// tokenPath is the OAuth 2.0 token endpoint.
const tokenPath = "/oauth/token"

// issueToken answers a token request: the reply's status, headers and body.
func (g *Gateway) issueToken(ctx context.Context, contentType, authorization string, body []byte, remoteAddr string) tokenOutput {
	out := tokenOutput{CacheControl: "no-store", Pragma: "no-cache"}
	req, oerr := identity.ParseTokenRequest(contentType, authorization, body)
	if oerr == nil && req.GrantType == identity.GrantAuthorizationCode {
		var grant identity.SessionGrant
		if grant, oerr = g.id.ExchangeCode(ctx, req); oerr == nil {
			out.SetCookie = g.sessionCookies(grant.Token, grant.Session.CSRF)
			out.Status, out.Body = http.StatusOK, cookieTokenResponse{TokenType: "cookie",
				ExpiresIn: int64(grant.Token.ExpiresIn.Seconds()), Scope: grant.Token.Scope}
			return out
		}
	}
	if oerr == nil {
		var resp identity.TokenResponse
		resp, oerr = g.id.Token(ctx, req, remoteAddr)
		if oerr == nil {
			out.Status, out.Body = http.StatusOK, resp
			return out
		}
	}
	out.Status, out.Body = oerr.Status, oerr
	if oerr.BasicChallenge {
		out.WWWAuthenticate = `Basic realm="sortie"`
	}
	if oerr.RetryAfterSeconds > 0 {
		out.RetryAfter = strconv.Itoa(oerr.RetryAfterSeconds)
	}
	return out
}

// tokenBodies are the buffers request bodies of the token endpoint are read into.
var tokenBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// serveToken serves POST /oauth/token as its Huma operation would: the body read within the
// body read timeout (408), below maxBodyBytes (413) and not empty (400), RFC 6749 error
// bodies, and JSON written as Huma writes it (encoding/json without HTML escaping, then a
// newline).
func (g *Gateway) serveToken(w http.ResponseWriter, r *http.Request) {
	buf := tokenBodies.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			tokenBodies.Put(buf)
		}
	}()
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.bodyReadTimeout()))
	if r.Body != nil {
		n, err := io.Copy(buf, io.LimitReader(r.Body, maxBodyBytes))
		switch {
		case n == maxBodyBytes:
			writeOAuthError(w, newOAuthError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is too large limit=%d bytes", maxBodyBytes)))
			return
		case err != nil:
			if nerr, ok := errors.AsType[net.Error](err); ok && nerr.Timeout() {
				writeOAuthError(w, newOAuthError(http.StatusRequestTimeout, "request body read timeout"))
				return
			}
			writeOAuthError(w, newOAuthError(http.StatusInternalServerError, ""))
			return
		}
	}
	if buf.Len() == 0 {
		writeOAuthError(w, newOAuthError(http.StatusBadRequest, "request body is required"))
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	out := g.issueToken(r.Context(), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), buf.Bytes(), host)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", out.CacheControl)
	h.Set("Pragma", out.Pragma)
	if out.WWWAuthenticate != "" {
		h.Set("WWW-Authenticate", out.WWWAuthenticate)
	}
	if out.RetryAfter != "" {
		h.Set("Retry-After", out.RetryAfter)
	}
	for _, c := range out.SetCookie {
		h.Add("Set-Cookie", c)
	}
	w.WriteHeader(out.Status)
	if resp, ok := out.Body.(identity.TokenResponse); ok {
		if b, ok := appendTokenResponse(make([]byte, 0, 80+len(resp.AccessToken)+len(resp.TokenType)+len(resp.Scope)), resp); ok {
			_, _ = w.Write(b)
			return
		}
	}
	_ = writeHumaJSON(w, out.Body)
}

// writeOAuthError writes an error Huma would raise on the route (oauthErrorBody).
func writeOAuthError(w http.ResponseWriter, e *oauthErrorBody) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = writeHumaJSON(w, e)
}

// writeHumaJSON writes v as Huma's JSON format does.
func writeHumaJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// appendTokenResponse appends the JSON of resp, and the newline, as writeHumaJSON writes
// them, when none of its strings needs escaping (a token and scopes never do); it reports
// false otherwise.
func appendTokenResponse(b []byte, resp identity.TokenResponse) ([]byte, bool) {
	if !plainJSONString(resp.AccessToken) || !plainJSONString(resp.TokenType) || !plainJSONString(resp.Scope) {
		return nil, false
	}
	b = append(b, `{"access_token":"`...)
	b = append(b, resp.AccessToken...)
	b = append(b, `","token_type":"`...)
	b = append(b, resp.TokenType...)
	b = append(b, `","expires_in":`...)
	b = strconv.AppendInt(b, resp.ExpiresIn, 10)
	b = append(b, `,"scope":"`...)
	b = append(b, resp.Scope...)
	return append(b, "\"}\n"...), true
}

// plainJSONString reports whether encoding/json, without HTML escaping, writes s between
// quotes unchanged.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
