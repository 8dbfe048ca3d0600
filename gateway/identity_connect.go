package gateway

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// identityProcedureScopes declares what each IdentityService procedure requires.
var identityProcedureScopes = procedureScopes{
	identityv1connect.IdentityServiceWhoAmIProcedure:             Authenticated,
	identityv1connect.IdentityServiceListEnvironmentsProcedure:   identity.ScopeManageTenant,
	identityv1connect.IdentityServiceCreateEnvironmentProcedure:  identity.ScopeManageTenant,
	identityv1connect.IdentityServiceListCredentialsProcedure:    identity.ScopeManageCredentials,
	identityv1connect.IdentityServiceCreateCredentialProcedure:   identity.ScopeManageCredentials,
	identityv1connect.IdentityServiceDeleteCredentialProcedure:   identity.ScopeManageCredentials,
	identityv1connect.IdentityServiceGetCredentialRolesProcedure: identity.ScopeManageCredentials,
	identityv1connect.IdentityServiceSetCredentialRolesProcedure: identity.ScopeManageCredentials,
	identityv1connect.IdentityServiceListRolesProcedure:          identity.ScopeManageCredentials,
	identityv1connect.IdentityServiceListUsersProcedure:          identity.ScopeManageTenant,
	identityv1connect.IdentityServiceRemoveUserProcedure:         identity.ScopeManageTenant,
	identityv1connect.IdentityServiceCreateInvitationProcedure:   identity.ScopeManageTenant,
	identityv1connect.IdentityServiceListInvitationsProcedure:    identity.ScopeManageTenant,
	identityv1connect.IdentityServiceRevokeInvitationProcedure:   identity.ScopeManageTenant,
	identityv1connect.IdentityServiceGetInvitationProcedure:      Public,
	identityv1connect.IdentityServiceAcceptInvitationProcedure:   Public,
	identityv1connect.IdentityServiceChangePasswordProcedure:     Authenticated,
	identityv1connect.IdentityServiceApproveDeviceProcedure:      Authenticated,
	identityv1connect.IdentityServiceWatchIdentityProcedure:      Authenticated,
}

// identityServer implements IdentityService over the same identity.Service as REST.
// The user, invitation and device procedures are in users_connect.go.
type identityServer struct {
	g *Gateway
}

var _ identityv1connect.IdentityServiceHandler = (*identityServer)(nil)

func (s *identityServer) err(ctx context.Context, err error) error {
	return connectError(ctx, s.g.log, err)
}

func environmentPB(e store.Environment) *identityv1.Environment {
	return &identityv1.Environment{Id: e.ID, OrgId: e.OrgID, Name: e.Name, CreateTime: timestamppb.New(e.CreatedAt)}
}

func credentialPB(c store.Credential) *identityv1.Credential {
	return &identityv1.Credential{
		Id: c.ClientID, ClientId: c.ClientID, Name: c.Name, OrgId: c.Tenant.OrgID, EnvId: c.Tenant.EnvID,
		Roles: c.Roles, Scopes: identity.ScopesOf(c.Roles), CreateTime: timestamppb.New(c.CreatedAt),
	}
}

func (s *identityServer) WhoAmI(ctx context.Context, _ *connect.Request[identityv1.WhoAmIRequest]) (*connect.Response[identityv1.WhoAmIResponse], error) {
	p := principalFrom(ctx)
	typ := identityv1.PrincipalType_PRINCIPAL_TYPE_MACHINE
	if p.Type == identity.PrincipalUser {
		typ = identityv1.PrincipalType_PRINCIPAL_TYPE_USER
	}
	resp := &identityv1.WhoAmIResponse{Principal: &identityv1.Principal{
		Type: typ, Name: p.Name, Subject: p.Subject, OrgId: p.OrgID, OrgName: p.OrgName, EnvId: p.EnvID,
		Roles: p.Roles, Scopes: p.Scopes,
	}}
	envs, err := s.g.id.UserMemberships(ctx, p)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	for _, e := range envs {
		resp.Environments = append(resp.Environments, environmentPB(e))
	}
	return connect.NewResponse(resp), nil
}

