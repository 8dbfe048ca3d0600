package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
)

// GrantClientCredentials is the grant of machine credentials.
const GrantClientCredentials = "client_credentials"

// OAuth error codes of RFC 6749 section 5.2 (and slow_down for rate limiting).
const (
	OAuthInvalidRequest         = "invalid_request"
	OAuthInvalidClient          = "invalid_client"
	OAuthUnsupportedGrantType   = "unsupported_grant_type"
	OAuthInvalidScope           = "invalid_scope"
	OAuthSlowDown               = "slow_down"
	OAuthTemporarilyUnavailable = "temporarily_unavailable"
)

// OAuthError is an RFC 6749 error reply of the token endpoint.
type OAuthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// RetryAfterSeconds is set for slow_down and temporarily_unavailable replies.
	RetryAfterSeconds int `json:"-"`
	// BasicChallenge asks the client for HTTP Basic credentials (RFC 6749: 401 after a
	// failed Basic authentication carries WWW-Authenticate).
	BasicChallenge bool `json:"-"`
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Description }

func badRequest(format string, args ...any) *OAuthError {
	return &OAuthError{Status: 400, Code: OAuthInvalidRequest, Description: fmt.Sprintf(format, args...)}
}

// TokenRequest is a parsed token endpoint request.
type TokenRequest struct {
	GrantType    string
	ClientID     string
	ClientSecret string
	Audience     string
	Scope        string
	// Code, RedirectURI and CodeVerifier are the authorization_code grant's parameters.
	Code         string
	RedirectURI  string
	CodeVerifier string
	// DeviceCode is the device grant's (RFC 8628) parameter.
	DeviceCode string
	// UsedBasic tells that the client authenticated with HTTP Basic.
	UsedBasic bool
}

// tokenParams are the parameters the token endpoint understands; others are ignored, as RFC
// 6749 section 3.2 asks.
var tokenParams = [...]string{"grant_type", "client_id", "client_secret", "audience", "scope",
	"code", "redirect_uri", "code_verifier", "device_code"}

// tokenValues are the values of tokenParams, in its order.
type tokenValues = [len(tokenParams)]string

// ParseTokenRequest parses a token request from its Content-Type, its Authorization header and
// its body, accepting form bodies (RFC 6749) and JSON objects of strings (as some Armory-era
// clients send), and client authentication by HTTP Basic or by body parameters but not both.
func ParseTokenRequest(contentType, authorization string, body []byte) (TokenRequest, *OAuthError) {
	params, oerr := parseTokenBody(contentType, body)
	if oerr != nil {
		return TokenRequest{}, oerr
	}
	req := TokenRequest{
		GrantType:    params[0],
		ClientID:     params[1],
		ClientSecret: params[2],
		Audience:     params[3],
		Scope:        params[4],
		Code:         params[5],
		RedirectURI:  params[6],
		CodeVerifier: params[7],
		DeviceCode:   params[8],
	}
	if authorization != "" {
		id, secret, oerr := parseBasic(authorization)
		if oerr != nil {
			return TokenRequest{}, oerr
		}
		if req.ClientSecret != "" {
			return TokenRequest{}, badRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
		}
		if req.ClientID != "" && req.ClientID != id {
			return TokenRequest{}, badRequest("client_id in the body differs from the one in HTTP Basic authentication")
		}
		req.ClientID, req.ClientSecret, req.UsedBasic = id, secret, true
	}
	switch {
	case req.GrantType == "":
		return TokenRequest{}, badRequest("grant_type is required")
	case req.GrantType == GrantAuthorizationCode:
		return checkCodeRequest(req)
	case req.GrantType == GrantDeviceCode:
		return parseDeviceTokenRequest(req)
	case req.GrantType != GrantClientCredentials:
		return TokenRequest{}, &OAuthError{Status: 400, Code: OAuthUnsupportedGrantType,
			Description: "supported grant types: client_credentials, authorization_code, " + GrantDeviceCode}
	case req.ClientID == "" || req.ClientSecret == "":
		return TokenRequest{}, &OAuthError{Status: 401, Code: OAuthInvalidClient,
			Description: "client authentication is required: client_id and client_secret", BasicChallenge: req.UsedBasic}
	}
	return req, nil
}

