package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// Environment is the REST shape of an environment.
type Environment struct {
	ID               string `json:"id"`
	OrgID            string `json:"orgId"`
	Name             string `json:"name"`
	CreatedAtIso8601 string `json:"createdAtIso8601" format:"date-time"`
}

// NewEnvironment is the reply to creating an environment: the environment and an
// Organization Admin credential for it, whose secret is shown only here.
type NewEnvironment struct {
	Environment
	AdminCredential NewCredential `json:"adminCredential"`
}

// Credential is the REST shape of a machine credential; it never carries the secret.
type Credential struct {
	ID               string   `json:"id" doc:"Equals clientId."`
	ClientID         string   `json:"clientId"`
	Name             string   `json:"name"`
	OrgID            string   `json:"orgId"`
	EnvID            string   `json:"envId"`
	Roles            []string `json:"roles"`
	Scopes           []string `json:"scopes"`
	CreatedAtIso8601 string   `json:"createdAtIso8601" format:"date-time"`
}

// NewCredential is a credential as created: the only time its secret is shown.
type NewCredential struct {
	Credential
	ClientSecret string `json:"clientSecret" doc:"Shown only in this reply; store it safely."`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func environmentOut(e store.Environment) Environment {
	return Environment{ID: e.ID, OrgID: e.OrgID, Name: e.Name, CreatedAtIso8601: rfc3339(e.CreatedAt)}
}

func credentialOut(c store.Credential) Credential {
	return Credential{
		ID: c.ClientID, ClientID: c.ClientID, Name: c.Name, OrgID: c.Tenant.OrgID, EnvID: c.Tenant.EnvID,
		Roles: nonNil(c.Roles), Scopes: nonNil(identity.ScopesOf(c.Roles)), CreatedAtIso8601: rfc3339(c.CreatedAt),
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type bodyOut[T any] struct {
	Body T
}

type createEnvironmentInput struct {
	Body struct {
		// The rules of name are CreateEnvironmentRequest.name's in identity.proto, enforced by the
		// identity service for REST and Connect alike. doc restates them (a test holds it to the
		// declaration); no schema tag enforces them a second time, with other words.
		Name string `json:"name" doc:"Unique in the organization: 1 to 63 letters, digits, '-' or '_', starting with a letter or digit (pattern ^[a-zA-Z0-9][a-zA-Z0-9_-]*$)."`
	}
}

type createCredentialInput struct {
	Body struct {
		// The rules of name are CreateCredentialRequest.name's, as for createEnvironmentInput.
		Name  string   `json:"name" doc:"A human label, unique in the environment: 1 to 128 printable characters (pattern ^[\\p{L}\\p{M}\\p{N}\\p{P}\\p{S} ]*$)."`
		Roles []string `json:"roles,omitempty" doc:"Roles to grant; GET /roles lists them." required:"false"`
	}
}

type credentialIDInput struct {
	ID string `path:"id" doc:"The credential's id (its client id)."`
}

type setRolesInput struct {
	ID   string   `path:"id" doc:"The credential's id (its client id)."`
	Body []string `doc:"The role names to grant instead of the current ones."`
}

func (g *Gateway) registerIdentityREST() {
	tags := []string{"Identity"}
	register(g, identity.ScopeManageTenant, huma.Operation{
		OperationID: "list-environments", Method: http.MethodGet, Path: "/environments",
		Summary: "List the environments of the caller's organization", Tags: tags,
	}, func(ctx context.Context, _ *struct{}) (*bodyOut[[]Environment], error) {
		envs, err := g.id.ListEnvironments(ctx, principalFrom(ctx))
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		out := make([]Environment, len(envs))
		for i, e := range envs {
			out[i] = environmentOut(e)
		}
		return &bodyOut[[]Environment]{Body: out}, nil
	})

	register(g, identity.ScopeManageTenant, huma.Operation{
		OperationID: "create-environment", Method: http.MethodPost, Path: "/environments",
		DefaultStatus: http.StatusCreated, Tags: tags,
		Summary: "Create an environment in the caller's organization",
		Description: "Also creates an Organization Admin credential in the new environment and returns " +
			"its secret, this once: a credential only ever acts inside its own environment. A name " +
			"that exists already is a 409 and changes nothing. Only a caller holding every scope may " +
			"create one (403 otherwise).",
		Errors: []int{http.StatusConflict},
	}, func(ctx context.Context, in *createEnvironmentInput) (*bodyOut[NewEnvironment], error) {
		created, err := g.id.CreateEnvironment(ctx, principalFrom(ctx), in.Body.Name)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[NewEnvironment]{Body: NewEnvironment{
			Environment:     environmentOut(created.Environment),
			AdminCredential: NewCredential{Credential: credentialOut(created.Admin), ClientSecret: created.Secret},
		}}, nil
	})

	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "list-credentials", Method: http.MethodGet, Path: "/credentials",
		Summary: "List the machine credentials of the caller's environment", Tags: tags,
		Description: "Secrets are never listed.",
	}, func(ctx context.Context, _ *struct{}) (*bodyOut[[]Credential], error) {
		creds, err := g.id.ListCredentials(ctx, principalFrom(ctx))
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		out := make([]Credential, len(creds))
		for i, c := range creds {
			out[i] = credentialOut(c)
		}
		return &bodyOut[[]Credential]{Body: out}, nil
	})

	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "create-credential", Method: http.MethodPost, Path: "/credentials",
		DefaultStatus: http.StatusCreated, Tags: tags,
		Summary: "Create a machine credential in the caller's environment",
		Description: "The reply holds the client secret; it is never shown again. A name that exists already in the environment is a 409 and changes nothing. " +
			"A role granting a scope the caller's token does not carry is a 403: nobody grants more than they hold.",
		Errors: []int{http.StatusConflict},
	}, func(ctx context.Context, in *createCredentialInput) (*bodyOut[NewCredential], error) {
		cred, secret, err := g.id.CreateCredential(ctx, principalFrom(ctx), in.Body.Name, in.Body.Roles)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[NewCredential]{Body: NewCredential{Credential: credentialOut(cred), ClientSecret: secret}}, nil
	})

	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "delete-credential", Method: http.MethodDelete, Path: "/credentials/{id}",
		DefaultStatus: http.StatusNoContent, Tags: tags,
		Summary: "Delete a machine credential", Errors: []int{http.StatusNotFound},
		Description: "Its tokens stop working at once: within seconds on every replica.",
	}, func(ctx context.Context, in *credentialIDInput) (*struct{}, error) {
		if err := g.id.DeleteCredential(ctx, principalFrom(ctx), in.ID); err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return nil, nil
	})

	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "get-credential-roles", Method: http.MethodGet, Path: "/credentials/{id}/roles",
		Summary: "List the roles of a machine credential", Tags: tags, Errors: []int{http.StatusNotFound},
	}, func(ctx context.Context, in *credentialIDInput) (*bodyOut[[]string], error) {
		roles, err := g.id.CredentialRoles(ctx, principalFrom(ctx), in.ID)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[[]string]{Body: nonNil(roles)}, nil
	})

	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "set-credential-roles", Method: http.MethodPut, Path: "/credentials/{id}/roles",
		Summary: "Replace the roles of a machine credential", Tags: tags, Errors: []int{http.StatusNotFound},
		Description: "Tokens already issued lose the scopes of removed roles within seconds, on every replica, and gain none. " +
			"A role granting a scope the caller's token does not carry is a 403.",
	}, func(ctx context.Context, in *setRolesInput) (*bodyOut[[]string], error) {
		roles, err := g.id.SetCredentialRoles(ctx, principalFrom(ctx), in.ID, in.Body)
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &bodyOut[[]string]{Body: nonNil(roles)}, nil
	})

	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "list-roles", Method: http.MethodGet, Path: "/roles",
		Summary: "List the roles that can be granted", Tags: tags,
	}, func(ctx context.Context, _ *struct{}) (*bodyOut[[]identity.Role], error) {
		return &bodyOut[[]identity.Role]{Body: g.id.Roles()}, nil
	})
}
