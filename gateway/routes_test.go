package gateway_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/identity"
)

// TestEveryMuxRouteDeclaresRequirement reads every pattern mounted on the gateway's mux, Huma
// operations and everything outside Huma alike, and checks what each declares.
func TestEveryMuxRouteDeclaresRequirement(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	routes := map[string]string{}
	for _, r := range ts.gw.Routes() {
		if _, dup := routes[r.Pattern]; dup {
			t.Errorf("route %s is mounted twice", r.Pattern)
		}
		routes[r.Pattern] = r.Need
		if r.Need != gateway.Public && r.Need != gateway.Authenticated && r.Need != gateway.PerProcedure &&
			!slices.Contains(identity.Scopes, r.Need) {
			t.Errorf("route %s declares %q, which is not a scope, public, authenticated or per-procedure", r.Pattern, r.Need)
		}
	}

	// The routes outside Huma, and Huma's own, each with what it must declare.
	want := map[string]string{
		"GET /healthz": gateway.Public, "GET /readyz": gateway.Public, "GET /metrics": gateway.Public,
		"GET /console/": gateway.Public, "GET /{$}": gateway.Public,
		"GET /.well-known/openid-configuration": gateway.Public, "GET /.well-known/jwks.json": gateway.Public,
		"POST /oauth/token": gateway.Public,
		"GET /docs":         gateway.Public, "GET /openapi.json": gateway.Public, "GET /openapi.yaml": gateway.Public,
		"GET /openapi-3.0.json": gateway.Public, "GET /schemas/{schema}": gateway.Public,
		gateway.GraphQLPath:                          identity.ScopeReadDeploy,
		"GET /kubernetes/agent/manifest":             identity.ScopeManageCredentials,
		"/sortie.identity.v1.IdentityService/":       gateway.PerProcedure,
		"/sortie.infra.v1.InfrastructureService/":    gateway.PerProcedure,
		"/sortie.deploy.v1.DeploymentService/":       gateway.PerProcedure,
		"/sortie.hub.v1.AgentHubService/":            gateway.PerProcedure,
		"/grpc.health.v1.Health/":                    gateway.Public,
		"/grpc.reflection.v1.ServerReflection/":      gateway.Public,
		"/grpc.reflection.v1alpha.ServerReflection/": gateway.Public,
	}
	for pattern, need := range want {
		got, ok := routes[pattern]
		switch {
		case !ok:
			t.Errorf("route %s is not among the declared routes %v", pattern, ts.gw.Routes())
		case got != need:
			t.Errorf("route %s declares %q, want %q", pattern, got, need)
		}
	}

	// Each REST operation's mux route declares what its OpenAPI operation says.
	for _, op := range restOps(t, ts.gw.OpenAPI()) {
		pattern := op.method + " " + op.path
		if got, ok := routes[pattern]; !ok || got != op.need {
			t.Errorf("operation %s is mounted as %s with %q (mounted %v), want %q", op.id, pattern, got, ok, op.need)
		}
	}

	// Each Connect procedure is served under a prefix whose interceptor checks it.
	for _, proc := range connectProcedures() {
		prefix := proc[:strings.LastIndex(proc, "/")+1]
		if routes[prefix] != gateway.PerProcedure {
			t.Errorf("procedure %s is served under %s, which declares %q, not per-procedure", proc, prefix, routes[prefix])
		}
	}
}

// TestRoutesOutsideHumaEnforceDeclarations sends requests to every route that neither the
// OpenAPI document nor the Connect scope matrix covers, and checks that what each declares is
// what the server does: a public route answers without a token, a scoped one refuses a
// missing token (401) and a token without its scope (403) and admits one with it.
func TestRoutesOutsideHumaEnforceDeclarations(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	documented := map[string]bool{}
	for _, op := range restOps(t, ts.gw.OpenAPI()) {
		documented[op.method+" "+op.path] = true
	}
	var schema string
	for name := range ts.gw.OpenAPI().Components.Schemas.Map() {
		schema = name
		break
	}
	tokens := map[string]string{}
	for _, s := range identity.Scopes {
		tokens[s] = ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, s)
	}
	// What to send to routes whose pattern names no method or a parameter.
	requests := map[string]struct{ method, path, body string }{
		gateway.GraphQLPath:                          {"POST", gateway.GraphQLPath, `{"query":"{ __typename }"}`},
		"/grpc.health.v1.Health/":                    {"POST", "/grpc.health.v1.Health/Check", `{}`},
		"/grpc.reflection.v1.ServerReflection/":      {"POST", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", `{}`},
		"/grpc.reflection.v1alpha.ServerReflection/": {"POST", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", `{}`},
		"GET /schemas/{schema}":                      {"GET", "/schemas/" + schema + ".json", ""},
		"GET /{$}":                                   {"GET", "/", ""},
	}
	checked := 0
	for _, route := range ts.gw.Routes() {
		if documented[route.Pattern] || route.Need == gateway.PerProcedure {
			continue // TestScopeMatrix sends these
		}
		req, ok := requests[route.Pattern]
		if !ok {
			method, path, found := strings.Cut(route.Pattern, " ")
			if !found || strings.Contains(path, "{") {
				t.Errorf("route %s: add a sample request to this test", route.Pattern)
				continue
			}
			req.method, req.path = method, path
		}
		checked++
		t.Run(route.Pattern, func(t *testing.T) {
			send := func(token string) response {
				if req.body == "" {
					return ts.do(t, req.method, req.path, token, nil)
				}
				return ts.do(t, req.method, req.path, token, req.body)
			}
			if route.Need == gateway.Public {
				switch r := send(""); r.Status {
				case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
					t.Errorf("without a token: %d %s, want the public route served", r.Status, r.Body)
				}
				return
			}
			if r := send(""); r.Status != http.StatusUnauthorized {
				t.Errorf("without a token: %d %s, want 401", r.Status, r.Body)
			}
			for _, held := range identity.Scopes {
				r := send(tokens[held])
				refused := r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden
				switch grants := route.Need == gateway.Authenticated || identity.Grants([]string{held}, route.Need); {
				case grants && refused:
					t.Errorf("scope %s: refused with %d, but the route declares %s", held, r.Status, route.Need)
				case !grants && r.Status != http.StatusForbidden:
					t.Errorf("scope %s: %d %s, want 403 as the route declares %s", held, r.Status, r.Body, route.Need)
				}
			}
		})
	}
	if checked < 10 {
		t.Errorf("checked %d routes outside Huma's operations, want the health, metrics, docs, GraphQL and gRPC routes", checked)
	}
}
