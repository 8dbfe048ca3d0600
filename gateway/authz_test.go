package gateway_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/danielgtaylor/huma/v2"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/identity"
)

// restOp is one REST operation as the OpenAPI document describes it.
type restOp struct {
	id, method, path string
	need             string // a scope, gateway.Public or gateway.Authenticated
}

func restOps(t *testing.T, oapi *huma.OpenAPI) []restOp {
	t.Helper()
	var ops []restOp
	for path, item := range oapi.Paths {
		for method, op := range map[string]*huma.Operation{
			"GET": item.Get, "POST": item.Post, "PUT": item.Put, "DELETE": item.Delete, "PATCH": item.Patch,
		} {
			if op == nil {
				continue
			}
			need, _ := op.Metadata[gateway.ScopeMetadataKey].(string)
			ops = append(ops, restOp{id: op.OperationID, method: method, path: path, need: need})
		}
	}
	slices.SortFunc(ops, func(a, b restOp) int { return strings.Compare(a.id, b.id) })
	return ops
}

// connectProcedures lists every procedure of every sortie.* service compiled into the binary.
func connectProcedures() []string {
	var procs []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "sortie.") {
			return true
		}
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				procs = append(procs, "/"+string(svc.FullName())+"/"+string(svc.Methods().Get(j).Name()))
			}
		}
		return true
	})
	slices.Sort(procs)
	return procs
}

func TestEveryRouteDeclaresScope(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ops := restOps(t, ts.gw.OpenAPI())
	if len(ops) < 11 {
		t.Fatalf("found %d operations; the OpenAPI document looks incomplete", len(ops))
	}
	for _, op := range ops {
		if op.need == "" {
			t.Errorf("%s %s (%s) declares no scope: register it with gateway's register(g, scope, ...)", op.method, op.path, op.id)
		}
	}
}

func TestEveryProcedureDeclaresScope(t *testing.T) {
	t.Parallel()
	declared := gateway.ProcedureScopes()
	procs := connectProcedures()
	if len(procs) == 0 {
		t.Fatal("no sortie.* procedures are registered")
	}
	for _, p := range procs {
		if _, ok := declared[p]; !ok {
			t.Errorf("procedure %s declares no scope", p)
		}
	}
}

// sampleBodies are well-formed bodies for operations that take one, so the matrix reaches
// the authorization decision with a request a real client could send.
var sampleBodies = map[string]string{
	"create-environment":         `{"name":"matrix"}`,
	"create-credential":          `{"name":"matrix","roles":[]}`,
	"set-credential-roles":       `[]`,
	"oauth-token":                `grant_type=client_credentials`,
	"oauth-device-authorization": `client_id=sortie-cli`,
	"start-deployment":           `{"account":"matrix","application":"web","manifests":[{"inline":{"value":"kind: ConfigMap"}}]}`,
	"start-pipeline":             `{"application":"web","targets":{},"manifests":[]}`,
	"start-kubernetes-pipeline":  `{"application":"web","targets":{},"manifests":[]}`,
	"approve-pipeline":           `{"step":"prod"}`,
	"resume-deployment":          `{}`,
	"abort-deployment":           `{}`,
	"abort-pipeline":             `{}`,
}

// pathParam matches the parameters of a route's path template.
var pathParam = regexp.MustCompile(`\{[^}]+\}`)