func (s *identityServer) ListEnvironments(ctx context.Context, _ *connect.Request[identityv1.ListEnvironmentsRequest]) (*connect.Response[identityv1.ListEnvironmentsResponse], error) {
	envs, err := s.g.id.ListEnvironments(ctx, principalFrom(ctx))
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &identityv1.ListEnvironmentsResponse{}
	for _, e := range envs {
		resp.Environments = append(resp.Environments, environmentPB(e))
	}
	return connect.NewResponse(resp), nil
}

func (s *identityServer) CreateEnvironment(ctx context.Context, req *connect.Request[identityv1.CreateEnvironmentRequest]) (*connect.Response[identityv1.CreateEnvironmentResponse], error) {
	created, err := s.g.id.CreateEnvironment(ctx, principalFrom(ctx), req.Msg.GetName())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.CreateEnvironmentResponse{
		Environment:       environmentPB(created.Environment),
		AdminCredential:   credentialPB(created.Admin),
		AdminClientSecret: created.Secret,
	}), nil
}

func (s *identityServer) ListCredentials(ctx context.Context, _ *connect.Request[identityv1.ListCredentialsRequest]) (*connect.Response[identityv1.ListCredentialsResponse], error) {
	creds, err := s.g.id.ListCredentials(ctx, principalFrom(ctx))
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &identityv1.ListCredentialsResponse{}
	for _, c := range creds {
		resp.Credentials = append(resp.Credentials, credentialPB(c))
	}
	return connect.NewResponse(resp), nil
}

func (s *identityServer) CreateCredential(ctx context.Context, req *connect.Request[identityv1.CreateCredentialRequest]) (*connect.Response[identityv1.CreateCredentialResponse], error) {
	cred, secret, err := s.g.id.CreateCredential(ctx, principalFrom(ctx), req.Msg.GetName(), req.Msg.GetRoles())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.CreateCredentialResponse{Credential: credentialPB(cred), ClientSecret: secret}), nil
}

func (s *identityServer) DeleteCredential(ctx context.Context, req *connect.Request[identityv1.DeleteCredentialRequest]) (*connect.Response[identityv1.DeleteCredentialResponse], error) {
	if err := s.g.id.DeleteCredential(ctx, principalFrom(ctx), req.Msg.GetId()); err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.DeleteCredentialResponse{}), nil
}

func (s *identityServer) GetCredentialRoles(ctx context.Context, req *connect.Request[identityv1.GetCredentialRolesRequest]) (*connect.Response[identityv1.GetCredentialRolesResponse], error) {
	roles, err := s.g.id.CredentialRoles(ctx, principalFrom(ctx), req.Msg.GetId())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.GetCredentialRolesResponse{Roles: roles}), nil
}

func (s *identityServer) SetCredentialRoles(ctx context.Context, req *connect.Request[identityv1.SetCredentialRolesRequest]) (*connect.Response[identityv1.SetCredentialRolesResponse], error) {
	roles, err := s.g.id.SetCredentialRoles(ctx, principalFrom(ctx), req.Msg.GetId(), req.Msg.GetRoles())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.SetCredentialRolesResponse{Roles: roles}), nil
}

func (s *identityServer) ListRoles(context.Context, *connect.Request[identityv1.ListRolesRequest]) (*connect.Response[identityv1.ListRolesResponse], error) {
	resp := &identityv1.ListRolesResponse{}
	for _, r := range s.g.id.Roles() {
		role := &identityv1.Role{Name: r.Name, Scopes: r.Scopes, System: r.System}
		for _, gr := range r.Grants {
			role.Grants = append(role.Grants, &identityv1.Grant{Type: gr.Type, Resource: gr.Resource, Permission: gr.Permission})
		}
		resp.Roles = append(resp.Roles, role)
	}
	return connect.NewResponse(resp), nil
}
