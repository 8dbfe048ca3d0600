package gateway

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// identityWatchInterval is how often WatchIdentity reads the caller's tenant.
const identityWatchInterval = time.Second

func userPB(u store.User, envID string) *identityv1.User {
	m, _ := u.Member(envID)
	return &identityv1.User{
		Id: u.ID, Login: u.Login, Name: u.Name, Roles: m.Roles, External: u.External != "",
		CreateTime: timestamppb.New(u.CreatedAt),
	}
}

func invitationPB(inv identity.Invitation) *identityv1.Invitation {
	return &identityv1.Invitation{
		Id: inv.ID, Email: inv.Email, Roles: inv.Roles, EnvId: inv.EnvID, InvitedBy: inv.InvitedBy,
		CreateTime: timestamppb.New(inv.CreatedAt), ExpireTime: timestamppb.New(inv.ExpiresAt),
	}
}

func (s *identityServer) ListUsers(ctx context.Context, _ *connect.Request[identityv1.ListUsersRequest]) (*connect.Response[identityv1.ListUsersResponse], error) {
	p := principalFrom(ctx)
	users, err := s.g.id.ListUsers(ctx, p)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &identityv1.ListUsersResponse{}
	for _, u := range users {
		resp.Users = append(resp.Users, userPB(u, p.EnvID))
	}
	return connect.NewResponse(resp), nil
}

func (s *identityServer) RemoveUser(ctx context.Context, req *connect.Request[identityv1.RemoveUserRequest]) (*connect.Response[identityv1.RemoveUserResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	if err := s.g.id.RemoveUser(ctx, principalFrom(ctx), req.Msg.GetId()); err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.RemoveUserResponse{}), nil
}

func (s *identityServer) CreateInvitation(ctx context.Context, req *connect.Request[identityv1.CreateInvitationRequest]) (*connect.Response[identityv1.CreateInvitationResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	var ttl time.Duration
	if d := req.Msg.GetTtl(); d != nil {
		ttl = d.AsDuration()
		if ttl <= 0 {
			ttl = -1 // an explicit zero or negative TTL is refused, not defaulted
		}
	}
	inv, link, err := s.g.id.CreateInvitation(ctx, principalFrom(ctx), req.Msg.GetEmail(), req.Msg.GetRoles(), ttl)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.CreateInvitationResponse{Invitation: invitationPB(inv), Url: link}), nil
}

func (s *identityServer) ListInvitations(ctx context.Context, _ *connect.Request[identityv1.ListInvitationsRequest]) (*connect.Response[identityv1.ListInvitationsResponse], error) {
	invs, err := s.g.id.ListInvitations(ctx, principalFrom(ctx))
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &identityv1.ListInvitationsResponse{}
	for _, inv := range invs {
		resp.Invitations = append(resp.Invitations, invitationPB(inv))
	}
	return connect.NewResponse(resp), nil
}

func (s *identityServer) RevokeInvitation(ctx context.Context, req *connect.Request[identityv1.RevokeInvitationRequest]) (*connect.Response[identityv1.RevokeInvitationResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	if err := s.g.id.RevokeInvitation(ctx, principalFrom(ctx), req.Msg.GetId()); err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.RevokeInvitationResponse{}), nil
}

func (s *identityServer) GetInvitation(ctx context.Context, req *connect.Request[identityv1.GetInvitationRequest]) (*connect.Response[identityv1.GetInvitationResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	info, err := s.g.id.GetInvitation(ctx, req.Msg.GetToken())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.GetInvitationResponse{
		Email: info.Email, OrgName: info.OrgName, EnvName: info.EnvName, Roles: info.Roles,
		ExistingUser: info.ExistingUser, ExpireTime: timestamppb.New(info.ExpiresAt),
	}), nil
}

func (s *identityServer) AcceptInvitation(ctx context.Context, req *connect.Request[identityv1.AcceptInvitationRequest]) (*connect.Response[identityv1.AcceptInvitationResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	u, inv, err := s.g.id.AcceptInvitation(ctx, req.Msg.GetToken(), req.Msg.GetName(), req.Msg.GetPassword())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.AcceptInvitationResponse{Login: u.Login, EnvId: inv.EnvID}), nil
}

