package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// PerProcedure is the requirement of a Connect service's path prefix: the Connect interceptor
// checks each procedure against its own declaration (ProcedureScopes).
const PerProcedure = "per-procedure"

// Route is one pattern served by the gateway's mux and what it requires.
type Route struct {
	// Pattern is as registered on the mux: "GET /healthz", "/v1/graphql" or a Connect
	// service's prefix, "/sortie.identity.v1.IdentityService/".
	Pattern string
	// Need is a scope, Public, Authenticated or PerProcedure.
	Need string
}

// routeMux is the gateway's ServeMux. Every pattern must be declared, with its requirement,
// before it is registered: registering an undeclared pattern panics at start-up, so no route
// (Huma's, a Connect service, static or health) can be served without saying who may call it.
type routeMux struct {
	*http.ServeMux
	declared map[string]string
	routes   []Route
	// direct holds the plain handlers that serve a pattern in place of the handler registered
	// for it (serveDirect).
	direct map[string]http.Handler
}

func newRouteMux() *routeMux {
	return &routeMux{ServeMux: http.NewServeMux(), declared: map[string]string{}, direct: map[string]http.Handler{}}
}

// serveDirect makes h serve pattern in place of the handler registered for it later: the
// route keeps its declaration and its Huma operation (so the OpenAPI document still
// describes it) while its requests skip Huma. Only the token endpoint uses it (oidc.go).
func (m *routeMux) serveDirect(pattern string, h http.Handler) { m.direct[pattern] = h }

// declare records that pattern requires need; the pattern may then be registered once.
func (m *routeMux) declare(pattern, need string) {
	if need != PerProcedure && !hasDeclaredScope(need) {
		panic(fmt.Sprintf("gateway: route %s declares unknown requirement %q", pattern, need))
	}
	if _, dup := m.declared[pattern]; dup {
		panic(fmt.Sprintf("gateway: route %s is declared twice", pattern))
	}
	m.declared[pattern] = need
}

// Handle registers a declared pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	need, ok := m.declared[pattern]
	if !ok {
		panic(fmt.Sprintf("gateway: route %s declares no requirement: add it with register, or declare it in New", pattern))
	}
	m.routes = append(m.routes, Route{Pattern: pattern, Need: need})
	if d, ok := m.direct[pattern]; ok {
		h = d
	}
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers a declared pattern.
func (m *routeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// unregistered lists the declared patterns that were never registered, a declaration
// that no longer matches its route.
func (m *routeMux) unregistered() []string {
	var out []string
	for p := range m.declared {
		if !slices.ContainsFunc(m.routes, func(r Route) bool { return r.Pattern == p }) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// declareHumaDocs declares the routes Huma itself serves (the OpenAPI document in both
// versions and formats, the docs page, the JSON schemas) as public.
func (m *routeMux) declareHumaDocs(cfg humaPaths) {
	for _, p := range []string{
		cfg.OpenAPIPath + ".json", cfg.OpenAPIPath + "-3.0.json",
		cfg.OpenAPIPath + ".yaml", cfg.OpenAPIPath + "-3.0.yaml",
		cfg.SchemasPath + "/{schema}", cfg.DocsPath,
	} {
		m.declare(http.MethodGet+" "+p, Public)
	}
}

// humaPaths are the paths of Huma's own routes.
type humaPaths struct{ OpenAPIPath, SchemasPath, DocsPath string }

// connectPrefix is the mux pattern of a Connect service.
func connectPrefix(service string) string { return "/" + service + "/" }

// restPattern is the mux pattern humago registers for an operation.
func restPattern(method, path string) string { return strings.ToUpper(method) + " " + path }

// Routes returns every route the gateway serves, in registration order, with its declared
// requirement; tests read it to prove that each route declares one.
func (g *Gateway) Routes() []Route { return slices.Clone(g.mux.routes) }
