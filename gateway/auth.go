package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// Access requirements that are not a scope.
const (
	// Public routes need no token (discovery, JWKS, the token endpoint).
	Public = "public"
	// Authenticated routes need a valid token, whatever its scopes (WhoAmI).
	Authenticated = "authenticated"
)

// scopeKey is the Huma operation metadata key holding the operation's requirement.
const scopeKey = "sortie.scope"

// principalFrom returns the principal the auth layer put into ctx.
func principalFrom(ctx context.Context) identity.Principal {
	p, _ := identity.PrincipalFrom(ctx)
	return p
}

// tokenVerifier is what the auth layer needs of identity: identity.Service.Verify checks the
// token and its credential's current state, so revoked tokens are refused here.
type tokenVerifier interface {
	Verify(ctx context.Context, raw string) (identity.Principal, error)
}

// errNoToken is returned when a protected call carries no bearer token.
var errNoToken = errors.New("missing bearer token: send Authorization: Bearer <access token> (POST /oauth/token issues one)")

// cannotCheckError is returned when a token's credential cannot be checked (the store is
// unreachable). Its message is for the caller; the cause is for the log.
type cannotCheckError struct{ cause error }

func (e *cannotCheckError) Error() string {
	return "cannot check the access token right now; retry shortly"
}

// logCannotCheck logs why a token could not be checked, unless it is a plain outage (which
// the store's own health reports).
func (g *Gateway) logCannotCheck(ctx context.Context, err error) {
	var cerr *cannotCheckError
	if errors.As(err, &cerr) && !errors.Is(cerr.cause, store.ErrUnavailable) {
		g.log.ErrorContext(ctx, "check token", "err", cerr.cause)
	}
}

// authorize checks the Authorization header against a requirement and returns the caller's
// principal. It is the single decision point for REST and Connect.
func authorize(ctx context.Context, v tokenVerifier, header, need string) (identity.Principal, int, error) {
	if need == Public {
		return identity.Principal{}, 0, nil
	}
	scheme, raw, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return identity.Principal{}, http.StatusUnauthorized, errNoToken
	}
	p, err := v.Verify(ctx, strings.TrimSpace(raw))
	switch {
	case errors.Is(err, identity.ErrInvalidToken):
		return identity.Principal{}, http.StatusUnauthorized, err
	case err != nil:
		// The token's credential could not be checked: refuse, without saying why inside.
		return identity.Principal{}, http.StatusServiceUnavailable, &cannotCheckError{cause: err}
	}
	if need != Authenticated && !p.HasScope(need) {
		return identity.Principal{}, http.StatusForbidden, fmt.Errorf("this operation requires scope %s, which the token does not carry", need)
	}
	return p, 0, nil
}

// hasDeclaredScope reports whether a requirement is one the auth layer knows.
func hasDeclaredScope(need string) bool {
	if need == Public || need == Authenticated {
		return true
	}
	for _, s := range identity.Scopes {
		if s == need {
			return true
		}
	}
	return false
}

// restAuth is the Huma middleware enforcing each operation's declared requirement. An
// operation without one is refused with 500, and TestEveryRouteDeclaresScope fails.
func (g *Gateway) restAuth(ctx huma.Context, next func(huma.Context)) {
	need, _ := ctx.Operation().Metadata[scopeKey].(string)
	if !hasDeclaredScope(need) {
		g.log.Error("operation has no declared scope", "operation", ctx.Operation().OperationID)
		_ = huma.WriteErr(g.api, ctx, http.StatusInternalServerError, "")
		return
	}
	p, status, err := authorize(ctx.Context(), g.verifier, ctx.Header("Authorization"), need)
	if err != nil {
		g.logCannotCheck(ctx.Context(), err)
		if status == http.StatusUnauthorized {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="sortie"`)
		}
		_ = huma.WriteErr(g.api, ctx, status, err.Error())
		return
	}
	next(huma.WithContext(ctx, identity.WithPrincipal(ctx.Context(), p)))
}

// register adds a Huma operation that requires need (a scope, Public or Authenticated).
// Declaring the requirement here, beside the route, is the only way to add a route.
func register[I, O any](g *Gateway, need string, op huma.Operation, handler func(context.Context, *I) (*O, error)) {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[scopeKey] = need
	if hasJSONBody[I]() {
		op.Metadata[jsonBodyKey] = true
	}
	op.MaxBodyBytes = maxBodyBytes
	op.BodyReadTimeout = g.bodyReadTimeout()
	switch need {
	case Public:
	case Authenticated:
		op.Security = []map[string][]string{{"bearer": {}}}
		op.Errors = append(op.Errors, http.StatusUnauthorized)
	default:
		op.Security = []map[string][]string{{"bearer": {need}}}
		op.Errors = append(op.Errors, http.StatusUnauthorized, http.StatusForbidden)
		op.Description = strings.TrimSpace(op.Description + "\n\nRequires scope `" + need + "`.")
	}
	g.mux.declare(restPattern(op.Method, op.Path), need)
	huma.Register(g.api, op, handler)
}

// procedureScopes declares the requirement of every Connect procedure; the interceptor
// refuses procedures missing here, and TestEveryProcedureDeclaresScope walks the generated
// descriptors to prove none is missing.
type procedureScopes map[string]string

// connectAuth is the Connect interceptor enforcing procedureScopes.
type connectAuth struct {
	g      *Gateway
	scopes procedureScopes
}

func (a connectAuth) authorize(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	need, ok := a.scopes[procedure]
	if !ok || !hasDeclaredScope(need) {
		a.g.log.Error("procedure has no declared scope", "procedure", procedure)
		return ctx, connect.NewError(connect.CodeInternal, errors.New("procedure has no declared scope"))
	}
	p, status, err := authorize(ctx, a.g.verifier, h.Get("Authorization"), need)
	switch status {
	case 0:
		return context.WithValue(identity.WithPrincipal(ctx, p), requirementKey{}, need), nil
	case http.StatusForbidden:
		return ctx, connect.NewError(connect.CodePermissionDenied, err)
	case http.StatusServiceUnavailable:
		a.g.logCannotCheck(ctx, err)
		return ctx, connect.NewError(connect.CodeUnavailable, err)
	default:
		return ctx, connect.NewError(connect.CodeUnauthenticated, err)
	}
}

// WrapUnary implements connect.Interceptor.
func (a connectAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.authorize(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (a connectAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (a connectAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authorize(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// ScopeMetadataKey is the Huma operation metadata key holding each operation's requirement;
// tests read it to prove that every route declares one.
const ScopeMetadataKey = scopeKey

// hubProcedureScopes declares what the agent stream requires.
var hubProcedureScopes = procedureScopes{
	hubv1connect.AgentHubServiceConnectProcedure: identity.ScopeConnectAgentHub,
}

// allProcedureScopes merges the declarations of every served service.
func allProcedureScopes() procedureScopes {
	out := procedureScopes{}
	for _, table := range []procedureScopes{identityProcedureScopes, infraProcedureScopes, deployProcedureScopes, hubProcedureScopes} {
		maps.Copy(out, table)
	}
	return out
}

// ProcedureScopes returns the requirement of every Connect procedure served.
func ProcedureScopes() map[string]string { return allProcedureScopes() }
