package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/store/redistest"
)

// TestErrorContractEverywhere: replies the routes do not write themselves (unknown paths,
// wrong methods, unknown procedures, bodies over the limit) follow the contract of their
// path: the REST error contract, or RFC 6749 on /oauth/*.
func TestErrorContractEverywhere(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})

	for _, tt := range []struct {
		name, method, path string
		status             int
		wantText           string
	}{
		{"unknown path", "GET", "/no/such/route", http.StatusNotFound, "no route matches GET /no/such/route"},
		{"wrong method", "DELETE", "/healthz", http.StatusMethodNotAllowed, "allowed: GET"},
		{"wrong method on a REST route", "PATCH", "/credentials", http.StatusMethodNotAllowed, "PATCH /credentials is not allowed"},
		{"unknown procedure", "POST", "/sortie.identity.v1.IdentityService/NoSuchProcedure", http.StatusNotFound, "no route matches"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := wantError(t, tt.name, ts.do(t, tt.method, tt.path, "", nil), tt.status)
			if !strings.Contains(e.Errors[0].Message, tt.wantText) {
				t.Errorf("message %q does not contain %q", e.Errors[0].Message, tt.wantText)
			}
		})
	}

	for _, tt := range []struct {
		name, method, path string
		body               []byte
		status             int
	}{
		{"wrong method", "GET", "/oauth/token", nil, http.StatusMethodNotAllowed},
		{"unknown path", "POST", "/oauth/nowhere", nil, http.StatusNotFound},
		{"body over the limit", "POST", "/oauth/token", bytes.Repeat([]byte("a"), 10<<20+1), http.StatusRequestEntityTooLarge},
	} {
		t.Run("OAuth "+tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			desc, _ := body["error_description"].(string)
			if resp.StatusCode != tt.status || body["error"] != "invalid_request" || desc == "" || body["errors"] != nil ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%d %s %v, want %d with an RFC 6749 body", resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.status)
			}
		})
	}
}

// TestCallerMessages: a 404 or 409 says what the caller can fix in the same words on every
// backend, never the store's own error chain.
func TestCallerMessages(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var opts serverOptions
			if backend == "redis" {
				opts.redisURL = redistest.New(t).URL()
			}
			ts := startServer(t, opts)
			admin := ts.adminToken(t)
			for _, tt := range []struct {
				name, method, path string
				body               any
				status             int
				want               string
			}{
				{"delete", "DELETE", "/credentials/nope", nil, http.StatusNotFound, `credential "nope" does not exist in this environment`},
				{"get roles", "GET", "/credentials/nope/roles", nil, http.StatusNotFound, `credential "nope" does not exist in this environment`},
				{"set roles", "PUT", "/credentials/nope/roles", []string{}, http.StatusNotFound, `credential "nope" does not exist in this environment`},
				{"credential name", "POST", "/credentials", map[string]any{"name": "admin"}, http.StatusConflict, `a credential named "admin" exists already in this environment`},
				{"environment name", "POST", "/environments", map[string]any{"name": "default"}, http.StatusConflict, `an environment named "default" exists already in this organization`},
			} {
				e := wantError(t, tt.name, ts.do(t, tt.method, tt.path, admin, tt.body), tt.status)
				if e.Errors[0].Message != tt.want {
					t.Errorf("%s: message %q, want %q", tt.name, e.Errors[0].Message, tt.want)
				}
			}
			r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/DeleteCredential", admin, `{"id":"nope"}`)
			if r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), `credential \"nope\" does not exist in this environment"`) {
				t.Errorf("Connect: %d %s", r.Status, r.Body)
			}
		})
	}
}
