package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/google/uuid"
	graphql "github.com/graph-gophers/graphql-go"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/pipeline"
)

// GraphQLPath is where the GraphQL endpoint is served. The Armory CLI asks it, right after
// a start, whether the pipeline is queued behind another one; it derives the path from its
// --addr.
const GraphQLPath = "/v1/graphql"

// graphQLMediaType is the media type of every reply of the GraphQL endpoint, errors included.
const graphQLMediaType = "application/json; charset=utf-8"

// graphQLSchema is the whole GraphQL surface: a read-only view of pipelines. The id scalar is
// named uuid because the Armory CLI declares its variable as uuid!.
const graphQLSchema = `
schema {
  query: Query
}

"A pipeline id: a UUID in its canonical 36-character form."
scalar uuid

"The status of a pipeline (one enum everywhere, as in the REST API)."
enum PipelineStatus {
  NOT_STARTED
  QUEUED
  RUNNING
  PAUSED
  AWAITING_APPROVAL
  SUCCEEDED
  FAILED
  CANCELLED
  REJECTED
}

type Query {
  "The pipeline of this id in the caller's environment, or null when it has none."
  pipelineById(id: uuid!): Pipeline
  "Pipelines of the caller's environment, newest first, at most first (1 to 500) of them."
  pipelines(application: String, status: [PipelineStatus!], first: Int = 50): [Pipeline!]!
}

type Pipeline {
  id: uuid!
  status: PipelineStatus!
  application: Application!
  "The pipeline a QUEUED one waits for, or the newer one that replaced a REJECTED one; else null."
  blockedByPipeline: Pipeline
  "Why it failed, was cancelled or was rejected; null otherwise."
  message: String
  createdAtIso8601: String!
  "Null until it leaves QUEUED or NOT_STARTED."
  startedAtIso8601: String
  "Null while it is active."
  completedAtIso8601: String
  "The targets, one deployment each."
  environments: [Environment!]!
}

type Application {
  name: String!
}

type Environment {
  name: String!
  account: String!
  namespace: String!
  deploymentId: String!
  status: PipelineStatus!
  currentStep: Int!
  totalSteps: Int!
  weight: Int!
}
`

// Limits of one GraphQL request.
const (
	graphQLMaxDepth       = 8
	graphQLMaxQueryLength = 16 << 10
	graphQLMaxPage        = maxPageSize
)

// newGraphQLSchema parses the schema against its resolvers; a mismatch is a programming
// error caught by every test.
func newGraphQLSchema(g *Gateway) *graphql.Schema {
	return graphql.MustParseSchema(graphQLSchema, &graphQLQuery{g: g},
		graphql.MaxDepth(graphQLMaxDepth), graphql.MaxQueryLength(graphQLMaxQueryLength))
}

// registerGraphQL mounts POST /v1/graphql, which needs read:deploy like the REST reads. It is
// not a Huma operation (GraphQL has its own request and error formats), so it declares its
// requirement through handle, the same way register does for REST.
func (g *Gateway) registerGraphQL() {
	schema := newGraphQLSchema(g)
	g.handle(GraphQLPath, identity.ScopeReadDeploy, func(w http.ResponseWriter, r *http.Request) {
		g.serveGraphQL(w, r, schema)
	})
}

// handle mounts a handler outside Huma that requires need (a scope or Authenticated); the
// caller's principal is in the request's context when h runs. Refusals are written as
// GraphQL errors, the only non-Huma surface that needs a token.
func (g *Gateway) handle(pattern, need string, h http.HandlerFunc) {
	if need == Public || !hasDeclaredScope(need) {
		panic(fmt.Sprintf("gateway: %s declares requirement %q; handle is for routes that need a token", pattern, need))
	}
	g.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, status, err := authorize(r.Context(), g.verifier, r.Header.Get("Authorization"), need)
		if err != nil {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sortie"`)
			}
			writeGraphQLError(w, status, err.Error())
			return
		}
		h(w, r.WithContext(identity.WithPrincipal(r.Context(), p)))
	})
}

// graphQLRequest is the body of a GraphQL request (GraphQL over HTTP).
type graphQLRequest struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

func (g *Gateway) serveGraphQL(w http.ResponseWriter, r *http.Request, schema *graphql.Schema) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeGraphQLError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s is not served: send the query with POST and a JSON body", r.Method, GraphQLPath))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeGraphQLError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Type %q: send application/json", ct))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeGraphQLError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", maxBodyBytes))
			return
		}
		writeGraphQLError(w, http.StatusBadRequest, "could not read the request body")
		return
	}
	var req graphQLRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeGraphQLError(w, http.StatusBadRequest, "the body is not a GraphQL request: "+jsonProblem(err))
		return
	}
	if strings.TrimSpace(req.Query) == "" {
		writeGraphQLError(w, http.StatusBadRequest, `the body has no query: send {"query": "...", "variables": {...}}`)
		return
	}
	resp := schema.Exec(r.Context(), req.Query, req.OperationName, req.Variables)
	out, err := json.Marshal(resp)
	if err != nil {
		id := uuid.NewString()
		g.log.ErrorContext(r.Context(), "encode GraphQL reply", "error_id", id, "err", err)
		writeGraphQLError(w, http.StatusInternalServerError, "internal error (error_id "+id+")")
		return
	}
	w.Header().Set("Content-Type", graphQLMediaType)
	_, _ = w.Write(append(out, '\n'))
}

