package identity_test

import (
	"encoding/base64"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

const (
	formType = "application/x-www-form-urlencoded"
	jsonType = "application/json"
)

// basic returns an HTTP Basic Authorization header with both parts form-encoded, as RFC 6749
// section 2.3.1 asks.
func basic(id, secret string) string {
	return basicRaw(url.QueryEscape(id) + ":" + url.QueryEscape(secret))
}

// basicRaw returns an HTTP Basic Authorization header holding userpass as it is.
func basicRaw(userpass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass))
}

func invalidRequest(description string) *identity.OAuthError {
	return &identity.OAuthError{Status: 400, Code: identity.OAuthInvalidRequest, Description: description}
}

func invalidClient(description string, challenge bool) *identity.OAuthError {
	return &identity.OAuthError{Status: 401, Code: identity.OAuthInvalidClient, Description: description, BasicChallenge: challenge}
}

func TestParseTokenRequest(t *testing.T) {
	t.Parallel()
	const grant = "grant_type=client_credentials"
	clientCreds := identity.TokenRequest{GrantType: "client_credentials", ClientID: "abc", ClientSecret: "s3cret"}
	viaBasic := clientCreds
	viaBasic.UsedBasic = true
	unsupportedGrant := &identity.OAuthError{Status: 400, Code: identity.OAuthUnsupportedGrantType,
		Description: "supported grant types: client_credentials, authorization_code, urn:ietf:params:oauth:grant-type:device_code"}
	notAnObject := invalidRequest("the body must be a JSON object")
	malformedBasic := invalidClient("malformed Basic credentials", true)
	noCredentials := invalidClient("client authentication is required: client_id and client_secret", false)

	tests := []struct {
		name          string
		contentType   string
		authorization string
		body          string
		want          identity.TokenRequest
		wantErr       *identity.OAuthError
	}{
		{
			name:        "form body",
			contentType: formType,
			body:        grant + "&client_id=abc&client_secret=s3cret",
			want:        clientCreds,
		},
		{
			name:        "form body passes audience and scope through",
			contentType: formType,
			body:        grant + "&client_id=abc&client_secret=s3cret&audience=https%3A%2F%2Fapi.example&scope=read%3Adeploy+manage%3Adeploy",
			want: identity.TokenRequest{GrantType: "client_credentials", ClientID: "abc", ClientSecret: "s3cret",
				Audience: "https://api.example", Scope: "read:deploy manage:deploy"},
		},
		{
			name:        "form body ignores unknown parameters, even repeated",
			contentType: formType,
			body:        grant + "&client_id=abc&client_secret=s3cret&resource=x&resource=y",
			want:        clientCreds,
		},
		{
			name:        "form with charset parameter and odd case",
			contentType: "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
			body:        grant + "&client_id=abc&client_secret=s3cret",
			want:        clientCreds,
		},
		{
			name: "empty content type is treated as form",
			body: grant + "&client_id=abc&client_secret=s3cret",
			want: clientCreds,
		},
		{
			name:        "JSON body",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_id":"abc","client_secret":"s3cret","audience":"aud","scope":"read:deploy"}`,
			want: identity.TokenRequest{GrantType: "client_credentials", ClientID: "abc", ClientSecret: "s3cret",
				Audience: "aud", Scope: "read:deploy"},
		},
		{
			name:        "JSON with charset parameter",
			contentType: "application/json; charset=utf-8",
			body:        `{"grant_type":"client_credentials","client_id":"abc","client_secret":"s3cret"}`,
			want:        clientCreds,
		},
		{
			name:        "JSON null means absent and unknown members are ignored",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_id":"abc","client_secret":"s3cret","audience":null,"extra":[1,{"a":true}]}`,
			want:        clientCreds,
		},
		{
			name:          "HTTP Basic",
			contentType:   formType,
			authorization: basic("abc", "s3cret"),
			body:          grant,
			want:          viaBasic,
		},
		{
			name:          "HTTP Basic with JSON body",
			contentType:   jsonType,
			authorization: basic("abc", "s3cret"),
			body:          `{"grant_type":"client_credentials"}`,
			want:          viaBasic,
		},
		{
			name:          "HTTP Basic decodes form-encoded id and secret",
			contentType:   formType,
			authorization: basic("my client:1", "p@ss word+/=:%é"),
			body:          grant,
			want:          identity.TokenRequest{GrantType: "client_credentials", ClientID: "my client:1", ClientSecret: "p@ss word+/=:%é", UsedBasic: true},
		},
		{
			name:          "HTTP Basic plus sign is a space",
			contentType:   formType,
			authorization: basicRaw("a+b:c+d"),
			body:          grant,
			want:          identity.TokenRequest{GrantType: "client_credentials", ClientID: "a b", ClientSecret: "c d", UsedBasic: true},
		},
		{
			name:          "HTTP Basic scheme is case-insensitive",
			contentType:   formType,
			authorization: "bAsIc " + base64.StdEncoding.EncodeToString([]byte("abc:s3cret")),
			body:          grant,
			want:          viaBasic,
		},
		{
			name:          "HTTP Basic with the same client_id in the body",
			contentType:   formType,
			authorization: basic("abc", "s3cret"),
			body:          grant + "&client_id=abc",
			want:          viaBasic,
		},
		{
			name:          "HTTP Basic plus client_secret in the body is refused",
			contentType:   formType,
			authorization: basic("abc", "s3cret"),
			body:          grant + "&client_secret=s3cret",
			wantErr:       invalidRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both"),
		},
		{
			name:          "HTTP Basic id differing from body client_id is refused",
			contentType:   formType,
			authorization: basic("abc", "s3cret"),
			body:          grant + "&client_id=other",
			wantErr:       invalidRequest("client_id in the body differs from the one in HTTP Basic authentication"),
		},
		{
			name:          "Authorization with another scheme",
			contentType:   formType,
			authorization: "Bearer abc",
			body:          grant + "&client_id=abc&client_secret=s3cret",
			wantErr:       invalidClient("the Authorization header must use the Basic scheme", true),
		},
		{
			name:          "Basic without credentials",
			contentType:   formType,
			authorization: "Basic",
			body:          grant,
			wantErr:       invalidClient("the Authorization header must use the Basic scheme", true),
		},
		{
			name:          "Basic with bad base64",
			contentType:   formType,
			authorization: "Basic ***",
			body:          grant,
			wantErr:       malformedBasic,
		},
		{
			name:          "Basic without a colon",
			contentType:   formType,
			authorization: basicRaw("abc"),
			body:          grant,
			wantErr:       malformedBasic,
		},
		{
			name:          "Basic with bad percent-encoding",
			contentType:   formType,
			authorization: basicRaw("abc:s3cret%zz"),
			body:          grant,
			wantErr:       malformedBasic,
		},
		{
			name:          "Basic with an empty secret",
			contentType:   formType,
			authorization: basic("abc", ""),
			body:          grant,
			wantErr:       invalidClient("client authentication is required: client_id and client_secret", true),
		},
		{
			name:        "duplicate grant_type",
			contentType: formType,
			body:        grant + "&" + grant + "&client_id=abc&client_secret=s3cret",
			wantErr:     invalidRequest("parameter grant_type is included more than once"),
		},
		{
			name:        "duplicate client_secret",
			contentType: formType,
			body:        grant + "&client_id=abc&client_secret=s3cret&client_secret=other",
			wantErr:     invalidRequest("parameter client_secret is included more than once"),
		},
		{
			name:        "missing grant_type",
			contentType: formType,
			body:        "client_id=abc&client_secret=s3cret",
			wantErr:     invalidRequest("grant_type is required"),
		},
		{
			name:        "empty grant_type",
			contentType: jsonType,
			body:        `{"grant_type":"","client_id":"abc","client_secret":"s3cret"}`,
			wantErr:     invalidRequest("grant_type is required"),
		},
		{
			name:        "password grant",
			contentType: formType,
			body:        "grant_type=password&username=u&password=p&client_id=abc&client_secret=s3cret",
			wantErr:     unsupportedGrant,
		},
		{
			name:        "authorization_code grant with a client secret",
			contentType: formType,
			body:        "grant_type=authorization_code&code=x&client_id=abc&client_secret=s3cret",
			wantErr:     invalidRequest("client sortie-console is public: send client_id without a client secret"),
		},
		{
			name:        "authorization_code grant without a verifier",
			contentType: formType,
			body:        "grant_type=authorization_code&code=x&client_id=sortie-console&redirect_uri=http%3A%2F%2Fx%2Fconsole%2Fcallback",
			wantErr:     invalidRequest("code_verifier is required (PKCE)"),
		},
		{
			name:        "authorization_code grant",
			contentType: formType,
			body:        "grant_type=authorization_code&code=x&client_id=sortie-console&redirect_uri=http%3A%2F%2Fx%2Fconsole%2Fcallback&code_verifier=v",
			want: identity.TokenRequest{GrantType: "authorization_code", ClientID: "sortie-console", Code: "x",
				RedirectURI: "http://x/console/callback", CodeVerifier: "v"},
		},
		{
			name:        "grant type is case-sensitive",
			contentType: jsonType,
			body:        `{"grant_type":"CLIENT_CREDENTIALS","client_id":"abc","client_secret":"s3cret"}`,
			wantErr:     unsupportedGrant,
		},
		{
			name:        "missing client credentials",
			contentType: formType,
			body:        grant,
			wantErr:     noCredentials,
		},
		{
			name:        "missing client_secret",
			contentType: formType,
			body:        grant + "&client_id=abc",
			wantErr:     noCredentials,
		},
		{
			name:        "missing client_id",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_secret":"s3cret"}`,
			wantErr:     noCredentials,
		},
		{
			name:        "malformed JSON",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials",`,
			wantErr:     notAnObject,
		},
		{
			name:        "empty JSON body",
			contentType: jsonType,
			wantErr:     notAnObject,
		},
		{
			name:        "JSON with a repeated parameter",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_id":"abc","client_secret":"a","client_secret":"b"}`,
			wantErr:     invalidRequest("parameter client_secret is included more than once"),
		},
		{
			name:        "JSON array",
			contentType: jsonType,
			body:        `[{"grant_type":"client_credentials"}]`,
			wantErr:     notAnObject,
		},
		{
			name:        "JSON null",
			contentType: jsonType,
			body:        `null`,
			wantErr:     notAnObject,
		},
		{
			name:        "JSON string",
			contentType: jsonType,
			body:        `"grant_type=client_credentials"`,
			wantErr:     notAnObject,
		},
		{
			name:        "JSON number value",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_id":123,"client_secret":"s3cret"}`,
			wantErr:     invalidRequest("parameter client_id must be a string"),
		},
		{
			name:        "JSON boolean value",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_id":"abc","client_secret":true}`,
			wantErr:     invalidRequest("parameter client_secret must be a string"),
		},
		{
			name:        "JSON array value",
			contentType: jsonType,
			body:        `{"grant_type":"client_credentials","client_id":"abc","client_secret":"s3cret","scope":["read:deploy"]}`,
			wantErr:     invalidRequest("parameter scope must be a string"),
		},
		{
			name:        "malformed form body",
			contentType: formType,
			body:        grant + "&client_id=%zz&client_secret=s3cret",
			wantErr:     invalidRequest("malformed form body"),
		},
		{
			name:        "unsupported content type",
			contentType: "text/plain",
			body:        grant + "&client_id=abc&client_secret=s3cret",
			wantErr:     invalidRequest(`unsupported Content-Type "text/plain": send application/x-www-form-urlencoded or application/json`),
		},
		{
			name:        "multipart form is unsupported",
			contentType: "multipart/form-data; boundary=x",
			body:        "--x--",
			wantErr:     invalidRequest(`unsupported Content-Type "multipart/form-data": send application/x-www-form-urlencoded or application/json`),
		},
		{
			name:        "malformed content type",
			contentType: "application/json; charset",
			body:        `{}`,
			wantErr:     invalidRequest("malformed Content-Type header"),
		},
		{
			name:          "body errors come before Basic errors",
			contentType:   "text/plain",
			authorization: "Bearer abc",
			wantErr:       invalidRequest(`unsupported Content-Type "text/plain": send application/x-www-form-urlencoded or application/json`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, gotErr := identity.ParseTokenRequest(tt.contentType, tt.authorization, []byte(tt.body))
			if diff := cmp.Diff(tt.wantErr, gotErr); diff != "" {
				t.Errorf("ParseTokenRequest error mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTokenRequest request mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// statusOfCode is the HTTP status each RFC 6749 section 5.2 error code is sent with.
var statusOfCode = map[string]int{
	"invalid_request":        400,
	"invalid_client":         401,
	"invalid_grant":          400,
	"unauthorized_client":    400,
	"unsupported_grant_type": 400,
	"invalid_scope":          400,
}

func FuzzParseTokenRequest(f *testing.F) {
	const grant = "grant_type=client_credentials"
	seeds := []struct {
		contentType, authorization, body string
	}{
		{formType, "", grant + "&client_id=abc&client_secret=s3cret&audience=a&scope=read%3Adeploy"},
		{"", "", grant + "&client_id=abc&client_secret=s3cret"},
		{formType + "; charset=utf-8", basic("abc", "s3cret"), grant},
		{formType, basic("my client:1", "p@ss word+/=:%"), grant + "&client_id=my+client%3A1"},
		{formType, basic("abc", "s3cret"), grant + "&client_secret=x"},
		{formType, basicRaw("abc:%zz"), grant},
		{formType, "Bearer x", grant},
		{formType, "", grant + "&" + grant + "&client_id=a&client_secret=b"},
		{formType, "", "grant_type=password&client_id=a&client_secret=b"},
		{formType, "", "client_id=a&client_secret=b"},
		{formType, "", "a=%zz;b"},
		{jsonType, "", `{"grant_type":"client_credentials","client_id":"abc","client_secret":"s3cret"}`},
		{jsonType + "; charset=utf-8", basic("abc", "s3cret"), `{"grant_type":"client_credentials","client_id":null}`},
		{jsonType, "", `{"grant_type":1}`},
		{jsonType, "", `[]`},
		{jsonType, "", `null`},
		{jsonType, "", `{"grant_type":"client_credentials",`},
		{jsonType, "", "{\"grant_type\":\"client_credentials\",\"client_id\":\"\xff\",\"client_secret\":\"\\u0000\"}"},
		{"text/plain", "", grant},
		{"application/json; charset", "", `{}`},
		{"", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.contentType, s.authorization, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, contentType, authorization string, body []byte) {
		req, oerr := identity.ParseTokenRequest(contentType, authorization, body)
		if oerr == nil {
			if req.GrantType != identity.GrantClientCredentials || req.ClientID == "" || req.ClientSecret == "" {
				t.Fatalf("ParseTokenRequest accepted an incomplete request: %+v", req)
			}
			if req.UsedBasic != (authorization != "") {
				t.Fatalf("UsedBasic = %v with Authorization %q", req.UsedBasic, authorization)
			}
			return
		}
		if diff := cmp.Diff(identity.TokenRequest{}, req); diff != "" {
			t.Fatalf("ParseTokenRequest returned a request with an error (-want +got):\n%s", diff)
		}
		wantStatus, ok := statusOfCode[oerr.Code]
		if !ok {
			t.Fatalf("error code %q is not an RFC 6749 token error code", oerr.Code)
		}
		if oerr.Status != wantStatus {
			t.Fatalf("error %q has status %d, want %d", oerr.Code, oerr.Status, wantStatus)
		}
		if oerr.Description == "" {
			t.Fatalf("error %q has no description", oerr.Code)
		}
		if oerr.BasicChallenge && authorization == "" {
			t.Fatalf("error %q challenges for Basic credentials the client did not send", oerr.Code)
		}
	})
}
