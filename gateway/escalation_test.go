package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/identity"
)

// TestNoPrivilegeEscalation: a caller grants only roles whose scopes its own token carries,
// on REST and Connect, and a refusal changes nothing.
func TestNoPrivilegeEscalation(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)
	credsOnly := ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeManageCredentials)
	deployer := ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret,
		strings.Join([]string{identity.ScopeManageCredentials, identity.ScopeManageDeploy, identity.ScopeReadInfrastructure}, " "))
	tenantOnly := ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeManageTenant)
	target, _ := ts.credentialToken(t, "target")

	refused := []struct {
		name, method, path, token string
		body                      any
	}{
		{"create an admin", "POST", "/credentials", credsOnly, map[string]any{"name": "mint", "roles": []string{identity.RoleOrganizationAdmin}}},
		{"create a deployer", "POST", "/credentials", credsOnly, map[string]any{"name": "mint", "roles": []string{identity.RoleDeploymentsFullAccess}}},
		{"assign admin", "PUT", "/credentials/" + target + "/roles", credsOnly, []string{identity.RoleOrganizationAdmin}},
		{"assign admin beside a held role", "PUT", "/credentials/" + target + "/roles", deployer, []string{identity.RoleDeploymentsFullAccess, identity.RoleOrganizationAdmin}},
		{"create an environment (it comes with an admin)", "POST", "/environments", tenantOnly, map[string]any{"name": "shadow"}},
	}
	for _, tt := range refused {
		t.Run("REST: "+tt.name, func(t *testing.T) {
			creds, envs := ts.do(t, "GET", "/credentials", admin, nil).Body, ts.do(t, "GET", "/environments", admin, nil).Body
			e := wantError(t, tt.name, ts.do(t, tt.method, tt.path, tt.token, tt.body), http.StatusForbidden)
			if !strings.Contains(e.Errors[0].Message, "which your token does not carry") {
				t.Errorf("403 message %q does not say what is missing", e.Errors[0].Message)
			}
			if after := ts.do(t, "GET", "/credentials", admin, nil).Body; !bytes.Equal(after, creds) {
				t.Errorf("a refused request changed the credentials: %s", after)
			}
			if after := ts.do(t, "GET", "/environments", admin, nil).Body; !bytes.Equal(after, envs) {
				t.Errorf("a refused request changed the environments: %s", after)
			}
		})
	}
	for _, tt := range []struct{ name, proc, body string }{
		{"create an admin", "CreateCredential", `{"name":"mint","roles":["Organization Admin"]}`},
		{"assign admin", "SetCredentialRoles", `{"id":"` + target + `","roles":["Organization Admin"]}`},
	} {
		t.Run("Connect: "+tt.name, func(t *testing.T) {
			r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/"+tt.proc, credsOnly, tt.body)
			if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "permission_denied") || !strings.Contains(string(r.Body), "does not carry") {
				t.Errorf("%s: %d %s", tt.proc, r.Status, r.Body)
			}
		})
	}
	if r := ts.do(t, "GET", "/credentials/"+target+"/roles", admin, nil); strings.TrimSpace(string(r.Body)) != "[]" {
		t.Errorf("target's roles after the refusals: %s", r.Body)
	}

	// What the caller holds it may grant.
	if r := ts.do(t, "POST", "/credentials", credsOnly, map[string]any{"name": "plain"}); r.Status != http.StatusCreated {
		t.Errorf("a credential without roles: %d %s", r.Status, r.Body)
	}
	if r := ts.do(t, "PUT", "/credentials/"+target+"/roles", deployer, []string{identity.RoleDeploymentsFullAccess}); r.Status != http.StatusOK {
		t.Errorf("assign a role whose scopes the caller holds: %d %s", r.Status, r.Body)
	}
}

// TestStrictBodies: a REST body repeating a key is refused with 400 naming it; a Connect
// request with a field the schema lacks is refused as REST refuses an unknown property.
// Nothing is created.
func TestStrictBodies(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)
	target, _ := ts.credentialToken(t, "target")
	before := ts.do(t, "GET", "/credentials", admin, nil).Body

	for _, tt := range []struct {
		name, method, path, body, field string
	}{
		{"top-level key", "POST", "/credentials", `{"name":"dup","roles":[],"roles":["Organization Admin"]}`, "roles"},
		{"first key", "POST", "/credentials", `{"name":"a","name":"b"}`, "name"},
		{"other route", "POST", "/environments", `{"name":"x","name":"y"}`, "name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := wantError(t, tt.name, ts.do(t, tt.method, tt.path, admin, tt.body), http.StatusBadRequest)
			if e.Errors[0].Metadata["field"] != tt.field || !strings.Contains(e.Errors[0].Message, "more than once") {
				t.Errorf("400 %+v, want field %q named", e.Errors[0], tt.field)
			}
		})
	}
	if r := ts.do(t, "PUT", "/credentials/"+target+"/roles", admin, `["Remote Network Agent"]`); r.Status != http.StatusOK {
		t.Errorf("a body without duplicates still works: %d %s", r.Status, r.Body)
	}
	ts.do(t, "PUT", "/credentials/"+target+"/roles", admin, `[]`)

	r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/CreateCredential", admin, `{"name":"z","rolez":["Organization Admin"]}`)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "invalid_argument") || !strings.Contains(string(r.Body), `unknown field \"rolez\"`) ||
		strings.Contains(string(r.Body), "identityv1") {
		t.Errorf("Connect JSON with an unknown field: %d %s", r.Status, r.Body)
	}
	msg, err := proto.Marshal(&identityv1.CreateCredentialRequest{Name: "z"})
	if err != nil {
		t.Fatal(err)
	}
	msg = protowire.AppendString(protowire.AppendTag(msg, 99, protowire.BytesType), "Organization Admin")
	req, _ := http.NewRequest("POST", ts.URL+"/sortie.identity.v1.IdentityService/CreateCredential", bytes.NewReader(msg))
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "unknown field") {
		t.Errorf("Connect protobuf with an unknown field: %d %s", resp.StatusCode, body)
	}
	if after := ts.do(t, "GET", "/credentials", admin, nil).Body; !bytes.Equal(after, before) {
		t.Errorf("refused requests changed the credentials: %s", after)
	}
}