func TestScopeMatrix(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	tokens := map[string]string{}
	for _, s := range identity.Scopes {
		tokens[s] = ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, s)
	}
	allows := func(need, held string) bool {
		return need == gateway.Public || need == gateway.Authenticated || identity.Grants([]string{held}, need)
	}

	for _, op := range restOps(t, ts.gw.OpenAPI()) {
		t.Run("REST "+op.id, func(t *testing.T) {
			path := pathParam.ReplaceAllString(op.path, "does-not-exist")
			body := sampleBodies[op.id]
			if body == "" && (op.method == "POST" || op.method == "PUT") {
				t.Fatalf("add a sample body for %s to sampleBodies", op.id)
			}
			send := func(token string) response {
				if body == "" {
					return ts.do(t, op.method, path, token, nil)
				}
				return ts.do(t, op.method, path, token, body)
			}
			if op.need != gateway.Public {
				wantError(t, "no token", send(""), http.StatusUnauthorized)
			}
			for _, held := range identity.Scopes {
				r := send(tokens[held])
				// A 403 for granting more than the caller holds comes after the auth layer let
				// the call through (creating an environment grants an Organization Admin).
				escalation := r.Status == http.StatusForbidden && strings.Contains(string(r.Body), "whose scopes you hold")
				denied := (r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden) && !escalation
				switch {
				case allows(op.need, held) && denied:
					t.Errorf("scope %s: refused with %d, but %s needs %s", held, r.Status, op.id, op.need)
				case !allows(op.need, held):
					e := wantError(t, "scope "+held, r, http.StatusForbidden)
					if !strings.Contains(e.Errors[0].Message, op.need) {
						t.Errorf("scope %s: 403 message %q does not name %s", held, e.Errors[0].Message, op.need)
					}
				}
			}
		})
	}

	declared := gateway.ProcedureScopes()
	for _, proc := range connectProcedures() {
		need := declared[proc]
		t.Run("Connect "+proc, func(t *testing.T) {
			if code := callProcedure(t, ts, proc, ""); need != gateway.Public && code != connect.CodeUnauthenticated {
				t.Errorf("no token: %v, want unauthenticated", code)
			} else if need == gateway.Public && (code == connect.CodeUnauthenticated || code == connect.CodePermissionDenied) {
				t.Errorf("no token: %v, but the procedure is public", code)
			}
			for _, held := range identity.Scopes {
				code := callProcedure(t, ts, proc, tokens[held])
				denied := code == connect.CodeUnauthenticated || code == connect.CodePermissionDenied
				switch {
				case allows(need, held) && denied:
					t.Errorf("scope %s: refused with %v, but it needs %s", held, code, need)
				case !allows(need, held) && code != connect.CodePermissionDenied:
					t.Errorf("scope %s: got %v, want permission_denied", held, code)
				}
			}
		})
	}
}