// jsonProblem says what is wrong with a JSON body without echoing it.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	return "invalid JSON"
}

// writeGraphQLError writes a request-level failure in GraphQL's error format
// ({"errors": [{"message", "extensions": {"code"}}]}) with status.
func writeGraphQLError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(graphql.Response{Errors: []*gqlerrors.QueryError{{
		Message: msg, Extensions: map[string]any{"code": codeFor(status)},
	}}})
	w.Header().Set("Content-Type", graphQLMediaType)
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// resolverError turns an engine error into a GraphQL field error with the same message and
// code the REST API gives; server errors are logged under an error_id and say nothing more.
func (g *Gateway) resolverError(ctx context.Context, err error) error {
	if f, ok := pipelineFailure(err); ok {
		return &gqlerrors.QueryError{Message: f.message(), Extensions: map[string]any{"code": codeFor(f.status)}}
	}
	status, msg, _ := errorStatus(err)
	ext := map[string]any{"code": codeFor(status)}
	if status >= http.StatusInternalServerError {
		id := uuid.NewString()
		ext["error_id"] = id
		g.log.ErrorContext(ctx, "GraphQL resolver failed", "error_id", id, "status", status, "err", err)
		if msg == "" {
			msg = "internal error (error_id " + id + ")"
		}
	}
	return &gqlerrors.QueryError{Message: msg, Extensions: ext}
}

// graphQLUUID is the uuid scalar.
type graphQLUUID string

// ImplementsGraphQLType binds graphQLUUID to the schema's uuid scalar.
func (graphQLUUID) ImplementsGraphQLType(name string) bool { return name == "uuid" }

// UnmarshalGraphQL accepts only canonical UUID strings, so a typo is an error rather than a
// pipeline that is never found.
func (u *graphQLUUID) UnmarshalGraphQL(input any) error {
	s, ok := input.(string)
	if !ok {
		return fmt.Errorf("a uuid is a string, not %T", input)
	}
	if len(s) != 36 || uuid.Validate(s) != nil {
		return fmt.Errorf("%q is not a uuid (want the 36-character form, e.g. 3f2b8c1e-5d6a-4e7f-9a0b-1c2d3e4f5a6b)", s)
	}
	*u = graphQLUUID(s)
	return nil
}

// MarshalJSON writes the uuid as a JSON string.
func (u graphQLUUID) MarshalJSON() ([]byte, error) { return json.Marshal(string(u)) }

// graphQLQuery resolves the Query type.
type graphQLQuery struct{ g *Gateway }

// PipelineByID resolves pipelineById: null for unknown ids and ids of other tenants.
func (q *graphQLQuery) PipelineByID(ctx context.Context, args struct{ ID graphQLUUID }) (*graphQLPipeline, error) {
	v, err := q.g.view(ctx, string(args.ID))
	if errors.Is(err, pipeline.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, q.g.resolverError(ctx, err)
	}
	return &graphQLPipeline{g: q.g, id: v.ID, view: v}, nil
}

// Pipelines resolves pipelines.
func (q *graphQLQuery) Pipelines(ctx context.Context, args struct {
	Application *string
	Status      *[]string
	First       int32
}) ([]*graphQLPipeline, error) {
	if args.First < 1 || args.First > graphQLMaxPage {
		return nil, &gqlerrors.QueryError{Message: fmt.Sprintf("first must be between 1 and %d, not %d", graphQLMaxPage, args.First),
			Extensions: map[string]any{"code": codeFor(http.StatusBadRequest)}}
	}
	e, err := q.g.engine()
	if err != nil {
		return nil, q.g.resolverError(ctx, err)
	}
	f := pipeline.ListFilter{Limit: int(args.First)}
	if args.Application != nil {
		f.Application = *args.Application
	}
	if args.Status != nil {
		for _, s := range *args.Status {
			f.Statuses = append(f.Statuses, pipeline.Status(s))
		}
	}
	views, _, err := e.List(ctx, principalFrom(ctx).Tenant(), f)
	if err != nil {
		return nil, q.g.resolverError(ctx, err)
	}
	out := make([]*graphQLPipeline, 0, len(views))
	for _, v := range views {
		out = append(out, &graphQLPipeline{g: q.g, id: v.ID, view: v})
	}
	return out, nil
}