func (s *identityServer) ChangePassword(ctx context.Context, req *connect.Request[identityv1.ChangePasswordRequest]) (*connect.Response[identityv1.ChangePasswordResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	if err := s.g.id.ChangePassword(ctx, principalFrom(ctx), req.Msg.GetCurrentPassword(), req.Msg.GetNewPassword()); err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.ChangePasswordResponse{}), nil
}

func (s *identityServer) ApproveDevice(ctx context.Context, req *connect.Request[identityv1.ApproveDeviceRequest]) (*connect.Response[identityv1.ApproveDeviceResponse], error) {
	if err := identity.CheckMessage(req.Msg); err != nil {
		return nil, s.err(ctx, err)
	}
	if err := s.g.id.ApproveDevice(ctx, principalFrom(ctx), req.Msg.GetUserCode(), req.Msg.GetEnvId(), req.Msg.GetDeny()); err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&identityv1.ApproveDeviceResponse{}), nil
}

// WatchIdentity reads the caller's tenant at once and then every identityWatchInterval, and
// sends a full snapshot whenever it differs from the last one sent. It ends with
// Unauthenticated once the caller's token stops verifying (a removed user, an ended session,
// a deleted credential).
func (s *identityServer) WatchIdentity(ctx context.Context, _ *connect.Request[identityv1.WatchIdentityRequest], stream *connect.ServerStream[identityv1.WatchIdentityResponse]) error {
	ctx, stop := s.g.authorizedStream(ctx)
	defer stop()
	p := principalFrom(ctx)
	var last *identityv1.WatchIdentityResponse
	tick := time.NewTicker(identityWatchInterval)
	defer tick.Stop()
	for {
		cur, err := s.g.id.Recheck(ctx, p)
		if errors.Is(err, identity.ErrInvalidToken) {
			return streamEnd(ctx, connect.NewError(connect.CodeUnauthenticated,
				errors.New("the user, session or credential of this token no longer exists")))
		}
		var snap *identityv1.WatchIdentityResponse
		if err == nil {
			snap, err = s.identitySnapshot(ctx, cur)
		}
		if err != nil {
			if ctx.Err() != nil {
				return streamEnd(ctx, nil)
			}
			return streamEnd(ctx, s.err(ctx, err))
		}
		if last == nil || !proto.Equal(last, snap) {
			if err := stream.Send(snap); err != nil {
				return err
			}
			last = snap
		}
		select {
		case <-ctx.Done():
			return streamEnd(ctx, nil)
		case <-tick.C:
		}
	}
}

// identitySnapshot is what p may see of its tenant's identity side.
func (s *identityServer) identitySnapshot(ctx context.Context, p identity.Principal) (*identityv1.WatchIdentityResponse, error) {
	snap := &identityv1.WatchIdentityResponse{}
	if p.HasScope(identity.ScopeManageCredentials) {
		creds, err := s.g.id.ListCredentials(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, c := range creds {
			snap.Credentials = append(snap.Credentials, credentialPB(c))
		}
	}
	if p.HasScope(identity.ScopeManageTenant) {
		users, err := s.g.id.ListUsers(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			snap.Users = append(snap.Users, userPB(u, p.EnvID))
		}
		invs, err := s.g.id.ListInvitations(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, inv := range invs {
			snap.Invitations = append(snap.Invitations, invitationPB(inv))
		}
	}
	members, err := s.g.id.UserMemberships(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, e := range members {
		snap.Memberships = append(snap.Memberships, environmentPB(e))
	}
	if p.HasScope(identity.ScopeManageTenant) {
		envs, err := s.g.id.ListEnvironments(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, e := range envs {
			snap.Environments = append(snap.Environments, environmentPB(e))
		}
	} else {
		for _, e := range members {
			if e.ID == p.EnvID {
				snap.Environments = append(snap.Environments, environmentPB(e))
			}
		}
	}
	return snap, nil
}