// callProcedure calls any procedure over gRPC on h2c with an empty message (every field at
// its default) and returns the code it ended with: unary, server-streaming and bidi alike.
func callProcedure(t *testing.T, ts *testServer, proc, token string) connect.Code {
	t.Helper()
	desc := procedureDescriptor(t, proc)
	opts := []connect.ClientOption{connect.WithGRPC()}
	if token != "" {
		opts = append(opts, connect.WithInterceptors(bearerAll(token)))
	}
	client := connect.NewClient[emptypb.Empty, emptypb.Empty](h2cClient(), ts.URL+proc, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var err error
	switch {
	case desc.IsStreamingClient() && desc.IsStreamingServer():
		stream := client.CallBidiStream(ctx)
		// A Send refused with io.EOF means the server already answered: Receive has why.
		_ = stream.Send(&emptypb.Empty{})
		_ = stream.CloseRequest()
		_, err = stream.Receive()
		_ = stream.CloseResponse()
	case desc.IsStreamingServer():
		var stream *connect.ServerStreamForClient[emptypb.Empty]
		if stream, err = client.CallServerStream(ctx, connect.NewRequest(&emptypb.Empty{})); err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
			stream.Close()
		}
	default:
		_, err = client.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
	}
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

func procedureDescriptor(t *testing.T, proc string) protoreflect.MethodDescriptor {
	t.Helper()
	name := strings.ReplaceAll(strings.TrimPrefix(proc, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatalf("procedure %s: %v", proc, err)
	}
	return d.(protoreflect.MethodDescriptor)
}

// bearerAll adds a token to unary and streaming calls.
type bearerAll string

func (b bearerAll) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearerAll) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearerAll) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// TestTenantIsolation proves that nothing of one tenant is readable or changeable from
// another, on every admin route, over REST and Connect.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx := context.Background()
	beta, err := ts.svc.CreateOrganization(ctx, "beta")
	if err != nil {
		t.Fatal(err)
	}
	acme := ts.adminToken(t)
	betaTok := ts.token(t, beta.Admin.ClientID, beta.Secret, "")

	// A second environment of acme: same organization, another tenant.
	created := decode[gateway.NewEnvironment](t, ts.do(t, "POST", "/environments", acme, `{"name":"staging"}`).Body)
	staging := ts.token(t, created.AdminCredential.ClientID, created.AdminCredential.ClientSecret, "")

	victim := decode[gateway.NewCredential](t, ts.do(t, "POST", "/credentials", acme,
		`{"name":"victim","roles":["Deployments Full Access"]}`).Body)
	before := ts.do(t, "GET", "/credentials", acme, nil)

	for name, tok := range map[string]string{"other organization": betaTok, "other environment": staging} {
		t.Run(name, func(t *testing.T) {
			list := ts.do(t, "GET", "/credentials", tok, nil)
			if list.Status != 200 || strings.Contains(string(list.Body), victim.ClientID) || strings.Contains(string(list.Body), ts.admin.Admin.ClientID) {
				t.Errorf("GET /credentials shows the other tenant's credentials: %s", list.Body)
			}
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/credentials/" + victim.ClientID + "/roles", ""},
				{"PUT", "/credentials/" + victim.ClientID + "/roles", `["Organization Admin"]`},
				{"DELETE", "/credentials/" + victim.ClientID, ""},
			} {
				var body any
				if r.body != "" {
					body = r.body
				}
				wantError(t, r.method+" "+r.path, ts.do(t, r.method, r.path, tok, body), http.StatusNotFound)
			}
			for _, c := range []struct{ proc, body string }{
				{"GetCredentialRoles", `{"id":"` + victim.ClientID + `"}`},
				{"SetCredentialRoles", `{"id":"` + victim.ClientID + `","roles":["Organization Admin"]}`},
				{"DeleteCredential", `{"id":"` + victim.ClientID + `"}`},
			} {
				r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/"+c.proc, tok, c.body)
				if r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "not_found") {
					t.Errorf("Connect %s: %d %s, want 404 not_found", c.proc, r.Status, r.Body)
				}
			}
			r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/ListCredentials", tok, "{}")
			if strings.Contains(string(r.Body), victim.ClientID) {
				t.Errorf("Connect ListCredentials shows the other tenant's credential: %s", r.Body)
			}
		})
	}

	// Environments are the organization's: beta sees only its own.
	for _, surface := range []response{
		ts.do(t, "GET", "/environments", betaTok, nil),
		ts.do(t, "POST", "/sortie.identity.v1.IdentityService/ListEnvironments", betaTok, "{}"),
	} {
		if strings.Contains(string(surface.Body), ts.admin.Environment.ID) || strings.Contains(string(surface.Body), created.ID) {
			t.Errorf("beta lists acme's environments: %s", surface.Body)
		}
	}
	if envs := decode[[]gateway.Environment](t, ts.do(t, "GET", "/environments", staging, nil).Body); len(envs) != 2 {
		t.Errorf("acme/staging lists %d environments of its organization, want 2", len(envs))
	}

	// Nothing changed for acme.
	after := ts.do(t, "GET", "/credentials", acme, nil)
	if string(before.Body) != string(after.Body) {
		t.Errorf("acme's credentials changed:\nbefore %s\nafter  %s", before.Body, after.Body)
	}
	// And a token of one tenant is of no use in the other: beta's admin cannot be promoted
	// in acme by id either.
	wantError(t, "acme on beta's admin", ts.do(t, "DELETE", "/credentials/"+beta.Admin.ClientID, acme, nil), http.StatusNotFound)
}