// checkCodeRequest checks an authorization_code request: a public client (client_id, no
// secret) and every parameter of the exchange.
func checkCodeRequest(req TokenRequest) (TokenRequest, *OAuthError) {
	switch {
	case req.ClientSecret != "":
		return TokenRequest{}, badRequest("client %s is public: send client_id without a client secret", ConsoleClientID)
	case req.ClientID == "":
		return TokenRequest{}, badRequest("client_id is required")
	case req.Code == "":
		return TokenRequest{}, badRequest("code is required")
	case req.RedirectURI == "":
		return TokenRequest{}, badRequest("redirect_uri is required")
	case req.CodeVerifier == "":
		return TokenRequest{}, badRequest("code_verifier is required (PKCE)")
	}
	return req, nil
}

// formContentType is the media type of RFC 6749 token requests.
const formContentType = "application/x-www-form-urlencoded"

// parseTokenBody returns the values of tokenParams, in its order.
func parseTokenBody(contentType string, body []byte) (tokenValues, *OAuthError) {
	var out tokenValues
	mediaType := formContentType
	if contentType != "" && contentType != formContentType {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return out, badRequest("malformed Content-Type header")
		}
		mediaType = mt
	}
	switch mediaType {
	case formContentType:
		return parseTokenForm(string(body))
	case "application/json":
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
			return out, badRequest("the body must be a JSON object")
		}
		if name, dup := duplicateKey(body); dup {
			return out, badRequest("parameter %s is included more than once", name)
		}
		for i, name := range tokenParams {
			v, ok := raw[name]
			if !ok || string(v) == "null" {
				continue
			}
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return out, badRequest("parameter %s must be a string", name)
			}
			out[i] = s
		}
	default:
		return out, badRequest("unsupported Content-Type %q: send application/x-www-form-urlencoded or application/json", mediaType)
	}
	return out, nil
}

// parseTokenForm reads the token parameters of a form body as url.ParseQuery does (the
// same pairs, the same refusals: a semicolon separator or a malformed escape anywhere),
// without building a map of every parameter.
func parseTokenForm(body string) (tokenValues, *OAuthError) {
	var out tokenValues
	var count [len(tokenParams)]int
	malformed := false
	for body != "" {
		var pair string
		pair, body, _ = strings.Cut(body, "&")
		if strings.Contains(pair, ";") {
			malformed = true
			continue
		}
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(key)
		value, err2 := url.QueryUnescape(value)
		if err1 != nil || err2 != nil {
			malformed = true
			continue
		}
		if i := slices.Index(tokenParams[:], key); i >= 0 {
			if count[i] == 0 {
				out[i] = value
			}
			count[i]++
		}
	}
	if malformed {
		return tokenValues{}, badRequest("malformed form body")
	}
	for i, n := range count {
		if n > 1 {
			return tokenValues{}, badRequest("parameter %s is included more than once", tokenParams[i])
		}
	}
	return out, nil
}

// parseBasic decodes HTTP Basic client credentials; RFC 6749 section 2.3.1 form-encodes both
// parts before base64.
func parseBasic(header string) (id, secret string, oerr *OAuthError) {
	scheme, value, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", &OAuthError{Status: 401, Code: OAuthInvalidClient,
			Description: "the Authorization header must use the Basic scheme", BasicChallenge: true}
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return "", "", &OAuthError{Status: 401, Code: OAuthInvalidClient, Description: "malformed Basic credentials", BasicChallenge: true}
	}
	rawID, rawSecret, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", &OAuthError{Status: 401, Code: OAuthInvalidClient, Description: "malformed Basic credentials", BasicChallenge: true}
	}
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil {
		return "", "", &OAuthError{Status: 401, Code: OAuthInvalidClient, Description: "malformed Basic credentials", BasicChallenge: true}
	}
	return id, secret, nil
}

// duplicateKey finds a top-level key that a JSON object (already known to be valid) repeats.
func duplicateKey(body []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // {
		return "", false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := tok.(string)
		if seen[key] {
			return key, true
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}