// graphQLPipeline resolves Pipeline. A blockedByPipeline starts with its id only and reads the
// pipeline when a field other than id is asked, so `blockedByPipeline { id }` (what the
// Armory CLI asks) costs no read.
type graphQLPipeline struct {
	g    *Gateway
	id   string
	view *pipeline.View
}

func (p *graphQLPipeline) load(ctx context.Context) (*pipeline.View, error) {
	if p.view != nil {
		return p.view, nil
	}
	v, err := p.g.view(ctx, p.id)
	if err != nil {
		if errors.Is(err, pipeline.ErrNotFound) {
			return nil, &gqlerrors.QueryError{Message: fmt.Sprintf("pipeline %s no longer exists", p.id),
				Extensions: map[string]any{"code": codeFor(http.StatusNotFound)}}
		}
		return nil, p.g.resolverError(ctx, err)
	}
	p.view = v
	return v, nil
}

// ID resolves id.
func (p *graphQLPipeline) ID() graphQLUUID { return graphQLUUID(p.id) }

// Status resolves status.
func (p *graphQLPipeline) Status(ctx context.Context) (string, error) {
	v, err := p.load(ctx)
	if err != nil {
		return "", err
	}
	return string(v.Status), nil
}

// Application resolves application.
func (p *graphQLPipeline) Application(ctx context.Context) (*graphQLApplication, error) {
	v, err := p.load(ctx)
	if err != nil {
		return nil, err
	}
	return &graphQLApplication{name: v.Application}, nil
}

// BlockedByPipeline resolves blockedByPipeline: set only while QUEUED or once REJECTED.
func (p *graphQLPipeline) BlockedByPipeline(ctx context.Context) (*graphQLPipeline, error) {
	v, err := p.load(ctx)
	if err != nil {
		return nil, err
	}
	if v.BlockedBy == "" || (v.Status != pipeline.Queued && v.Status != pipeline.Rejected) {
		return nil, nil
	}
	return &graphQLPipeline{g: p.g, id: v.BlockedBy}, nil
}

// Message resolves message.
func (p *graphQLPipeline) Message(ctx context.Context) (*string, error) {
	v, err := p.load(ctx)
	if err != nil || v.Message == "" {
		return nil, err
	}
	return &v.Message, nil
}

// CreatedAtIso8601 resolves createdAtIso8601.
func (p *graphQLPipeline) CreatedAtIso8601(ctx context.Context) (string, error) {
	v, err := p.load(ctx)
	if err != nil {
		return "", err
	}
	return rfc3339(v.CreatedAt), nil
}

// StartedAtIso8601 resolves startedAtIso8601.
func (p *graphQLPipeline) StartedAtIso8601(ctx context.Context) (*string, error) {
	v, err := p.load(ctx)
	if err != nil {
		return nil, err
	}
	return timeOut(v.StartedAt), nil
}

// CompletedAtIso8601 resolves completedAtIso8601.
func (p *graphQLPipeline) CompletedAtIso8601(ctx context.Context) (*string, error) {
	v, err := p.load(ctx)
	if err != nil {
		return nil, err
	}
	return timeOut(v.CompletedAt), nil
}

// Environments resolves environments.
func (p *graphQLPipeline) Environments(ctx context.Context) ([]*graphQLEnvironment, error) {
	v, err := p.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*graphQLEnvironment, 0, len(v.Targets))
	for i := range v.Targets {
		out = append(out, &graphQLEnvironment{t: &v.Targets[i]})
	}
	return out, nil
}

// graphQLApplication resolves Application.
type graphQLApplication struct{ name string }

// Name resolves name.
func (a *graphQLApplication) Name() string { return a.name }

// graphQLEnvironment resolves Environment (one target).
type graphQLEnvironment struct{ t *pipeline.TargetView }

// Name resolves name.
func (e *graphQLEnvironment) Name() string { return e.t.Name }

// Account resolves account.
func (e *graphQLEnvironment) Account() string { return e.t.Account }

// Namespace resolves namespace.
func (e *graphQLEnvironment) Namespace() string { return e.t.Namespace }

// DeploymentID resolves deploymentId.
func (e *graphQLEnvironment) DeploymentID() string { return e.t.DeploymentID }

// Status resolves status.
func (e *graphQLEnvironment) Status() string { return string(e.t.Status) }

// CurrentStep resolves currentStep.
func (e *graphQLEnvironment) CurrentStep() int32 { return int32(e.t.CurrentStep) }

// TotalSteps resolves totalSteps.
func (e *graphQLEnvironment) TotalSteps() int32 { return int32(e.t.TotalSteps) }

// Weight resolves weight.
func (e *graphQLEnvironment) Weight() int32 { return int32(e.t.Weight) }
