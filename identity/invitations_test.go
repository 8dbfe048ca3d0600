package identity_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// interleavingStore runs a hook once just before the next call of the named method
// ("UpdateUser" or "DeleteUser"), to put another writer's change between two of the
// service's steps.
type interleavingStore struct {
	store.Store
	before map[string]func()
}

func (s *interleavingStore) hook(method string) {
	if f := s.before[method]; f != nil {
		delete(s.before, method)
		f()
	}
}

func (s *interleavingStore) UpdateUser(ctx context.Context, u store.User) (store.User, error) {
	s.hook("UpdateUser")
	return s.Store.UpdateUser(ctx, u)
}

func (s *interleavingStore) DeleteUser(ctx context.Context, orgID, id string, revision int64) error {
	s.hook("DeleteUser")
	return s.Store.DeleteUser(ctx, orgID, id, revision)
}

// newInterleaved is fx's service again, on a store that runs hooks between its steps.
func newInterleaved(t *testing.T, fx *fixture) (*identity.Service, *interleavingStore) {
	st := &interleavingStore{Store: fx.st, before: map[string]func(){}}
	return newService(t, st, fx.config()), st
}

// TestRemoveLastMembershipWhileInvited: a membership another writer adds just before the
// removal of the user's last one deletes the user keeps the user, with that membership.
func TestRemoveLastMembershipWhileInvited(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	svc, st := newInterleaved(t, fx)
	ctx := t.Context()
	jane := addUser(t, fx, "jane", identity.RoleDeploymentsFullAccess)
	other := store.Membership{EnvID: "staging", Roles: []string{identity.RoleRemoteNetworkAgent}}
	st.before["DeleteUser"] = func() {
		u, err := fx.st.GetUser(ctx, jane.OrgID, jane.ID)
		if err != nil {
			t.Fatal(err)
		}
		u.Memberships = append(u.Memberships, other)
		if _, err := fx.st.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.RemoveUser(ctx, fx.adminPrincipal(), jane.ID); err != nil {
		t.Fatalf("RemoveUser: %v", err)
	}
	if _, ok := st.before["DeleteUser"]; ok {
		t.Fatal("RemoveUser never tried to delete the user")
	}
	u, err := fx.st.GetUser(ctx, jane.OrgID, jane.ID)
	if err != nil {
		t.Fatalf("the user with a membership added meanwhile was deleted: %v", err)
	}
	if len(u.Memberships) != 1 || u.Memberships[0].EnvID != other.EnvID {
		t.Errorf("memberships = %+v, want only %s", u.Memberships, other.EnvID)
	}
}

// TestAcceptInvitationAfterRemoval: an existing user removed between the password check and
// the new membership gets a clear error, and the link works again to create the account.
func TestAcceptInvitationAfterRemoval(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	svc, st := newInterleaved(t, fx)
	ctx := t.Context()
	jane, err := fx.svc.CreateLocalUser(ctx, identity.NewLocalUser{
		OrgID: fx.org.Organization.ID, Login: "jane@example.com", Password: userPassword,
		Memberships: []store.Membership{{EnvID: "staging", Roles: []string{identity.RoleRemoteNetworkAgent}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, link, err := svc.CreateInvitation(ctx, fx.adminPrincipal(), "jane@example.com", []string{identity.RoleDeploymentsFullAccess}, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, ok := strings.Cut(link, "#token=")
	if !ok {
		t.Fatalf("link %q has no token", link)
	}
	st.before["UpdateUser"] = func() {
		if err := fx.st.DeleteUser(ctx, jane.OrgID, jane.ID, jane.Revision); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = svc.AcceptInvitation(ctx, secret, "", userPassword)
	var cerr *identity.CallerError
	if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "was removed meanwhile; open the link again") {
		t.Fatalf("accept as a user removed meanwhile: %v, want a caller error saying so", err)
	}
	info, err := svc.GetInvitation(ctx, secret)
	if err != nil {
		t.Fatalf("the link does not work after a failed acceptance: %v", err)
	}
	if info.ExistingUser {
		t.Error("the invitation still sees the removed account")
	}
	u, _, err := svc.AcceptInvitation(ctx, secret, "Jane", "a new password of hers")
	if err != nil {
		t.Fatalf("accept again, creating the account: %v", err)
	}
	if m, ok := u.Member(fx.org.Environment.ID); !ok || len(m.Roles) != 1 || m.Roles[0] != identity.RoleDeploymentsFullAccess {
		t.Errorf("memberships of the new account = %+v", u.Memberships)
	}
	if _, _, err := svc.AcceptInvitation(ctx, secret, "Jane", "a new password of hers"); err == nil {
		t.Error("the link worked twice")
	}
}
